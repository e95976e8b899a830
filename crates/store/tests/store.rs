//! The store against the search language's own matcher, SQL's read-only guard, restarts,
//! flushes and compaction, on real Parquet files in a temporary directory.

use apiwatch_event::{AuthOutcome, Event, EventKind};
use apiwatch_query::Query;
use apiwatch_store::{Cursor, Limits, SearchRequest, StatsRequest, Store, StoreConfig};
use datafusion::arrow::array::{Array, Int64Array, StringArray};

const HOUR: i64 = 3_600_000_000_000;
const BASE: i64 = 1_764_583_200_000_000_000; // 2025-12-01T10:00:00Z

/// A varied stream: several addresses (IPv4 and IPv6), paths, statuses, some
/// fields missing, spread over three hours.
fn events(n: usize) -> Vec<Event> {
    let ips = [
        Some("203.0.113.7"),
        Some("203.0.113.200"),
        Some("198.51.100.1"),
        Some("2001:db8::1"),
        Some("10.1.2.3"),
        None,
    ];
    let paths = [
        "/api/login",
        "/api/users/17",
        "/.env",
        "/API/Login",
        "/health",
        "/a%b_c",
    ];
    let agents = [
        Some("curl/8.5"),
        Some("Mozilla/5.0"),
        None,
        Some("sqlmap/1.7"),
    ];
    (0..n)
        .map(|i| {
            let nanos = BASE + (i as i64) * (3 * HOUR / n as i64);
            let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).unwrap();
            let mut event = Event::new(EventKind::Request, "gateway.access", at);
            event.source_ip = ips[i % ips.len()].map(str::to_owned);
            event.url_path = Some(paths[i % paths.len()].to_owned());
            event.method = Some(if i % 3 == 0 { "POST" } else { "GET" }.to_owned());
            event.status_code = [200u16, 401, 404, 500, 302][i % 5].into();
            if i % 7 == 0 {
                event.status_code = None;
            }
            event.user_agent = agents[i % agents.len()].map(str::to_owned);
            event.user_name = (i % 4 == 1).then(|| format!("user{}", i % 9));
            event.route = Some(
                if i % 2 == 0 {
                    "/api/login"
                } else {
                    "/api/users/{id}"
                }
                .to_owned(),
            );
            event.duration_ns = (i as u64 % 50) * 1_000_000;
            event.response_bytes = (i as u64 * 37) % 5000;
            event.auth_outcome = if i % 5 == 1 {
                AuthOutcome::Failure
            } else {
                AuthOutcome::None
            };
            if i % 6 == 0 {
                event
                    .request_headers
                    .insert("x-forwarded-proto".into(), "https".into());
            }
            if i % 10 == 0 {
                event.labels.insert("team".into(), "payments".into());
            }
            event
        })
        .collect()
}

fn records(events: &[Event]) -> Vec<(u64, Vec<u8>)> {
    events
        .iter()
        .enumerate()
        .map(|(seq, event)| (seq as u64, event.to_json()))
        .collect()
}

/// A store over `dir` holding `all`: the first `flushed` in Parquet files, the rest in the
/// memtable.
fn files_and_memtable(dir: &std::path::Path, all: &[Event], flushed: usize) -> Store {
    let store = Store::open_writer(dir, small_config()).unwrap();
    store.ingest(&records(all)[..flushed]);
    store.flush().unwrap();
    store.ingest(&records(all)[flushed..]);
    store
}

fn small_config() -> StoreConfig {
    StoreConfig {
        flush_rows: 100,
        row_group_rows: 64,
        ..StoreConfig::default()
    }
}

async fn ids(store: &Store, query: &str) -> Vec<String> {
    let page = store
        .search(&SearchRequest {
            query: query.into(),
            limit: 100_000,
            oldest_first: true,
            ..SearchRequest::default()
        })
        .await
        .unwrap_or_else(|err| panic!("{query}: {err}"));
    page.events.into_iter().map(|(_, event)| event.id).collect()
}

const QUERIES: &[&str] = &[
    "",
    "source.ip=203.0.113.0/24",
    "ip=203.0.113.7",
    "ip=2001:db8::/32",
    "ip=::ffff:203.0.113.0/120",
    "ip=203.0.112.0/23 status>=400",
    "status>=400 path:/api/login*",
    "NOT ua:*curl*",
    "NOT user:*",
    "status=4xx",
    "status!=200",
    "path:*%b_*",
    "login",
    "(ip=10.0.0.0/8 OR ip=198.51.100.1) AND method=POST",
    "http.request.headers.x-forwarded-proto=https",
    "labels.team:pay*",
    "NOT labels.team=payments",
    "outcome=failure",
    "duration>=20000000",
    "source.ip=203.0.113.0/24 http.response.status_code>=400 url.path:/api/login* NOT user_agent.original:*curl*",
];

#[tokio::test]
async fn search_finds_exactly_what_the_matcher_matches_in_memtable_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(500);
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    // Half flushed to Parquet (several hours, several files), half still in memory.
    store.ingest(&records(&all)[..250]);
    assert_eq!(store.flush().unwrap(), 250);
    store.ingest(&records(&all)[250..]);
    let status = store.status();
    assert_eq!(status.file_rows, 250);
    assert_eq!(status.memtable_rows, 250);
    assert!(status.files >= 2, "{status:?}");
    for query in QUERIES {
        let parsed = Query::parse(query).unwrap();
        let expected: Vec<String> = all
            .iter()
            .filter(|event| parsed.matches(event))
            .map(|event| event.id.clone())
            .collect();
        let found = ids(&store, query).await;
        assert_eq!(found, expected, "query {query:?}");
    }
}

#[tokio::test]
async fn events_come_back_whole_with_their_journal_seq() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(50);
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    store.ingest(&records(&all));
    store.flush().unwrap();
    let page = store
        .search(&SearchRequest {
            query: String::new(),
            limit: 1000,
            oldest_first: true,
            ..SearchRequest::default()
        })
        .await
        .unwrap();
    let expected: Vec<(u64, Event)> = all
        .into_iter()
        .enumerate()
        .map(|(i, e)| (i as u64, e))
        .collect();
    assert_eq!(page.events, expected);
}

#[tokio::test]
async fn pages_follow_the_cursor_newest_first_without_gaps_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(230);
    let store = files_and_memtable(dir.path(), &all, 150);
    let (seen, pages) = pages_of_25(&store, "status>=400", |_| {}).await;
    assert_eq!(seen, newest_first_matching(&all, "status>=400"));
    assert!(pages > 3);
}

/// The ids of every page of `query`, 25 at a time, following each page's cursor (sent as
/// its text, as an API client would), with `between(n)` run after page `n`; and how many
/// pages there were.
async fn pages_of_25(
    store: &Store,
    query: &str,
    mut between: impl FnMut(usize),
) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    for page_number in 0.. {
        let page = store
            .search(&SearchRequest {
                query: query.into(),
                limit: 25,
                cursor: cursor.clone(),
                ..SearchRequest::default()
            })
            .await
            .unwrap();
        seen.extend(page.events.into_iter().map(|(_, event)| event.id));
        between(page_number);
        match page.next_cursor {
            Some(next) => cursor = Some(Cursor::decode(&next.encode()).unwrap()),
            None => return (seen, page_number + 1),
        }
    }
    unreachable!("pages are counted without end")
}

