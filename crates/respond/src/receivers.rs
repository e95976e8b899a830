//! Receivers: where alerts go, each in its own wire format (`shared/protocols.md`), and the
//! HTTP delivery of one rendered payload.
//!
//! - `webhook`: apiwatch's JSON (`{"version": 1, "reason", "alert": {..}}`), signed: header
//!   `X-Apiwatch-Timestamp: <unix seconds>` and `X-Apiwatch-Signature: v1=<hex>` where the hex is
//!   HMAC-SHA256(secret, "<timestamp>.<body>"); the timestamp is fresh on every attempt so a
//!   receiver can refuse replays older than a few minutes.
//! - `slack`: an incoming-webhook message (`text` plus `blocks`), `&`, `<`, `>` escaped.
//! - `pagerduty`: Events API v2 (`trigger`, `acknowledge`, `resolve`) with the stable
//!   `dedup_key` `apiwatch-<alert id>`.
//! - `alertmanager`: `POST /api/v2/alerts` with one postable alert; firing ones are re-sent
//!   (reason `refresh`) since Alertmanager forgets them, resolved ones carry `endsAt`.
//!
//! Delivery is one HTTP/1.1 request per attempt over a fresh connection (TLS with rustls for
//! `https://`, trusting the system's CA bundle), with a 10 s limit. 2xx is success; 408, 429,
//! 5xx and connection failures are worth retrying; other 4xx are refused for good.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::alerts::{Alert, AlertState, Notice, Reason};

/// What kind of receiver, with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverKind {
    /// Generic JSON webhook, HMAC-signed when `secret` is set.
    Webhook {
        /// Where to POST.
        url: String,
        /// HMAC-SHA256 key.
        secret: Option<String>,
    },
    /// Slack incoming webhook.
    Slack {
        /// The webhook URL (a secret: never logged).
        url: String,
    },
    /// PagerDuty Events API v2.
    PagerDuty {
        /// `https://events.pagerduty.com/v2/enqueue` unless set.
        url: String,
        /// The integration's routing key.
        routing_key: String,
    },
    /// Prometheus Alertmanager API v2.
    Alertmanager {
        /// Base URL, e.g. `http://127.0.0.1:9093`.
        url: String,
        /// How long a firing alert stays firing in Alertmanager without a re-send: `endsAt` is
        /// set to the send time plus this (several refresh intervals).
        hold: Duration,
    },
    /// E-mail over SMTP (STARTTLS required unless turned off).
    Email(EmailSettings),
    /// Syslog, RFC 5424 messages over UDP (one datagram each) or TCP (octet-counted framing,
    /// RFC 6587).
    Syslog {
        /// `udp://host:port` or `tcp://host:port`.
        url: String,
        /// Facility number (0-23; `local0` is 16).
        facility: u8,
    },
}

/// Where and how e-mail notifications go.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailSettings {
    /// SMTP server host.
    pub host: String,
    /// SMTP port (587 for submission with STARTTLS).
    pub port: u16,
    /// Require STARTTLS (the server's certificate checked against the system roots and the
    /// CA bundle). Off only for a relay on the same host.
    pub starttls: bool,
    /// `From` address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// SMTP AUTH user name.
    pub username: Option<String>,
    /// SMTP AUTH password (from the environment, never the config file).
    pub password: Option<String>,
}

/// The facility numbers of RFC 5424 by name.
pub fn syslog_facility(name: &str) -> Option<u8> {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2",
        "local3", "local4", "local5", "local6", "local7",
    ];
    NAMES
        .iter()
        .position(|known| *known == name)
        .and_then(|index| u8::try_from(index).ok())
}

/// A named receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Receiver {
    /// Its name in routes.
    pub name: String,
    /// Its kind and settings.
    pub kind: ReceiverKind,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq)]
pub struct SendError {
    /// Worth trying again later.
    pub retry: bool,
    /// What happened (never contains the URL's secret parts).
    pub message: String,
}

