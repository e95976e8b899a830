#!/usr/bin/env bash
# CPU per proxied request, by thread: a steadier measure than requests/s on a small machine where
# the load generator, the upstream and the proxy share the cores. Runs wrk against nginx (the
# same reverse proxy with a buffered JSON access log as bench/proxy.sh) and against apiwatch, one
# after the other, ROUNDS times, and prints for each run the user and system CPU of every thread
# of the proxy (from /proc/PID/task/*/stat) divided by the requests wrk counted.
#
#   bash bench/cpu.sh                          # release build of this checkout
#   APIWATCH=/path/to/apiwatch bash bench/cpu.sh
#   EXTRA='[store]
#   enabled = false' bash bench/cpu.sh          # TOML appended to apiwatch's configuration
#   PERF=1 bash bench/cpu.sh                   # also perf-record apiwatch (to $PERF_OUT)
#
# Needs (Debian): wrk, nginx. Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-2}"
BODY_PATH="${BODY_PATH:-/api/v1/items/42?page=2}"
PERF_OUT="${PERF_OUT:-/tmp/apiwatch-perf.data}"
UPSTREAM_PORT=18191
NGINX_PORT=18192
APIWATCH_PORT=18193
ADMIN_PORT=18194

# shellcheck source=bench/common.sh
. bench/common.sh
need wrk wrk
need nginx nginx-light

start_work apiwatch-cpu

build_apiwatch

upstream_conf "$work/upstream" "$UPSTREAM_PORT"
proxy_conf "$work/proxy" "$NGINX_PORT" "$UPSTREAM_PORT"

nginx -c "$work/upstream/nginx.conf" -p "$work/upstream" & pids+=($!)
nginx -c "$work/proxy/nginx.conf" -p "$work/proxy" & nginx_pid=$!; pids+=($nginx_pid)
start_apiwatch "${EXTRA:-}"

for port in $UPSTREAM_PORT $NGINX_PORT $APIWATCH_PORT; do
  wait_http "$port" "$BODY_PATH"
  wrk -t1 -c8 -d2s "http://127.0.0.1:$port$BODY_PATH" >/dev/null
done

# ticks PID...: "name utime stime" for every thread of the processes (nginx: master + workers).
ticks() {
  local pid task
  for pid in "$@"; do
    for task in /proc/"$pid"/task/*; do
      # A thread may end between the listing and the read (a blocking-pool thread): skip it.
      local comm
      comm="$(tr ' ' '_' 2>/dev/null <"$task/comm")" || continue
      # comm may hold spaces: take the fields after the closing parenthesis.
      awk -v name="$comm" '{ sub(/^.*\) /, ""); print name, $12, $13 }' \
        "$task/stat" 2>/dev/null || true
    done
  done
}
children() { pgrep -P "$1" | tr '\n' ' '; }

# run NAME PORT PIDS...: one wrk run, then CPU per request by thread name.
run() {
  local name=$1 port=$2; shift 2
  local hz before after requests
  hz=$(getconf CLK_TCK)
  before=$(ticks "$@")
  local perf_pid=
  if [ "${PERF:-0}" = 1 ] && [ "$name" = apiwatch ]; then
    perf record -e cpu-clock -g -o "$PERF_OUT" -p "$apiwatch_pid" -- sleep "$DURATION" \
      >/dev/null 2>&1 & perf_pid=$!
  fi
  requests=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$port$BODY_PATH" |
    awk '/requests in/ {print $1}')
  [ -z "$perf_pid" ] || wait "$perf_pid" || true
  after=$(ticks "$@")
  echo "== $name: $requests requests in ${DURATION}s ($(awk "BEGIN {printf \"%.0f\", $requests / $DURATION}")/s)"
  join <(echo "$before" | awk '{u[$1] += $2; s[$1] += $3} END {for (n in u) print n, u[n], s[n]}' | sort) \
       <(echo "$after" | awk '{u[$1] += $2; s[$1] += $3} END {for (n in u) print n, u[n], s[n]}' | sort) |
    awk -v hz="$hz" -v n="$requests" '
      { du = ($4 - $2) * 1e6 / hz / n; ds = ($5 - $3) * 1e6 / hz / n
        if (du + ds > 0.05) printf "  %-22s user %6.2f us  sys %6.2f us\n", $1, du, ds
        tu += du; ts += ds }
      END { printf "  %-22s user %6.2f us  sys %6.2f us  total %6.2f us per request\n", "ALL", tu, ts, tu + ts }'
}

for round in $(seq 1 "$ROUNDS"); do
  echo "# round $round"
  # shellcheck disable=SC2046
  run nginx $NGINX_PORT $nginx_pid $(children $nginx_pid)
  run apiwatch $APIWATCH_PORT $apiwatch_pid
done
