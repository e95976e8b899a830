//! The gateway against a real upstream, over real sockets.

mod common;

use std::time::{Duration, Instant};

use apiwatch_event::AuthOutcome;
use common::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn request_is_forwarded_and_recorded_as_exactly_one_event() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway(upstream, |_| {}).await;
    let client = http1_client();
    let request = get(gateway, "/api/users/42?sort=asc")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "must not pass")
        .header("user-agent", "test-agent/1.0")
        .header("via", "1.1 edge-proxy")
        .body(empty())
        .unwrap();
    let (status, headers, body) = send(&client, request).await;
    assert_eq!(status, StatusCode::OK);
    let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let upstream_headers = &echoed["headers"];
    // The gateway adds its own hop after the ones the request carried (RFC 9110 7.6.3).
    assert_eq!(upstream_headers["via"], "1.1 edge-proxy, 1.1 apiwatch");
    assert!(
        upstream_headers.get("x-hop").is_none(),
        "hop-by-hop header forwarded: {upstream_headers}"
    );
    assert_eq!(upstream_headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(upstream_headers["x-forwarded-proto"], "http");
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(upstream_headers["x-request-id"], request_id.as_str());

    let events = sink.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        sink.events.lock().unwrap().len(),
        1,
        "exactly one event per request"
    );
    let event = &events[0];
    assert_eq!(event.method.as_deref(), Some("GET"));
    assert_eq!(event.url_path.as_deref(), Some("/api/users/42"));
    assert_eq!(event.url_query.as_deref(), Some("sort=asc"));
    assert_eq!(event.status_code, Some(200));
    assert_eq!(event.response_bytes, body.len() as u64);
    assert_eq!(event.request_id.as_deref(), Some(request_id.as_str()));
    assert_eq!(event.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(event.user_agent.as_deref(), Some("test-agent/1.0"));
    assert_eq!(
        event.upstream_address.as_deref(),
        Some(upstream.to_string().as_str())
    );
    assert_eq!(event.service_name.as_deref(), Some("default"));
    assert_eq!(event.http_version.as_deref(), Some("1.1"));
    assert!(event.duration_ns > 0);
}

#[tokio::test]
async fn client_request_id_is_kept_and_returned() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway(upstream, |_| {}).await;
    let request = get(gateway, "/")
        .header("x-request-id", "trace-abc-123")
        .body(empty())
        .unwrap();
    let (_, headers, body) = send(&http1_client(), request).await;
    assert_eq!(headers["x-request-id"], "trace-abc-123");
    assert!(body.contains("trace-abc-123"));
    assert_eq!(
        sink.wait_for(1).await[0].request_id.as_deref(),
        Some("trace-abc-123")
    );
}

#[tokio::test]
async fn via_can_be_turned_off() {
    let upstream = start_upstream().await;
    let (gateway, _sink) = start_gateway(upstream, |settings| settings.send_via = false).await;
    let request = get(gateway, "/")
        .header("via", "1.1 edge-proxy")
        .body(empty())
        .unwrap();
    let (status, _, body) = send(&http1_client(), request).await;
    assert_eq!(status, StatusCode::OK);
    let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
    // The client's hops pass as they came, without the gateway's.
    assert_eq!(echoed["headers"]["via"], "1.1 edge-proxy");
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway(upstream, |_| {}).await;
    let (status, _, body) = send(&h2c_client(), get(gateway, "/h2").body(empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"path\":\"/h2\""));
    // Forwarded as HTTP/1.1; `Via` says how it was received.
    assert!(body.contains("\"via\":\"2 apiwatch\""), "{body}");
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.http_version.as_deref(), Some("2"));
    assert_eq!(event.url_domain.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn declared_body_over_the_limit_is_refused_with_413_and_recorded() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway(upstream, |settings| {
        settings.limits.max_request_body_bytes = 1000
    })
    .await;
    let request = Request::post(format!("http://{gateway}/upload"))
        .body(body_of(vec![b'a'; 5000]))
        .unwrap();
    let (status, headers, body) = send(&http1_client(), request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains("request_too_large"), "{body}");
    assert!(body.contains(headers["x-request-id"].to_str().unwrap()));
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.status_code, Some(413));
    assert_eq!(event.error_type.as_deref(), Some("request_too_large"));
    assert!(event.error_message.as_deref().unwrap().contains("1000"));
    assert_eq!(
        event.service_name.as_deref(),
        Some("default"),
        "the service asked"
    );
}

#[tokio::test]
async fn streamed_body_over_the_limit_is_cut_and_refused_with_413() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway(upstream, |settings| {
        settings.limits.max_request_body_bytes = 100_000
    })
    .await;
    // Chunked, no Content-Length: the limit can only be seen while streaming.
    let chunks = futures_chunks(20, 10_000);
    let request = Request::post(format!("http://{gateway}/upload"))
        .body(chunks)
        .unwrap();
    let (status, _, _) = send(&http1_client(), request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.error_type.as_deref(), Some("request_too_large"));
    assert!(
        event.request_bytes > 100_000 && event.request_bytes <= 110_000,
        "{}",
        event.request_bytes
    );
}

