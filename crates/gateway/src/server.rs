//! The listener: accepts connections, terminates TLS, serves HTTP/1.1 and HTTP/2 on each.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use apiwatch_event::identity::Fingerprinter;
use apiwatch_event::redact::Redactor;
use apiwatch_event::route::RouteTemplater;
use apiwatch_event::{Event, EventKind};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::config::GatewaySettings;
use crate::error::{Error, Result};
use crate::metrics::{GatewayMetrics, ThreadLabel};
use crate::proxy::{self, Shared};
use crate::{EventSink, tls};

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish after shutdown is asked.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The running reverse proxy.
pub struct Gateway {
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ready: Option<Arc<AtomicBool>>,
}

impl Gateway {
    /// Builds the gateway: upstream pool, TLS acceptor, redaction and identity policies.
    pub fn new(
        settings: GatewaySettings,
        sink: Arc<dyn EventSink>,
        fingerprinter: Fingerprinter,
    ) -> Result<Self> {
        if settings.routes.is_empty() {
            return Err(Error::NoRoutes);
        }
        let tls = settings.tls.as_ref().map(tls::acceptor).transpose()?;
        let client = upstream_client(&settings);
        let shared = Shared {
            redactor: Arc::new(Redactor::new(&settings.redact)),
            templater: RouteTemplater::new(&settings.route_templates),
            scheme: if tls.is_some() { "https" } else { "http" },
            settings,
            client,
            sink,
            metrics: Arc::new(GatewayMetrics::default()),
            fingerprinter,
            enforcer: None,
            load: None,
        };
        Ok(Gateway {
            shared: Arc::new(shared),
            tls,
            ready: None,
        })
    }

    /// Clears `ready` the moment the gateway starts to stop, asked or not: a serving thread
    /// that fails makes the whole gateway stop, and its readiness (`/readyz`) goes at once
    /// rather than after the other threads have drained.
    pub fn with_readiness(mut self, ready: Arc<AtomicBool>) -> Self {
        self.ready = Some(ready);
        self
    }

