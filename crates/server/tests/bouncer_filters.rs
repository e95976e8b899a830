//! The bouncer API's filters (`scopes`, `origins`, `scenarios_containing`,
//! `scenarios_not_containing`) over a real decisions table, served on 127.0.0.1 and asked over
//! raw HTTP, as a CrowdSec bouncer configured with those options would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use apiwatch_respond::{Action, Decision, DecisionTable, Scope};
use apiwatch_server::{AdminState, bouncer};
use prometheus_client::registry::Registry;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Served {
    admin: SocketAddr,
    key: String,
    table: DecisionTable,
    _dir: tempfile::TempDir,
}

fn decision(scope: &str, origin: &str) -> Decision {
    Decision::new(
        Action::Block,
        Scope::parse(scope).unwrap(),
        "test",
        origin,
        OffsetDateTime::now_utc(),
        Duration::from_secs(3600),
    )
}

/// A table holding one block per scope kind and several origins, served with a bouncer key.
async fn serve_decisions() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (table, _) = DecisionTable::open(&dir.path().join("decisions.jsonl")).unwrap();
    for (scope, origin) in [
        ("192.0.2.1", "auth.brute-force"),
        ("192.0.2.2", "scan.known-paths"),
        ("198.51.100.0/24", "Scan.Range-Sweep"),
        ("user:mallory", "auth.credential-stuffing"),
        ("key:fp_0123456789abcdef", "abuse.flood-per-key"),
        ("192.0.2.3", "manual:admin"),
    ] {
        table.add(decision(scope, origin)).unwrap();
    }
    let key = bouncer::add(dir.path(), "fw").unwrap();
    let state = AdminState::new(Registry::default(), Arc::new(AtomicBool::new(true)))
        .with_bouncers(table.clone(), dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    tokio::spawn(apiwatch_server::serve(
        listener,
        state,
        std::future::pending(),
    ));
    Served {
        admin,
        key,
        table,
        _dir: dir,
    }
}

/// `GET path` with the bouncer key; the status and the JSON body.
async fn pull(served: &Served, path: &str) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(served.admin).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {}\r\nx-api-key: {}\r\nconnection: close\r\n\r\n",
        served.admin, served.key
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|err| panic!("{path}: {err}: {body:?}"));
    (status, body)
}