/// A body of `count` chunks of `size` bytes without a known length.
fn futures_chunks(count: usize, size: usize) -> TestBody {
    let (mut sender, body) =
        http_body_util::channel::Channel::<bytes::Bytes, std::convert::Infallible>::new(4);
    tokio::spawn(async move {
        for _ in 0..count {
            if sender
                .send_data(bytes::Bytes::from(vec![b'z'; size]))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    body.boxed()
}

#[tokio::test]
async fn headers_over_the_limit_are_refused_with_431_and_recorded() {
    let upstream = counting_upstream().await;
    let (gateway, sink) = start_gateway(upstream.addr, |settings| {
        settings.limits.max_header_bytes = 2048
    })
    .await;
    let request = get(gateway, "/")
        .header("x-big", "b".repeat(4000))
        .body(empty())
        .unwrap();
    let (status, headers, body) = send(&http1_client(), request).await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(body.contains("headers_too_large"), "{body}");
    assert!(body.contains(headers["x-request-id"].to_str().unwrap()));
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.status_code, Some(431));
    assert_eq!(event.error_type.as_deref(), Some("headers_too_large"));
    let message = event.error_message.as_deref().unwrap();
    assert!(
        message.starts_with("request headers are ")
            && message.ends_with("bytes, over the limit of 2048 bytes"),
        "{message}"
    );
    assert_eq!(
        event.service_name.as_deref(),
        Some("default"),
        "the service asked"
    );
    assert_eq!(upstream.accepted(), 0, "never forwarded");
}

#[tokio::test]
async fn unreachable_upstream_gives_502_with_the_reason() {
    // Bind then drop to get a port nobody listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (gateway, sink) = start_gateway(closed, |_| {}).await;
    let (status, _, body) = send(&http1_client(), get(gateway, "/").body(empty()).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("upstream_connect"), "{body}");
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.status_code, Some(502));
    assert_eq!(event.error_type.as_deref(), Some("upstream_connect"));
    let message = event.error_message.as_deref().unwrap();
    assert!(
        message.contains("failed to connect to upstream") && message.contains(&closed.to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn slow_upstream_gives_504() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway(upstream, |settings| {
        settings.limits.upstream_timeout = Duration::from_millis(300)
    })
    .await;
    let started = Instant::now();
    let (status, _, _) = send(
        &http1_client(),
        get(gateway, "/slow").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(2));
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.error_type.as_deref(), Some("upstream_timeout"));
    assert!(
        event
            .error_message
            .as_deref()
            .unwrap()
            .contains("did not answer within")
    );
}

#[tokio::test]
async fn no_matching_route_gives_404_and_routes_pick_the_longest_prefix() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway(upstream, |settings| {
        let base = settings.routes[0].clone();
        settings.routes[0].path_prefix = "/api".into();
        settings.routes[0].service_name = "api".into();
        let mut users = base.clone();
        users.path_prefix = "/api/users".into();
        users.service_name = "users".into();
        settings.routes.push(users);
        let mut other_host = base;
        other_host.host = Some("admin.example".into());
        other_host.service_name = "admin".into();
        settings.routes.push(other_host);
    })
    .await;
    let client = http1_client();
    assert_eq!(
        send(&client, get(gateway, "/api/users/1").body(empty()).unwrap())
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        send(&client, get(gateway, "/api/orders").body(empty()).unwrap())
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        send(&client, get(gateway, "/elsewhere").body(empty()).unwrap())
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let request = get(gateway, "/elsewhere")
        .header("host", "admin.example:8080")
        .body(empty())
        .unwrap();
    assert_eq!(send(&client, request).await.0, StatusCode::OK);
    let events = sink.wait_for(4).await;
    let services: Vec<_> = events
        .iter()
        .map(|event| event.service_name.clone())
        .collect();
    assert_eq!(
        services,
        vec![
            Some("users".into()),
            Some("api".into()),
            None,
            Some("admin".into())
        ]
    );
    assert_eq!(events[2].error_type.as_deref(), Some("no_route"));
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let upstream = start_upstream().await;
    let (trusting, trusting_sink) = start_gateway(upstream, |settings| {
        settings.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let (untrusting, untrusting_sink) = start_gateway(upstream, |_| {}).await;
    let client = http1_client();
    for gateway in [trusting, untrusting] {
        let request = get(gateway, "/")
            .header("x-forwarded-for", "2001:db8::7")
            .body(empty())
            .unwrap();
        send(&client, request).await;
    }
    let trusted_event = &trusting_sink.wait_for(1).await[0];
    assert_eq!(trusted_event.source_ip.as_deref(), Some("2001:db8::7"));
    assert_eq!(trusted_event.forwarded_by.as_deref(), Some("127.0.0.1"));
    let untrusted_event = &untrusting_sink.wait_for(1).await[0];
    assert_eq!(untrusted_event.source_ip.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn gateway_listens_on_ipv6() {
    let upstream = start_upstream().await;
    let settings = apiwatch_gateway::GatewaySettings::with_upstream(
        apiwatch_gateway::Upstream::parse(&format!("http://{upstream}")).unwrap(),
    );
    let sink = CollectingSink::default();
    let gateway = apiwatch_gateway::Gateway::new(
        settings,
        std::sync::Arc::new(sink.clone()),
        apiwatch_event::identity::Fingerprinter::new([1; 32]),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gateway.serve(listener, std::future::pending()));
    let (status, _, _) = send(
        &http1_client(),
        Request::get(format!("http://[::1]:{}/", addr.port()))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sink.wait_for(1).await[0].source_ip.as_deref(), Some("::1"));
}

#[tokio::test]
async fn an_upstream_on_ipv6_is_proxied_to_and_recorded() {
    let upstream = counting_upstream_on("[::1]:0").await;
    let (gateway, sink) = start_gateway(upstream.addr, |_| {}).await;
    let (status, _, body) = send(
        &http1_client(),
        get(gateway, "/status/201").body(empty()).unwrap(),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::CREATED, "ok"));
    assert_eq!(upstream.accepted(), 1);
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.status_code, Some(201));
    assert_eq!(
        event.upstream_address.as_deref(),
        Some(format!("[::1]:{}", upstream.addr.port()).as_str())
    );
}

#[tokio::test]
async fn upstream_401_is_an_authentication_failure() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway(upstream, |_| {}).await;
    let client = http1_client();
    let request = get(gateway, "/unauthorized")
        .header("authorization", "Bearer not-a-jwt-token")
        .body(empty())
        .unwrap();
    assert_eq!(send(&client, request).await.0, StatusCode::UNAUTHORIZED);
    let request = get(gateway, "/ok")
        .header("authorization", "Basic YWxpY2U6c2VjcmV0")
        .body(empty())
        .unwrap();
    assert_eq!(send(&client, request).await.0, StatusCode::OK);
    assert_eq!(
        send(&client, get(gateway, "/anonymous").body(empty()).unwrap())
            .await
            .0,
        StatusCode::OK
    );
    let events = sink.wait_for(3).await;
    assert_eq!(events[0].auth_outcome, AuthOutcome::Failure);
    assert_eq!(events[1].auth_outcome, AuthOutcome::Success);
    assert_eq!(events[2].auth_outcome, AuthOutcome::None);
}

#[tokio::test]
async fn response_completes_only_after_the_event_is_accepted() {
    let upstream = start_upstream().await;
    let slow_sink = CollectingSink {
        delay: Some(Duration::from_millis(400)),
        ..CollectingSink::default()
    };
    let (gateway, sink) = start_gateway_with_sink(upstream, slow_sink, |_| {}).await;
    let started = Instant::now();
    let (status, _, body) = send(
        &http1_client(),
        get(gateway, "/bytes/100000").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), 100_000);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "response finished before the event was accepted"
    );
    assert_eq!(
        sink.events.lock().unwrap().len(),
        1,
        "event must be recorded when the client has the whole response"
    );
}

#[tokio::test]
async fn client_leaving_mid_response_is_recorded() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway(upstream, |_| {}).await;
    let mut stream = tokio::net::TcpStream::connect(gateway).await.unwrap();
    stream
        .write_all(b"GET /bytes/50000000 HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 65536];
    let read = stream.read(&mut first).await.unwrap();
    assert!(read > 0);
    drop(stream);
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.error_type.as_deref(), Some("client_disconnect"));
    assert!(event.response_bytes < 50_000_000);
}

