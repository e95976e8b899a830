//! Protocol upgrades (WebSocket and friends) passed through as a byte tunnel.

use http::Response;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::{ObservedBody, PendingEvent, full};
use crate::headers;

/// Answers the client's upgrade with the upstream's `101` and splices the two connections once
/// both sides have switched. The request's event is emitted when the tunnel closes, with the
/// bytes each way (client->upstream as request bytes, upstream->client as response bytes).
/// `counted` holds the tunnel's place in its thread's connection count until it closes.
pub fn tunnel(
    pending: PendingEvent,
    counted: Option<crate::server::OpenConnection>,
    client_upgrade: OnUpgrade,
    mut upstream_response: Response<Incoming>,
    request_id: &str,
) -> Response<ObservedBody> {
    let upstream_upgrade = hyper::upgrade::on(&mut upstream_response);
    tokio::spawn(async move {
        // The tunnel counts as a connection of this thread for as long as it is open.
        let _counted = counted;
        let request_stats = std::sync::Arc::clone(&pending.request_stats);
        let (sent_up, sent_down, error) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok((client, upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    Ok((up, down)) => (up, down, None),
                    Err(err) => (0, 0, Some(err)),
                }
            }
            Err(err) => (0, 0, Some(std::io::Error::other(err))),
        };
        request_stats
            .bytes
            .store(sent_up, std::sync::atomic::Ordering::Relaxed);
        pending
            .complete(sent_down, crate::proxy::ending_for_tunnel(error))
            .await;
    });
    let (mut parts, _body) = upstream_response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, true);
    if let Ok(value) = http::HeaderValue::from_str(request_id) {
        parts.headers.insert(headers::REQUEST_ID, value);
    }
    Response::from_parts(parts, ObservedBody::new(full(bytes::Bytes::new()), None))
}
