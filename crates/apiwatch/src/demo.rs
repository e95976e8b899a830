//! `apiwatch demo`: a small built-in API, the gateway in front of it, and a traffic generator
//! with attacks mixed into ordinary use, so a first-time user sees apiwatch at work.
//!
//! Traffic comes from loopback but carries `X-Forwarded-For` with documentation addresses
//! (RFC 5737), and the demo trusts loopback as a proxy, so every simulated client shows up
//! under its own address. Nothing leaves 127.0.0.1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{self, Overrides};

/// Flags of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Gateway listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Admin API listen address.
    #[arg(long, default_value = "127.0.0.1:9600")]
    admin: String,
    /// Data directory.
    #[arg(long, default_value = "./apiwatch-data")]
    data: PathBuf,
    /// Stop after this long (e.g. "30s"); runs until Ctrl-C when absent.
    #[arg(long)]
    duration: Option<humantime::Duration>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("failed to start the demo api")?;
    let api_addr = api_listener.local_addr()?;
    tokio::spawn(async move { axum::serve(api_listener, demo_api()).await });

    let overrides = Overrides {
        upstream: Some(format!("http://{api_addr}")),
        listen: Some(args.listen.clone()),
        admin: Some(args.admin.clone()),
        data_dir: Some(args.data.clone()),
        trusted_proxies: vec!["127.0.0.1/32".to_owned(), "::1/128".to_owned()],
        ..Overrides::default()
    };
    let mut settings = match config::load(None, &overrides) {
        Ok(settings) => settings,
        Err(problems) => {
            for problem in problems {
                eprintln!("demo: {problem}");
            }
            return Ok(ExitCode::from(crate::cli::EXIT_ERROR));
        }
    };
    settings.gateway.route_templates = vec!["/api/users/{id}".to_owned()];
    // Alerts go to a pager built into the demo API, which prints them; reminders every minute
    // until someone acknowledges (apiwatch alerts ack <id>).
    settings.alerts.receivers = vec![apiwatch_respond::Receiver {
        name: "demo-pager".to_owned(),
        kind: apiwatch_respond::ReceiverKind::Webhook {
            url: format!("http://{api_addr}/demo/pager"),
            secret: None,
        },
    }];
    let mut pager_route = apiwatch_respond::Route::to_all(vec!["demo-pager".to_owned()]);
    pager_route.repeat_interval = time::Duration::minutes(1);
    pager_route.resolve_after = time::Duration::minutes(5);
    settings.alerts.routing = apiwatch_respond::Routing::new(Vec::new(), pager_route);
    let data = settings.data_dir.clone();
    let running = crate::topology::start(settings).await?;
    let key = apiwatch_journal::load_verifying_key(&data)
        .map(|key| apiwatch_journal::public_key_string(&key))?;
    print_banner(
        api_addr,
        running.gateway_addr,
        running.admin_addr,
        &data,
        &key,
    );

    let generator = tokio::spawn(generate_traffic(running.gateway_addr));
    let traffic = generator.abort_handle();
    let stop = async move {
        match args.duration {
            Some(duration) => tokio::time::sleep(duration.into()).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        traffic.abort();
    };
    let result = running.run_until(stop).await;
    generator.abort();
    result?;
    println!(
        "\ndemo stopped; the journal stays in {} (try: apiwatch verify --data {0})",
        data.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_banner(
    api: SocketAddr,
    gateway: SocketAddr,
    admin: SocketAddr,
    data: &std::path::Path,
    key: &str,
) {
    let data = data.display();
    println!(
        "apiwatch demo\n\
         \x20 demo API (upstream)   http://{api}\n\
         \x20 gateway (send here)   http://{gateway}   e.g. curl -i http://{gateway}/api/products\n\
         \x20 metrics               curl -H 'Authorization: Bearer aw_...' http://{admin}/metrics\n\
         \x20 journal               {data}   public key {key}\n\
         \n\
         Traffic: ordinary users, plus a brute-force run, credential stuffing, a scanner,\n\
         injection probes, id enumeration and a careless client sending a card number.\n\
         Where to look, in another terminal:\n\
         \x20 apiwatch tail -f --pretty --data {data}     every request as it happens\n\
         \x20 apiwatch search 'ip=203.0.113.66 status=401' --data {data}   the brute-force client\n\
         \x20 apiwatch sql \"SELECT source_ip, count(*) FROM events GROUP BY source_ip\" --data {data}\n\
         \x20 apiwatch findings --since 1h --data {data}   what the detection rules caught\n\
         \x20 apiwatch alerts list --admin {admin} --token aw_...   alerts (token printed above)\n\
         \x20 apiwatch decisions list --admin {admin} --token aw_...   who is blocked\n\
         \x20 apiwatch verify --data {data}               the journal is intact and signed\n\
         Stop with Ctrl-C.\n"
    );
}

/// The demo's pager: prints each alert notification it receives.
async fn pager(Json(body): Json<serde_json::Value>) -> StatusCode {
    let alert = &body["alert"];
    println!(
        "[alert] {reason}: {rule} ({severity}) {key} -- {summary}\n        take it: apiwatch alerts ack {id} --token <the admin token>",
        reason = body["reason"].as_str().unwrap_or("?"),
        rule = alert["rule_name"].as_str().unwrap_or("?"),
        severity = alert["severity"].as_str().unwrap_or("?"),
        key = alert["key_value"].as_str().unwrap_or("?"),
        summary = alert["summary"].as_str().unwrap_or(""),
        id = alert["id"].as_str().unwrap_or("?"),
    );
    StatusCode::OK
}

/// The built-in API: a login, users, products and payments.
fn demo_api() -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/demo/pager", post(pager))
        .route("/api/login", post(login))
        .route("/api/users/{id}", get(user))
        .route(
            "/api/products",
            get(|| async {
                Json(serde_json::json!([{"id": 1, "name": "lamp"}, {"id": 2, "name": "chair"}]))
            }),
        )
        .route(
            "/api/payments",
            post(|| async {
                (
                    StatusCode::CREATED,
                    Json(serde_json::json!({"status": "accepted"})),
                )
            }),
        )
}

async fn login(Json(body): Json<serde_json::Value>) -> (StatusCode, Json<serde_json::Value>) {
    let user = body["username"].as_str().unwrap_or_default();
    if body["password"] == "correct-horse" && !user.is_empty() {
        (
            StatusCode::OK,
            Json(serde_json::json!({"token": format!("demo-token-{user}")})),
        )
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "invalid credentials"})),
        )
    }
}