/// The ids of the events of `all` that `query` matches, newest first.
fn newest_first_matching(all: &[Event], query: &str) -> Vec<String> {
    let parsed = Query::parse(query).unwrap();
    let mut expected: Vec<String> = all
        .iter()
        .filter(|event| parsed.matches(event))
        .map(|event| event.id.clone())
        .collect();
    expected.reverse();
    expected
}

/// Pages stay exact while the store changes under them: events newer than the first page
/// arrive (newest first, they are before the cursor: no later page shows them), and the
/// memtable is flushed and the files compacted between pages. A cursor that no page
/// returned is refused, naming the parameter.
#[tokio::test]
async fn pages_stay_exact_while_events_arrive_and_files_are_flushed_and_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(230);
    let store = files_and_memtable(dir.path(), &all, 150);
    let mut newer = events(40);
    for event in &mut newer {
        let nanos = apiwatch_event::timestamp::parse_nanos(&event.timestamp).unwrap();
        event.timestamp = apiwatch_event::timestamp::format_nanos(nanos + 4 * HOUR);
    }
    let newer: Vec<(u64, Vec<u8>)> = records(&newer)
        .into_iter()
        .map(|(seq, bytes)| (seq + 230, bytes))
        .collect();
    let (seen, _) = pages_of_25(&store, "status>=400", |page_number| {
        if page_number == 1 {
            store.ingest(&newer[..20]);
            store.flush().unwrap(); // and compaction (small_config compacts)
            let manifest =
                apiwatch_store::files::Manifest::load(&dir.path().join("store")).unwrap();
            assert!(
                manifest
                    .files
                    .iter()
                    .any(|file| file.name.ends_with(".c.parquet")),
                "the flush compacted finished hours: {manifest:#?}"
            );
        }
        if page_number == 2 {
            store.ingest(&newer[20..]);
        }
    })
    .await;
    let expected = newest_first_matching(&all, "status>=400");
    assert!(expected.len() > 75, "three pages at least");
    assert_eq!(seen, expected);
    assert_eq!(store.status().next_seq, 270);

    for bad in ["", "banana", "12.", "x.0190", "1.not-hex!"] {
        let err = Cursor::decode(bad).unwrap_err().to_string();
        assert!(err.contains("cursor:"), "{bad:?}: {err}");
    }
}

/// A page is found in two passes (its keys, then whole rows within its journal seq range):
/// with journal order far from time order (late and shuffled events), every page is still
/// exactly the next events in time order, in the files and the memtable alike.
#[tokio::test]
async fn pages_are_exact_when_journal_order_is_not_time_order() {
    pages_match_the_matcher(events(240)).await;
}

/// Events that share a time are ordered by id, and a page boundary can fall among them: the
/// search's first pass looks at times alone, so ties at its last time must still be read.
#[tokio::test]
async fn pages_are_exact_when_events_share_a_time() {
    let mut all = events(240);
    for at in 0..all.len() {
        all[at].timestamp = all[at / 6 * 6].timestamp.clone();
    }
    pages_match_the_matcher(all).await;
}

/// Ingests `all` in a journal order that is a fixed permutation of their order (half into
/// files, the rest in the memtable), pages through `status>=200` 17 at a time both ways, and
/// compares with the matcher's answer sorted by (time, id).
async fn pages_match_the_matcher(all: Vec<Event>) {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(all.len(), 240);
    // Journal order: a fixed permutation of time order (7 is prime to 240).
    let shuffled: Vec<Event> = (0..all.len()).map(|i| all[(i * 7) % 240].clone()).collect();
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    store.ingest(&records(&shuffled)[..170]);
    store.flush().unwrap();
    store.ingest(&records(&shuffled)[170..]);
    for oldest_first in [false, true] {
        let mut seen = Vec::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let page = store
                .search(&SearchRequest {
                    query: "status>=200".into(),
                    limit: 17,
                    cursor: cursor.clone(),
                    oldest_first,
                    ..SearchRequest::default()
                })
                .await
                .unwrap();
            assert!(page.events.len() <= 17);
            seen.extend(page.events.into_iter().map(|(_, event)| event.id));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let parsed = Query::parse("status>=200").unwrap();
        let mut expected: Vec<&Event> = all.iter().filter(|event| parsed.matches(event)).collect();
        expected.sort_by(|a, b| (&a.timestamp, &a.id).cmp(&(&b.timestamp, &b.id)));
        if !oldest_first {
            expected.reverse();
        }
        let expected: Vec<String> = expected.iter().map(|event| event.id.clone()).collect();
        assert!(expected.len() > 100, "the query matches most events");
        assert_eq!(seen, expected, "oldest_first = {oldest_first}");
    }
}

#[tokio::test]
async fn a_time_range_bounds_the_search() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(300);
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    store.ingest(&records(&all));
    store.flush().unwrap();
    let (from, to) = (BASE + HOUR, BASE + 2 * HOUR);
    let page = store
        .search(&SearchRequest {
            from: Some(from),
            to: Some(to),
            limit: 10_000,
            ..SearchRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(page.events.len(), 100);
    for (_, event) in &page.events {
        let nanos = apiwatch_store::schema::timestamp_nanos(&event.timestamp).unwrap();
        assert!((from..to).contains(&nanos));
    }
}

#[tokio::test]
async fn a_bad_search_points_at_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    let err = store
        .search(&SearchRequest {
            query: "status>=40x".into(),
            limit: 10,
            ..SearchRequest::default()
        })
        .await
        .unwrap_err();
    match err {
        apiwatch_store::Error::Search { column, .. } => assert_eq!(column, 9),
        other => panic!("expected a search error, got {other}"),
    }
}

#[tokio::test]
async fn sql_reads_but_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    let all = events(120);
    store.ingest(&records(&all));
    store.flush().unwrap();
    let expected = all.iter().filter(|e| e.status_code == Some(401)).count() as i64;
    let answer = store
        .sql(
            "SELECT source_ip, count(*) AS n FROM events WHERE http_response_status_code = 401 \
             GROUP BY source_ip ORDER BY n DESC, source_ip",
            Limits::default(),
        )
        .await
        .unwrap();
    assert!(!answer.truncated);
    let batch = &answer.batches[0];
    assert_eq!(batch.num_columns(), 2);
    let counts = batch
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(counts.iter().flatten().sum::<i64>(), expected);
    for refused in [
        "CREATE TABLE x AS SELECT * FROM events",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/tmp/x'",
        "INSERT INTO events SELECT * FROM events",
        "COPY events TO '/tmp/apiwatch-copy.parquet'",
        "DROP TABLE events",
        "SET datafusion.execution.batch_size = 1",
        "DELETE FROM events",
    ] {
        let err = store.sql(refused, Limits::default()).await.unwrap_err();
        assert!(
            matches!(err, apiwatch_store::Error::Query(_)),
            "{refused}: {err}"
        );
    }
    assert!(!std::path::Path::new("/tmp/apiwatch-copy.parquet").exists());
    let err = store.sql("SELEC 1", Limits::default()).await.unwrap_err();
    assert!(err.to_string().starts_with("sql: "), "{err}");
}