    /// Enforces decisions: `enforcer` is asked before every request is forwarded.
    ///
    /// # Panics
    ///
    /// When called after [`Gateway::serve`] started (the gateway is shared by then).
    pub fn with_enforcer(mut self, enforcer: Arc<dyn crate::Enforcer>) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("with_enforcer is called before serving")
            .enforcer = Some(enforcer);
        self
    }

    /// The gateway's metrics, to register with the admin server.
    pub fn metrics(&self) -> Arc<GatewayMetrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// Serves connections from `listener` until `shutdown` resolves, then stops accepting and
    /// gives in-flight requests a bounded time to finish.
    ///
    /// With `settings.threads` above zero, connections are served by that many threads, each
    /// with its own single-threaded runtime and upstream pool, all accepting from `listener`:
    /// a connection, its requests and their upstream connections stay on one thread, so no
    /// request wakes another thread (as nginx's workers). With zero, they are served on the
    /// caller's runtime.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let threads = self.shared.settings.threads;
        if threads == 0 {
            return self.serve_here(listener, shutdown, None).await;
        }
        let listener = listener.into_std().map_err(Error::Thread)?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (finished, mut ended) = tokio::sync::mpsc::unbounded_channel();
        let (inboxes, mut receivers): (Vec<_>, Vec<_>) = (0..threads)
            .map(|_| tokio::sync::mpsc::unbounded_channel())
            .unzip();
        let peers = Arc::new(Peers {
            open: (0..threads)
                .map(|index| {
                    self.shared
                        .metrics
                        .open_connections
                        .get_or_create(&ThreadLabel {
                            thread: index.to_string(),
                        })
                        .clone()
                })
                .collect(),
            inboxes,
        });
        for (index, inbox) in receivers.drain(..).enumerate() {
            let load = ThreadLoad {
                peers: Arc::clone(&peers),
                index,
            };
            let listener = listener.try_clone().map_err(Error::Thread)?;
            let mut shared = (*self.shared).clone();
            shared.client = upstream_client(&shared.settings);
            shared.load = Some(load.clone());
            let gateway = Gateway {
                shared: Arc::new(shared),
                tls: self.tls.clone(),
                ready: None,
            };
            let balance = Balance { load, inbox };
            let mut stopped = stopped.clone();
            let done = Finished {
                index,
                to: finished.clone(),
                result: None,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(Error::Thread)?;
            std::thread::Builder::new()
                .name(format!("apiwatch-gw-{index}"))
                .spawn(move || {
                    let mut done = done;
                    done.result = Some(catching_panics(|| runtime.block_on(async move {
                        let listener = TcpListener::from_std(listener).map_err(Error::Thread)?;
                        let stop_asked = std::rc::Rc::new(std::cell::Cell::new(None));
                        let stop = {
                            let stop_asked = std::rc::Rc::clone(&stop_asked);
                            async move {
                                let _ = stopped.wait_for(|stop| *stop).await;
                                stop_asked.set(Some(tokio::time::Instant::now()));
                            }
                        };
                        let result = gateway.serve_here(listener, stop, Some(balance)).await;
                        // Emissions left running after their responses (clients gone) finish
                        // before the runtime goes, within one drain time from the stop.
                        let deadline = stop_asked.get().unwrap_or_else(tokio::time::Instant::now)
                            + DRAIN_TIMEOUT;
                        let alive =
                            || tokio::runtime::Handle::current().metrics().num_alive_tasks();
                        while alive() > 0 && tokio::time::Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        if alive() > 0 {
                            tracing::warn!(
                                tasks = alive(),
                                "gateway tasks still running {DRAIN_TIMEOUT:?} after the stop are cancelled"
                            );
                        }
                        result
                    })));
                })
                .map_err(Error::Thread)?;
        }
        drop(listener);
        drop(finished);
        let ready = self.ready.clone();
        supervise(threads, &mut ended, shutdown, &stop, move || {
            if let Some(ready) = ready {
                ready.store(false, Ordering::Relaxed);
            }
        })
        .await
    }

    /// The accept loop of one runtime. With `balance`, a connection accepted while another
    /// thread serves fewer is handed to that thread.
    async fn serve_here(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        mut balance: Option<Balance>,
    ) -> Result<()> {
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let limits = &self.shared.settings.limits;
        let read_buffer = read_buffer_bytes(limits);
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .max_buf_size(read_buffer);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(read_buffer).unwrap_or(u32::MAX));
        let builder = Arc::new(builder);
        tokio::pin!(shutdown);
        loop {
            let handed = async {
                match balance.as_mut() {
                    Some(balance) => balance.inbox.recv().await,
                    None => std::future::pending().await,
                }
            };
            let (stream, peer, open) = tokio::select! {
                () = &mut shutdown => break,
                Some(handed) = handed => {
                    let Some((stream, peer, open)) = Balance::adopt(handed) else {
                        continue;
                    };
                    (stream, peer, Some(open))
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        match &balance {
                            Some(balance) => match balance.place(stream, peer) {
                                Placed::Here(stream, open) => (stream, peer, Some(open)),
                                Placed::Elsewhere => continue,
                            },
                            None => (stream, peer, None),
                        }
                    }
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            self.spawn_connection(&builder, &graceful, stream, peer, open);
        }
        drop(listener);
        if let Some(balance) = balance.as_mut() {
            // Peers still accepting may hand over connections until they stop too: refuse
            // further ones (they are served where accepted) and serve those already sent.
            balance.inbox.close();
            while let Ok(handed) = balance.inbox.try_recv() {
                if let Some((stream, peer, open)) = Balance::adopt(handed) {
                    self.spawn_connection(&builder, &graceful, stream, peer, Some(open));
                }
            }
        }
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("in-flight requests did not finish within {DRAIN_TIMEOUT:?}");
        }
        Ok(())
    }

    /// Serves one accepted connection on a task of its own (TLS first when configured).
    fn spawn_connection(
        &self,
        builder: &Arc<auto::Builder<TokioExecutor>>,
        graceful: &GracefulShutdown,
        stream: TcpStream,
        peer: SocketAddr,
        open: Option<OpenConnection>,
    ) {
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&self.shared);
        let builder = Arc::clone(builder);
        let tls = self.tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _open = open;
            match tls {
                None => serve_connection(shared, builder, watcher, stream, peer).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => {
                            serve_connection(shared, builder, watcher, stream, peer).await
                        }
                        Ok(Err(err)) => {
                            shared.metrics.connection_errors.inc();
                            tracing::debug!(%peer, error = %err, "tls handshake failed");
                        }
                        Err(_) => {
                            shared.metrics.connection_errors.inc();
                            tracing::debug!(%peer, "tls handshake timed out");
                        }
                    }
                }
            }
        });
    }
}