async fn user(Path(id): Path<String>, headers: HeaderMap) -> (StatusCode, Json<serde_json::Value>) {
    let authorised = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("Bearer demo-token-"));
    if !authorised {
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "missing token"})),
        );
    }
    match id.parse::<u32>() {
        Ok(number) if (1..=100).contains(&number) => (
            StatusCode::OK,
            Json(serde_json::json!({"id": number, "name": format!("user{number}")})),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "no such user"})),
        ),
    }
}

struct Generator {
    client: Client<HttpConnector, Full<Bytes>>,
    gateway: SocketAddr,
}

impl Generator {
    async fn send(
        &self,
        from: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> u16 {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.gateway))
            .header("x-forwarded-for", from)
            .header("user-agent", "demo-app/1.4 (iPhone)");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let Ok(request) = request.body(Full::new(Bytes::from(body.unwrap_or_default()))) else {
            return 0;
        };
        match self.client.request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.into_body().collect().await;
                status
            }
            Err(_) => 0,
        }
    }
}

/// Rounds of ordinary traffic, with one attack per round, forever (until aborted).
async fn generate_traffic(gateway: SocketAddr) {
    let generator = Generator {
        client: Client::builder(TokioExecutor::new()).build_http(),
        gateway,
    };
    let pause = || tokio::time::sleep(Duration::from_millis(40));
    for round in 0u64.. {
        for user in 0..12u32 {
            let from = format!("198.51.100.{}", 10 + user);
            let token = format!("Bearer demo-token-user{user}");
            generator
                .send(&from, "GET", "/api/products?page=1", &[], None)
                .await;
            let path = format!("/api/users/{}", 1 + (user * 7 + round as u32) % 100);
            generator
                .send(&from, "GET", &path, &[("authorization", &token)], None)
                .await;
            pause().await;
        }
        let login = |user: &str, password: &str| {
            Some(format!(
                "{{\"username\":\"{user}\",\"password\":\"{password}\"}}"
            ))
        };
        match round % 6 {
            0 => {
                println!(
                    "[attack] brute force: 30 passwords for admin on /api/login from 203.0.113.66"
                );
                let mut blocked = 0;
                for attempt in 0..30 {
                    let status = generator
                        .send(
                            "203.0.113.66",
                            "POST",
                            "/api/login",
                            &[],
                            login("admin", &format!("guess{attempt}")),
                        )
                        .await;
                    if status == 403 {
                        blocked += 1;
                    }
                }
                if blocked > 0 {
                    println!(
                        "[respond] 203.0.113.66 is blocked: {blocked} of its 30 attempts got 403 from the gateway (apiwatch decisions list)"
                    );
                }
            }
            1 => {
                println!("[attack] credential stuffing: 25 usernames from 203.0.113.77");
                for victim in 0..25 {
                    generator
                        .send(
                            "203.0.113.77",
                            "POST",
                            "/api/login",
                            &[],
                            login(&format!("victim{victim}@example.com"), "Summer2024!"),
                        )
                        .await;
                }
            }
            2 => {
                println!(
                    "[attack] scanner probing /.env, /.git/config, /wp-login.php... from 192.0.2.13"
                );
                for path in [
                    "/.env",
                    "/.git/config",
                    "/wp-login.php",
                    "/backup.zip",
                    "/admin/config.php",
                    "/server-status",
                ] {
                    generator
                        .send(
                            "192.0.2.13",
                            "GET",
                            path,
                            &[("user-agent", "Nikto/2.5.0")],
                            None,
                        )
                        .await;
                }
            }
            3 => {
                println!("[attack] injection probes from 192.0.2.44");
                for query in [
                    "q=%27%20OR%20%271%27%3D%271",
                    "q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                    "file=..%2F..%2Fetc%2Fpasswd",
                ] {
                    generator
                        .send(
                            "192.0.2.44",
                            "GET",
                            &format!("/api/products?{query}"),
                            &[("user-agent", "sqlmap/1.7.2")],
                            None,
                        )
                        .await;
                }
            }
            4 => {
                println!("[attack] object-id enumeration /api/users/1..150 from 203.0.113.90");
                for id in 1..150 {
                    generator
                        .send(
                            "203.0.113.90",
                            "GET",
                            &format!("/api/users/{id}"),
                            &[("authorization", "Bearer demo-token-mallory")],
                            None,
                        )
                        .await;
                }
            }
            _ => {
                println!(
                    "[careless] a client sends a card number and a password in the URL (redacted in the journal)"
                );
                generator
                    .send(
                        "198.51.100.99",
                        "POST",
                        "/api/payments?card=4111111111111111&password=hunter2",
                        &[("cookie", "session=s3cr3t")],
                        Some("{\"card\":\"4111 1111 1111 1111\"}".to_owned()),
                    )
                    .await;
                generator
                    .send(
                        "198.51.100.10",
                        "POST",
                        "/api/login",
                        &[],
                        login("user0", "correct-horse"),
                    )
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