impl Receiver {
    /// The kind's name.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ReceiverKind::Webhook { .. } => "webhook",
            ReceiverKind::Slack { .. } => "slack",
            ReceiverKind::PagerDuty { .. } => "pagerduty",
            ReceiverKind::Alertmanager { .. } => "alertmanager",
            ReceiverKind::Syslog { .. } => "syslog",
            ReceiverKind::Email(_) => "email",
        }
    }

    /// Whether firing alerts must be re-sent periodically for this receiver to keep them.
    pub fn needs_refresh(&self) -> bool {
        matches!(self.kind, ReceiverKind::Alertmanager { .. })
    }

    /// The payload telling this receiver of `notice`; `None` when this kind has nothing to say
    /// for that reason (Alertmanager and Slack need no separate acknowledgement message...
    /// Slack does get one; only Alertmanager has no acknowledgement state).
    pub fn render(&self, notice: &Notice, console: &str) -> Option<Value> {
        let alert = &notice.alert;
        let link = format!("{console}/api/v1/alerts/{}", alert.id);
        match &self.kind {
            ReceiverKind::Webhook { .. } => Some(json!({
                "version": 1,
                "reason": notice.reason.as_str(),
                "alert": alert,
                "link": link,
            })),
            ReceiverKind::Slack { .. } => Some(slack(alert, notice.reason, &link)),
            ReceiverKind::Email(_) => Some(email(alert, notice.reason, &link)),
            ReceiverKind::Syslog { facility, .. } => Some(Value::String(syslog_line(
                alert,
                notice.reason,
                *facility,
                OffsetDateTime::now_utc(),
            ))),
            ReceiverKind::PagerDuty { routing_key, .. } => {
                let action = match notice.reason {
                    Reason::Acknowledged => "acknowledge",
                    Reason::Resolved => "resolve",
                    Reason::Refresh => return None,
                    Reason::Opened | Reason::Reminder | Reason::Escalated | Reason::Updated => {
                        "trigger"
                    }
                };
                let severity = match alert.severity.as_str() {
                    "critical" => "critical",
                    "high" => "error",
                    "medium" => "warning",
                    _ => "info",
                };
                let source = if alert.key_value.trim().is_empty() {
                    "apiwatch".to_owned()
                } else {
                    truncate(&alert.key_value, 255)
                };
                Some(json!({
                    "routing_key": routing_key,
                    "event_action": action,
                    "dedup_key": format!("apiwatch-{}", alert.id),
                    "payload": {
                        "summary": truncate(&format!("{}: {}", alert.rule_name, alert.summary), 1024),
                        "source": source,
                        "severity": severity,
                        "timestamp": rfc3339(alert.opened_at),
                        "component": alert.key_field,
                        "class": alert.rule_id,
                        "custom_details": {
                            "findings": alert.findings,
                            "evidence": alert.evidence,
                            "search": alert.search,
                            "sample_event_ids": alert.sample_event_ids,
                        },
                    },
                    "links": [{"href": link, "text": "apiwatch alert"}],
                    "client": "apiwatch",
                }))
            }
            ReceiverKind::Alertmanager { .. } => {
                if notice.reason == Reason::Acknowledged {
                    return None;
                }
                let mut posted = json!({
                    "labels": {
                        "alertname": alert.rule_id,
                        "severity": alert.severity,
                        "key_field": alert.key_field,
                        "key": alert.key_value,
                        "apiwatch_alert_id": alert.id,
                    },
                    "annotations": {
                        "summary": alert.summary,
                        "title": alert.rule_name,
                        "search": alert.search,
                    },
                    "startsAt": rfc3339(alert.opened_at),
                    "generatorURL": link,
                });
                if alert.state == AlertState::Resolved {
                    let ended = alert.resolved_at.unwrap_or(alert.last_seen);
                    posted["endsAt"] = json!(rfc3339(ended));
                }
                Some(json!([posted]))
            }
        }
    }

    fn url(&self) -> String {
        match &self.kind {
            ReceiverKind::Webhook { url, .. }
            | ReceiverKind::Slack { url }
            | ReceiverKind::PagerDuty { url, .. } => url.clone(),
            ReceiverKind::Alertmanager { url, .. } => {
                format!("{}/api/v2/alerts", url.trim_end_matches('/'))
            }
            ReceiverKind::Syslog { url, .. } => url.clone(),
            ReceiverKind::Email(email) => format!("smtp://{}:{}", email.host, email.port),
        }
    }

    /// Where deliveries go, safe to log: scheme, host and port only (never a path, which for
    /// Slack is the secret, nor user information).
    pub fn safe_target(&self) -> String {
        let url = self.url();
        if let Some((scheme, rest)) = url.split_once("://") {
            if scheme == "udp" || scheme == "tcp" || scheme == "smtp" {
                return format!("{scheme}://{}", rest.trim_end_matches('/'));
            }
        }
        match url.parse::<http::Uri>() {
            Ok(uri) => format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or("http"),
                uri.host().unwrap_or("?"),
                uri.port_u16()
                    .map(|port| format!(":{port}"))
                    .unwrap_or_default()
            ),
            Err(_) => "(invalid url)".to_owned(),
        }
    }

    /// Sends one rendered payload.
    ///
    /// # Errors
    ///
    /// [`SendError`], saying whether a retry may help.
    pub async fn send(
        &self,
        body: &Value,
        tls: &Arc<rustls::ClientConfig>,
        ca_file: &std::path::Path,
    ) -> Result<(), SendError> {
        if let ReceiverKind::Email(email) = &self.kind {
            return send_email(email, body, ca_file).await;
        }
        if let ReceiverKind::Syslog { url, .. } = &self.kind {
            let line = body.as_str().unwrap_or_default();
            let attempt = send_syslog(url, line);
            return match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                Ok(result) => result,
                Err(_) => Err(SendError {
                    retry: true,
                    message: "the syslog server took more than 10 s".to_owned(),
                }),
            };
        }
        let mut body = std::borrow::Cow::Borrowed(body);
        if let ReceiverKind::Alertmanager { hold, .. } = &self.kind {
            // A firing alert (no `endsAt`) is held for `hold` from now, whenever this
            // delivery finally goes out.
            if let Some(alert) = body
                .to_mut()
                .get_mut(0)
                .filter(|alert| alert.get("endsAt").is_none())
            {
                let until = OffsetDateTime::now_utc() + crate::alerts::span(*hold);
                alert["endsAt"] = json!(rfc3339(until));
            }
        }
        let payload = serde_json::to_vec(&*body).map_err(|err| SendError {
            retry: false,
            message: format!("cannot encode the payload: {err}"),
        })?;
        let mut headers: Vec<(&'static str, String)> = vec![
            ("content-type", "application/json".to_owned()),
            (
                "user-agent",
                format!("apiwatch/{}", env!("CARGO_PKG_VERSION")),
            ),
        ];
        if let ReceiverKind::Webhook {
            secret: Some(secret),
            ..
        } = &self.kind
        {
            let timestamp = OffsetDateTime::now_utc().unix_timestamp().to_string();
            headers.push((
                "x-apiwatch-signature",
                format!("v1={}", sign(secret, &timestamp, &payload)),
            ));
            headers.push(("x-apiwatch-timestamp", timestamp));
        }
        let url = self.url();
        let attempt = post(&url, headers, payload, tls);
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(result) => result,
            Err(_) => Err(SendError {
                retry: true,
                message: "no answer within 10 s".to_owned(),
            }),
        }
    }
}

