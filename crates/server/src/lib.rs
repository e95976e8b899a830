//! The apiwatch admin HTTP API.
//!
//! Serves `/healthz` (the process is up), `/readyz` (the pipeline accepts events),
//! `/metrics` (Prometheus text exposition of every registered metric), and, with a bearer
//! token ([`tokens`]), `GET /api/v1/findings?since=1h&limit=100`. Health and readiness
//! answer without a token; metrics and everything under `/api/` need one.
#![warn(missing_docs)]

pub mod bouncer;
pub mod findings;
pub mod tokens;

/// A boxed, sendable future, as the [`DecisionsApi`] methods return.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Decisions as the admin API sees them (JSON in and out); the binary implements it over the
/// decisions table so this crate does not depend on the responder.
pub trait DecisionsApi: Send + Sync + 'static {
    /// The live decisions, as a JSON array.
    fn list(&self) -> serde_json::Value;
    /// Adds a decision from a request body; `by` is the token's name. Errors are
    /// (status, message).
    fn add(
        &self,
        body: serde_json::Value,
        by: String,
    ) -> BoxFuture<Result<serde_json::Value, (u16, String)>>;
    /// Deletes a decision; `Ok(None)` when there is no such live decision.
    fn delete(
        &self,
        id: String,
        by: String,
    ) -> BoxFuture<Result<Option<serde_json::Value>, String>>;
}

/// Why a query was not answered: HTTP status, a message naming the parameter, and the
/// 1-based column of the offending token when the error is in query text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (400 for a bad question, 503 for a query past its time limit).
    pub status: u16,
    /// What is wrong and what was expected.
    pub message: String,
    /// Column in `q` or the SQL text.
    pub position: Option<usize>,
}

/// The query store as the admin API sees it (JSON out); the binary implements it over the
/// store, and journals every query as an audit event naming `by`.
pub trait EventsApi: Send + Sync + 'static {
    /// `GET /api/v1/events`: `q`, `since`, `from`, `to`, `limit`, `cursor`, `order`.
    fn search(
        &self,
        params: std::collections::HashMap<String, String>,
        by: String,
    ) -> BoxFuture<Result<serde_json::Value, ApiError>>;
    /// `POST /api/v1/sql`: one read-only SQL statement.
    fn sql(&self, text: String, by: String) -> BoxFuture<Result<serde_json::Value, ApiError>>;
    /// `GET /api/v1/stats/{kind}`: `histogram`, `top`, `percentiles`, `status`.
    fn stats(
        &self,
        kind: String,
        params: std::collections::HashMap<String, String>,
        by: String,
    ) -> BoxFuture<Result<serde_json::Value, ApiError>>;
}

/// The audit of reads that do not go through [`EventsApi`], whether or not the query store
/// runs; the binary journals them.
pub trait AuditApi: Send + Sync + 'static {
    /// Journals the audit event of a `kind` read: a query refused before it reached the
    /// store, such as a SQL body that is not JSON (`Err` says why), or a read the server
    /// answered itself, such as `findings` (`Ok` holds the rows). `text` is what was asked.
    fn audit_read(
        &self,
        kind: &str,
        text: String,
        by: String,
        outcome: Result<usize, String>,
    ) -> BoxFuture<()>;
}

/// Early deletion (before the retention policy would delete), as the admin API sees it.
pub trait RetentionApi: Send + Sync + 'static {
    /// Deletes what is older than the body's `before` (RFC 3339) for its `reason`, as `by`;
    /// errors are (status, message).
    fn prune(
        &self,
        body: serde_json::Value,
        by: String,
    ) -> BoxFuture<Result<serde_json::Value, (u16, String)>>;
}

/// A change a person makes to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOp {
    /// Take it: reminders and escalation stop.
    Acknowledge,
    /// It is over.
    Resolve,
}

