//! TLS termination with ALPN: HTTP/2 and HTTP/1.1 over rustls.

mod common;

use std::sync::Arc;

use common::*;
use http::{Request, StatusCode, Version};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};

struct TlsGateway {
    addr: std::net::SocketAddr,
    sink: CollectingSink,
    cert: CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

async fn start_tls_gateway() -> TlsGateway {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, certified.cert.pem()).unwrap();
    std::fs::write(&key_file, certified.key_pair.serialize_pem()).unwrap();
    let (addr, sink) = start_gateway(upstream, |settings| {
        settings.tls = Some(apiwatch_gateway::TlsSettings {
            cert_file,
            key_file,
        });
    })
    .await;
    TlsGateway {
        addr,
        sink,
        cert: certified.cert.der().clone(),
        _dir: dir,
    }
}

async fn connect(
    gateway: &TlsGateway,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(gateway.cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn tls_with_alpn_h2_serves_http2() {
    let gateway = start_tls_gateway().await;
    let stream = connect(&gateway, &[b"h2"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get("https://localhost/secure")
        .body(empty())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("\"x-forwarded-proto\":\"https\""));
    let event = &gateway.sink.wait_for(1).await[0];
    assert_eq!(event.url_scheme.as_deref(), Some("https"));
    assert_eq!(event.http_version.as_deref(), Some("2"));
}

#[tokio::test]
async fn tls_with_alpn_http11_serves_http1() {
    let gateway = start_tls_gateway().await;
    let stream = connect(&gateway, &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get("/secure")
        .header("host", "localhost")
        .body(empty())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let event = &gateway.sink.wait_for(1).await[0];
    assert_eq!(event.url_scheme.as_deref(), Some("https"));
    assert_eq!(event.http_version.as_deref(), Some("1.1"));
}

#[tokio::test]
async fn missing_certificate_file_is_a_clear_error() {
    let mut settings = apiwatch_gateway::GatewaySettings::with_upstream(
        apiwatch_gateway::Upstream::parse("http://127.0.0.1:1").unwrap(),
    );
    settings.tls = Some(apiwatch_gateway::TlsSettings {
        cert_file: "/nonexistent/cert.pem".into(),
        key_file: "/nonexistent/key.pem".into(),
    });
    let Err(err) = apiwatch_gateway::Gateway::new(
        settings,
        Arc::new(CollectingSink::default()),
        apiwatch_event::identity::Fingerprinter::new([0; 32]),
    ) else {
        panic!("gateway started without its certificate");
    };
    assert!(
        err.to_string()
            .contains("failed to load tls certificate from /nonexistent/cert.pem"),
        "{err}"
    );
}