/// Sends one e-mail notification (`{"subject": "...", "text": "..."}`) over SMTP.
async fn send_email(
    email: &EmailSettings,
    body: &Value,
    ca_file: &std::path::Path,
) -> Result<(), SendError> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let fail = |retry: bool, message: String| SendError { retry, message };
    let subject = body["subject"].as_str().unwrap_or("apiwatch alert");
    let text = body["text"].as_str().unwrap_or_default().to_owned();
    let from: Mailbox = email
        .from
        .parse()
        .map_err(|err| fail(false, format!("from: {err}")))?;
    let mut message = Message::builder().from(from).subject(subject);
    for to in &email.to {
        let to: Mailbox = to
            .parse()
            .map_err(|err| fail(false, format!("to: {err}")))?;
        message = message.to(to);
    }
    let message = message
        .header(ContentType::TEXT_PLAIN)
        .body(text)
        .map_err(|err| fail(false, format!("cannot build the message: {err}")))?;
    let mut builder =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&email.host).port(email.port);
    if email.starttls {
        let mut tls = TlsParameters::builder(email.host.clone());
        let pem = std::fs::read(ca_file).unwrap_or_default();
        for block in pem_blocks(&pem) {
            if let Ok(certificate) = Certificate::from_pem(&block) {
                tls = tls.add_root_certificate(certificate);
            }
        }
        let tls = tls
            .build_rustls()
            .map_err(|err| fail(false, format!("TLS settings: {err}")))?;
        builder = builder.tls(Tls::Required(tls));
    }
    if let (Some(user), Some(password)) = (&email.username, &email.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    let transport = builder.timeout(Some(Duration::from_secs(10))).build();
    match transport.send(message).await {
        Ok(_) => Ok(()),
        Err(err) => Err(fail(!err.is_permanent(), format!("SMTP: {err}"))),
    }
}

