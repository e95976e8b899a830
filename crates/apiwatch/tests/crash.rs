//! With `fsync = "always"`, SIGKILL in the middle of a load loses no event of a request that
//! got its response; a torn tail is truncated and reported at the next start.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

#[test]
fn sigkill_under_load_loses_no_answered_request_and_recovery_truncates_a_torn_tail() {
    let upstream = start_upstream();
    let data = tempfile::tempdir().unwrap();
    let apiwatch = serve(data.path(), upstream.addr, &["--fsync", "always"]);
    let gateway = apiwatch.gateway;

    let answered: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let answered = Arc::clone(&answered);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut sequence = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    sequence += 1;
                    let request_id = format!("load-{worker}-{sequence}");
                    let request = format!(
                        "GET /item/{sequence} HTTP/1.1\r\nhost: t\r\nconnection: close\r\nx-request-id: {request_id}\r\n\r\n"
                    );
                    // A request cut by the kill fails to read; only complete answers count.
                    let outcome = std::panic::catch_unwind(|| raw_request(gateway, request.as_bytes()));
                    match outcome {
                        Ok(response) if response.status == 200 && response.body.ends_with(b"}") => {
                            answered.lock().unwrap().insert(request_id);
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    apiwatch.kill9();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() > 20,
        "the load was too light to mean anything: {}",
        answered.len()
    );

    // Simulate a write torn by a power cut: half a frame at the end of the last segment.
    let journal_dir = data.path().join("journal");
    let mut segments: Vec<_> = std::fs::read_dir(&journal_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("segment-")
        })
        .collect();
    segments.sort();
    let last = segments.last().unwrap();
    let whole = std::fs::metadata(last).unwrap().len();
    let torn = [200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7];
    let mut file = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    file.write_all(&torn).unwrap();
    drop(file);

    let restarted = serve(data.path(), upstream.addr, &["--fsync", "always"]);
    std::thread::sleep(Duration::from_millis(300));
    let log = restarted.stderr();
    let report = format!(
        "cut a torn tail of {} bytes from {} at offset {whole}",
        torn.len(),
        last.display()
    );
    assert!(
        log.contains(&report),
        "recovery did not report `{report}`:\n{log}"
    );
    assert!(restarted.terminate().success());
    // Cut, not skipped: whatever the restarted server wrote follows the last whole record.
    let after = std::fs::read(last).unwrap();
    assert!(after.len() as u64 >= whole);
    assert!(
        !after[whole as usize..].starts_with(&torn),
        "the torn bytes are still at offset {whole}"
    );

    let journaled: HashSet<String> = journal_events(data.path())
        .iter()
        .filter_map(|event| event["http.request.id"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<_> = answered.difference(&journaled).collect();
    assert!(
        missing.is_empty(),
        "{} answered requests have no event: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );

    let verify = run(&["verify", "--data", data.path().to_str().unwrap()]);
    assert!(
        verify.status.success(),
        "verify after recovery: {}",
        stdout_of(&verify)
    );
}