#[tokio::test]
async fn websocket_upgrade_is_passed_through_both_ways() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway(upstream, |_| {}).await;
    let (mut stream, head) = open_tunnel(gateway).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    stream.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = vec![0u8; 23];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping through the tunnel");
    drop(stream);
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.status_code, Some(101));
    assert_eq!(event.request_bytes, 23);
    assert_eq!(event.response_bytes, 23);
}

/// Asks `gateway` for a WebSocket upgrade; the connection and the response head.
async fn open_tunnel(gateway: std::net::SocketAddr) -> (tokio::net::TcpStream, String) {
    let mut stream = tokio::net::TcpStream::connect(gateway).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nhost: test\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    (stream, String::from_utf8(head).unwrap())
}

/// Waits until the per-thread open-connection gauges read `expected` (sorted), or fails
/// after 3 s with what they read.
async fn wait_for_open(metrics: &apiwatch_gateway::GatewayMetrics, expected: [i64; 2]) {
    let read = || {
        let mut open = [0, 1].map(|thread| {
            metrics
                .open_connections
                .get_or_create(&apiwatch_gateway::ThreadLabel {
                    thread: thread.to_string(),
                })
                .get()
        });
        open.sort_unstable();
        open
    };
    for _ in 0..300 {
        if read() == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "open connections by thread: {:?}, expected {expected:?}",
        read()
    );
}

#[tokio::test]
async fn websocket_tunnels_count_as_open_connections_when_balancing_threads() {
    let upstream = start_upstream().await;
    // Held: the gateway stops when the sender goes.
    let Threaded {
        addr,
        metrics,
        stop: _running,
        ..
    } = start_threaded(upstream, 2, std::sync::Arc::new(CollectingSink::default())).await;

    // The tunnel outlives the HTTP connection it was upgraded from, and still counts.
    let (mut tunnel, head) = open_tunnel(addr).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tunnel.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    tunnel.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
    wait_for_open(&metrics, [0, 1]).await;
    // So the next connection goes to the other thread.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    plain.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    wait_for_open(&metrics, [1, 1]).await;
    drop(tunnel);
    drop(plain);
    wait_for_open(&metrics, [0, 0]).await;
}

#[tokio::test]
async fn secrets_are_fingerprinted_not_recorded() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway(upstream, |_| {}).await;
    let request = get(gateway, "/")
        .header("x-api-key", "sk_live_supersecretvalue")
        .header("cookie", "session=abcdef0123456789")
        .body(empty())
        .unwrap();
    send(&http1_client(), request).await;
    let event = &sink.wait_for(1).await[0];
    let json = String::from_utf8(event.to_json()).unwrap();
    assert!(!json.contains("sk_live_supersecretvalue"), "{json}");
    assert!(!json.contains("abcdef0123456789"), "{json}");
    assert_eq!(event.auth_method.as_deref(), Some("api_key"));
    assert!(event.key_fingerprint.as_deref().unwrap().starts_with("fp_"));
}