/// Alerts as the admin API sees them (JSON out); the binary implements it over the alert book.
pub trait AlertsApi: Send + Sync + 'static {
    /// Alerts kept, newest first, optionally only those in `state`
    /// (`open|acknowledged|resolved|all`); an unknown state is an error message.
    fn list(&self, state: Option<String>) -> Result<serde_json::Value, String>;
    /// One alert.
    fn get(&self, id: &str) -> Option<serde_json::Value>;
    /// Acknowledges or resolves an alert as `by`; errors are (status, message).
    fn change(
        &self,
        id: String,
        op: AlertOp,
        by: String,
    ) -> BoxFuture<Result<serde_json::Value, (u16, String)>>;
    /// Silences not yet ended.
    fn silences(&self) -> serde_json::Value;
    /// Adds a silence from a request body as `by`; errors are (status, message).
    fn silence(
        &self,
        body: serde_json::Value,
        by: String,
    ) -> BoxFuture<Result<serde_json::Value, (u16, String)>>;
    /// Ends a silence as `by`; errors are (status, message).
    fn unsilence(
        &self,
        id: String,
        by: String,
    ) -> BoxFuture<Result<serde_json::Value, (u16, String)>>;
}

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::json;

use tokens::TokenStore;

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
    api: Option<Arc<Api>>,
    decisions: Option<Arc<dyn DecisionsApi>>,
    bouncers: Option<Arc<bouncer::Bouncers>>,
    alerts: Option<Arc<dyn AlertsApi>>,
    events: Option<Arc<dyn EventsApi>>,
    retention: Option<Arc<dyn RetentionApi>>,
    audit: Option<Arc<dyn AuditApi>>,
}

/// What the `/api/` handlers need: who may ask, and where the journal is.
struct Api {
    tokens: TokenStore,
    data_dir: PathBuf,
}

impl AdminState {
    /// Builds the state from a registry holding every stage's metrics and a readiness flag
    /// that the binary raises once the journal is open and the gateway listens.
    pub fn new(registry: Registry, ready: Arc<AtomicBool>) -> Self {
        AdminState {
            registry: Arc::new(registry),
            ready,
            api: None,
            decisions: None,
            bouncers: None,
            alerts: None,
            events: None,
            retention: None,
            audit: None,
        }
    }

    /// Journals reads that do not go through the events API (findings, refused queries)
    /// through `audit`.
    pub fn with_audit(mut self, audit: Arc<dyn AuditApi>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Serves `/api/v1/decisions` (list, add, delete) through `decisions`.
    pub fn with_decisions(mut self, decisions: Arc<dyn DecisionsApi>) -> Self {
        self.decisions = Some(decisions);
        self
    }

    /// Serves `POST /api/v1/retention/prune` through `retention`.
    pub fn with_retention(mut self, retention: Arc<dyn RetentionApi>) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Serves `/api/v1/events`, `/api/v1/sql` and `/api/v1/stats/{kind}` through `events`.
    pub fn with_events(mut self, events: Arc<dyn EventsApi>) -> Self {
        self.events = Some(events);
        self
    }

    /// Serves `/api/v1/alerts` (list, show, acknowledge, resolve) through `alerts`.
    pub fn with_alerts(mut self, alerts: Arc<dyn AlertsApi>) -> Self {
        self.alerts = Some(alerts);
        self
    }

    /// Serves the CrowdSec-compatible bouncer API (`/v1/decisions`, `/v1/decisions/stream`)
    /// over `table`, for the bouncers whose keys are in `data_dir` ([`bouncer`]).
    pub fn with_bouncers(
        mut self,
        table: apiwatch_respond::DecisionTable,
        data_dir: &std::path::Path,
    ) -> Self {
        self.bouncers = Some(Arc::new(bouncer::Bouncers::new(table, data_dir)));
        self
    }

    /// Enables `/api/v1/...` for holders of the given tokens, reading the journal in `data_dir`.
    pub fn with_api(mut self, tokens: TokenStore, data_dir: PathBuf) -> Self {
        self.api = Some(Arc::new(Api { tokens, data_dir }));
        self
    }
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let bouncers = state.bouncers.clone();
    let admin = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/findings", get(findings_handler))
        .route("/api/v1/decisions", get(list_decisions).post(add_decision))
        .route(
            "/api/v1/decisions/{id}",
            axum::routing::delete(delete_decision),
        )
        .route("/api/v1/events", get(search_events))
        .route("/api/v1/sql", axum::routing::post(run_sql))
        .route("/api/v1/stats/{kind}", get(run_stats))
        .route("/api/v1/retention/prune", axum::routing::post(prune_early))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/silences", get(list_silences).post(add_silence))
        .route(
            "/api/v1/silences/{id}",
            axum::routing::delete(delete_silence),
        )
        .route("/api/v1/alerts/{id}", get(show_alert))
        .route(
            "/api/v1/alerts/{id}/ack",
            axum::routing::post(|state, headers, path| {
                change_alert(state, headers, path, AlertOp::Acknowledge)
            }),
        )
        .route(
            "/api/v1/alerts/{id}/resolve",
            axum::routing::post(|state, headers, path| {
                change_alert(state, headers, path, AlertOp::Resolve)
            }),
        )
        .with_state(state);
    match bouncers {
        Some(bouncers) => admin.merge(
            Router::new()
                .route("/v1/decisions", get(bouncer::lookup))
                .route("/v1/decisions/stream", get(bouncer::stream))
                .with_state(bouncers),
        ),
        None => admin,
    }
}

/// Serves the admin router on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Prometheus text of every registered metric, for holders of a token: the counters say how
/// much traffic each route and status class sees, which is not for anyone who can reach the
/// port. Scrapes are not audited (they read no event, and a scraper asks every few seconds).
async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err((status, message)) = authorize(&state, &headers) {
        return error(status, message);
    }
    let mut body = String::new();
    let answer = match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(err) => {
            tracing::error!(error = %err, "failed to encode metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "failed to encode metrics\n".to_owned(),
            )
        }
    };
    answer.into_response()
}

