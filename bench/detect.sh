#!/usr/bin/env bash
# Detection latency under load: from a request to the finding it causes, journaled.
#
#   bash bench/detect.sh                        # defaults below
#   DURATION=30 RATE=8000 bash bench/detect.sh
#
# apiwatch (release build, journal fsync every 100 ms, the built-in pack) in front of nginx
# (the upstream of bench/proxy.sh). wrk drives mixed traffic through it twice: once as fast as
# it goes (saturation: the gateway, the journal, detection, nginx and wrk share the 2 cores),
# then at a fixed RATE. Every request claims a client address with X-Forwarded-For (apiwatch
# trusts 127.0.0.1 as a proxy):
#   - 99% from 20,000 ordinary clients on templated routes;
#   - 1% scanner probes (/.env, /.git/config...), three from each attacker address and then a
#     new address, so `probe.scanner-paths` (threshold 3) fires on every third probe all
#     through the run, each time for a new key.
# Reported per run:
#   - finding latency, for every finding of the run: its journal time (the millisecond
#     timestamp in the UUIDv7 of its event.id) minus the start of the request that triggered
#     it (window_end). It includes that request's own duration, so it is an upper bound;
#   - the delay histogram (apiwatch_detect_delay_seconds): every request's end to its
#     evaluation, findings journaled; p50, p99 and the share within 100 ms.
#
# Needs (Debian): wrk, nginx-light (or nginx), python3. Installs the packages when run as root.
# Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-20}"          # seconds per run
CONNECTIONS="${CONNECTIONS:-64}"    # wrk connections
THREADS="${THREADS:-2}"             # wrk threads
RATE="${RATE:-5000}"                # requests/s of the fixed-rate run

UPSTREAM_PORT=18281
APIWATCH_PORT=18283
ADMIN_PORT=18284

# shellcheck source=bench/common.sh
. bench/common.sh
need wrk wrk
need nginx nginx-light
need python3 python3

start_work apiwatch-detect-bench

build_apiwatch

upstream_conf "$work/upstream" "$UPSTREAM_PORT"
nginx -c "$work/upstream/nginx.conf" -p "$work/upstream" & pids+=($!)

"$APIWATCH" serve --upstream "http://127.0.0.1:$UPSTREAM_PORT" \
  --listen "127.0.0.1:$APIWATCH_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
  --trusted-proxy 127.0.0.1/32 --data "$work/apiwatch-data" --fsync 100ms --log-format json \
  >"$work/apiwatch.out" 2>"$work/apiwatch.err" & pids+=($!)

wait_http "$APIWATCH_PORT" /api/items/1

# The traffic: each wrk thread has its own Lua state, numbered in setup() so attacker
# addresses never repeat across threads. `delay()` paces each connection in the fixed-rate run.
cat >"$work/traffic.lua" <<'EOF'
local threads = 0
function setup(thread)
  thread:set("number", threads)
  threads = threads + 1
end

local probes = { "/.env", "/.git/config", "/wp-login.php", "/backup.zip", "/phpmyadmin/" }
local routes = { "/api/items/", "/api/users/", "/api/orders/" }
local sent_probes = 0
local pause = tonumber(os.getenv("WRK_DELAY_MS") or "0")
local run = tonumber(os.getenv("WRK_RUN") or "0")

function init(args)
  math.randomseed(1000 + number)
end

function delay()
  return pause
end

