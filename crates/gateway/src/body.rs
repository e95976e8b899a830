//! Body wrappers: the request side counts (and optionally keeps a prefix of) what streams to
//! the upstream and enforces the size limit; the response side counts what streams to the client
//! and holds the very last frame until the request's event is accepted by the sink.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use apiwatch_event::Event;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;

use crate::EventSink;
use crate::metrics::{GatewayMetrics, StatusClassLabel};

/// Boxed error type of proxied bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type sent upstream and to the client.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Builds a small, complete body.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// What the request side saw, read when the event is completed.
#[derive(Debug, Default)]
pub struct RequestBodyStats {
    pub bytes: AtomicU64,
    pub over_limit: AtomicBool,
    pub captured: Mutex<Vec<u8>>,
}

/// The request body as sent upstream: counted, limited, optionally captured.
pub struct MeteredRequestBody<B> {
    inner: B,
    stats: Arc<RequestBodyStats>,
    limit: u64,
    capture_limit: usize,
}

impl<B> MeteredRequestBody<B> {
    pub fn new(inner: B, stats: Arc<RequestBodyStats>, limit: u64, capture_limit: usize) -> Self {
        MeteredRequestBody {
            inner,
            stats,
            limit,
            capture_limit,
        }
    }
}

/// The request body went past the configured limit.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