#[tokio::test]
async fn sql_answers_are_capped_and_timed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    store.ingest(&records(&events(300)));
    let answer = store
        .sql(
            "SELECT event_id FROM events",
            Limits {
                max_rows: 42,
                ..Limits::default()
            },
        )
        .await
        .unwrap();
    assert!(answer.truncated);
    assert_eq!(
        answer.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
        42
    );
    // A cross join of 300^3 rows cannot finish in a millisecond.
    let err = store
        .sql(
            "SELECT count(*) FROM events a, events b, events c WHERE a.event_id < b.event_id",
            Limits {
                max_rows: 10,
                timeout: std::time::Duration::from_millis(1),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, apiwatch_store::Error::Timeout(_)), "{err}");
}

/// A time-limited search answers as an unlimited one within its limit, and one whose limit
/// has passed before it could start is stopped, whatever the machine's speed.
#[tokio::test]
async fn searches_within_a_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    store.ingest(&records(&events(300)));
    let request = SearchRequest {
        query: "status>=400".into(),
        limit: 20,
        ..SearchRequest::default()
    };
    let unlimited = store.search(&request).await.unwrap();
    let limited = store
        .search_within(&request, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let keys = |page: &apiwatch_store::SearchPage| -> Vec<(u64, String)> {
        page.events
            .iter()
            .map(|(seq, event)| (*seq, event.id.clone()))
            .collect()
    };
    assert_eq!(unlimited.events.len(), 20);
    assert_eq!(keys(&limited), keys(&unlimited));
    assert_eq!(limited.next_cursor, unlimited.next_cursor);
    let err = store
        .search_within(&request, std::time::Duration::from_nanos(1))
        .await
        .unwrap_err();
    assert!(matches!(err, apiwatch_store::Error::Timeout(_)), "{err}");
}

#[tokio::test]
async fn explain_and_explain_analyze_answer_their_plans() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    store.ingest(&records(&events(50)));
    let grouped = "SELECT http_response_status_code, count(*) FROM events GROUP BY 1";
    for (text, shown) in [
        (format!("EXPLAIN {grouped}"), "AggregateExec"),
        (format!("EXPLAIN ANALYZE {grouped}"), "output_rows="),
    ] {
        let answer = store.sql(&text, Limits::default()).await.unwrap();
        let plan: Vec<String> = answer
            .batches
            .iter()
            .flat_map(|batch| {
                let column = batch.column(batch.num_columns() - 1);
                let plans = column.as_any().downcast_ref::<StringArray>().unwrap();
                (0..plans.len())
                    .map(|row| plans.value(row).to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            plan.iter().any(|line| line.contains(shown)),
            "{text}: {plan:#?}"
        );
    }
}

/// A nested-loop join compares each probe batch with every row of the other side in one
/// poll, so it never yields while it computes: the time limit must hold anyway, and the
/// caller's runtime (here the test's single thread; in a server the admin API) keeps running.
#[tokio::test]
async fn a_query_computing_without_yielding_stops_at_its_limit_and_holds_no_caller() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_writer(dir.path(), StoreConfig::default()).unwrap();
    // 20,000 x 20,000 comparisons: a test build ran this for 78 s when the query ran on the
    // caller's thread, the time limit never firing (6,000 rows yield often enough to stop).
    store.ingest(&records(&events(20_000)));
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ticker = tokio::spawn({
        let ticks = std::sync::Arc::clone(&ticks);
        async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let started = std::time::Instant::now();
    let err = store
        .sql(
            "SELECT count(*) FROM events a, events b WHERE a.event_id < b.event_id",
            Limits {
                max_rows: 10,
                timeout: std::time::Duration::from_millis(300),
            },
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    ticker.abort();
    assert!(matches!(err, apiwatch_store::Error::Timeout(_)), "{err}");
    assert!(
        took < std::time::Duration::from_secs(2),
        "answered after {took:?}"
    );
    let ticks = ticks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        ticks >= 10,
        "the caller's runtime ran {ticks} ticks in {took:?}"
    );
    // A caller that gives up mid-query (a client gone) drops it, without a panic.
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        store.sql(
            "SELECT count(*) FROM events a, events b WHERE a.event_id < b.event_id",
            Limits {
                max_rows: 10,
                timeout: std::time::Duration::from_secs(60),
            },
        ),
    )
    .await;
    assert!(gave_up.is_err(), "the join cannot end in 200 ms");
    // The abandoned queries hold no thread that later queries need.
    let started = std::time::Instant::now();
    let answer = store
        .sql(
            "SELECT http_response_status_code, count(*) FROM events GROUP BY 1",
            Limits {
                max_rows: 100,
                timeout: std::time::Duration::from_secs(5),
            },
        )
        .await
        .unwrap();
    let rows: usize = answer.batches.iter().map(|batch| batch.num_rows()).sum();
    assert!(rows > 1, "{rows} status codes");
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(2),
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn a_restart_resumes_after_what_the_files_hold() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(200);
    {
        let store = Store::open_writer(dir.path(), small_config()).unwrap();
        store.ingest(&records(&all)[..120]);
        store.flush().unwrap();
        store.ingest(&records(&all)[120..]); // lost with the process, still in the journal
        assert_eq!(store.next_seq(), 200);
    }
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    assert_eq!(store.next_seq(), 120);
    // Replaying from the start skips what the files hold: nothing is doubled.
    store.ingest(&records(&all));
    assert_eq!(ids(&store, "").await.len(), 200);
}

#[tokio::test]
async fn only_one_writer_and_readers_see_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    assert!(matches!(
        Store::open_writer(dir.path(), small_config()),
        Err(apiwatch_store::Error::Locked(_))
    ));
    store.ingest(&records(&events(100)));
    store.flush().unwrap();
    let reader = Store::open_reader(dir.path()).unwrap();
    assert_eq!(reader.next_seq(), 100);
    assert_eq!(ids(&reader, "").await.len(), 100);
    assert!(reader.flush().is_err());
}

#[tokio::test]
async fn finished_hours_are_compacted_and_debris_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(600); // three hours
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    for chunk in records(&all).chunks(50) {
        store.ingest(chunk);
        store.flush().unwrap();
    }
    let status = store.status();
    // One file per finished hour, the newest hour still in pieces.
    let manifest = apiwatch_store::files::Manifest::load(&dir.path().join("store")).unwrap();
    let finished: Vec<_> = manifest
        .files
        .iter()
        .filter(|file| file.name.ends_with(".c.parquet"))
        .collect();
    assert_eq!(finished.len(), 2, "{:#?}", manifest.files);
    assert_eq!(status.file_rows, 600);
    assert!(!manifest.trash.is_empty());
    assert_eq!(ids(&store, "").await.len(), 600);
    drop(store);
    // A file no manifest names (an interrupted flush) is removed at the next open.
    let stray = dir.path().join("store/events/2025-12-01T10/99-99.parquet");
    std::fs::write(&stray, b"half a file").unwrap();
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    assert!(!stray.exists());
    assert_eq!(ids(&store, "").await.len(), 600);
}