/// A request body that must be JSON, or the `400` naming what is wrong.
fn json_body(body: &[u8]) -> Result<serde_json::Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|err| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("body: expected a JSON object ({err})"),
        ))
    })
}

/// The answer to an API implementation's `(status, message)` error.
fn api_error(status: u16, message: String) -> Response {
    error(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        message,
    )
}

/// An error answer: `{"error": "..."}` with a status.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn prune_early(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let by = match authorize(&state, &headers) {
        Ok((_, by)) => by,
        Err((status, message)) => return error(status, message),
    };
    let Some(retention) = state.retention.clone() else {
        return error(StatusCode::NOT_FOUND, "retention is not available");
    };
    let body: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "body: expected {{\"before\": \"<RFC 3339>\", \"reason\": \"...\"}} ({err})"
                ),
            );
        }
    };
    match retention.prune(body, by).await {
        Ok(answer) => Json(answer).into_response(),
        Err((status, message)) => error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message,
        ),
    }
}

/// The events API and the caller's token name, or the error to answer.
fn events_api(
    state: &AdminState,
    headers: &HeaderMap,
) -> Result<(Arc<dyn EventsApi>, String), Box<Response>> {
    let (_, by) =
        authorize(state, headers).map_err(|(status, message)| Box::new(error(status, message)))?;
    match &state.events {
        Some(events) => Ok((Arc::clone(events), by)),
        None => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "the query store is not enabled ([store] enabled = false)",
        ))),
    }
}

fn query_error(err: ApiError) -> Response {
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = json!({ "error": err.message });
    if let Some(position) = err.position {
        body["position"] = json!(position);
    }
    (status, Json(body)).into_response()
}