#[tokio::test]
async fn small_response_is_sent_whole_only_after_the_event_is_accepted() {
    let upstream = start_upstream().await;
    let slow_sink = CollectingSink {
        delay: Some(Duration::from_millis(300)),
        ..CollectingSink::default()
    };
    let (gateway, sink) = start_gateway_with_sink(upstream, slow_sink, |_| {}).await;
    let mut stream = tokio::net::TcpStream::connect(gateway).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /bytes/1000 HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    // The first read already holds the head and the whole body: one write, after the event.
    let mut buffer = vec![0u8; 8192];
    let mut read = stream.read(&mut buffer).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(sink.events.lock().unwrap().len(), 1);
    while let Ok(more) = stream.read(&mut buffer[read..]).await {
        if more == 0 {
            break;
        }
        read += more;
    }
    let text = String::from_utf8_lossy(&buffer[..read]);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body.len(), 1000);
    let event = &sink.events.lock().unwrap()[0];
    assert_eq!(event.response_bytes, 1000);
    assert_eq!(event.outcome.as_deref(), Some("success"));
}

#[tokio::test]
async fn upstream_cutting_a_small_body_short_gives_502() {
    // An upstream that promises 100 bytes, sends 3 and closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = vec![0u8; 4096];
            let _ = socket.read(&mut request).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc")
                .await;
        }
    });
    let (gateway, sink) = start_gateway(upstream, |_| {}).await;
    let (status, _, body) = send(&http1_client(), get(gateway, "/").body(empty()).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("upstream_body"), "{body}");
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.status_code, Some(502));
    assert_eq!(event.error_type.as_deref(), Some("upstream_body"));
}

/// Blocks 203.0.113.9 and the user `mallory`, throttles 198.51.100.1.
struct TestEnforcer;

impl apiwatch_gateway::Enforcer for TestEnforcer {
    fn check(
        &self,
        client: std::net::IpAddr,
        _key_fingerprint: Option<&str>,
        user: Option<&str>,
    ) -> apiwatch_gateway::Enforcement {
        use apiwatch_gateway::Enforcement;
        if client.to_string() == "203.0.113.9" || user == Some("mallory") {
            Enforcement::Block {
                decision_id: "d-block".to_owned(),
                reason: "brute force".to_owned(),
            }
        } else if client.to_string() == "198.51.100.1" {
            Enforcement::Throttle {
                decision_id: "d-throttle".to_owned(),
                retry_after: Duration::from_millis(1500),
            }
        } else {
            Enforcement::Allow
        }
    }
}

#[tokio::test]
async fn decisions_block_with_403_and_throttle_with_429_before_forwarding() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway_full(
        upstream,
        CollectingSink::default(),
        Some(std::sync::Arc::new(TestEnforcer)),
        |settings| settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()],
    )
    .await;
    let client = http1_client();
    let from = |ip: &str| {
        get(gateway, "/api/things")
            .header("x-forwarded-for", ip)
            .body(empty())
            .unwrap()
    };
    let (status, headers, body) = send(&client, from("203.0.113.9")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "blocked");
    assert!(json["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(headers.get("x-request-id").is_some());

    let (status, headers, _) = send(&client, from("198.51.100.1")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers.get("retry-after").unwrap(), "2");

    let (status, _, _) = send(&client, from("192.0.2.50")).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, _) = send(
        &client,
        get(gateway, "/api/things")
            .header("x-forwarded-for", "192.0.2.51")
            .header("authorization", "Basic bWFsbG9yeTpzZWNyZXQ=")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "blocked by user name");

    let events = sink.wait_for(4).await;
    let blocked = events
        .iter()
        .find(|event| event.source_ip.as_deref() == Some("203.0.113.9"))
        .unwrap();
    assert_eq!(blocked.status_code, Some(403));
    assert_eq!(blocked.error_type.as_deref(), Some("blocked"));
    assert_eq!(blocked.labels["decision.id"], "d-block");
    assert!(blocked.upstream_address.is_none(), "never forwarded");
    let throttled = events
        .iter()
        .find(|event| event.source_ip.as_deref() == Some("198.51.100.1"))
        .unwrap();
    assert_eq!(throttled.status_code, Some(429));
    assert_eq!(throttled.error_type.as_deref(), Some("throttled"));
}

/// Records the name of the thread each event was emitted on.
#[derive(Clone, Default)]
struct ThreadSink(std::sync::Arc<std::sync::Mutex<Vec<(String, apiwatch_event::Event)>>>);

impl apiwatch_gateway::EventSink for ThreadSink {
    fn emit(
        &self,
        event: apiwatch_event::Event,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        self.0.lock().unwrap().push((thread, event));
        Box::pin(async {})
    }
}

