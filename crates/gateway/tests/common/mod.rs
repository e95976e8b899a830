//! Shared pieces of the gateway tests: a real upstream, a collecting sink, a started gateway.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiwatch_event::Event;
use apiwatch_event::identity::Fingerprinter;
use apiwatch_gateway::{EventSink, Gateway, GatewaySettings, Upstream};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

pub use apiwatch_testkit::{TestBody, full, start_upstream};

/// Collects events; optionally delays acceptance to show the gateway waits for it.
#[derive(Clone, Default)]
pub struct CollectingSink {
    pub events: Arc<Mutex<Vec<Event>>>,
    pub delay: Option<Duration>,
    /// How many events were handed to `emit` (counted at once, before any delay).
    pub emitted: Arc<std::sync::atomic::AtomicUsize>,
}

impl EventSink for CollectingSink {
    fn emit(&self, event: Event) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let events = Arc::clone(&self.events);
        let delay = self.delay;
        self.emitted
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            events.lock().unwrap().push(event);
        })
    }
}

impl CollectingSink {
    /// Waits until `count` events arrived (or fails after 5 s).
    pub async fn wait_for(&self, count: usize) -> Vec<Event> {
        for _ in 0..500 {
            {
                let events = self.events.lock().unwrap();
                if events.len() >= count {
                    return events.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "expected {count} events, got {:?}",
            self.events.lock().unwrap()
        );
    }
}

/// A gateway in front of `upstream`, its address, and the sink receiving its events.
pub async fn start_gateway(
    upstream: SocketAddr,
    adjust: impl FnOnce(&mut GatewaySettings),
) -> (SocketAddr, CollectingSink) {
    start_gateway_with_sink(upstream, CollectingSink::default(), adjust).await
}

pub async fn start_gateway_with_sink(
    upstream: SocketAddr,
    sink: CollectingSink,
    adjust: impl FnOnce(&mut GatewaySettings),
) -> (SocketAddr, CollectingSink) {
    start_gateway_full(upstream, sink, None, adjust).await
}

pub async fn start_gateway_full(
    upstream: SocketAddr,
    sink: CollectingSink,
    enforcer: Option<Arc<dyn apiwatch_gateway::Enforcer>>,
    adjust: impl FnOnce(&mut GatewaySettings),
) -> (SocketAddr, CollectingSink) {
    let mut settings =
        GatewaySettings::with_upstream(Upstream::parse(&format!("http://{upstream}")).unwrap());
    adjust(&mut settings);
    let mut gateway = Gateway::new(
        settings,
        Arc::new(sink.clone()),
        Fingerprinter::new([7; 32]),
    )
    .unwrap();
    if let Some(enforcer) = enforcer {
        gateway = gateway.with_enforcer(enforcer);
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gateway.serve(listener, std::future::pending()));
    (addr, sink)
}

pub type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    TestBody,
>;

pub fn http1_client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2c_client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub fn get(addr: SocketAddr, path: &str) -> http::request::Builder {
    Request::get(format!("http://{addr}{path}"))
}

pub fn empty() -> TestBody {
    full("")
}

pub fn body_of(text: impl Into<Bytes>) -> TestBody {
    full(text)
}

/// Sends a request and returns status, headers and the whole body as text.
pub async fn send(
    client: &Client,
    request: Request<TestBody>,
) -> (StatusCode, http::HeaderMap, String) {
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// A gateway serving on threads of its own, as `apiwatch serve` runs it.
pub struct Threaded {
    pub addr: SocketAddr,
    pub metrics: Arc<apiwatch_gateway::GatewayMetrics>,
    /// Send to stop it; `served` then ends with the gateway's result.
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub served: tokio::task::JoinHandle<apiwatch_gateway::Result<()>>,
    /// The readiness the gateway was given ([`Gateway::with_readiness`]), true at the start.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

/// A gateway with `threads` serving threads in front of `upstream`, its events to `sink`.
pub async fn start_threaded(
    upstream: SocketAddr,
    threads: usize,
    sink: Arc<dyn EventSink>,
) -> Threaded {
    let mut settings =
        GatewaySettings::with_upstream(Upstream::parse(&format!("http://{upstream}")).unwrap());
    settings.threads = threads;
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let gateway = Gateway::new(settings, sink, Fingerprinter::new([7; 32]))
        .unwrap()
        .with_readiness(Arc::clone(&ready));
    let metrics = gateway.metrics();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(gateway.serve(listener, async {
        let _ = stopped.await;
    }));
    Threaded {
        addr,
        metrics,
        stop,
        served,
        ready,
    }
}