/// The server flushes with `try_flush` and compacts on another thread: while a compaction
/// runs, a flush gives way at once (the rows stay queryable in the memtable), ingestion goes
/// on, and the next try after the compaction writes them.
#[tokio::test]
async fn a_flush_gives_way_to_a_running_compaction_and_ingestion_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(40_000); // three hours
    let all = records(&all);
    let (backlog, late) = all.split_at(39_990);
    let pieces = StoreConfig {
        compact: false,
        ..small_config()
    };
    {
        let store = Store::open_writer(dir.path(), pieces).unwrap();
        for chunk in backlog.chunks(1000) {
            store.ingest(chunk);
            store.flush().unwrap();
        }
    }
    let store = std::sync::Arc::new(Store::open_writer(dir.path(), small_config()).unwrap());
    assert_eq!(store.status().file_rows, 39_990);
    let compacting = std::thread::spawn({
        let store = std::sync::Arc::clone(&store);
        move || store.compact().unwrap()
    });
    // With nothing in the memtable a flush has nothing to write: it answers Some(0) while the
    // lock is free and None, at once, once the compaction holds it.
    loop {
        assert!(
            !compacting.is_finished(),
            "the compaction ended before a flush could meet it"
        );
        match store.try_flush().unwrap() {
            None => break,
            Some(rows) => assert_eq!(rows, 0),
        }
    }
    store.ingest(late);
    assert_eq!(
        ids(&store, "").await.len(),
        40_000,
        "the late rows are queryable"
    );
    assert!(
        !store.flush_overdue(),
        "10 rows are far from 4 flushes' worth"
    );
    assert!(compacting.join().unwrap() > 0, "the backlog was compacted");
    assert_eq!(store.try_flush().unwrap(), Some(10));
    assert_eq!(store.status().file_rows, 40_000);
    // Four flushes' worth (flush_rows 100) is the memtable's bound during a compaction.
    let more: Vec<(u64, Vec<u8>)> = records(&events(400))
        .into_iter()
        .map(|(seq, bytes)| (seq + 40_000, bytes))
        .collect();
    store.ingest(&more[..399]);
    assert!(!store.flush_overdue());
    store.ingest(&more[399..]);
    assert!(store.flush_overdue());
}

#[tokio::test]
async fn an_export_outlasting_the_trash_grace_keeps_its_files() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let all = events(600); // three hours
    let batches = records(&all);
    let writer = Store::open_writer(dir.path(), small_config()).unwrap();
    // The first two hours flushed in pieces, none compacted yet.
    for chunk in batches[..150].chunks(50) {
        writer.ingest(chunk);
        writer.flush().unwrap();
    }
    let before = apiwatch_store::files::Manifest::load(&store_dir).unwrap();
    assert!(before.trash.is_empty(), "{before:#?}");

    // An export (from another process's point of view: a reader) plans over those pieces...
    let reader = Store::open_reader(dir.path()).unwrap();
    let mut export = reader.export("", None, None).await.unwrap();
    // ...then the writer compacts them away, and their grace has passed (aged by hand) by
    // the time the garbage is collected at the writer's next open.
    for chunk in batches[150..].chunks(50) {
        writer.ingest(chunk);
        writer.flush().unwrap();
    }
    drop(writer);
    let mut manifest = apiwatch_store::files::Manifest::load(&store_dir).unwrap();
    let replaced: Vec<String> = before.files.iter().map(|file| file.name.clone()).collect();
    assert!(
        replaced
            .iter()
            .all(|name| manifest.trash.iter().any(|entry| &entry.name == name)),
        "the pieces were compacted away: {manifest:#?}"
    );
    for entry in &mut manifest.trash {
        entry.replaced_at = 0;
    }
    manifest.save(&store_dir).unwrap();
    drop(Store::open_writer(dir.path(), small_config()).unwrap());
    assert!(
        replaced.iter().all(|name| store_dir.join(name).exists()),
        "files an export still reads are kept past their grace"
    );

    // The export reads every event it planned for, once.
    let mut rows = 0;
    while let Some(batch) = export.next().await {
        rows += batch
            .expect("the export's files are still there")
            .num_rows();
    }
    assert_eq!(rows, 150);

    // Once the export is gone, the next collection deletes them.
    drop(export);
    drop(Store::open_writer(dir.path(), small_config()).unwrap());
    assert!(
        replaced.iter().all(|name| !store_dir.join(name).exists()),
        "leased trash is deleted once the lease is gone"
    );
}

#[tokio::test]
async fn aggregations_answer_the_investigators_first_questions() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(300);
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    store.ingest(&records(&all));
    store.flush().unwrap();
    let limits = Limits::default();
    let histogram = store
        .stats(
            "",
            None,
            None,
            &StatsRequest::Histogram {
                bucket: std::time::Duration::from_secs(3600),
            },
            limits,
        )
        .await
        .unwrap();
    let counts: Vec<i64> = histogram.batches[0]
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(counts, vec![100, 100, 100]);
    let top = store
        .stats(
            "status=401",
            None,
            None,
            &StatsRequest::Top {
                field: "ip".into(),
                n: 2,
            },
            limits,
        )
        .await
        .unwrap();
    let values = top.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(values.len(), 2);
    let classes = store
        .stats("", None, None, &StatsRequest::StatusClasses, limits)
        .await
        .unwrap();
    let names: Vec<String> = classes.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    assert_eq!(names, ["2xx", "3xx", "4xx", "5xx", "none"]);
    let percentiles = store
        .stats("", None, None, &StatsRequest::Percentiles, limits)
        .await
        .unwrap();
    assert_eq!(percentiles.batches[0].num_rows(), 2);
    assert!(matches!(
        store
            .stats(
                "",
                None,
                None,
                &StatsRequest::Top {
                    field: "nope".into(),
                    n: 2
                },
                limits
            )
            .await,
        Err(apiwatch_store::Error::Query(_))
    ));
}

#[tokio::test]
async fn a_finished_day_becomes_one_file() {
    let dir = tempfile::tempdir().unwrap();
    // 48 hours of events from BASE (10:00): the first day ends at midnight.
    let all: Vec<Event> = (0..480)
        .map(|i| {
            let nanos = BASE + i * (HOUR / 10);
            let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).unwrap();
            Event::new(EventKind::Request, "gateway.access", at)
        })
        .collect();
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    for chunk in records(&all).chunks(40) {
        store.ingest(chunk);
        store.flush().unwrap();
    }
    let manifest = apiwatch_store::files::Manifest::load(&dir.path().join("store")).unwrap();
    let first_day: Vec<_> = manifest
        .files
        .iter()
        .filter(|file| file.name.starts_with("events/2025-12-01"))
        .collect();
    assert_eq!(first_day.len(), 1, "{:#?}", manifest.files);
    assert_eq!(first_day[0].name.split('/').nth(1), Some("2025-12-01"));
    assert_eq!(first_day[0].rows, 140); // 10:00 to midnight, ten per hour
    assert_eq!(ids(&store, "").await.len(), 480);
}

