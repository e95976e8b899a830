//! Bodies stream through the gateway; nothing is buffered whole.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;

const GIB: u64 = 1024 * 1024 * 1024;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_upload_streams_with_flat_memory_and_is_counted() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway(upstream, |settings| {
        settings.limits.max_request_body_bytes = 2 * GIB
    })
    .await;
    let baseline = resident_bytes();
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let peak = Arc::clone(&peak);
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(resident_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // 1 GiB in 1 MiB chunks, produced as it is sent, with no Content-Length.
    let (mut sender, body) =
        http_body_util::channel::Channel::<bytes::Bytes, std::convert::Infallible>::new(2);
    tokio::spawn(async move {
        let chunk = bytes::Bytes::from(vec![b'u'; 1024 * 1024]);
        for _ in 0..1024 {
            if sender.send_data(chunk.clone()).await.is_err() {
                return;
            }
        }
    });
    let request = Request::post(format!("http://{gateway}/upload"))
        .body(body.boxed())
        .unwrap();
    let (status, _, body) = send(&http1_client(), request).await;
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, GIB.to_string(), "upstream must receive every byte");
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.request_bytes, GIB);
    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    assert!(
        growth < 64 * 1024 * 1024,
        "memory grew by {} MiB while streaming 1 GiB",
        growth / (1024 * 1024)
    );
}

#[tokio::test]
async fn large_download_streams_and_is_counted() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway(upstream, |_| {}).await;
    let response = http1_client()
        .request(get(gateway, "/bytes/20000000").body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        total += frame.unwrap().data_ref().map_or(0, |data| data.len());
    }
    assert_eq!(total, 20_000_000);
    assert_eq!(sink.wait_for(1).await[0].response_bytes, 20_000_000);
}