/// Runs a serving thread's body; a panic becomes an error that carries its message.
fn catching_panics(body: impl FnOnce() -> Result<()>) -> Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|message| (*message).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(Error::Thread(std::io::Error::other(format!(
            "the thread panicked: {message}"
        ))))
    })
}

/// Sends a serving thread's result when the thread ends, however it ends: a thread that
/// panicked reports so.
struct Finished {
    index: usize,
    to: tokio::sync::mpsc::UnboundedSender<(usize, Result<()>)>,
    result: Option<Result<()>>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let result = self
            .result
            .take()
            .unwrap_or_else(|| Err(Error::Thread(std::io::Error::other("the thread panicked"))));
        let _ = self.to.send((self.index, result));
    }
}

/// Waits for `shutdown`, then tells the `threads` serving threads to stop and waits for them.
/// A thread that ends before the shutdown (it failed or panicked) stops the others at once,
/// and the gateway returns that thread's error: a gateway serving on fewer threads than
/// configured, unseen until the next restart, is worse than one that stops and is restarted.
async fn supervise(
    threads: usize,
    ended: &mut tokio::sync::mpsc::UnboundedReceiver<(usize, Result<()>)>,
    shutdown: impl Future<Output = ()>,
    stop: &tokio::sync::watch::Sender<bool>,
    stopping: impl FnOnce(),
) -> Result<()> {
    let mut first_failure = None;
    let mut remaining = threads;
    tokio::select! {
        () = shutdown => {}
        Some((index, result)) = ended.recv() => {
            remaining -= 1;
            let reason = match result {
                Ok(()) => "it stopped without being asked".to_owned(),
                Err(err) => err.to_string(),
            };
            tracing::error!(thread = index, %reason, "a gateway serving thread ended; stopping the gateway");
            first_failure = Some(Error::ThreadEnded { index, reason });
        }
    }
    stopping();
    let _ = stop.send(true);
    let mut result = match first_failure {
        Some(err) => Err(err),
        None => Ok(()),
    };
    while remaining > 0 {
        let Some((_, outcome)) = ended.recv().await else {
            break;
        };
        remaining -= 1;
        if let (Err(err), Ok(())) = (outcome, &result) {
            result = Err(err);
        }
    }
    result
}

/// What the serving threads know of each other: how many connections each has open, and
/// where to hand one over.
struct Peers {
    open: Vec<Gauge>,
    inboxes: Vec<tokio::sync::mpsc::UnboundedSender<Handed>>,
}

/// A connection handed to another serving thread, counted on that thread by `open` for as
/// long as it exists: one left in the inbox of a thread that ended is uncounted when dropped.
struct Handed {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    open: OpenConnection,
}

/// One serving thread's place among its peers, where its connections are counted.
#[derive(Clone)]
pub struct ThreadLoad {
    peers: Arc<Peers>,
    index: usize,
}