#[tokio::test]
async fn a_bulk_load_writes_each_day_once_and_answers_as_ingest_does() {
    const DAY: i64 = 24 * HOUR;
    // Five days, in journal order: mostly time-ordered, with late events of an earlier day
    // (as around midnight), and one event of the first day after four more days were opened
    // (past the bound of open day files: that day gets a second file, then one merged file).
    let mut times: Vec<i64> = (0..500).map(|i| BASE + i * (5 * DAY / 500)).collect();
    times.insert(250, BASE + DAY / 2);
    times.insert(400, BASE + 3 * HOUR);
    let all: Vec<Event> = times
        .iter()
        .enumerate()
        .map(|(i, nanos)| {
            let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*nanos)).unwrap();
            let mut event = Event::new(EventKind::Request, "gateway.access", at);
            event.source_ip = Some(format!("203.0.113.{}", i % 7));
            event.status_code = Some([200u16, 401, 404][i % 3]);
            event
        })
        .collect();
    let mut journal = records(&all);
    // A record that is not an event is skipped, not fatal.
    journal.insert(100, (100, b"{\"not\":\"an event\"}".to_vec()));
    for (seq, record) in journal.iter_mut().enumerate() {
        record.0 = seq as u64;
    }

    let bulk_dir = tempfile::tempdir().unwrap();
    let bulk = Store::open_writer(bulk_dir.path(), small_config()).unwrap();
    let mut load = bulk.bulk_load().unwrap();
    let mut added = 0;
    for chunk in journal.chunks(37) {
        added += load.add(chunk).unwrap();
    }
    // Records already added are not added twice.
    assert_eq!(load.add(&journal[..10]).unwrap(), 0);
    assert_eq!(load.finish().unwrap(), all.len() as u64);
    assert_eq!(added, all.len());
    assert_eq!(bulk.next_seq(), journal.len() as u64);

    let manifest = apiwatch_store::files::Manifest::load(&bulk_dir.path().join("store")).unwrap();
    let mut days: Vec<&str> = manifest
        .files
        .iter()
        .map(|file| file.name.split('/').nth(1).unwrap())
        .collect();
    let count = days.len();
    days.dedup();
    assert_eq!(count, days.len(), "one file per day: {:#?}", manifest.files);
    assert_eq!(days.len(), 6, "{:#?}", manifest.files); // 10:00 on day one to 10:00 on day six
    assert_eq!(manifest.rows(), all.len() as u64);
    for file in &manifest.files {
        assert_eq!(
            file.min_time.div_euclid(DAY),
            file.max_time.div_euclid(DAY),
            "{file:?}"
        );
    }

    // The same answers as the live path (memtable, flushes, compaction).
    let live_dir = tempfile::tempdir().unwrap();
    let live = Store::open_writer(live_dir.path(), small_config()).unwrap();
    for chunk in journal.chunks(50) {
        live.ingest(chunk);
        live.flush().unwrap();
    }
    for query in ["", "ip=203.0.113.3", "status>=400", "NOT status=404"] {
        let mut from_bulk = ids(&bulk, query).await;
        let mut from_live = ids(&live, query).await;
        from_bulk.sort();
        from_live.sort();
        assert_eq!(from_bulk, from_live, "{query}");
        assert!(!from_bulk.is_empty(), "{query}");
    }

    // A bulk load needs an empty store.
    assert!(bulk.bulk_load().is_err());
    let reader = Store::open_reader(bulk_dir.path()).unwrap();
    assert!(reader.bulk_load().is_err());
}

#[tokio::test]
async fn an_export_goes_file_by_file_and_returns_every_match_once_in_day_order() {
    const DAY: i64 = 24 * HOUR;
    let all: Vec<Event> = (0..300)
        .map(|i| {
            let nanos = BASE + i * (3 * DAY / 300);
            let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).unwrap();
            let mut event = Event::new(EventKind::Request, "gateway.access", at);
            event.source_ip = Some(format!("203.0.113.{}", 9 - i % 7));
            event.status_code = Some([200u16, 401][(i % 2) as usize]);
            event
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    let journal = records(&all);
    let (flushed, recent) = journal.split_at(260);
    for chunk in flushed.chunks(50) {
        store.ingest(chunk);
        store.flush().unwrap();
    }
    store.ingest(recent);
    let manifest = apiwatch_store::files::Manifest::load(&dir.path().join("store")).unwrap();
    assert!(manifest.files.len() >= 3, "{:#?}", manifest.files);
    assert_eq!(store.status().memtable_rows, 40);

    let export = |query: &'static str, from: Option<i64>, to: Option<i64>| {
        let store = &store;
        async move {
            let mut out = Vec::new();
            let rows = store
                .export_to(
                    query,
                    from,
                    to,
                    apiwatch_store::ExportFormat::Jsonl,
                    &mut out,
                )
                .await
                .unwrap();
            let lines: Vec<serde_json::Value> = String::from_utf8(out)
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            assert_eq!(rows as usize, lines.len());
            lines
        }
    };
    let expect = |keep: &dyn Fn(usize, &Event) -> bool| {
        let mut ids: Vec<String> = all
            .iter()
            .enumerate()
            .filter(|(i, event)| keep(*i, event))
            .map(|(_, event)| event.id.clone())
            .collect();
        ids.sort();
        ids
    };
    let ids_and_days = |lines: &[serde_json::Value]| {
        let mut ids: Vec<String> = lines
            .iter()
            .map(|line| line["event.id"].as_str().unwrap().to_owned())
            .collect();
        let days: Vec<String> = lines
            .iter()
            .map(|line| line["@timestamp"].as_str().unwrap()[..10].to_owned())
            .collect();
        ids.sort();
        (ids, days)
    };

    // Everything that matches, from every file and the memtable, once; the files in time
    // order (within a file no order is promised), the memtable last.
    let (ids, days) = ids_and_days(&export("status=401", None, None).await);
    assert_eq!(ids, expect(&|_, event| event.status_code == Some(401)));
    assert!(days.is_sorted(), "{days:?}");
    assert_eq!(
        days.iter().collect::<std::collections::BTreeSet<_>>().len(),
        4
    );

    // A time range reads only the files it overlaps, and still finds all it holds.
    let (from, to) = (BASE + DAY, BASE + 2 * DAY);
    let (ids, _) = ids_and_days(&export("", Some(from), Some(to)).await);
    assert_eq!(
        ids,
        expect(&|i, _| (from..to).contains(&(BASE + i as i64 * (3 * DAY / 300))))
    );
    assert!(export("status>=500", None, None).await.is_empty());
}

#[tokio::test]
async fn routes_read_as_view_strings_answer_and_export_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(300);
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    let journal = records(&all);
    let (flushed, recent) = journal.split_at(250);
    store.ingest(flushed);
    store.flush().unwrap();
    store.ingest(recent);
    assert_eq!(store.status().memtable_rows, 50);

    // Files and memtable answer together, the route grouped as the table's view strings.
    let answer = store
        .sql(
            "SELECT route, arrow_typeof(route) AS kind, count(*) AS n, \
             approx_quantile(event_duration, 0.5) AS p50 FROM events GROUP BY route ORDER BY route",
            Limits::default(),
        )
        .await
        .unwrap();
    let rows = answer.rows_json().unwrap();
    let expected_login = all
        .iter()
        .filter(|event| event.route.as_deref() == Some("/api/login"))
        .count();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["route"], "/api/login");
    assert_eq!(rows[0]["kind"], "Utf8View");
    assert_eq!(rows[0]["n"], expected_login);
    assert_eq!(rows[1]["route"], "/api/users/{id}");
    assert_eq!(rows[1]["n"], all.len() - expected_login);
    assert!(answer.csv().unwrap().starts_with(b"route,kind,n,p50\n"));

    // The search language compares and globs the view column like any text.
    let odd: Vec<String> = all
        .iter()
        .filter(|event| event.route.as_deref() == Some("/api/users/{id}"))
        .map(|event| event.id.clone())
        .collect();
    assert_eq!(ids(&store, "route=/api/users/{id}").await, odd);
    assert_eq!(ids(&store, "route:/api/users*").await, odd);

    // Exports write the store's own schema: the route as plain text.
    let path = dir.path().join("export.parquet");
    let rows = store
        .export_to(
            "",
            None,
            None,
            apiwatch_store::ExportFormat::Parquet,
            std::fs::File::create(&path).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(rows as usize, all.len());
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&path).unwrap(),
    )
    .unwrap();
    assert_eq!(
        reader.schema().as_ref(),
        apiwatch_store::schema::schema().as_ref()
    );
    // Every event is in the file, read back whole.
    let mut exported: Vec<String> = Vec::new();
    for batch in reader.build().unwrap() {
        for (_, event) in apiwatch_store::schema::events_from_batch(&batch.unwrap()).unwrap() {
            exported.push(event.id);
        }
    }
    exported.sort();
    let mut expected: Vec<String> = all.iter().map(|event| event.id.clone()).collect();
    expected.sort();
    assert_eq!(exported, expected);
    let mut csv = Vec::new();
    store
        .export_to("", None, None, apiwatch_store::ExportFormat::Csv, &mut csv)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(csv).unwrap().lines().count(),
        all.len() + 1
    );
}