async fn search_events(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let (events, by) = match events_api(&state, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match events.search(params, by).await {
        Ok(body) => Json(body).into_response(),
        Err(err) => query_error(err),
    }
}

/// Body of `POST /api/v1/sql`.
#[derive(Debug, Deserialize)]
struct SqlBody {
    /// One read-only SQL statement over `events`.
    query: String,
}

async fn run_sql(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (events, by) = match events_api(&state, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let body: SqlBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => {
            let message = format!("body: expected {{\"query\": \"SELECT ...\"}} ({err})");
            let sent = String::from_utf8_lossy(&body).into_owned();
            if let Some(audit) = &state.audit {
                audit
                    .audit_read("sql", sent, by, Err(message.clone()))
                    .await;
            }
            return error(StatusCode::BAD_REQUEST, message);
        }
    };
    match events.sql(body.query, by).await {
        Ok(body) => Json(body).into_response(),
        Err(err) => query_error(err),
    }
}

async fn run_stats(
    State(state): State<AdminState>,
    headers: HeaderMap,
    axum::extract::Path(kind): axum::extract::Path<String>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let (events, by) = match events_api(&state, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match events.stats(kind, params, by).await {
        Ok(body) => Json(body).into_response(),
        Err(err) => query_error(err),
    }
}

/// The API state when the caller presents a valid token, or the status and message to answer.
fn authorize(
    state: &AdminState,
    headers: &HeaderMap,
) -> Result<(Arc<Api>, String), (StatusCode, &'static str)> {
    let Some(api) = state.api.as_ref() else {
        return Err((StatusCode::NOT_FOUND, "the API is not enabled"));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match presented.and_then(|value| api.tokens.check(value)) {
        Some(name) => Ok((Arc::clone(api), name.to_owned())),
        None => Err((
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required (Authorization: Bearer aw_...)",
        )),
    }
}

/// Query parameters of `GET /api/v1/findings`.
#[derive(Debug, Deserialize)]
struct FindingsParams {
    /// How far back, as a duration (`15m`, `1h`, `7d`); default 24h.
    since: Option<String>,
    /// Most findings returned (newest kept); default 100, at most 10,000.
    limit: Option<usize>,
}

const MAX_FINDINGS: usize = 10_000;

async fn findings_handler(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(params): Query<FindingsParams>,
) -> Response {
    let (api, by) = match authorize(&state, &headers) {
        Ok(authorized) => authorized,
        Err((status, message)) => return error(status, message),
    };
    let asked = format!(
        "since={} limit={}",
        params.since.as_deref().unwrap_or("24h"),
        params.limit.unwrap_or(100)
    );
    let answer = findings_answer(api, params).await;
    // Findings are read from the journal: a read of events, audited like a search.
    if let Some(audit) = &state.audit {
        let outcome = match &answer {
            Ok(found) => Ok(found.len()),
            Err((_, message)) => Err(message.clone()),
        };
        audit.audit_read("findings", asked, by, outcome).await;
    }
    match answer {
        Ok(found) => Json(json!({ "findings": found })).into_response(),
        Err((status, message)) => error(status, message),
    }
}

/// The findings of `GET /api/v1/findings`, or the status and message of why not.
async fn findings_answer(
    api: Arc<Api>,
    params: FindingsParams,
) -> Result<Vec<serde_json::Value>, (StatusCode, String)> {
    let since = match params.since.as_deref().map(humantime::parse_duration) {
        None => std::time::Duration::from_secs(24 * 3600),
        Some(Ok(duration)) => duration,
        Some(Err(err)) => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("since: expected a duration such as 15m, 1h or 7d ({err})"),
            ));
        }
    };
    let limit = params.limit.unwrap_or(100);
    if limit > MAX_FINDINGS {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("limit: at most {MAX_FINDINGS}"),
        ));
    }
    let from = time::OffsetDateTime::now_utc() - since;
    let read =
        tokio::task::spawn_blocking(move || findings::read(&api.data_dir, from, limit)).await;
    match read {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(err)) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to read the journal: {err}"),
        )),
        Err(_) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "reader panicked".to_owned(),
        )),
    }
}

/// The decisions API and the caller's token name, or the error to answer.
fn decisions_api(
    state: &AdminState,
    headers: &HeaderMap,
) -> Result<(Arc<dyn DecisionsApi>, String), Box<Response>> {
    let (_, by) =
        authorize(state, headers).map_err(|(status, message)| Box::new(error(status, message)))?;
    match &state.decisions {
        Some(decisions) => Ok((Arc::clone(decisions), by)),
        None => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "decisions are disabled ([respond] enabled = false)",
        ))),
    }
}