impl ThreadLoad {
    /// Counts one more connection on this thread until the guard drops: an upgraded tunnel
    /// outlives the HTTP connection it came from and is counted on its own.
    pub fn hold(&self) -> OpenConnection {
        OpenConnection::count(&self.peers, self.index)
    }
}

/// One serving thread's side of [`Peers`].
struct Balance {
    load: ThreadLoad,
    inbox: tokio::sync::mpsc::UnboundedReceiver<Handed>,
}

/// Where an accepted connection is served.
enum Placed {
    /// Here, counted on this thread by the guard.
    Here(TcpStream, OpenConnection),
    Elsewhere,
}

impl Balance {
    /// Keeps `stream` unless another thread has fewer connections open (connections that
    /// arrive together, as a client's pool opening, would otherwise land on whichever thread
    /// woke first); counts it for the thread that takes it.
    fn place(&self, stream: TcpStream, peer: SocketAddr) -> Placed {
        let ThreadLoad { peers, index: me } = &self.load;
        let (open, me) = (&peers.open, *me);
        let mine = open[me].get();
        let (least, fewest) = open
            .iter()
            .enumerate()
            .map(|(index, count)| (index, count.get()))
            .min_by_key(|&(_, count)| count)
            .unwrap_or((me, mine));
        if least == me || fewest >= mine {
            return Placed::Here(stream, OpenConnection::count(peers, me));
        }
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "cannot hand a connection to another gateway thread");
                return Placed::Elsewhere;
            }
        };
        let handed = Handed {
            stream,
            peer,
            open: OpenConnection::count(peers, least),
        };
        match peers.inboxes[least].send(handed) {
            Ok(()) => Placed::Elsewhere,
            Err(returned) => {
                // That thread has stopped: serve it here after all (the returned guard
                // uncounts it there as it drops).
                match TcpStream::from_std(returned.0.stream) {
                    Ok(stream) => Placed::Here(stream, OpenConnection::count(peers, me)),
                    Err(_) => Placed::Elsewhere,
                }
            }
        }
    }

    /// Registers a connection handed over by another thread with this thread's runtime; one
    /// that cannot be is closed, uncounted (its guard drops) and logged.
    fn adopt(handed: Handed) -> Option<(TcpStream, SocketAddr, OpenConnection)> {
        let Handed { stream, peer, open } = handed;
        match TcpStream::from_std(stream) {
            Ok(stream) => Some((stream, peer, open)),
            Err(err) => {
                tracing::warn!(error = %err, "cannot take a connection handed over by another gateway thread");
                None
            }
        }
    }
}

/// Counts a connection on a serving thread until it drops.
pub struct OpenConnection {
    peers: Arc<Peers>,
    index: usize,
}

