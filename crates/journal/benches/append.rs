//! Journal throughput with 300-byte records (the size of a typical JSON access event).
//!
//! - `merkle/leaf_hash+frontier_push`: the hashing every record costs, on one core.
//! - `append/*`: records through the writer thread with `fsync = "100ms"`: one blocking producer
//!   (latency bound), many concurrent async producers, and `append_batch` of 1000 records.
//!
//! Run: `cargo bench -p apiwatch-journal --bench append -- --warm-up-time 1 --measurement-time 3`

use std::sync::Arc;
use std::time::{Duration, Instant};

use apiwatch_journal::merkle::{Frontier, leaf_hash};
use apiwatch_journal::{FsyncPolicy, Journal, JournalConfig};
use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};

const RECORD_LEN: usize = 300;

fn record(seq: u64) -> Vec<u8> {
    let mut text = format!(
        "{{\"@timestamp\":\"2025-01-01T00:00:00.{seq:09}Z\",\"event.id\":\"{seq:016x}\",\"source.ip\":\"203.0.113.7\",\"http.request.method\":\"GET\",\"url.path\":\"/api/items/{seq}\",\"http.response.status_code\":200,\"user_agent.original\":\"bench/1.0\",\"pad\":\""
    );
    while text.len() < RECORD_LEN - 2 {
        text.push('x');
    }
    text.push_str("\"}");
    text.into_bytes()
}

fn open_journal() -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = JournalConfig {
        fsync: FsyncPolicy::Interval(Duration::from_millis(100)),
        ..JournalConfig::new(dir.path())
    };
    let (journal, _) = Journal::open(config).expect("open journal");
    (dir, journal)
}

fn merkle(c: &mut Criterion) {
    let records: Vec<Vec<u8>> = (0..10_000).map(record).collect();
    let mut group = c.benchmark_group("merkle");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("leaf_hash+frontier_push/300B", |b| {
        b.iter(|| {
            let mut frontier = Frontier::new();
            for record in &records {
                frontier.push(leaf_hash(record));
            }
            black_box(frontier.root())
        })
    });
    group.finish();
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");

    group.throughput(Throughput::Elements(1));
    group.bench_function("append_blocking/one_producer", |b| {
        let (_dir, journal) = open_journal();
        let appender = journal.appender();
        let payload = record(1);
        b.iter(|| appender.append_blocking(payload.clone()).expect("append"));
        journal.shutdown().expect("shutdown");
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    for producers in [64u64, 512] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("append/{producers}_concurrent_tasks"), |b| {
            let (_dir, journal) = open_journal();
            let appender = Arc::new(journal.appender());
            let payload = Arc::new(record(2));
            b.iter_custom(|iters| {
                let per_task = iters.div_ceil(producers);
                let started = Instant::now();
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..producers)
                        .map(|_| {
                            let appender = Arc::clone(&appender);
                            let payload = Arc::clone(&payload);
                            tokio::spawn(async move {
                                for _ in 0..per_task {
                                    appender.append(payload.to_vec()).await.expect("append");
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("task");
                    }
                });
                started
                    .elapsed()
                    .mul_f64(iters as f64 / (per_task * producers) as f64)
            });
            journal.shutdown().expect("shutdown");
        });
    }

    const BATCH: u64 = 1000;
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("append_batch_blocking/1000_records", |b| {
        let (_dir, journal) = open_journal();
        let appender = journal.appender();
        let payload = record(3);
        b.iter_batched(
            || (0..BATCH).map(|_| payload.clone()).collect::<Vec<_>>(),
            |batch| appender.append_batch_blocking(batch).expect("append"),
            BatchSize::SmallInput,
        );
        journal.shutdown().expect("shutdown");
    });

    group.throughput(Throughput::Elements(BATCH * 4));
    group.bench_function("append_batch/4_tasks_x_1000_records", |b| {
        let (_dir, journal) = open_journal();
        let appender = Arc::new(journal.appender());
        let payload = Arc::new(record(4));
        b.iter(|| {
            runtime.block_on(async {
                let tasks: Vec<_> = (0..4)
                    .map(|_| {
                        let appender = Arc::clone(&appender);
                        let payload = Arc::clone(&payload);
                        tokio::spawn(async move {
                            let batch = (0..BATCH).map(|_| payload.to_vec()).collect();
                            appender.append_batch(batch).await.expect("append")
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("task");
                }
            })
        });
        journal.shutdown().expect("shutdown");
    });
    group.finish();
}

criterion_group!(benches, merkle, append);
criterion_main!(benches);
