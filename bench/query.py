"""The body of bench/query.sh: times five queries in apiwatch, DuckDB and SQLite."""

import glob
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import duckdb

BIN, DATA, RUNS, WORK = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
# The live files only (the manifest's), not those a compaction replaced and that wait in trash.
with open(os.path.join(DATA, "store", "manifest.json")) as manifest:
    FILES = [os.path.join(DATA, "store", entry["name"]) for entry in json.load(manifest)["files"]]

duck = duckdb.connect()
duck.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet({FILES!r})")
latest = duck.execute("SELECT epoch_ns(max(timestamp)) FROM events").fetchone()[0]
total = duck.execute("SELECT count(*) FROM events").fetchone()[0]
day_ago = latest - 86_400_000_000_000
# The busiest address of the last day that is not one of the heaviest clients: a realistic needle.
needle = duck.execute(
    f"SELECT source_ip FROM events WHERE epoch_ns(timestamp) >= {day_ago} "
    "GROUP BY source_ip ORDER BY count(*) DESC LIMIT 1 OFFSET 100"
).fetchone()[0]

def ts(nanos):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(nanos // 1_000_000_000)) + "Z"

DAY = ts(day_ago)

# (name, apiwatch SQL or search, DuckDB SQL, SQLite SQL)
QUERIES = [
    ("1 events of one IP, 24h",
     ("sql", f"SELECT timestamp, http_request_method, url_path, http_response_status_code FROM events "
             f"WHERE source_ip = '{needle}' AND timestamp >= TIMESTAMP '{DAY}' ORDER BY timestamp DESC"),
     f"SELECT timestamp, http_request_method, url_path, http_response_status_code FROM events "
     f"WHERE source_ip = '{needle}' AND timestamp >= TIMESTAMPTZ '{DAY}' ORDER BY timestamp DESC",
     f"SELECT ts, http_request_method, url_path, http_response_status_code FROM events "
     f"WHERE source_ip = '{needle}' AND ts >= {day_ago} ORDER BY ts DESC"),
    ("2 top 10 IPs by 401, 24h",
     ("sql", f"SELECT source_ip, count(*) AS n FROM events WHERE http_response_status_code = 401 "
             f"AND timestamp >= TIMESTAMP '{DAY}' GROUP BY source_ip ORDER BY n DESC, source_ip LIMIT 10"),
     f"SELECT source_ip, count(*) AS n FROM events WHERE http_response_status_code = 401 "
     f"AND timestamp >= TIMESTAMPTZ '{DAY}' GROUP BY source_ip ORDER BY n DESC, source_ip LIMIT 10",
     f"SELECT source_ip, count(*) AS n FROM events WHERE http_response_status_code = 401 "
     f"AND ts >= {day_ago} GROUP BY source_ip ORDER BY n DESC, source_ip LIMIT 10"),
    ("3 requests per minute, 24h",
     ("sql", f"SELECT date_bin(INTERVAL '1 minute', timestamp, TIMESTAMP '1970-01-01T00:00:00Z') AS minute, "
             f"count(*) AS n FROM events WHERE timestamp >= TIMESTAMP '{DAY}' GROUP BY minute ORDER BY minute"),
     f"SELECT time_bucket(INTERVAL '1 minute', timestamp) AS minute, count(*) AS n FROM events "
     f"WHERE timestamp >= TIMESTAMPTZ '{DAY}' GROUP BY minute ORDER BY minute",
     f"SELECT ts / 60000000000 AS minute, count(*) AS n FROM events WHERE ts >= {day_ago} "
     f"GROUP BY minute ORDER BY minute"),
    ("4 p99 latency per route, 7d",
     ("sql", "SELECT route, approx_quantile(event_duration, 0.99) AS p99 "
             "FROM events WHERE route IS NOT NULL GROUP BY route ORDER BY route"),
     "SELECT route, quantile_cont(event_duration, 0.99) AS p99 FROM events WHERE route IS NOT NULL "
     "GROUP BY route ORDER BY route",
     "SELECT route, max(event_duration) AS p99 FROM (SELECT route, event_duration, "
     "percent_rank() OVER (PARTITION BY route ORDER BY event_duration) AS rank FROM events "
     "WHERE route IS NOT NULL) WHERE rank <= 0.99 GROUP BY route ORDER BY route"),
    ("5 search: CIDR, status range, path glob, 24h",
     ("search", "ip=198.51.0.0/16 status>=400 status<500 path:/api/login*"),
     f"SELECT * FROM events WHERE source_ip LIKE '198.51.%' AND http_response_status_code BETWEEN 400 AND 499 "
     f"AND url_path ILIKE '/api/login%' AND timestamp >= TIMESTAMPTZ '{DAY}' ORDER BY timestamp DESC LIMIT 1000",
     f"SELECT * FROM events WHERE source_ip LIKE '198.51.%' AND http_response_status_code BETWEEN 400 AND 499 "
     f"AND url_path LIKE '/api/login%' AND ts >= {day_ago} ORDER BY ts DESC LIMIT 1000"),
]

def median_warm(run):
    times = []
    rows = None
    for _ in range(RUNS):
        started = time.perf_counter()
        rows = run()
        times.append(time.perf_counter() - started)
    warm = times[1:] if len(times) > 1 else times
    return statistics.median(warm), rows

# SQLite with the same rows and indexes for each question: one database per data directory
# (a load takes minutes at 10 M events, 2-3 GB). Each run adds the audit records of its
# rebuild and of every query asked (about 60): a database up to 1000 rows behind (those audit
# records, which only query 3's per-minute counts can see) is kept, any other is reloaded.
sqlite_path = os.path.join(WORK, f"events-{os.path.basename(os.path.normpath(DATA))}.sqlite")
if os.path.exists(sqlite_path):
    loaded = sqlite3.connect(sqlite_path).execute("SELECT count(*) FROM events").fetchone()[0]
    if 0 <= total - loaded <= 1000:
        print(f"== SQLite holds {loaded} rows, the store {total}: kept", flush=True)
    else:
        print(f"== SQLite holds {loaded} rows, the store {total}: reloading", flush=True)
        os.remove(sqlite_path)
if not os.path.exists(sqlite_path):
    if os.path.exists(sqlite_path + ".tmp"):
        os.remove(sqlite_path + ".tmp")
    print(f"== loading {total} rows into SQLite", flush=True)
    db = sqlite3.connect(sqlite_path + ".tmp")
    cols = ["ts", "source_ip", "http_request_method", "url_path", "http_response_status_code", "route",
            "event_duration", "user_name", "event_id", "user_agent_original"]
    db.execute(f"CREATE TABLE events ({', '.join(cols)})")
    cursor = duck.execute(
        "SELECT epoch_ns(timestamp), source_ip, http_request_method, url_path, http_response_status_code, "
        "route, event_duration, user_name, event_id, user_agent_original FROM events")
    while True:
        rows = cursor.fetchmany(100_000)
        if not rows:
            break
        db.executemany(f"INSERT INTO events VALUES ({', '.join('?' * len(cols))})", rows)
    for index in ["source_ip, ts", "ts", "http_response_status_code, ts", "route, event_duration"]:
        db.execute(f"CREATE INDEX IF NOT EXISTS i_{index.replace(', ', '_')} ON events ({index})")
    db.commit()
    db.close()
    os.rename(sqlite_path + ".tmp", sqlite_path)
lite = sqlite3.connect(sqlite_path)

# apiwatch: a server over the data directory, asked through its admin API (warm caches).
server = subprocess.Popen([BIN, "serve", "--data", DATA, "--upstream", "http://127.0.0.1:9",
                           "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "APIWATCH_LOG": "warn"})
admin = None
for line in server.stdout:
    if line.startswith("listening "):
        admin = dict(part.split("=", 1) for part in line.split()[1:])["admin"]
        break
token = subprocess.run([BIN, "token", "create", f"bench{os.getpid()}", "--data", DATA],
                       capture_output=True, text=True, check=True).stdout.strip()

def apiwatch(kind, text):
    if kind == "sql":
        request = urllib.request.Request(f"http://{admin}/api/v1/sql", data=json.dumps({"query": text}).encode(),
                                         headers={"authorization": f"Bearer {token}",
                                                  "content-type": "application/json"})
        body = json.load(urllib.request.urlopen(request, timeout=600))
        return len(body["rows"])
    query = urllib.parse.urlencode({"q": text, "from": DAY, "limit": 1000})
    request = urllib.request.Request(f"http://{admin}/api/v1/events?{query}",
                                     headers={"authorization": f"Bearer {token}"})
    body = json.load(urllib.request.urlopen(request, timeout=600))
    return len(body["events"])

print(f"\n{total} events; needle {needle}; {RUNS} runs each, median of the warm ones (all but the first)\n")
print(f"{'query':48} {'apiwatch':>10} {'DuckDB':>10} {'SQLite':>10} {'aw/duck':>8}  rows aw/duck/lite")
results = []
try:
    for name, (kind, text), duck_sql, lite_sql in QUERIES:
        aw, aw_rows = median_warm(lambda: apiwatch(kind, text))
        dk, dk_rows = median_warm(lambda: len(duck.execute(duck_sql).fetchall()))
        sl, sl_rows = median_warm(lambda: len(lite.execute(lite_sql).fetchall()))
        results.append((name, aw, dk, sl))
        print(f"{name:48} {aw*1000:8.1f}ms {dk*1000:8.1f}ms {sl*1000:8.1f}ms {aw/dk:7.2f}x  {aw_rows}/{dk_rows}/{sl_rows}",
              flush=True)
finally:
    server.terminate()
    server.wait()
    subprocess.run([BIN, "token", "revoke", f"bench{os.getpid()}", "--data", DATA], capture_output=True)

parquet_bytes = sum(os.path.getsize(f) for f in FILES)
segments = glob.glob(os.path.join(DATA, "journal", "segment-*.awj"))
journal_bytes = sum(os.path.getsize(f) for f in segments)
# The raw JSON: the journal less its framing (a 16-byte header per segment and per record;
# crates/journal/src/segment.rs), with one record per event.
json_bytes = journal_bytes - 16 * len(segments) - 16 * total
print(f"\nParquet: {parquet_bytes / total:.1f} bytes/event; raw JSON: {json_bytes / total:.1f} bytes/event; "
      f"journal (JSON + framing): {journal_bytes / total:.1f} bytes/event")
