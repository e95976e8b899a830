#!/usr/bin/env bash
# Proxy throughput and latency: the upstream directly, through apiwatch (journaling every request,
# fsync every 100 ms), and through nginx (one worker per core, keepalive upstream pool, buffered
# JSON access log), same upstream, same machine, one run. Prints requests/s, the ratios, and the
# p99 latency added at a fixed moderate rate.
#
#   bash bench/proxy.sh                # defaults below
#   DURATION=20 CONNECTIONS=128 RATE=5000 bash bench/proxy.sh
#
# Needs (Debian): wrk, nginx-light (or nginx), installed when run as root; and oha (crates.io,
# corrects for coordinated omission), installed with `cargo install oha --locked` into
# OHA_ROOT when missing (about 10 minutes the first time).
# Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"            # seconds per wrk run
CONNECTIONS="${CONNECTIONS:-64}"      # wrk connections
THREADS="${THREADS:-2}"               # wrk threads
RATE="${RATE:-5000}"                  # requests/s for the latency run
LAT_DURATION="${LAT_DURATION:-10}"    # seconds per latency run
LAT_ROUNDS="${LAT_ROUNDS:-3}"         # latency rounds, targets alternated; the median p99 is shown
OHA_ROOT="${OHA_ROOT:-/var/tmp/oha}"
BODY_PATH="${BODY_PATH:-/api/v1/items/42?page=2}"
CORES="$(nproc)"

UPSTREAM_PORT=18181
NGINX_PORT=18182
APIWATCH_PORT=18183
ADMIN_PORT=18184

# shellcheck source=bench/common.sh
. bench/common.sh
need wrk wrk
need nginx nginx-light
OHA="$(command -v oha || echo "$OHA_ROOT/bin/oha")"
if [ ! -x "$OHA" ]; then
  echo "installing oha into $OHA_ROOT (cargo install oha --locked)" >&2
  cargo install oha --locked --version 1.16.0 --root "$OHA_ROOT" >&2
fi

start_work apiwatch-bench

build_apiwatch

# The upstream (see bench/common.sh).
upstream_conf "$work/upstream" "$UPSTREAM_PORT"

# nginx as the reverse proxy with a JSON access log (see bench/common.sh).
proxy_conf "$work/proxy" "$NGINX_PORT" "$UPSTREAM_PORT"

nginx -c "$work/upstream/nginx.conf" -p "$work/upstream" & pids+=($!)
nginx -c "$work/proxy/nginx.conf" -p "$work/proxy" & pids+=($!)
start_apiwatch

wait_http "$UPSTREAM_PORT" "$BODY_PATH"
wait_http "$NGINX_PORT" "$BODY_PATH"
wait_http "$APIWATCH_PORT" "$BODY_PATH"

rps() { # port -> requests/s
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$1$BODY_PATH" \
    | tee -a "$work/wrk.log" | awk '/Requests\/sec/ {print $2}'
}
p99() { # port -> p99 in ms at a fixed rate (oha: 50 connections, latency-corrected)
  "$OHA" -z "${LAT_DURATION}s" -c 50 -q "$RATE" --latency-correction --no-tui \
    --output-format json "http://127.0.0.1:$1$BODY_PATH" | tee -a "$work/oha.log" \
    | python3 -c 'import json, sys; print("%.3f" % (json.load(sys.stdin)["latencyPercentiles"]["p99"] * 1000))'
}

calc() { awk "BEGIN { print $1 }"; }

# Warm up every path (connection pools, page cache).
for port in $UPSTREAM_PORT $NGINX_PORT $APIWATCH_PORT; do
  wrk -t1 -c8 -d2s "http://127.0.0.1:$port$BODY_PATH" >/dev/null
done

direct=$(rps $UPSTREAM_PORT)
nginx_rps=$(rps $NGINX_PORT)
apiwatch_rps=$(rps $APIWATCH_PORT)

# Rounds alternate the targets, so that a noisy minute of the machine hits all three alike.
direct_all=() nginx_all=() apiwatch_all=()
for _ in $(seq 1 "$LAT_ROUNDS"); do
  direct_all+=("$(p99 $UPSTREAM_PORT)")
  nginx_all+=("$(p99 $NGINX_PORT)")
  apiwatch_all+=("$(p99 $APIWATCH_PORT)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
direct_p99=$(median "${direct_all[@]}")
nginx_p99=$(median "${nginx_all[@]}")
apiwatch_p99=$(median "${apiwatch_all[@]}")

metrics=$(admin_metrics "$ADMIN_PORT")
quantile() { # q -> upper bound (ms) of the histogram bucket holding that quantile of detection delay
  echo "$metrics" | awk -v q="$1" '
    /^apiwatch_detect_delay_seconds_count/ { count = $2 }
    /^apiwatch_detect_delay_seconds_bucket/ { match($0, /le="[^"]*"/); le[n] = substr($0, RSTART + 4, RLENGTH - 5); cum[n++] = $2 }
    END { for (i = 0; i < n; i++) if (cum[i] >= q * count) { if (le[i] == "+Inf") print "inf"; else printf "%.0f\n", le[i] * 1000; exit } }'
}
detect_p50=$(quantile 0.5)
detect_p99=$(quantile 0.99)
detect_count=$(echo "$metrics" | awk '/^apiwatch_detect_delay_seconds_count/ {print $2}')
findings=$(echo "$metrics" | awk '/^apiwatch_detect_findings_total/ {s += $2} END {print s + 0}')
records=$(admin_metrics "$ADMIN_PORT" | awk '/^apiwatch_journal_records_total / {print $2}')
dropped=$(admin_metrics "$ADMIN_PORT" | awk '/^apiwatch_events_dropped_total / {print $2}')
log_lines=$(wc -l <"$work/proxy/access.json" || echo 0)

echo
echo "machine: $CORES cores; wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s; latency: oha -c 50 --latency-correction at $RATE req/s for ${LAT_DURATION}s, $LAT_ROUNDS rounds alternated, median p99"
printf '%-34s %12s %10s %12s\n' "target" "requests/s" "vs direct" "p99 ms @$RATE"
printf '%-34s %12.0f %10s %12s\n' "upstream directly" "$direct" "1.00x" "$direct_p99"
printf '%-34s %12.0f %9.2fx %12s\n' "nginx + JSON access log" "$nginx_rps" "$(calc "$nginx_rps / $direct")" "$nginx_p99"
printf '%-34s %12.0f %9.2fx %12s\n' "apiwatch (journal, fsync 100ms)" "$apiwatch_rps" "$(calc "$apiwatch_rps / $direct")" "$apiwatch_p99"
echo
printf 'apiwatch / nginx requests/s: %.2fx (target >= 1.2x)\n' "$(calc "$apiwatch_rps / $nginx_rps")"
echo "p99 by round (ms): direct ${direct_all[*]}; nginx ${nginx_all[*]}; apiwatch ${apiwatch_all[*]}"
printf 'p99 added over direct: apiwatch %.3f ms (target <= 1 ms), nginx %.3f ms\n' \
  "$(calc "$apiwatch_p99 - $direct_p99")" "$(calc "$nginx_p99 - $direct_p99")"
echo "detection under that load: $detect_count events evaluated, $findings findings; delay from request end to evaluation (findings journaled): p50 <= ${detect_p50} ms, p99 <= ${detect_p99} ms (target p99 < 100 ms)"
echo "apiwatch journaled $records events, dropped ${dropped:-?}; nginx wrote $log_lines log lines (buffered)"