#[tokio::test]
async fn measures_are_stored_delta_packed_without_compression_or_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    store.ingest(&records(&events(300)));
    store.flush().unwrap();
    let manifest = apiwatch_store::files::Manifest::load(&dir.path().join("store")).unwrap();
    assert!(!manifest.files.is_empty());
    for file in &manifest.files {
        let file = std::fs::File::open(dir.path().join("store").join(&file.name)).unwrap();
        let metadata = parquet::file::reader::FileReader::metadata(
            &parquet::file::serialized_reader::SerializedFileReader::new(file).unwrap(),
        )
        .clone();
        for group in metadata.row_groups() {
            let column = |name: &str| {
                group
                    .columns()
                    .iter()
                    .find(|column| column.column_path().string() == name)
                    .unwrap()
            };
            for name in ["event_duration", "source_port", "http_response_body_bytes"] {
                let measure = column(name);
                assert_eq!(
                    measure.compression(),
                    parquet::basic::Compression::UNCOMPRESSED,
                    "{name}"
                );
                let encodings: Vec<_> = measure.encodings().collect();
                assert!(
                    encodings.contains(&parquet::basic::Encoding::DELTA_BINARY_PACKED)
                        && !encodings.contains(&parquet::basic::Encoding::RLE_DICTIONARY),
                    "{name}: {encodings:?}"
                );
            }
            assert!(matches!(
                column("route").compression(),
                parquet::basic::Compression::ZSTD(_)
            ));
        }
    }
}

/// The Parquet files of the store, from its manifest.
fn parquet_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let store_dir = dir.join("store");
    let manifest = apiwatch_store::files::Manifest::load(&store_dir).unwrap();
    assert!(!manifest.files.is_empty(), "no file was written");
    manifest
        .files
        .iter()
        .map(|file| store_dir.join(&file.name))
        .collect()
}

/// The text values of `column` in row group `group` of a Parquet file, nulls left out.
fn row_group_texts(path: &std::path::Path, group: usize, column: &str) -> Vec<String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(path).unwrap(),
    )
    .unwrap()
    .with_row_groups(vec![group])
    .build()
    .unwrap();
    let mut values = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let array = datafusion::arrow::compute::cast(
            batch.column_by_name(column).unwrap(),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let texts = array.as_any().downcast_ref::<StringArray>().unwrap();
        values.extend(texts.iter().flatten().map(str::to_owned));
    }
    values
}

#[tokio::test]
async fn flushed_files_have_bloom_filters_on_the_looked_up_columns_only() {
    use parquet::file::reader::FileReader;
    let dir = tempfile::tempdir().unwrap();
    let mut all = events(300);
    for (i, event) in all.iter_mut().enumerate() {
        event.request_id = Some(format!("req-{i:04}"));
        if i % 3 == 0 {
            event.key_fingerprint = Some(format!("fp-{:02}", i % 11));
        }
    }
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    store.ingest(&records(&all));
    assert_eq!(store.flush().unwrap(), 300);
    let bloomed: std::collections::BTreeSet<&str> = [
        "source_ip",
        "user_name",
        "auth_key_fingerprint",
        "http_request_id",
        "event_id",
    ]
    .into();
    let options = || {
        parquet::file::serialized_reader::ReadOptionsBuilder::new()
            .with_reader_properties(
                parquet::file::properties::ReaderProperties::builder()
                    .set_read_bloom_filter(true)
                    .build(),
            )
            .build()
    };
    let mut groups_checked = 0;
    for path in parquet_files(dir.path()) {
        let reader = parquet::file::serialized_reader::SerializedFileReader::new_with_options(
            std::fs::File::open(&path).unwrap(),
            options(),
        )
        .unwrap();
        for group in 0..reader.num_row_groups() {
            let columns = reader.metadata().row_group(group).columns();
            let with_filter: std::collections::BTreeSet<String> = columns
                .iter()
                .filter(|column| column.bloom_filter_offset().is_some())
                .map(|column| column.column_path().string())
                .collect();
            let with_filter: std::collections::BTreeSet<&str> =
                with_filter.iter().map(String::as_str).collect();
            assert_eq!(with_filter, bloomed, "{} row group {group}", path.display());

            // No false negatives: every address and request id of the row group is in its
            // filter; and values that are not there are (nearly always) said to be absent.
            let group_reader = reader.get_row_group(group).unwrap();
            let index = |name: &str| {
                columns
                    .iter()
                    .position(|column| column.column_path().string() == name)
                    .unwrap()
            };
            let ips = group_reader
                .get_column_bloom_filter(index("source_ip"))
                .expect("the source_ip bloom filter is read back");
            let present = row_group_texts(&path, group, "source_ip");
            assert!(!present.is_empty());
            for ip in &present {
                assert!(ips.check(ip.as_str()), "{ip} is in row group {group}");
            }
            let absent_ips: Vec<String> = (0..100).map(|i| format!("192.0.2.{i}")).collect();
            let false_positives = absent_ips
                .iter()
                .filter(|ip| ips.check(ip.as_str()))
                .count();
            assert!(false_positives <= 5, "{false_positives} of 100 absent IPs");

            let request_ids = group_reader
                .get_column_bloom_filter(index("http_request_id"))
                .expect("the http_request_id bloom filter is read back");
            let present = row_group_texts(&path, group, "http_request_id");
            assert!(!present.is_empty());
            for id in &present {
                assert!(request_ids.check(id.as_str()), "{id}");
            }
            let false_positives = (0..100)
                .map(|i| format!("absent-{i}"))
                .filter(|id| request_ids.check(id.as_str()))
                .count();
            assert!(false_positives <= 5, "{false_positives} of 100 absent ids");
            groups_checked += 1;
        }
    }
    assert!(groups_checked >= 3, "{groups_checked} row groups");
}

/// Which events a query should find.
type Keep = Box<dyn Fn(&Event) -> bool>;