async fn list_decisions(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    match decisions_api(&state, &headers) {
        Ok((decisions, _)) => Json(json!({ "decisions": decisions.list() })).into_response(),
        Err(response) => *response,
    }
}

async fn add_decision(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (decisions, by) = match decisions_api(&state, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    match decisions.add(body, format!("manual:{by}")).await {
        Ok(decision) => (StatusCode::CREATED, Json(decision)).into_response(),
        Err((status, message)) => api_error(status, message),
    }
}

async fn delete_decision(
    State(state): State<AdminState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let (decisions, by) = match decisions_api(&state, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match decisions.delete(id.clone(), format!("manual:{by}")).await {
        Ok(Some(decision)) => Json(decision).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no live decision with id {id}"),
        ),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt;

    #[tokio::test]
    async fn metrics_show_registered_counters_to_token_holders_and_readiness_follows_the_flag() {
        let mut registry = Registry::default();
        let counter: Counter = Counter::default();
        counter.inc_by(7);
        registry.register("apiwatch_test_things", "Things", counter);
        let ready = Arc::new(AtomicBool::new(false));
        let dir = tempfile::tempdir().unwrap();
        let (tokens, token) = TokenStore::load_or_init(dir.path()).unwrap();
        let token = token.expect("first start creates the admin token");
        let app = router(
            AdminState::new(registry, Arc::clone(&ready))
                .with_api(tokens, dir.path().to_path_buf()),
        );
        let response = app
            .clone()
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        ready.store(true, Ordering::Relaxed);
        let response = app
            .clone()
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        for refused in [
            None,
            Some("Bearer aw_not-a-token"),
            Some("Basic YWRtaW46eA=="),
        ] {
            let mut request = Request::get("/metrics");
            if let Some(value) = refused {
                request = request.header(header::AUTHORIZATION, value);
            }
            let response = app
                .clone()
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{refused:?}");
        }
        let response = app
            .oneshot(
                Request::get("/metrics")
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("apiwatch_test_things_total 7"), "{text}");
    }
}

/// The alerts API and the caller's token name, or the error to answer.
fn alerts_api(
    state: &AdminState,
    headers: &HeaderMap,
) -> Result<(Arc<dyn AlertsApi>, String), Box<Response>> {
    let (_, by) =
        authorize(state, headers).map_err(|(status, message)| Box::new(error(status, message)))?;
    match &state.alerts {
        Some(alerts) => Ok((Arc::clone(alerts), by)),
        None => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "alerts are disabled ([alerts] enabled = false)",
        ))),
    }
}

/// Query of `GET /api/v1/alerts`.
#[derive(Debug, Deserialize)]
struct AlertsParams {
    state: Option<String>,
}

async fn list_alerts(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(params): Query<AlertsParams>,
) -> Response {
    let (alerts, _) = match alerts_api(&state, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match alerts.list(params.state) {
        Ok(list) => Json(json!({ "alerts": list })).into_response(),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

async fn show_alert(
    State(state): State<AdminState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let (alerts, _) = match alerts_api(&state, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match alerts.get(&id) {
        Some(alert) => Json(alert).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no alert with id {id}")),
    }
}

async fn change_alert(
    State(state): State<AdminState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    op: AlertOp,
) -> Response {
    let (alerts, by) = match alerts_api(&state, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match alerts.change(id, op, by).await {
        Ok(alert) => Json(alert).into_response(),
        Err((status, message)) => api_error(status, message),
    }
}

async fn list_silences(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    match alerts_api(&state, &headers) {
        Ok((alerts, _)) => Json(json!({ "silences": alerts.silences() })).into_response(),
        Err(response) => *response,
    }
}

async fn add_silence(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (alerts, by) = match alerts_api(&state, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    match alerts.silence(body, by).await {
        Ok(silence) => (StatusCode::CREATED, Json(silence)).into_response(),
        Err((status, message)) => api_error(status, message),
    }
}

async fn delete_silence(
    State(state): State<AdminState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let (alerts, by) = match alerts_api(&state, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match alerts.unsilence(id, by).await {
        Ok(silence) => Json(silence).into_response(),
        Err((status, message)) => api_error(status, message),
    }
}