/// The values of a list of CrowdSec decisions, sorted (`null` is no decision).
fn values(list: &serde_json::Value) -> Vec<String> {
    let mut values: Vec<String> = list
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| item["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    values.sort();
    values
}

/// The `new` values of a full (`startup=true`) stream pull with `query` added.
async fn startup(served: &Served, query: &str) -> Vec<String> {
    let (status, body) = pull(
        served,
        &format!("/v1/decisions/stream?startup=true&{query}"),
    )
    .await;
    assert_eq!(status, 200, "{query}: {body}");
    values(&body["new"])
}

#[tokio::test]
async fn stream_scopes_default_to_ip_and_range_and_never_export_key_decisions() {
    let served = serve_decisions().await;
    let addresses_and_range = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.0/24"];
    assert_eq!(startup(&served, "").await, addresses_and_range);
    assert_eq!(startup(&served, "scopes=").await, addresses_and_range);
    assert_eq!(
        startup(&served, "scopes=ip").await,
        ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    );
    assert_eq!(startup(&served, "scopes=Range").await, ["198.51.100.0/24"]);
    assert_eq!(startup(&served, "scopes=username").await, ["mallory"]);
    let everything = startup(&served, "scopes=Ip,%20Range,Username,key").await;
    assert_eq!(
        everything,
        [
            "192.0.2.1",
            "192.0.2.2",
            "192.0.2.3",
            "198.51.100.0/24",
            "mallory"
        ],
        "a key decision has no CrowdSec scope and is never exported"
    );
    let (_, body) = pull(&served, "/v1/decisions/stream?startup=true&scopes=username").await;
    assert_eq!(body["new"][0]["scope"], "Username", "{body}");
    assert!(startup(&served, "scopes=country").await.is_empty());
}

#[tokio::test]
async fn stream_filters_select_decisions_by_origin_and_scenario_words() {
    let served = serve_decisions().await;
    // Every exported decision's origin is `apiwatch`: an origins list naming it admits all,
    // one that does not admits none.
    let all = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.0/24"];
    assert_eq!(startup(&served, "origins=apiwatch").await, all);
    assert_eq!(startup(&served, "origins=crowdsec,%20APIWATCH").await, all);
    assert!(startup(&served, "origins=crowdsec").await.is_empty());
    assert!(startup(&served, "origins=cscli,lists").await.is_empty());
    // Scenario words: any of them, case-insensitive substrings of the decision's origin.
    assert_eq!(
        startup(&served, "scenarios_containing=BRUTE").await,
        ["192.0.2.1"]
    );
    assert_eq!(
        startup(&served, "scenarios_containing=scan").await,
        ["192.0.2.2", "198.51.100.0/24"]
    );
    assert_eq!(
        startup(&served, "scenarios_containing=brute,manual").await,
        ["192.0.2.1", "192.0.2.3"]
    );
    assert!(
        startup(&served, "scenarios_containing=nothing-like-it")
            .await
            .is_empty()
    );
    assert_eq!(
        startup(&served, "scenarios_not_containing=scan").await,
        ["192.0.2.1", "192.0.2.3"]
    );
    assert_eq!(
        startup(&served, "scenarios_not_containing=Manual,range-sweep").await,
        ["192.0.2.1", "192.0.2.2"]
    );
    // The filters combine: each must admit a decision.
    assert_eq!(
        startup(
            &served,
            "scenarios_containing=scan&scenarios_not_containing=range&origins=apiwatch"
        )
        .await,
        ["192.0.2.2"]
    );
    assert_eq!(
        startup(
            &served,
            "scopes=ip,range,username&scenarios_containing=auth"
        )
        .await,
        ["192.0.2.1", "mallory"]
    );
    // Empty filters are no filters.
    assert_eq!(
        startup(
            &served,
            "origins=&scenarios_containing=&scenarios_not_containing="
        )
        .await,
        all
    );
}

#[tokio::test]
async fn stream_filters_apply_to_deltas_and_deletions_too() {
    let served = serve_decisions().await;
    let filtered = "/v1/decisions/stream?scenarios_containing=scan";
    let (_, first) = pull(&served, &format!("{filtered}&startup=true")).await;
    assert_eq!(values(&first["new"]), ["192.0.2.2", "198.51.100.0/24"]);
    let added_scan = served
        .table
        .add(decision("203.0.113.1", "scan.known-paths"))
        .unwrap();
    served
        .table
        .add(decision("203.0.113.2", "auth.brute-force"))
        .unwrap();
    for withdrawn in ["192.0.2.1", "192.0.2.2"] {
        let live = served
            .table
            .list()
            .into_iter()
            .find(|decision| decision.scope.to_string() == withdrawn)
            .unwrap();
        served.table.delete(&live.id, "admin").unwrap();
    }
    let (status, delta) = pull(&served, filtered).await;
    assert_eq!(status, 200);
    assert_eq!(values(&delta["new"]), ["203.0.113.1"], "{delta}");
    assert_eq!(values(&delta["deleted"]), ["192.0.2.2"], "{delta}");
    assert_eq!(delta["new"][0]["uuid"], added_scan.id.as_str());
}

#[tokio::test]
async fn lookups_apply_the_same_origin_and_scenario_filters() {
    let served = serve_decisions().await;
    let lookup = |query: &str| {
        let path = format!("/v1/decisions?{query}");
        let served = &served;
        async move {
            let (status, body) = pull(served, &path).await;
            assert_eq!(status, 200, "{path}: {body}");
            body
        }
    };
    assert_eq!(
        values(&lookup("ip=198.51.100.9").await),
        ["198.51.100.0/24"]
    );
    assert_eq!(
        lookup("ip=198.51.100.9&scenarios_not_containing=sweep").await,
        serde_json::Value::Null
    );
    assert_eq!(
        values(&lookup("ip=198.51.100.9&scenarios_containing=RANGE").await),
        ["198.51.100.0/24"]
    );
    assert_eq!(
        lookup("ip=192.0.2.1&origins=crowdsec").await,
        serde_json::Value::Null
    );
    assert_eq!(
        values(&lookup("ip=192.0.2.1&origins=apiwatch").await),
        ["192.0.2.1"]
    );
    assert_eq!(
        values(&lookup("scenarios_containing=auth").await),
        ["192.0.2.1", "mallory"]
    );
    assert_eq!(
        values(&lookup("scope=username&value=mallory&scenarios_containing=stuffing").await),
        ["mallory"]
    );
    assert_eq!(
        lookup("scope=username&value=mallory&scenarios_not_containing=auth").await,
        serde_json::Value::Null
    );
}