function request()
  local path, address
  if math.random(100) == 1 then
    local attacker = (run * 4 + number) * 1000000 + math.floor(sent_probes / 3)
    sent_probes = sent_probes + 1
    address = string.format("10.%d.%d.%d", math.floor(attacker / 65536) % 256,
      math.floor(attacker / 256) % 256, attacker % 256)
    path = probes[math.random(#probes)]
  else
    address = string.format("100.64.%d.%d", math.random(0, 79), math.random(1, 250))
    path = routes[math.random(#routes)] .. math.random(1, 100000)
  end
  return wrk.format("GET", path, { ["X-Forwarded-For"] = address, ["User-Agent"] = "bench/1.0" })
end
EOF

metrics() { admin_metrics "$ADMIN_PORT" >"$1"; }

# run NAME DELAY_MS NUMBER: one wrk run, with the metrics before and after and its time span;
# NUMBER keeps the attacker addresses of runs apart (a blocked address stays blocked).
run() {
  local name=$1 pause=$2 number=$3
  metrics "$work/$name.before"
  date +%s.%N >"$work/$name.start"
  WRK_DELAY_MS=$pause WRK_RUN=$number wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s "$work/traffic.lua" \
    "http://127.0.0.1:$APIWATCH_PORT" >"$work/$name.wrk"
  date +%s.%N >"$work/$name.end"
  sleep 2 # let detection drain what is left
  metrics "$work/$name.after"
}

run saturation 0 0
pause_ms=$(( CONNECTIONS * 1000 / RATE ))
run fixed "$pause_ms" 1
"$APIWATCH" findings --since 1h --limit 10000000 --data "$work/apiwatch-data" >"$work/findings.jsonl"

python3 - "$work" "$DURATION" "$CONNECTIONS" "$RATE" "$pause_ms" <<'EOF'
import json, re, sys, uuid
from datetime import datetime

work, duration, connections, rate, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

def histogram(path):
    buckets, count = {}, 0.0
    for line in open(path):
        m = re.match(r'apiwatch_detect_delay_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            buckets[float(m.group(1))] = float(m.group(2))
        elif line.startswith("apiwatch_detect_delay_seconds_count "):
            count = float(line.split()[1])
    return buckets, count

def counter(path, name):
    total = 0.0
    for line in open(path):
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.split()[-1])
    return total

def quantile(bounds, cumulative, q):
    """Linear interpolation inside the bucket holding quantile q (as Prometheus does)."""
    total = cumulative[-1]
    target = q * total
    previous_bound, previous = 0.0, 0.0
    for bound, cum in zip(bounds, cumulative):
        if cum >= target:
            if bound == float("inf"):
                return float("inf")
            share = 0 if cum == previous else (target - previous) / (cum - previous)
            return previous_bound + (bound - previous_bound) * share
        previous_bound, previous = bound, cum
    return float("inf")

def parse_time(text):
    # 2026-12-02T01:02:03.123456789Z -> seconds since the epoch (float)
    head, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (fraction or "0"))

findings = [json.loads(line) for line in open(f"{work}/findings.jsonl") if line.strip()]

print(f"machine: 2 cores shared by wrk (-t2 -c{connections}), apiwatch, nginx; {duration} s per run")
for name, label in (("saturation", "as fast as it goes"), ("fixed", f"fixed rate ({connections} connections, one request per {pause} ms each)")):
    start = float(open(f"{work}/{name}.start").read())
    end = float(open(f"{work}/{name}.end").read())
    wrk = open(f"{work}/{name}.wrk").read()
    rps = float(re.search(r"Requests/sec:\s+(\S+)", wrk).group(1))
    before, _ = histogram(f"{work}/{name}.before")
    after, _ = histogram(f"{work}/{name}.after")
    bounds = sorted(after)
    cumulative = [after[b] - before.get(b, 0.0) for b in bounds]
    evaluated = cumulative[-1]
    within = dict(zip(bounds, cumulative)).get(0.1, 0.0)
    journaled = counter(f"{work}/{name}.after", "apiwatch_journal_records_total") - counter(f"{work}/{name}.before", "apiwatch_journal_records_total")
    dropped = counter(f"{work}/{name}.after", "apiwatch_events_dropped_total") - counter(f"{work}/{name}.before", "apiwatch_events_dropped_total")
    latencies, triggers = [], []
    for finding in findings:
        triggered = parse_time(finding["finding.window.end"])
        if not (start <= triggered <= end + 1):
            continue
        recorded_ms = uuid.UUID(finding["event.id"]).int >> 80
        latencies.append(recorded_ms / 1000.0 - triggered)
        triggers.append(finding["finding.window.end"])
    slow = sorted(((late, at) for late, at in zip(latencies, triggers) if late > 0.1), reverse=True)[:5]
    latencies.sort()
    def pick(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
    print()
    print(f"{name}: {label}")
    print(f"  wrk: {rps:,.0f} requests/s; journaled {journaled:,.0f} records, dropped {dropped:,.0f}")
    print(f"  findings: {len(latencies):,}; request start -> finding journaled: p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms, max {pick(1.0):.1f} ms")
    print(f"  every request (end -> evaluated, findings journaled): {evaluated:,.0f} evaluated; "
          f"p50 {quantile(bounds, cumulative, 0.5) * 1000:.1f} ms, p99 {quantile(bounds, cumulative, 0.99) * 1000:.1f} ms; "
          f"{100 * within / evaluated if evaluated else 0:.2f}% within 100 ms")
    for late, at in slow:
        print(f"  slow finding: {late * 1000:.0f} ms, triggered at {at}")
print()
print("target (issue 4): p99 under 100 ms from event journaled to finding recorded")
EOF