/// The PEM blocks of a bundle, one certificate each.
fn pem_blocks(pem: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(pem);
    let mut blocks = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE-----") {
            current.clear();
        }
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END CERTIFICATE-----") {
            blocks.push(current.clone().into_bytes());
            current.clear();
        }
    }
    blocks
}

/// How a person-facing message (Slack, e-mail) opens for each reason.
fn headline(reason: Reason) -> &'static str {
    match reason {
        Reason::Opened => "New alert",
        Reason::Reminder | Reason::Refresh => "Still open, not acknowledged",
        Reason::Updated => "More findings",
        Reason::Escalated => "Escalated: nobody acknowledged",
        Reason::Acknowledged => "Acknowledged",
        Reason::Resolved => "Resolved",
    }
}

/// The e-mail of a notice: a subject line and a plain-text body.
fn email(alert: &Alert, reason: Reason, link: &str) -> Value {
    let what = headline(reason);
    let one_line = |text: &str| -> String {
        text.chars()
            .map(|ch| if ch.is_control() { ' ' } else { ch })
            .take(200)
            .collect()
    };
    let subject = format!(
        "[apiwatch] {what}: {} ({}) {}",
        one_line(&alert.rule_name),
        alert.severity,
        one_line(&alert.key_value)
    );
    let mut text = format!(
        "{what}: {}\n\nRule:      {} ({})\nSeverity:  {}\nKey:       {} = {}\nState:     {}\nFindings:  {}\nOpened:    {}\nLast seen: {}\n",
        one_line(&alert.summary),
        alert.rule_name,
        alert.rule_id,
        alert.severity,
        alert.key_field,
        one_line(&alert.key_value),
        alert.state.as_str(),
        alert.findings,
        rfc3339(alert.opened_at),
        rfc3339(alert.last_seen),
    );
    if let Some(by) = &alert.acknowledged_by {
        text.push_str(&format!("Acknowledged by: {}\n", one_line(by)));
    }
    if let Some(by) = &alert.resolved_by {
        text.push_str(&format!("Resolved by: {}\n", one_line(by)));
    }
    text.push_str(&format!(
        "\nSearch:    {}\nAlert:     {link}\nAcknowledge: apiwatch alerts ack {}\n",
        alert.search, alert.id
    ));
    json!({ "subject": subject, "text": text })
}