#[tokio::test]
async fn serving_threads_share_connections_record_every_request_and_stop() {
    let upstream = start_upstream().await;
    let sink = ThreadSink::default();
    let Threaded {
        addr,
        stop,
        served: serving,
        ..
    } = start_threaded(upstream, 2, std::sync::Arc::new(sink.clone())).await;
    // 32 connections of 5 requests each, all at once.
    let mut clients = Vec::new();
    for connection in 0..32 {
        clients.push(tokio::spawn(async move {
            let client = http1_client();
            for request in 0..5 {
                let id = format!("c{connection}-r{request}");
                let (status, headers, _) = send(
                    &client,
                    get(addr, &format!("/items/{connection}"))
                        .header("x-request-id", &id)
                        .body(empty())
                        .unwrap(),
                )
                .await;
                assert_eq!(status, StatusCode::OK);
                assert_eq!(headers["x-request-id"], id.as_str());
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let recorded = sink.0.lock().unwrap().clone();
    assert_eq!(recorded.len(), 160);
    let mut ids: Vec<String> = recorded
        .iter()
        .map(|(_, event)| event.request_id.clone().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 160, "every request exactly once");
    assert!(
        recorded
            .iter()
            .all(|(thread, _)| thread.starts_with("apiwatch-gw-")),
        "events emitted on the serving threads: {:?}",
        recorded
            .iter()
            .map(|(thread, _)| thread)
            .collect::<Vec<_>>()
    );
    // Connections that arrive together are spread over the threads (each one's pool keeps
    // its connection for its five requests).
    for thread in ["apiwatch-gw-0", "apiwatch-gw-1"] {
        let served = recorded.iter().filter(|(name, _)| name == thread).count();
        assert!(served >= 40, "{thread} served {served} of 160 requests");
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), serving)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed once serve returns"
    );
}

/// An upstream that takes one request and holds it: `reached` fires once the request's head
/// has arrived; it answers `200 ok` only when `answer` is sent (never if it is dropped), then
/// keeps the connection open until the gateway closes it.
struct HeldUpstream {
    addr: std::net::SocketAddr,
    reached: tokio::sync::oneshot::Receiver<()>,
    answer: tokio::sync::oneshot::Sender<()>,
}

/// Sends `request` as it is to the gateway at `addr`, and waits until the held upstream has
/// it; returns the client's connection.
async fn held_request(
    addr: std::net::SocketAddr,
    request: &[u8],
    reached: tokio::sync::oneshot::Receiver<()>,
) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), reached)
        .await
        .expect("the request reached the upstream")
        .unwrap();
    stream
}

async fn held_upstream() -> HeldUpstream {
    let held = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = held.local_addr().unwrap();
    let (got, reached) = tokio::sync::oneshot::channel::<()>();
    let (answer, answer_now) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut conn, _) = held.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::io::AsyncReadExt::read(&mut conn, &mut buf)
                .await
                .unwrap();
            assert!(n > 0, "the gateway closed before sending the whole request");
            request.extend_from_slice(&buf[..n]);
        }
        let _ = got.send(());
        if answer_now.await.is_ok() {
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
        }
        let _ = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await;
    });
    HeldUpstream {
        addr,
        reached,
        answer,
    }
}