/// Comparisons (`<`, `<=`, `>`, `>=` on numbers and times), suffix wildcards and time
/// bounds through the store's filter translation: the store finds exactly the events the
/// test computes from their fields (and the matcher agrees), in files and memtable alike.
#[tokio::test]
async fn comparisons_wildcard_suffixes_and_time_bounds_find_exactly_the_events_they_describe() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = events(300);
    let php_paths = [
        "/wp-login.php",
        "/admin/INDEX.PHP",
        "/php/info",
        "/x.php.bak",
        "/xphp",
    ];
    for (i, event) in all.iter_mut().enumerate() {
        if i % 8 == 3 {
            event.url_path = Some(php_paths[(i / 8) % php_paths.len()].to_owned());
        }
    }
    let nanos = |event: &Event| apiwatch_store::schema::timestamp_nanos(&event.timestamp).unwrap();
    let status = |event: &Event| event.status_code.map(i64::from);
    let php = |event: &Event| {
        event
            .url_path
            .as_deref()
            .is_some_and(|path| path.to_lowercase().ends_with(".php"))
    };
    // 300 events over three hours from 10:00: one every 36 s, so 11:00 and 12:00 are times
    // of events (the bounds themselves are tested).
    let cases: Vec<(&str, Keep)> = vec![
        (
            "status<401",
            Box::new(move |e| status(e).is_some_and(|s| s < 401)),
        ),
        (
            "status<=401",
            Box::new(move |e| status(e).is_some_and(|s| s <= 401)),
        ),
        (
            "status>404",
            Box::new(move |e| status(e).is_some_and(|s| s > 404)),
        ),
        ("status>500", Box::new(|_| false)),
        (
            "NOT status<400",
            Box::new(move |e| status(e).is_none_or(|s| s >= 400)),
        ),
        ("duration<5ms", Box::new(|e| e.duration_ns < 5_000_000)),
        ("duration<=5ms", Box::new(|e| e.duration_ns <= 5_000_000)),
        ("duration>45ms", Box::new(|e| e.duration_ns > 45_000_000)),
        (
            "duration>=45000000",
            Box::new(|e| e.duration_ns >= 45_000_000),
        ),
        (
            "http.response.body.bytes>4500",
            Box::new(|e| e.response_bytes > 4500),
        ),
        (
            "http.response.body.bytes<=370",
            Box::new(|e| e.response_bytes <= 370),
        ),
        ("path:*.php", Box::new(php)),
        ("path:*.PHP", Box::new(php)),
        ("NOT path:*.php", Box::new(move |e| !php(e))),
        (
            "@timestamp<2025-12-01T11:00:00Z",
            Box::new(move |e| nanos(e) < BASE + HOUR),
        ),
        (
            "@timestamp<=2025-12-01T11:00:00Z",
            Box::new(move |e| nanos(e) <= BASE + HOUR),
        ),
        (
            "@timestamp>2025-12-01T12:00:00Z",
            Box::new(move |e| nanos(e) > BASE + 2 * HOUR),
        ),
        (
            "@timestamp>=2025-12-01T12:00:00Z",
            Box::new(move |e| nanos(e) >= BASE + 2 * HOUR),
        ),
        (
            "@timestamp=2025-12-01T11:00:00Z",
            Box::new(move |e| nanos(e) == BASE + HOUR),
        ),
        (
            // 12:30+01:00 is 11:30Z.
            "@timestamp>=2025-12-01T12:30:00+01:00 @timestamp<2025-12-01T11:45:00Z",
            Box::new(move |e| (BASE + 3 * HOUR / 2..BASE + 7 * HOUR / 4).contains(&nanos(e))),
        ),
        (
            "status<=401 @timestamp<2025-12-01T10:30:00Z",
            Box::new(move |e| status(e).is_some_and(|s| s <= 401) && nanos(e) < BASE + HOUR / 2),
        ),
    ];
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    store.ingest(&records(&all)[..150]);
    assert_eq!(store.flush().unwrap(), 150);
    store.ingest(&records(&all)[150..]);
    assert_eq!(store.status().memtable_rows, 150);
    for (query, keep) in &cases {
        let expected: Vec<String> = all
            .iter()
            .filter(|event| keep(event))
            .map(|event| event.id.clone())
            .collect();
        let parsed = Query::parse(query).unwrap();
        let by_matcher: Vec<String> = all
            .iter()
            .filter(|event| parsed.matches(event))
            .map(|event| event.id.clone())
            .collect();
        assert_eq!(by_matcher, expected, "the matcher on {query:?}");
        assert_eq!(ids(&store, query).await, expected, "query {query:?}");
    }
    // Each case tells events apart (a filter ignored, or matching nothing, would fail).
    let counts: Vec<(&str, usize)> = cases
        .iter()
        .map(|(query, keep)| (*query, all.iter().filter(|event| keep(event)).count()))
        .collect();
    for (query, count) in &counts {
        assert!(
            *query == "status>500" || (*count > 0 && *count < all.len()),
            "{query}: {count}"
        );
    }
    let count = |query: &str| counts.iter().find(|(q, _)| *q == query).unwrap().1;
    assert_eq!(count("@timestamp<2025-12-01T11:00:00Z"), 100);
    assert_eq!(count("@timestamp<=2025-12-01T11:00:00Z"), 101);
    assert_eq!(count("@timestamp>2025-12-01T12:00:00Z"), 99);
    assert_eq!(count("@timestamp>=2025-12-01T12:00:00Z"), 100);
    assert_eq!(count("@timestamp=2025-12-01T11:00:00Z"), 1);
    // i % 8 == 3 (38 events) rewrites the path; 16 of those end in .php or .PHP.
    assert_eq!(count("path:*.php"), 16);
    assert_eq!(count("NOT path:*.php"), 284);
}

/// The value of rank `round(q * (n - 1))` of `values` (the rank `approx_quantile` answers
/// for, within 0.4%).
fn exact_quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(q * (sorted.len() - 1) as f64).round() as usize]
}

fn assert_close(got: &serde_json::Value, want: f64, what: &str) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {got} is not a number"));
    assert!(
        (got - want).abs() <= want.abs() * 0.005,
        "{what}: {got}, expected {want}"
    );
}

#[tokio::test]
async fn percentiles_per_route_are_those_of_the_routes_durations_in_ms_and_sizes_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(300);
    let store = files_and_memtable(dir.path(), &all, 200);
    let answer = store
        .stats(
            "",
            None,
            None,
            &StatsRequest::Percentiles,
            Limits::default(),
        )
        .await
        .unwrap();
    let rows = answer.rows_json().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for route in ["/api/login", "/api/users/{id}"] {
        let row = rows
            .iter()
            .find(|row| row["route"] == route)
            .unwrap_or_else(|| panic!("no row for {route}: {rows:?}"));
        let of_route: Vec<&Event> = all
            .iter()
            .filter(|event| event.route.as_deref() == Some(route))
            .collect();
        assert_eq!(row["events"], of_route.len(), "{row}");
        let ms: Vec<f64> = of_route
            .iter()
            .map(|event| event.duration_ns as f64 / 1e6)
            .collect();
        let bytes: Vec<f64> = of_route
            .iter()
            .map(|event| event.response_bytes as f64)
            .collect();
        assert_close(&row["p50_ms"], exact_quantile(&ms, 0.5), "p50_ms");
        assert_close(&row["p90_ms"], exact_quantile(&ms, 0.9), "p90_ms");
        assert_close(&row["p99_ms"], exact_quantile(&ms, 0.99), "p99_ms");
        assert_close(&row["p50_bytes"], exact_quantile(&bytes, 0.5), "p50_bytes");
        assert_close(&row["p99_bytes"], exact_quantile(&bytes, 0.99), "p99_bytes");
    }
    // By hand: even events (login) last 0, 2, ... 48 ms, odd ones 1, 3, ... 49 ms, six each.
    let login = rows
        .iter()
        .find(|row| row["route"] == "/api/login")
        .unwrap();
    let users = rows
        .iter()
        .find(|row| row["route"] != "/api/login")
        .unwrap();
    assert_close(&login["p50_ms"], 24.0, "login p50_ms");
    assert_close(&login["p99_ms"], 48.0, "login p99_ms");
    assert_close(&users["p50_ms"], 25.0, "users p50_ms");
    assert_close(&users["p99_ms"], 49.0, "users p99_ms");

    // A search narrows the events the percentiles are taken over.
    let answer = store
        .stats(
            "duration<10ms",
            None,
            None,
            &StatsRequest::Percentiles,
            Limits::default(),
        )
        .await
        .unwrap();
    let rows = answer.rows_json().unwrap();
    let login = rows
        .iter()
        .find(|row| row["route"] == "/api/login")
        .unwrap();
    assert_eq!(login["events"], 30, "{login}"); // 0, 2, 4, 6, 8 ms, six each
    assert_close(&login["p99_ms"], 8.0, "narrowed p99_ms");
}