/// The longest syslog message sent (bytes); longer summaries are cut. 2048 is what RFC 5424
/// says every receiver should accept.
pub const SYSLOG_MAX_BYTES: usize = 2048;

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOST apiwatch - ALERT [apiwatch@32473 ...] MSG`.
/// Control characters in any field become spaces, so no value can split the line.
fn syslog_line(alert: &Alert, reason: Reason, facility: u8, now: OffsetDateTime) -> String {
    let severity: u8 = match reason {
        Reason::Acknowledged | Reason::Resolved => 6,
        _ => match alert.severity.as_str() {
            "critical" => 2,
            "high" => 3,
            "medium" => 4,
            _ => 5,
        },
    };
    let clean = |text: &str| -> String {
        text.chars()
            .map(|ch| if ch.is_control() { ' ' } else { ch })
            .collect()
    };
    // Structured-data values escape `"`, `\` and `]` (RFC 5424 section 6.3.3).
    let param = |text: &str| -> String {
        clean(text)
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace(']', "\\]")
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty() && name.is_ascii() && !name.contains(' '))
        .unwrap_or_else(|| "-".to_owned());
    let mut line = format!(
        "<{}>1 {} {host} apiwatch {} ALERT [apiwatch@32473 id=\"{}\" rule=\"{}\" key=\"{}\" severity=\"{}\" state=\"{}\" reason=\"{}\"] {}: {}",
        u16::from(facility) * 8 + u16::from(severity),
        syslog_timestamp(now),
        std::process::id(),
        param(&alert.id),
        param(&alert.rule_id),
        param(&alert.key_value),
        param(&alert.severity),
        alert.state.as_str(),
        reason.as_str(),
        clean(&alert.rule_name),
        clean(&alert.summary),
    );
    if line.len() > SYSLOG_MAX_BYTES {
        let mut cut = SYSLOG_MAX_BYTES;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}

/// RFC 5424 timestamps carry at most 6 fractional digits (`TIME-SECFRAC`), in UTC here.
fn syslog_timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

async fn send_syslog(url: &str, line: &str) -> Result<(), SendError> {
    use tokio::io::AsyncWriteExt;
    let fail = |retry: bool, message: String| SendError { retry, message };
    let (udp, target) = match (url.strip_prefix("udp://"), url.strip_prefix("tcp://")) {
        (Some(target), _) => (true, target),
        (None, Some(target)) => (false, target),
        _ => {
            return Err(fail(
                false,
                "the url must be udp://HOST:PORT or tcp://HOST:PORT".to_owned(),
            ));
        }
    };
    let target = target.trim_end_matches('/');
    let address = tokio::net::lookup_host(target)
        .await
        .map_err(|err| fail(true, format!("cannot resolve {target}: {err}")))?
        .next()
        .ok_or_else(|| fail(true, format!("{target} has no address")))?;
    if udp {
        let bind = if address.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = tokio::net::UdpSocket::bind(bind)
            .await
            .map_err(|err| fail(true, format!("cannot open a UDP socket: {err}")))?;
        socket
            .send_to(line.as_bytes(), address)
            .await
            .map_err(|err| fail(true, format!("cannot send: {err}")))?;
    } else {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|err| fail(true, format!("cannot connect: {err}")))?;
        let framed = format!("{} {line}", line.len());
        stream
            .write_all(framed.as_bytes())
            .await
            .map_err(|err| fail(true, format!("cannot send: {err}")))?;
        stream
            .shutdown()
            .await
            .map_err(|err| fail(true, format!("cannot finish: {err}")))?;
    }
    Ok(())
}

/// `v1` signature of a webhook body: hex HMAC-SHA256(secret, "<timestamp>.<body>").
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack(alert: &Alert, reason: Reason, link: &str) -> Value {
    let prefix = headline(reason);
    let who = match reason {
        Reason::Acknowledged => alert
            .acknowledged_by
            .as_deref()
            .map(|by| format!(" by {}", slack_escape(by)))
            .unwrap_or_default(),
        Reason::Resolved => alert
            .resolved_by
            .as_deref()
            .map(|by| format!(" by {}", slack_escape(by)))
            .unwrap_or_default(),
        _ => String::new(),
    };
    let headline = format!(
        "{prefix}{who}: *{}* ({}) for `{}` = `{}`",
        slack_escape(&alert.rule_name),
        slack_escape(&alert.severity),
        slack_escape(&alert.key_field),
        slack_escape(&alert.key_value),
    );
    // Slack refuses section texts over 3,000 characters (and the key and summary come from
    // traffic): cut them so the message is never refused for good.
    let headline = truncate(&headline, 2900);
    json!({
        "text": truncate(&format!("{headline}: {}", slack_escape(&alert.summary)), 2900),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&format!(
                "{} · {} findings · search: `{}` · {}",
                slack_escape(&alert.summary), alert.findings, slack_escape(&alert.search), slack_escape(link)
            ), 2900)}]},
        ],
    })
}

