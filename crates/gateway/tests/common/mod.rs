//! Shared pieces of the gateway tests: a real upstream, a collecting sink, a started gateway.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiwatch_event::Event;
use apiwatch_event::identity::Fingerprinter;
use apiwatch_gateway::{EventSink, Gateway, GatewaySettings, Upstream};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub type TestBody = BoxBody<Bytes, Infallible>;

/// Collects events; optionally delays acceptance to show the gateway waits for it.
#[derive(Clone, Default)]
pub struct CollectingSink {
    pub events: Arc<Mutex<Vec<Event>>>,
    pub delay: Option<Duration>,
}

impl EventSink for CollectingSink {
    fn emit(&self, event: Event) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let events = Arc::clone(&self.events);
        let delay = self.delay;
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

fn full(text: impl Into<Bytes>) -> TestBody {
    Full::new(text.into()).boxed()
}

/// A real HTTP/1.1 upstream with a few behaviours chosen by path.
pub async fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(upstream_handler))
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

async fn upstream_handler(
    mut request: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let path = request.uri().path().to_owned();
    let response = match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Response::new(full("late"))
        }
        "/upload" => {
            let mut total = 0u64;
            let mut body = request.into_body();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => total += frame.data_ref().map_or(0, |data| data.len() as u64),
                    Err(_) => break,
                }
            }
            Response::new(full(total.to_string()))
        }
        "/unauthorized" => {
            let mut response = Response::new(full("no"));
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
        "/ws" => {
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let (mut reader, mut writer) = tokio::io::split(&mut io);
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(full(""))
                .unwrap()
        }
        path if path.starts_with("/bytes/") => {
            let count: usize = path["/bytes/".len()..].parse().unwrap_or(0);
            Response::new(full(vec![b'x'; count]))
        }
        _ => {
            // Echo what arrived, for header assertions.
            let headers: serde_json::Map<String, serde_json::Value> = request
                .headers()
                .iter()
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        String::from_utf8_lossy(value.as_bytes()).into(),
                    )
                })
                .collect();
            let body = serde_json::json!({"path": path, "headers": headers});
            Response::new(full(body.to_string()))
        }
    };
    Ok(response)
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
    let mut settings =
        GatewaySettings::with_upstream(Upstream::parse(&format!("http://{upstream}")).unwrap());
    adjust(&mut settings);
    let gateway = Gateway::new(
        settings,
        Arc::new(sink.clone()),
        Fingerprinter::new([7; 32]),
    )
    .unwrap();
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
