#!/usr/bin/env bash
# System calls, context switches and CPU per proxied request, nginx against apiwatch, at a
# fixed moderate rate (oha -q): whether apiwatch's extra CPU per request (bench/cpu.sh) is in
# the kernel interface or in user space. `perf stat` counts over exactly N requests, ROUNDS
# times alternated; then `strace -c` lists apiwatch's calls by name over 10,000 requests.
#
#   bash bench/syscalls.sh                     # release build of this checkout
#   APIWATCH=/path/to/apiwatch N=30000 bash bench/syscalls.sh
#
# Needs (Debian): nginx, linux-perf, strace, wrk (warm-up); oha as bench/proxy.sh installs it.
# Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-30000}"
RATE="${RATE:-5000}"
ROUNDS="${ROUNDS:-2}"
BODY_PATH="${BODY_PATH:-/api/v1/items/42?page=2}"
OHA_ROOT="${OHA_ROOT:-/var/tmp/oha}"
UPSTREAM_PORT=18381
NGINX_PORT=18382
APIWATCH_PORT=18383
ADMIN_PORT=18384

# shellcheck source=bench/common.sh
. bench/common.sh
need wrk wrk
need nginx nginx-light
need perf linux-perf
need strace strace
OHA="$(command -v oha || echo "$OHA_ROOT/bin/oha")"
[ -x "$OHA" ] || { echo "oha missing: run bench/proxy.sh once (it installs oha)" >&2; exit 1; }

start_work apiwatch-syscalls
build_apiwatch

upstream_conf "$work/upstream" "$UPSTREAM_PORT"
proxy_conf "$work/proxy" "$NGINX_PORT" "$UPSTREAM_PORT"
nginx -c "$work/upstream/nginx.conf" -p "$work/upstream" & pids+=($!)
nginx -c "$work/proxy/nginx.conf" -p "$work/proxy" & proxy_master=$!; pids+=($proxy_master)
start_apiwatch
wait_http "$UPSTREAM_PORT" /x
wait_http "$NGINX_PORT" /x
wait_http "$APIWATCH_PORT" /x
for port in "$NGINX_PORT" "$APIWATCH_PORT"; do
  wrk -t1 -c8 -d2s "http://127.0.0.1:$port$BODY_PATH" >/dev/null
done
nginx_workers="$(pgrep -P "$proxy_master" | paste -sd,)"

# count LABEL PORT PIDS: perf stat over N requests to PORT, divided by N.
count() {
  perf stat -e raw_syscalls:sys_enter,context-switches,task-clock -p "$3" -o "$work/stat.txt" &
  local stat=$!
  sleep 0.3
  "$OHA" -n "$N" -c 50 -q "$RATE" --no-tui --output-format json \
    "http://127.0.0.1:$2$BODY_PATH" >/dev/null
  kill -INT "$stat"
  wait "$stat" || true
  python3 - "$1" "$work/stat.txt" "$N" <<'PY'
import re, sys
label, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
found = {}
for line in open(path):
    match = re.match(r"\s*([\d,.]+)\s+(?:msec\s+)?(\S+)", line)
    if match:
        found[match.group(2)] = float(match.group(1).replace(",", ""))
print(f"{label:8} syscalls/request {found.get('raw_syscalls:sys_enter', 0) / n:6.2f}"
      f"  context switches/request {found.get('context-switches', 0) / n:5.2f}"
      f"  CPU us/request {found.get('task-clock', 0) * 1000 / n:6.1f}")
PY
}

echo "== $N requests at $RATE/s, $ROUNDS rounds"
for _ in $(seq 1 "$ROUNDS"); do
  count nginx "$NGINX_PORT" "$nginx_workers"
  count apiwatch "$APIWATCH_PORT" "$apiwatch_pid"
done

echo "== apiwatch's system calls by name over 10000 requests (strace -c -f)"
strace -f -c -p "$apiwatch_pid" -o "$work/strace.txt" 2>/dev/null & tracer=$!
sleep 0.5
"$OHA" -n 10000 -c 50 -q 3000 --no-tui --output-format json "http://127.0.0.1:$APIWATCH_PORT$BODY_PATH" >/dev/null
kill -INT "$tracer"
wait "$tracer" || true
head -16 "$work/strace.txt"