/// One POST over a fresh connection.
async fn post(
    url: &str,
    headers: Vec<(&'static str, String)>,
    payload: Vec<u8>,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(), SendError> {
    let fail = |retry: bool, message: String| SendError { retry, message };
    let uri: http::Uri = url
        .parse()
        .map_err(|err| fail(false, format!("invalid url: {err}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(fail(
                false,
                "the url must be http:// or https://".to_owned(),
            ));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| fail(false, "the url has no host".to_owned()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|err| fail(true, format!("cannot connect: {err}")))?;
    let path = uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_owned();
    let mut request = http::Request::post(path).header(
        "host",
        uri.authority()
            .map_or(host.as_str(), |authority| authority.as_str()),
    );
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(payload)))
        .map_err(|err| fail(false, format!("cannot build the request: {err}")))?;
    let status = if https {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|err| fail(false, format!("invalid TLS server name: {err}")))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
            .connect(name, stream)
            .await
            .map_err(|err| fail(true, format!("TLS handshake failed: {err}")))?;
        exchange(stream, request).await?
    } else {
        exchange(stream, request).await?
    };
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(fail(true, format!("answered {status}"))),
        _ => Err(fail(false, format!("refused with {status}"))),
    }
}

async fn exchange<S>(stream: S, request: http::Request<Full<Bytes>>) -> Result<u16, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|err| SendError {
                retry: true,
                message: format!("HTTP handshake failed: {err}"),
            })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| SendError {
            retry: true,
            message: format!("request failed: {err}"),
        })?;
    let status = response.status().as_u16();
    // Read (and bound) the answer so the connection ends cleanly.
    let _ = http_body_util::Limited::new(response.into_body(), 64 * 1024)
        .collect()
        .await;
    Ok(status)
}

/// A TLS client configuration trusting the CA certificates in `ca_file` (PEM), e.g. the
/// system bundle `/etc/ssl/certs/ca-certificates.crt`. A missing file gives an empty trust
/// store: `https://` receivers then fail (and are retried) with a clear TLS error.
pub fn tls_config(ca_file: &std::path::Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match CertificateDer::pem_file_iter(ca_file) {
        Ok(certificates) => {
            for certificate in certificates.flatten() {
                let _ = roots.add(certificate);
            }
        }
        Err(err) => {
            tracing::warn!(path = %ca_file.display(), error = %err, "cannot read the CA bundle; https receivers will fail");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth());
    match config {
        Ok(config) => Arc::new(config),
        Err(err) => unreachable!("ring supports the default protocol versions: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_lines_follow_rfc_5424_and_cannot_be_split() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let alert = Alert {
            id: "0193".to_owned(),
            rule_name: "Brute-force login".to_owned(),
            key_value: "evil\"]\n<13>1 forged".to_owned(),
            summary: "line one\nline two".to_owned(),
            ..Alert::sample("auth.brute-force", "", now)
        };
        let line = syslog_line(&alert, Reason::Opened, 16, now);
        assert!(
            line.starts_with("<131>1 2023-11-14T22:13:20.000000Z "),
            "{line}"
        );
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains(r#"key="evil\"\] <13>1 forged""#), "{line}");
        assert!(
            line.ends_with("Brute-force login: line one line two"),
            "{line}"
        );
        let resolved = syslog_line(&alert, Reason::Resolved, 4, now);
        assert!(resolved.starts_with("<38>1 "), "{resolved}");
        assert_eq!(syslog_facility("local0"), Some(16));
        assert_eq!(syslog_facility("authpriv"), Some(10));
        assert_eq!(syslog_facility("nope"), None);
    }

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // The expected value is Python's: hmac.new(b"key", b'1700000000.{"a":1}', sha256).
        assert_eq!(
            sign("key", "1700000000", br#"{"a":1}"#),
            "a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
    }
}
