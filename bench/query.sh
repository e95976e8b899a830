#!/usr/bin/env bash
# Query store benchmark: N synthetic events over 7 days (`apiwatch gen`), ingested into the
# store (`apiwatch store rebuild`, events/s), then five investigator queries answered by
# apiwatch (its admin API, warm), by DuckDB reading the same Parquet files, and by SQLite
# holding the same rows with indexes; same machine, one run. Prints warm medians, the ratios
# to DuckDB, and Parquet bytes per event beside the journal's JSON bytes per event.
#
#   bash bench/query.sh                 # 10,000,000 events
#   EVENTS=1000000 bash bench/query.sh
#   INGEST=0 bash bench/query.sh        # queries only, over the store of the last run
#
# Needs: python3 with duckdb (PyPI; installed when missing), the release binary (built).
# Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS="${EVENTS:-10000000}"
RUNS="${RUNS:-11}"
WORK="${WORK:-/var/tmp/apiwatch-bench-query}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/apiwatch-target}"

python3 -c 'import duckdb' 2>/dev/null || python3 -m pip install -q duckdb
cargo build --release -q -p apiwatch
BIN="$CARGO_TARGET_DIR/release/apiwatch"

DATA="$WORK/data-$EVENTS"
# A finished generation leaves `.generated` (or, from before that marker, a store).
if [ ! -f "$DATA/.generated" ] && [ ! -f "$DATA/store/manifest.json" ]; then
  rm -rf "$DATA"
  mkdir -p "$WORK"
  echo "== gen $EVENTS events"
  "$BIN" gen --events "$EVENTS" --days 7 -o "$DATA"
  touch "$DATA/.generated"
fi
# Ingest is measured on every run (the events of an earlier run are generated once and
# kept): the whole journal into an empty store. INGEST=0 keeps the store as it is.
if [ "${INGEST:-1}" != 0 ] || [ ! -f "$DATA/store/manifest.json" ]; then
  echo "== store rebuild (ingest)"
  "$BIN" store rebuild --data "$DATA" | tee "$WORK/ingest-$EVENTS.txt"
fi

exec python3 bench/query.py "$BIN" "$DATA" "$RUNS" "$WORK"