#[tokio::test]
async fn a_shutdown_keeps_the_events_of_clients_that_already_left() {
    // Serving threads have runtimes of their own; the emission of a request whose client
    // left is a task on that runtime, which must run to its end before the runtime goes.

    // An upstream that reads a request, says so, and never answers (`answer` is dropped).
    let HeldUpstream {
        addr: upstream,
        reached,
        ..
    } = held_upstream().await;
    let sink = CollectingSink {
        // Far longer than the steps below take: the emission is still running at the stop.
        delay: Some(Duration::from_secs(2)),
        ..CollectingSink::default()
    };
    let Threaded {
        addr, stop, served, ..
    } = start_threaded(upstream, 2, std::sync::Arc::new(sink.clone())).await;

    let stream = held_request(addr, b"GET /held HTTP/1.1\r\nhost: test\r\n\r\n", reached).await;
    // Once the upstream has the request (it never answers), the client leaves.
    drop(stream);
    // The gateway notices the client is gone and hands the event to the (slow) sink.
    for _ in 0..1000 {
        if sink.emitted.load(std::sync::atomic::Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        sink.emitted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the gateway handed the abandoned request's event to the sink"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), served)
        .await
        .expect("the gateway stops within its drain time")
        .unwrap()
        .unwrap();
    let events = sink.events.lock().unwrap().clone();
    assert_eq!(
        events.len(),
        1,
        "the event of the client that left was kept"
    );
    assert_eq!(events[0].error_type.as_deref(), Some("client_disconnect"));
}

#[tokio::test]
async fn readiness_goes_at_the_stop_while_requests_still_drain() {
    // An upstream that reads a request, says so, and answers only when told.
    let HeldUpstream {
        addr: upstream,
        reached,
        answer,
    } = held_upstream().await;
    let sink = CollectingSink::default();
    let Threaded {
        addr,
        stop,
        served,
        ready,
        ..
    } = start_threaded(upstream, 2, std::sync::Arc::new(sink.clone())).await;
    assert!(ready.load(std::sync::atomic::Ordering::SeqCst));

    let mut stream = held_request(
        addr,
        b"GET /slow HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n",
        reached,
    )
    .await;
    assert!(
        ready.load(std::sync::atomic::Ordering::SeqCst),
        "ready while serving"
    );

    // Asked to stop with a request in flight: readiness goes at once, before the drain ends.
    stop.send(()).unwrap();
    let mut cleared = false;
    for _ in 0..500 {
        if !ready.load(std::sync::atomic::Ordering::SeqCst) {
            cleared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cleared, "readiness was cleared at the stop");
    assert!(
        !served.is_finished(),
        "the gateway is still draining the request in flight"
    );

    // The request in flight still gets its answer, then the gateway ends.
    answer.send(()).unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response),
    )
    .await
    .expect("the drained request is answered")
    .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");
    tokio::time::timeout(Duration::from_secs(15), served)
        .await
        .expect("the gateway stops within its drain time")
        .unwrap()
        .unwrap();
    assert_eq!(sink.events.lock().unwrap().len(), 1);
    assert!(!ready.load(std::sync::atomic::Ordering::SeqCst));
}

/// A test upstream that counts the TCP connections it accepts; it answers a path ending in
/// `/status/N` with status N, anything else with `200 ok` (HTTP/1.1 keep-alive).
struct CountingUpstream {
    addr: std::net::SocketAddr,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingUpstream {
    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn counting_upstream() -> CountingUpstream {
    counting_upstream_on("127.0.0.1:0").await
}

async fn counting_upstream_on(address: &str) -> CountingUpstream {
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let service =
                hyper::service::service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let status = request
                        .uri()
                        .path()
                        .rsplit_once("/status/")
                        .and_then(|(_, code)| code.parse::<u16>().ok())
                        .and_then(|code| StatusCode::from_u16(code).ok())
                        .unwrap_or(StatusCode::OK);
                    let mut response = http::Response::new(full("ok"));
                    *response.status_mut() = status;
                    Ok::<_, std::convert::Infallible>(response)
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    CountingUpstream { addr, accepted }
}

#[tokio::test]
async fn sequential_requests_reuse_one_pooled_upstream_connection() {
    let upstream = counting_upstream().await;
    let (gateway, sink) = start_gateway(upstream.addr, |_| {}).await;
    // Five requests over one client connection...
    let client = http1_client();
    for request in 0..5 {
        let (status, _, body) = send(
            &client,
            get(gateway, &format!("/items/{request}"))
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok");
    }
    // ...then three more, each over a client connection of its own.
    for request in 0..3 {
        let (status, _, _) = send(
            &http1_client(),
            get(gateway, &format!("/fresh/{request}"))
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let events = sink.wait_for(8).await;
    assert!(events.iter().all(|event| event.status_code == Some(200)));
    assert_eq!(
        upstream.accepted(),
        1,
        "every request went over the one pooled upstream connection"
    );
}

#[tokio::test]
async fn auth_failure_statuses_default_to_401_and_403_and_are_set_per_route() {
    let upstream = counting_upstream().await;
    let (gateway, sink) = start_gateway(upstream.addr, |settings| {
        let mut teapot = settings.routes[0].clone();
        teapot.path_prefix = "/teapot".into();
        teapot.service_name = "teapot".into();
        teapot.auth_failure_statuses = vec![418];
        settings.routes.push(teapot);
    })
    .await;
    let client = http1_client();
    // (path, status the upstream answers); every request carries a credential.
    let cases = [
        ("/status/403", 403),
        ("/status/401", 401),
        ("/status/418", 418),
        ("/teapot/status/403", 403),
        ("/teapot/status/401", 401),
        ("/teapot/status/418", 418),
    ];
    for (path, expected) in cases {
        let request = get(gateway, path)
            .header("authorization", "Basic YWxpY2U6c2VjcmV0")
            .body(empty())
            .unwrap();
        assert_eq!(send(&client, request).await.0.as_u16(), expected, "{path}");
    }
    // Without a credential, a status that is not listed is no authentication at all.
    let (status, _, _) = send(
        &client,
        get(gateway, "/teapot/status/403").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let events = sink.wait_for(7).await;
    let outcomes: Vec<_> = events
        .iter()
        .map(|event| {
            (
                event.url_path.clone().unwrap(),
                event.status_code.unwrap(),
                event.auth_outcome,
            )
        })
        .collect();
    let expected = [
        ("/status/403", 403, AuthOutcome::Failure),
        ("/status/401", 401, AuthOutcome::Failure),
        ("/status/418", 418, AuthOutcome::Success),
        ("/teapot/status/403", 403, AuthOutcome::Success),
        ("/teapot/status/401", 401, AuthOutcome::Success),
        ("/teapot/status/418", 418, AuthOutcome::Failure),
        ("/teapot/status/403", 403, AuthOutcome::None),
    ]
    .map(|(path, status, outcome)| (path.to_owned(), status, outcome));
    assert_eq!(outcomes, expected);
    assert_eq!(events[5].service_name.as_deref(), Some("teapot"));
}

/// An upstream that answers every request with `response` (raw bytes) and closes.
async fn raw_upstream(response: &'static [u8]) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = socket.write_all(response).await;
        }
    });
    addr
}

#[tokio::test]
async fn hop_by_hop_response_headers_and_those_named_in_connection_are_not_passed_on() {
    let upstream = raw_upstream(
        b"HTTP/1.1 200 OK\r\n\
          Connection: x-private, close\r\n\
          Connection: x-also-private\r\n\
          X-Private: secret-hop\r\n\
          X-Also-Private: another-hop\r\n\
          Keep-Alive: timeout=5, max=100\r\n\
          Proxy-Connection: keep-alive\r\n\
          Proxy-Authenticate: Basic realm=\"upstream\"\r\n\
          Trailer: x-checksum\r\n\
          Upgrade: h2c\r\n\
          Transfer-Encoding: gzip, chunked\r\n\
          X-End-To-End: kept\r\n\
          Cache-Control: no-store\r\n\
          Content-Type: text/plain\r\n\
          \r\n\
          5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let (gateway, sink) = start_gateway(upstream, |_| {}).await;
    let (status, headers, body) =
        send(&http1_client(), get(gateway, "/hop").body(empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "hello");
    for name in [
        "x-private",
        "x-also-private",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "trailer",
        "upgrade",
    ] {
        assert!(
            headers.get(name).is_none(),
            "{name} was passed on: {headers:?}"
        );
    }
    // The gateway frames the response itself: no connection option or transfer coding of the
    // upstream's reaches the client.
    for value in headers.get_all("connection") {
        assert!(!value.to_str().unwrap().contains("private"), "{headers:?}");
    }
    for value in headers.get_all("transfer-encoding") {
        assert_eq!(value, "chunked", "{headers:?}");
    }
    assert_eq!(headers["x-end-to-end"], "kept");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["content-type"], "text/plain");
    assert!(headers.contains_key("x-request-id"));
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.status_code, Some(200));
    assert_eq!(event.response_bytes, 5);
    assert_eq!(event.response_mime_type.as_deref(), Some("text/plain"));
}

/// The client's connection keeps the client's HTTP version: an HTTP/1.0 upstream (which closes
/// after each answer) must not turn a client's keep-alive HTTP/1.1 connection into HTTP/1.0.
#[tokio::test]
async fn an_http_1_0_upstream_answer_reaches_an_http_1_1_client_as_http_1_1_on_a_kept_connection() {
    let upstream =
        raw_upstream(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
            .await;
    let (gateway, sink) = start_gateway(upstream, |_| {}).await;
    let mut stream = tokio::net::TcpStream::connect(gateway).await.unwrap();
    for round in 0..2 {
        let request = format!("GET /old/{round} HTTP/1.1\r\nhost: test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !answer.ends_with(b"\r\n\r\nok") {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .expect("an answer on the kept connection")
                .unwrap();
            assert!(
                n > 0,
                "round {round}: the gateway closed the client's connection"
            );
            answer.extend_from_slice(&buf[..n]);
        }
        let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 200 ok\r\n"), "{answer}");
        assert!(!answer.contains("connection: close"), "{answer}");
    }
    let events = sink.wait_for(2).await;
    assert!(events.iter().all(|event| event.status_code == Some(200)));
}

/// Sends raw `request` bytes to `gateway` and returns what came back before it closed (a
/// write or read cut short by the gateway closing is not an error here).
async fn raw_exchange(gateway: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(gateway).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the gateway answered and closed")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn request_head_past_the_read_buffer_is_refused_with_431_and_recorded() {
    let upstream = counting_upstream().await;
    // Read buffer: the header limit plus 16 KiB, so a 40 KB header is past hyper's buffer.
    let (gateway, sink) = start_gateway(upstream.addr, |settings| {
        settings.limits.max_header_bytes = 2048
    })
    .await;
    let request = format!(
        "GET /huge HTTP/1.1\r\nhost: test\r\nconnection: close\r\nx-huge: {}\r\n\r\n",
        "h".repeat(40_000)
    );
    let response = raw_exchange(gateway, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.status_code, Some(431));
    assert_eq!(event.error_type.as_deref(), Some("headers_too_large"));
    assert_eq!(event.source_ip.as_deref(), Some("127.0.0.1"));
    let message = event.error_message.as_deref().unwrap();
    assert!(
        message.contains("larger than the 18432 byte read buffer"),
        "{message}"
    );
    assert_eq!(upstream.accepted(), 0, "never forwarded");
}

/// Requests refused before they were parsed whole are counted by status class like every
/// other request, besides being recorded.
#[tokio::test]
async fn requests_refused_while_parsing_are_counted_by_status_class() {
    let upstream = counting_upstream().await;
    let sink = std::sync::Arc::new(CollectingSink::default());
    let threaded = start_threaded(upstream.addr, 1, sink.clone()).await;
    let huge = format!(
        "GET /huge HTTP/1.1\r\nhost: test\r\nx-huge: {}\r\n\r\n",
        "h".repeat(300_000)
    );
    let response = raw_exchange(threaded.addr, huge.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    let response = raw_exchange(threaded.addr, b"GET /a b c HTTP/1.1\r\nhost: test\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    let events = sink.wait_for(2).await;
    let mut statuses: Vec<_> = events.iter().map(|event| event.status_code).collect();
    statuses.sort();
    assert_eq!(statuses, [Some(400), Some(431)]);
    // Both refused by the HTTP parser, before any handler ran.
    let mut kinds: Vec<_> = events.iter().map(|e| e.error_type.clone()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            Some("headers_too_large".to_owned()),
            Some("malformed_request".to_owned())
        ]
    );
    let counted = threaded
        .metrics
        .requests
        .get_or_create(&apiwatch_gateway::StatusClassLabel {
            status_class: "4xx",
        })
        .get();
    assert_eq!(counted, 2);
    assert_eq!(upstream.accepted(), 0, "never forwarded");
}

#[tokio::test]
async fn request_with_more_than_100_header_fields_is_refused_with_431_and_recorded() {
    let upstream = counting_upstream().await;
    let (gateway, sink) = start_gateway(upstream.addr, |_| {}).await;
    // Small in bytes (well under the header limit), but one field over hyper's 100.
    let fields: String = (0..101).map(|n| format!("x-field-{n}: {n}\r\n")).collect();
    let request = format!("GET /many HTTP/1.1\r\nhost: test\r\nconnection: close\r\n{fields}\r\n");
    let response = raw_exchange(gateway, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.status_code, Some(431));
    assert_eq!(event.error_type.as_deref(), Some("headers_too_large"));
    let message = event.error_message.as_deref().unwrap();
    assert!(message.contains("more than 100 header fields"), "{message}");
    assert_eq!(upstream.accepted(), 0, "never forwarded");
}

/// A JSON body with a password and a long tail.
fn login_body() -> String {
    format!(
        r#"{{"username":"alice","password":"hunter2-secret","note":"{}END"}}"#,
        "a".repeat(500)
    )
}

#[tokio::test]
async fn request_bodies_are_not_captured_by_default() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway(upstream, |_| {}).await;
    let body = login_body();
    let request = Request::post(format!("http://{gateway}/upload"))
        .header("content-type", "application/json")
        .body(body_of(body.clone()))
        .unwrap();
    let (status, _, answer) = send(&http1_client(), request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, body.len().to_string(), "the upstream got the body");
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.request_bytes, body.len() as u64);
    assert_eq!(event.request_body, None);
    let json = String::from_utf8(event.to_json()).unwrap();
    assert!(!json.contains("http.request.body.content"), "{json}");
    assert!(!json.contains("alice"), "{json}");
    assert!(!json.contains("hunter2"), "{json}");
}

#[tokio::test]
async fn captured_request_body_is_cut_to_the_cap_with_secrets_redacted() {
    let upstream = start_upstream().await;
    let (gateway, sink) = start_gateway(upstream, |settings| {
        settings.capture_body = true;
        settings.capture_body_max_bytes = 80;
    })
    .await;
    let body = login_body();
    let request = Request::post(format!("http://{gateway}/upload"))
        .header("content-type", "application/json")
        .body(body_of(body.clone()))
        .unwrap();
    let (status, _, answer) = send(&http1_client(), request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        body.len().to_string(),
        "the upstream got the whole body"
    );
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.request_bytes, body.len() as u64);
    let captured = event
        .request_body
        .as_deref()
        .expect("the body was captured");
    assert!(captured.len() <= 80, "{} bytes: {captured}", captured.len());
    assert!(
        captured.starts_with(r#"{"username":"alice","password":"[REDACTED]","note":"aaa"#),
        "{captured}"
    );
    assert!(!captured.contains("END"), "past the cap: {captured}");
    let json = String::from_utf8(event.to_json()).unwrap();
    assert!(!json.contains("hunter2"), "{json}");
}

#[tokio::test]
async fn card_number_cut_by_the_capture_cap_is_not_recorded() {
    let upstream = start_upstream().await;
    let note = "note=pay with ";
    let (gateway, sink) = start_gateway(upstream, |settings| {
        settings.capture_body = true;
        // The cap falls after the third group of the card number: 12 digits, too few to be
        // recognised as a card, but most of one.
        settings.capture_body_max_bytes = note.len() + "4111 1111 1111".len();
    })
    .await;
    let body = format!("{note}4111 1111 1111 1111 thanks");
    let request = Request::post(format!("http://{gateway}/upload"))
        .header("content-type", "text/plain")
        .body(body_of(body.clone()))
        .unwrap();
    assert_eq!(send(&http1_client(), request).await.0, StatusCode::OK);
    let event = &sink.wait_for(1).await[0];
    assert_eq!(event.request_bytes, body.len() as u64);
    let captured = event.request_body.as_deref().unwrap();
    assert_eq!(captured, note, "the possibly cut card number is dropped");
    let json = String::from_utf8(event.to_json()).unwrap();
    assert!(!json.contains("4111 1111"), "{json}");
}

/// Blocks the API key whose fingerprint it holds, whatever the address or user.
struct KeyEnforcer {
    blocked_fingerprint: String,
}

impl apiwatch_gateway::Enforcer for KeyEnforcer {
    fn check(
        &self,
        _client: std::net::IpAddr,
        key_fingerprint: Option<&str>,
        _user: Option<&str>,
    ) -> apiwatch_gateway::Enforcement {
        if key_fingerprint == Some(self.blocked_fingerprint.as_str()) {
            apiwatch_gateway::Enforcement::Block {
                decision_id: "d-key".to_owned(),
                reason: "leaked key".to_owned(),
            }
        } else {
            apiwatch_gateway::Enforcement::Allow
        }
    }
}

#[tokio::test]
async fn a_decision_on_a_key_fingerprint_refuses_that_key_wherever_it_is_carried_and_passes_others()
{
    let upstream = start_upstream().await;
    // The gateway of `common` fingerprints with the key [7; 32].
    let fingerprinter = apiwatch_event::identity::Fingerprinter::new([7; 32]);
    let blocked_fingerprint = fingerprinter.fingerprint(b"leaked-key-1");
    let (gateway, sink) = start_gateway_full(
        upstream,
        CollectingSink::default(),
        Some(std::sync::Arc::new(KeyEnforcer {
            blocked_fingerprint: blocked_fingerprint.clone(),
        })),
        |_| {},
    )
    .await;
    let client = http1_client();
    let with_header = |name: &str, value: &str| {
        get(gateway, "/api/things")
            .header(name, value)
            .body(empty())
            .unwrap()
    };
    for (name, value) in [
        ("x-api-key", "leaked-key-1"),
        ("api-key", "leaked-key-1"),
        ("authorization", "Bearer leaked-key-1"),
    ] {
        let (status, _, body) = send(&client, with_header(name, value)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "blocked");
    }
    let (status, _, _) = send(
        &client,
        get(gateway, "/api/things?api_key=leaked-key-1")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "key in the query string");
    let (status, _, _) = send(&client, with_header("x-api-key", "another-key")).await;
    assert_eq!(status, StatusCode::OK, "another key passes");
    let (status, _, _) = send(&client, get(gateway, "/api/things").body(empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "no key passes");

    let events = sink.wait_for(6).await;
    let refused: Vec<_> = events
        .iter()
        .filter(|event| event.status_code == Some(403))
        .collect();
    assert_eq!(refused.len(), 4);
    for event in refused {
        assert_eq!(
            event.key_fingerprint.as_deref(),
            Some(blocked_fingerprint.as_str())
        );
        assert_eq!(event.labels["decision.id"], "d-key");
        assert!(event.upstream_address.is_none(), "never forwarded");
    }
    let json = events
        .iter()
        .map(|event| String::from_utf8(event.to_json()).unwrap())
        .collect::<String>();
    assert!(!json.contains("leaked-key-1"), "the key itself is recorded");
}
