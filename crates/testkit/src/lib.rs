//! Test-only helpers shared by apiwatch's crates (never shipped in the binary).
//!
//! [`start_upstream`] runs a real HTTP/1.1 server on 127.0.0.1 with behaviours chosen by path:
//! `/slow` (answers after 3 s), `/upload` (drains the body, answers its length),
//! `/unauthorized` (401), `/login` (basic auth: 200 with password `correct-horse`, else 401), `/ws` (101 upgrade, then echoes bytes), `/bytes/N` (N bytes of `x`),
//! anything else echoes the path and the received headers as JSON.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Body type of the test server and clients.
pub type TestBody = BoxBody<Bytes, Infallible>;

/// A complete body.
pub fn full(text: impl Into<Bytes>) -> TestBody {
    Full::new(text.into()).boxed()
}

/// Starts the test upstream; returns its address.
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
        "/login" => {
            // Basic auth: any user with the password `correct-horse` gets in; others get 401.
            use base64::Engine as _;
            let accepted = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Basic "))
                .and_then(|encoded| {
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .ok()
                })
                .is_some_and(|decoded| decoded.ends_with(b":correct-horse"));
            let mut response = Response::new(full(if accepted { "welcome" } else { "no" }));
            if !accepted {
                *response.status_mut() = StatusCode::UNAUTHORIZED;
            }
            response
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
            // Echo what arrived, for header assertions; the lines of a repeated header joined
            // with ", " in their order, as a list header's lines combine (RFC 9110 5.3).
            let mut headers = serde_json::Map::new();
            for (name, value) in request.headers() {
                let value = String::from_utf8_lossy(value.as_bytes());
                match headers.get_mut(name.as_str()) {
                    Some(serde_json::Value::String(earlier)) => {
                        earlier.push_str(", ");
                        earlier.push_str(&value);
                    }
                    _ => {
                        headers.insert(name.to_string(), value.into());
                    }
                }
            }
            let body = serde_json::json!({"path": path, "headers": headers});
            Response::new(full(body.to_string()))
        }
    };
    Ok(response)
}

/// One request a [`Recorder`] received, and the status it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A real HTTP/1.1 server that records every request and answers with the status in
/// `status` (200 unless changed: set 503 to play a receiver that is down).
#[derive(Clone)]
pub struct Recorder {
    pub addr: SocketAddr,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    pub status: std::sync::Arc<std::sync::atomic::AtomicU16>,
}

impl Recorder {
    /// Everything recorded so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Answer every request from now on with `status`.
    pub fn answer_with(&self, status: u16) {
        self.status
            .store(status, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Starts a [`Recorder`] on 127.0.0.1.
pub async fn start_recorder() -> Recorder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let recorder = Recorder {
        addr: listener.local_addr().unwrap(),
        requests: Default::default(),
        status: std::sync::Arc::new(std::sync::atomic::AtomicU16::new(200)),
    };
    let shared = recorder.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let shared = shared.clone();
                    async move {
                        let method = request.method().to_string();
                        let path = request
                            .uri()
                            .path_and_query()
                            .map_or("/".to_owned(), ToString::to_string);
                        let headers = request
                            .headers()
                            .iter()
                            .map(|(name, value)| {
                                (
                                    name.as_str().to_owned(),
                                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                                )
                            })
                            .collect();
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .map(|body| body.to_bytes().to_vec())
                            .unwrap_or_default();
                        let answered = shared.status.load(std::sync::atomic::Ordering::SeqCst);
                        shared.requests.lock().unwrap().push(Recorded {
                            method,
                            path,
                            headers,
                            body,
                            answered,
                        });
                        let mut response =
                            Response::new(full(if answered == 200 { "ok" } else { "down" }));
                        *response.status_mut() =
                            StatusCode::from_u16(answered).unwrap_or(StatusCode::OK);
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    recorder
}