impl OpenConnection {
    fn count(peers: &Arc<Peers>, index: usize) -> OpenConnection {
        peers.open[index].inc();
        OpenConnection {
            peers: Arc::clone(peers),
            index,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.peers.open[self.index].dec();
    }
}

/// hyper refuses (431, before our handler) heads past its read buffer; that buffer is kept well
/// above our own header limit so that our limit, with its precise message, is the one clients meet.
fn read_buffer_bytes(limits: &crate::config::Limits) -> usize {
    (limits.max_header_bytes + 16 * 1024).max(8192)
}

/// Header fields hyper accepts in an HTTP/1 request head (its default, kept: setting it
/// explicitly makes hyper allocate every request's header array on the heap); more is refused
/// with 431.
const MAX_HEADER_FIELDS: usize = 100;

/// A keep-alive client for the upstreams; its connection tasks run on the runtime that first
/// uses it.
fn upstream_client(settings: &GatewaySettings) -> Client<HttpConnector, crate::body::ProxyBody> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(settings.limits.upstream_connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(settings.limits.pool_idle_timeout)
        .pool_max_idle_per_host(settings.limits.pool_max_idle_per_host)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .set_host(false)
        .build(connector)
}

async fn serve_connection<IO>(
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
    stream: IO,
    peer: SocketAddr,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handler_shared = Arc::clone(&shared);
    let service =
        service_fn(move |request| proxy::handle(Arc::clone(&handler_shared), peer, request));
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    if let Err(err) = watcher.watch(connection.into_owned()).await {
        record_connection_error(&shared, peer, err.as_ref());
    }
}

/// A connection that failed below the request level (malformed HTTP, headers past hyper's
/// buffer): counted, and recorded as an event when it looks like a refused request rather
/// than a client that simply went away.
fn record_connection_error(
    shared: &Shared,
    peer: SocketAddr,
    err: &(dyn std::error::Error + 'static),
) {
    shared.metrics.connection_errors.inc();
    let Some(hyper_error) = err.downcast_ref::<hyper::Error>() else {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
        return;
    };
    if !hyper_error.is_parse() && !hyper_error.is_parse_too_large() {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
        return;
    }
    let mut event = Event::new(
        EventKind::Request,
        "gateway.access",
        time::OffsetDateTime::now_utc(),
    );
    event.source_ip = Some(peer.ip().to_canonical().to_string());
    event.source_port = Some(peer.port());
    event.url_scheme = Some(shared.scheme.to_owned());
    event.outcome = Some("failure".to_owned());
    if hyper_error.is_parse_too_large() {
        event.status_code = Some(431);
        event.error_type = Some("headers_too_large".to_owned());
        // hyper reports both causes as one error kind.
        event.error_message = Some(format!(
            "request head larger than the {} byte read buffer or with more than {MAX_HEADER_FIELDS} \
             header fields; refused before parsing",
            read_buffer_bytes(&shared.settings.limits)
        ));
    } else {
        event.status_code = Some(400);
        event.error_type = Some("malformed_request".to_owned());
        event.error_message = Some(apiwatch_event::sanitize::sanitize_str(
            &format!("malformed http request: {err}"),
            512,
        ));
    }
    // A refused request is a request: counted with the others by its status class.
    shared
        .metrics
        .requests
        .get_or_create(&crate::metrics::StatusClassLabel {
            status_class: GatewayMetrics::status_class(event.status_code),
        })
        .inc();
    crate::body::spawn_detached(shared.sink.emit(event));
}

#[cfg(test)]
mod tests {
    use super::*;

    type Body = Box<dyn FnOnce(tokio::sync::watch::Receiver<bool>) -> Result<()> + Send>;

    /// Stand-in serving threads that report through [`Finished`] as the real ones do.
    fn spawn(
        bodies: Vec<Body>,
    ) -> (
        tokio::sync::mpsc::UnboundedReceiver<(usize, Result<()>)>,
        tokio::sync::watch::Sender<bool>,
    ) {
        let (to, ended) = tokio::sync::mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        for (index, body) in bodies.into_iter().enumerate() {
            let done = Finished {
                index,
                to: to.clone(),
                result: None,
            };
            let stopped = stopped.clone();
            std::thread::spawn(move || {
                let mut done = done;
                done.result = Some(catching_panics(|| body(stopped)));
            });
        }
        (ended, stop)
    }

    /// A thread that serves until told to stop, and says when it saw the stop.
    fn until_stopped(seen: std::sync::mpsc::Sender<()>) -> Body {
        Box::new(move |mut stopped| {
            while !*stopped.borrow_and_update() {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = seen.send(());
            Ok(())
        })
    }

    #[tokio::test]
    async fn a_panicking_serving_thread_stops_the_gateway_with_an_error() {
        let (seen, saw) = std::sync::mpsc::channel();
        let (mut ended, stop) = spawn(vec![
            Box::new(|_| panic!("accept loop bug")),
            until_stopped(seen),
        ]);
        let ready = AtomicBool::new(true);
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            supervise(2, &mut ended, std::future::pending(), &stop, || {
                ready.store(false, Ordering::Relaxed);
            }),
        )
        .await
        .expect("the gateway noticed the thread without waiting for a shutdown");
        assert!(
            !ready.load(Ordering::Relaxed),
            "readiness is cleared when a thread fails"
        );
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("thread 0") && err.contains("panicked: accept loop bug"),
            "{err}"
        );
        saw.try_recv().expect("the other thread was told to stop");
    }

    /// The error `supervise` returns for two threads, one of which ends without a shutdown.
    async fn early_failure(
        ended: &mut tokio::sync::mpsc::UnboundedReceiver<(usize, Result<()>)>,
        stop: &tokio::sync::watch::Sender<bool>,
    ) -> String {
        tokio::time::timeout(
            Duration::from_secs(5),
            supervise(2, ended, std::future::pending(), stop, || {}),
        )
        .await
        .expect("the gateway noticed the thread without waiting for a shutdown")
        .unwrap_err()
        .to_string()
    }

    #[tokio::test]
    async fn a_serving_thread_that_fails_or_returns_early_stops_the_gateway() {
        let (seen, saw) = std::sync::mpsc::channel();
        let (mut ended, stop) = spawn(vec![
            until_stopped(seen.clone()),
            Box::new(|_| Err(Error::Thread(std::io::Error::other("listener refused")))),
        ]);
        let err = early_failure(&mut ended, &stop).await;
        assert!(
            err.contains("thread 1") && err.contains("listener refused"),
            "{err}"
        );
        saw.try_recv().unwrap();

        let (mut ended, stop) = spawn(vec![Box::new(|_| Ok(())), until_stopped(seen)]);
        let err = early_failure(&mut ended, &stop).await;
        assert!(err.contains("without being asked"), "{err}");
        saw.try_recv().unwrap();
    }

    #[tokio::test]
    async fn a_connection_queued_for_a_thread_that_ended_is_uncounted() {
        let (to_first, first_inbox) = tokio::sync::mpsc::unbounded_channel();
        let (to_second, second_inbox) = tokio::sync::mpsc::unbounded_channel();
        let peers = Arc::new(Peers {
            open: vec![Gauge::default(), Gauge::default()],
            inboxes: vec![to_first, to_second],
        });
        let first = Balance {
            load: ThreadLoad {
                peers: Arc::clone(&peers),
                index: 0,
            },
            inbox: first_inbox,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
            let _client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            listener.accept().await.unwrap()
        }
        // The first thread keeps a connection, then hands the next to the idle second one.
        let (stream, peer) = accept(&listener).await;
        let Placed::Here(_stream, kept) = first.place(stream, peer) else {
            panic!("the first connection stays where it was accepted");
        };
        let (stream, peer) = accept(&listener).await;
        assert!(matches!(first.place(stream, peer), Placed::Elsewhere));
        assert_eq!(
            (peers.open[0].get(), peers.open[1].get()),
            (1, 1),
            "each thread counts the connection it serves or will serve"
        );
        // The second thread ends before taking it: the queued connection is uncounted.
        drop(second_inbox);
        assert_eq!(peers.open[1].get(), 0);
        drop(kept);
        assert_eq!(peers.open[0].get(), 0);
    }

    #[tokio::test]
    async fn a_shutdown_stops_every_thread_and_succeeds() {
        let (seen, saw) = std::sync::mpsc::channel();
        let (mut ended, stop) = spawn(vec![until_stopped(seen.clone()), until_stopped(seen)]);
        let shutdown = tokio::time::sleep(Duration::from_millis(50));
        let ready = AtomicBool::new(true);
        tokio::time::timeout(
            Duration::from_secs(5),
            supervise(2, &mut ended, shutdown, &stop, || {
                ready.store(false, Ordering::Relaxed);
            }),
        )
        .await
        .expect("the threads stopped")
        .unwrap();
        assert!(!ready.load(Ordering::Relaxed));
        assert_eq!(
            saw.try_iter().count(),
            2,
            "both threads stopped before the return"
        );
    }
}