#[tokio::test]
async fn status_classes_count_the_events_of_each_class() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(300);
    let store = files_and_memtable(dir.path(), &all, 120);
    let count = |events: &[Event]| {
        let mut counts = std::collections::BTreeMap::<String, u64>::new();
        for event in events {
            let class = match event.status_code {
                Some(code) => format!("{}xx", code / 100),
                None => "none".to_owned(),
            };
            *counts.entry(class).or_default() += 1;
        }
        counts.into_iter().collect::<Vec<_>>()
    };
    let classes = |answer: apiwatch_store::SqlAnswer| {
        answer
            .rows_json()
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row["class"].as_str().unwrap().to_owned(),
                    row["events"].as_u64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let answer = store
        .stats(
            "",
            None,
            None,
            &StatsRequest::StatusClasses,
            Limits::default(),
        )
        .await
        .unwrap();
    let expected = count(&all);
    assert_eq!(classes(answer), expected);
    // By hand: 1 in 7 without a status; the rest cycle 200, 401, 404, 500, 302.
    assert_eq!(
        expected,
        [
            ("2xx".to_owned(), 51),
            ("3xx".to_owned(), 51),
            ("4xx".to_owned(), 103),
            ("5xx".to_owned(), 52),
            ("none".to_owned(), 43),
        ]
    );

    // Over a search and a time range: only what they keep is counted.
    let (from, to) = (BASE + HOUR, BASE + 2 * HOUR);
    let answer = store
        .stats(
            "method=POST",
            Some(from),
            Some(to),
            &StatsRequest::StatusClasses,
            Limits::default(),
        )
        .await
        .unwrap();
    let kept: Vec<Event> = all
        .iter()
        .filter(|event| {
            let nanos = apiwatch_store::schema::timestamp_nanos(&event.timestamp).unwrap();
            event.method.as_deref() == Some("POST") && (from..to).contains(&nanos)
        })
        .cloned()
        .collect();
    assert!(kept.len() < 50 && !kept.is_empty(), "{}", kept.len());
    assert_eq!(classes(answer), count(&kept));
}

/// How many events the store answers with, and the oldest one's time (nanoseconds).
async fn count_and_oldest(store: &Store) -> (u64, i64) {
    let answer = store
        .sql(
            "SELECT count(*) AS n, CAST(min(timestamp) AS BIGINT) AS oldest FROM events",
            Limits::default(),
        )
        .await
        .unwrap();
    let rows = answer.rows_json().unwrap();
    (
        rows[0]["n"].as_u64().unwrap(),
        rows[0]["oldest"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn an_early_deletion_removes_exactly_the_older_events_and_they_stay_gone() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(300);
    let mut times: Vec<i64> = all
        .iter()
        .map(|event| apiwatch_store::schema::timestamp_nanos(&event.timestamp).unwrap())
        .collect();
    times.sort_unstable();
    let newer_than = |before: i64| times.iter().filter(|nanos| **nanos >= before).count() as u64;
    let store = files_and_memtable(dir.path(), &all, 200);

    // Inside an hour's file: that file holds events on both sides of it and is rewritten.
    let before = times[100] + 1;
    let straddling = |store: &Store| {
        store
            .files()
            .iter()
            .filter(|file| file.min_time < before && file.max_time >= before)
            .count()
    };
    assert_eq!(straddling(&store), 1, "{:#?}", store.files());
    assert!(store.delete_before(before).unwrap() > 0);
    let (count, oldest) = count_and_oldest(&store).await;
    assert_eq!(count, newer_than(before));
    assert!(oldest >= before);
    assert!(store.files().iter().all(|file| file.min_time >= before));

    // Inside the memtable's events, which no file holds yet.
    let before = times[250] + 1;
    store.delete_before(before).unwrap();
    let (count, oldest) = count_and_oldest(&store).await;
    assert_eq!(count, newer_than(before));
    assert!(oldest >= before);

    // A restart replays the memtable's records from the journal, which still holds them:
    // the deleted ones stay out.
    drop(store);
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    assert!(store.ingest(&records(&all)) > 0);
    assert_eq!(count_and_oldest(&store).await, (count, oldest));
    // So does a rebuild from the whole journal.
    store.reset().unwrap();
    let mut load = store.bulk_load().unwrap();
    assert_eq!(load.add(&records(&all)).unwrap() as u64, count);
    load.finish().unwrap();
    assert_eq!(count_and_oldest(&store).await, (count, oldest));
    drop(store);
    assert!(
        Store::open_reader(dir.path())
            .unwrap()
            .delete_before(before)
            .is_err()
    );
    // The time is also kept beside the store: a store directory deleted and rebuilt from
    // the journal still leaves those events out.
    std::fs::remove_dir_all(dir.path().join("store")).unwrap();
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    let mut load = store.bulk_load().unwrap();
    assert_eq!(load.add(&records(&all)).unwrap() as u64, count);
    load.finish().unwrap();
    assert_eq!(count_and_oldest(&store).await, (count, oldest));
}

#[tokio::test]
async fn an_early_deletion_that_stopped_partway_is_finished_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let all = events(300);
    let store = files_and_memtable(dir.path(), &all, 300);
    let files_before = store.files();
    drop(store);
    // As a deletion leaves it when it stops after recording its time (a full disk, a crash):
    // the time is kept, the files are not rewritten yet.
    let before = apiwatch_store::schema::timestamp_nanos(&all[150].timestamp).unwrap();
    std::fs::write(
        dir.path().join(apiwatch_store::files::DELETED_BEFORE),
        before.to_string(),
    )
    .unwrap();
    let store = Store::open_writer(dir.path(), small_config()).unwrap();
    let files = store.files();
    assert_ne!(files, files_before);
    // Files wholly older are dropped, not rewritten empty; those across the time rewritten.
    assert!(
        files
            .iter()
            .all(|file| file.rows > 0 && file.min_time >= before),
        "{files:#?}"
    );
    assert!(files.len() < files_before.len(), "{files:#?}");
    let (count, oldest) = count_and_oldest(&store).await;
    assert_eq!(count, 150);
    assert_eq!(oldest, before);
    // A reader sees the same.
    drop(store);
    let reader = Store::open_reader(dir.path()).unwrap();
    assert_eq!(count_and_oldest(&reader).await, (150, before));
}