impl<B> Body for MeteredRequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(err)) => return Poll::Ready(Some(Err(err.into()))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            let total = this
                .stats
                .bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed)
                + data.len() as u64;
            if total > this.limit {
                this.stats.over_limit.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit: this.limit }))));
            }
            if this.capture_limit > 0 {
                // The lock is only contended by the event completion, which runs after the body.
                if let Ok(mut captured) = this.stats.captured.lock() {
                    let room = this.capture_limit.saturating_sub(captured.len());
                    captured.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Completes an event with the captured request body prefix (redacts and attaches it).
pub type Finalize = Box<dyn FnOnce(&mut Event, &[u8]) + Send>;

/// Everything needed to complete and emit one request's event.
pub struct PendingEvent {
    pub event: Event,
    pub started: Instant,
    pub request_stats: Arc<RequestBodyStats>,
    pub sink: Arc<dyn EventSink>,
    pub metrics: Arc<GatewayMetrics>,
    /// Called with the final event just before it is emitted (redaction of the captured body).
    pub finalize: Option<Finalize>,
}

/// How a request ended, for its event.
pub enum Ending {
    /// The response was sent whole.
    Complete,
    /// Something failed after the response started; the error type and message.
    Failed(&'static str, String),
}

impl PendingEvent {
    /// Fills in the totals and hands the event to the sink. The future resolves once the sink
    /// accepted it.
    pub fn complete(
        mut self,
        response_bytes: u64,
        ending: Ending,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let event = &mut self.event;
        event.duration_ns = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        event.request_bytes = self.request_stats.bytes.load(Ordering::Relaxed);
        event.response_bytes = response_bytes;
        if let Ending::Failed(kind, message) = ending {
            event.outcome = Some("failure".to_owned());
            event.error_type.get_or_insert_with(|| kind.to_owned());
            event.error_message.get_or_insert(message);
        }
        if let Some(finalize) = self.finalize.take() {
            let captured = self
                .request_stats
                .captured
                .lock()
                .map(|captured| captured.clone())
                .unwrap_or_default();
            finalize(event, &captured);
        }
        let metrics = Arc::clone(&self.metrics);
        metrics
            .requests
            .get_or_create(&StatusClassLabel {
                status_class: GatewayMetrics::status_class(event.status_code),
            })
            .inc();
        metrics
            .request_duration
            .observe(self.started.elapsed().as_secs_f64());
        metrics.request_bytes.inc_by(event.request_bytes);
        metrics.response_bytes.inc_by(response_bytes);
        let emitted = self.sink.emit(std::mem::take(&mut self.event));
        Box::pin(async move {
            let waiting = Instant::now();
            emitted.await;
            metrics.event_wait.observe(waiting.elapsed().as_secs_f64());
            metrics.events_emitted.inc();
        })
    }
}

/// The response body sent to the client.
pub struct ObservedBody {
    inner: ProxyBody,
    bytes: u64,
    content_length: Option<u64>,
    pending: Option<PendingEvent>,
    held: Option<Frame<Bytes>>,
    emitting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    finished: bool,
}

impl ObservedBody {
    /// Wraps `inner`; `pending` is emitted when the body ends (or is dropped).
    pub fn new(inner: ProxyBody, pending: Option<PendingEvent>) -> Self {
        let content_length = inner.size_hint().exact();
        ObservedBody {
            inner,
            bytes: 0,
            content_length,
            pending,
            held: None,
            emitting: None,
            finished: false,
        }
    }

    fn start_emitting(&mut self, ending: Ending) {
        if let Some(pending) = self.pending.take() {
            self.emitting = Some(pending.complete(self.bytes, ending));
        }
    }
}

impl Body for ObservedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(emitting) = this.emitting.as_mut() {
                ready!(emitting.as_mut().poll(cx));
                this.emitting = None;
                return Poll::Ready(this.held.take().map(Ok));
            }
            if this.finished {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        this.bytes += data.len() as u64;
                    }
                    let last = this.inner.is_end_stream()
                        || this
                            .content_length
                            .is_some_and(|length| this.bytes >= length);
                    if !last {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    // Hold the final frame: the client must not see a complete response before
                    // its event is accepted.
                    this.finished = true;
                    this.held = Some(frame);
                    this.start_emitting(Ending::Complete);
                }
                Some(Err(err)) => {
                    this.finished = true;
                    let message = format!("upstream response body failed: {err}");
                    if let Some(pending) = this.pending.take() {
                        spawn_detached(
                            pending.complete(this.bytes, Ending::Failed("upstream_body", message)),
                        );
                    }
                    return Poll::Ready(Some(Err(err)));
                }
                None => {
                    this.finished = true;
                    this.start_emitting(Ending::Complete);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished && self.emitting.is_none() && self.held.is_none() && self.pending.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        if let Some(emitting) = self.emitting.take() {
            // The client left while the event was on its way: finish handing it over.
            spawn_detached(emitting);
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        // Dropped before the end: either nothing was to be sent (HEAD, 204, 304) or the client
        // went away in the middle.
        let ending = if self.inner.is_end_stream() || self.content_length == Some(0) {
            Ending::Complete
        } else {
            Ending::Failed(
                "client_disconnect",
                format!(
                    "client closed the connection after {} response bytes",
                    self.bytes
                ),
            )
        };
        spawn_detached(pending.complete(self.bytes, ending));
    }
}

/// Runs an emission that nobody waits for (the client is gone): at once if the sink has
/// already taken the event, else on a task of its own. Outside a runtime (shutdown), the event
/// is still journaled when the sink writes it in `emit` (as the journal sink does with an
/// interval fsync).
pub fn spawn_detached(mut future: Pin<Box<dyn Future<Output = ()> + Send>>) {
    if poll_once(&mut future) {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(future);
    }
}

/// Runs an emission to its end, waiting for it: at once if the sink has already taken the
/// event (the usual case: no task, no trip through the scheduler), else on a task of its own so
/// that it finishes even if the connection, and this future with it, goes.
pub async fn finish_emission(mut future: Pin<Box<dyn Future<Output = ()> + Send>>) {
    if !poll_once(&mut future) {
        let _ = tokio::spawn(future).await;
    }
}

/// Polls `future` once with a waker that does nothing; whether it completed. A future still
/// pending is polled again by whoever runs it next, with a real waker.
fn poll_once(future: &mut Pin<Box<dyn Future<Output = ()> + Send>>) -> bool {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    future.as_mut().poll(&mut context).is_ready()
}

/// Emits the event if a request is abandoned before a response exists (client left while the
/// upstream was still thinking).
pub struct AbandonGuard(pub Option<PendingEvent>);

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if let Some(pending) = self.0.take() {
            spawn_detached(pending.complete(
                0,
                Ending::Failed(
                    "client_disconnect",
                    "client closed the connection before the response".to_owned(),
                ),
            ));
        }
    }
}
