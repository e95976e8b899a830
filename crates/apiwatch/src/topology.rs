//! Wires the pipeline, top to bottom: journal -> gateway (emitting into the journal) -> admin.
//!
//! ```text
//! clients -> gateway threads --(Event)--> JournalSink -> journal (the frame written by the
//!            (one runtime each)                          request's thread; the writer thread
//!                                                        rotates, syncs, checkpoints)
//! admin: /healthz /readyz /metrics  <- registry of every stage's metrics
//! ```
//! The journal is opened first (recovery runs before any request is accepted) and closed last
//! (the final checkpoint covers every request answered).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use apiwatch_event::Event;
use apiwatch_event::identity::Fingerprinter;
use apiwatch_gateway::{EventSink, Gateway};
use apiwatch_journal::{Appender, Journal, JournalConfig};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::config::Settings;

/// Hands gateway events to the journal. Waits (bounded by the journal's queue) rather than
/// dropping; an event is only lost when the journal itself has failed, and then it is counted
/// in `apiwatch_events_dropped_total` and logged.
pub struct JournalSink {
    appender: Appender,
    dropped: Counter,
    progress: Arc<crate::watchdog::PipelineProgress>,
}

impl EventSink for JournalSink {
    fn emit(&self, event: Event) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let dropped = self.dropped.clone();
        let progress = Arc::clone(&self.progress);
        progress
            .submitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Written here, on the request's thread, when the journal's policy allows (see
        // `Appender::start_append`): a response never waits on a second task, and an emission
        // abandoned at shutdown has already reached the journal.
        let appending = self.appender.start_append(event.to_json());
        let event_id = event.id;
        Box::pin(async move {
            let appended = appending.await;
            progress
                .answered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Err(err) = appended {
                dropped.inc();
                tracing::error!(event_id = %event_id, error = %err, "event dropped: journal append failed");
            }
        })
    }
}

/// A running apiwatch: gateway, journal and admin API.
pub struct Running {
    /// Where the gateway listens.
    pub gateway_addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// Set to make detection reload its rules (SIGHUP).
    pub reload_rules: Arc<AtomicBool>,
    detect: Option<crate::detect::DetectStage>,
    store: Option<crate::store::StoreStage>,
    ready: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    /// `None` once it ended (see [`Running::run_until`]).
    gateway_task: Option<tokio::task::JoinHandle<apiwatch_gateway::Result<()>>>,
    admin_task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    journal: Journal,
}

/// Opens the journal, binds the listeners and starts serving.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "failed to create data directory {}",
            settings.data_dir.display()
        )
    })?;
    let mut journal_config = JournalConfig::new(&settings.data_dir);
    journal_config.fsync = settings.fsync;
    if let Some(bytes) = settings.segment_max_bytes {
        journal_config.segment_max_bytes = bytes;
    }
    if let Some(interval) = settings.checkpoint_interval {
        journal_config.checkpoint_interval = interval;
    }
    journal_config
        .witness_file
        .clone_from(&settings.witness_file);
    if let Some(capacity) = settings.queue_capacity {
        journal_config.queue_capacity = capacity;
    }
    let (journal, recovery) = Journal::open(journal_config).with_context(|| {
        format!(
            "failed to open the journal in {}",
            settings.data_dir.display()
        )
    })?;
    if recovery.truncated_bytes > 0 {
        tracing::warn!(%recovery, "journal recovery truncated a torn tail");
    } else {
        tracing::info!(%recovery, "journal opened");
    }
    let fingerprint_key =
        apiwatch_journal::load_or_create_secret(&settings.data_dir, "fingerprint")
            .context("failed to load the fingerprint key")?;

    let mut registry = Registry::default();
    journal.register_metrics(&mut registry);
    let (tokens, new_token) = apiwatch_server::tokens::TokenStore::load_or_init(&settings.data_dir)
        .context("failed to load the API tokens")?;
    if let Some(token) = new_token {
        // Shown once: only its hash is kept.
        eprintln!(
            "apiwatch: admin API token (shown once; only its hash is stored in {}): {token}",
            apiwatch_server::tokens::TOKENS_FILE
        );
    }
    let gateway_listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("failed to listen on {} (gateway)", settings.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(settings.admin_listen)
        .await
        .with_context(|| format!("failed to listen on {} (admin)", settings.admin_listen))?;
    let gateway_addr = gateway_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let watchdog = Arc::new(crate::watchdog::Watchdog::new(
        settings.alerts.heartbeats.clone(),
        settings.alerts.stall_after,
    ));
    let progress = Arc::new(crate::watchdog::PipelineProgress::default());
    let alerting = if settings.alerts.enabled {
        let console = settings
            .alerts
            .console_url
            .clone()
            .unwrap_or_else(|| format!("http://{admin_addr}"));
        Some(crate::alerting::Alerting::open(
            &settings.alerts,
            &settings.data_dir,
            console,
            journal.appender(),
            (Arc::clone(&watchdog), Arc::clone(&progress)),
            &mut registry,
        )?)
    } else {
        None
    };
    let responder = if settings.respond.enabled {
        Some(crate::respond::Responder::open(
            &settings.respond,
            &settings.data_dir,
            journal.appender(),
        )?)
    } else {
        None
    };
    let reload_rules = Arc::new(AtomicBool::new(false));
    let detect = if settings.detect.enabled {
        Some(crate::detect::DetectStage::start(
            &settings.detect,
            &settings.data_dir,
            recovery.records,
            journal.appender(),
            Arc::clone(&reload_rules),
            crate::detect::FindingSinks {
                responder: responder.clone(),
                alerting: alerting.clone(),
                watchdog: Some(Arc::clone(&watchdog)),
            },
            &mut registry,
        )?)
    } else {
        None
    };
    let store = if settings.store.enabled {
        let store = Arc::new(open_store_waiting(&settings).await?);
        // What the files do not hold is replayed before the API answers, so a query right
        // after a restart already sees every journaled event.
        let replayed = crate::store::catch_up(&store, &settings.data_dir)
            .context("failed to replay the journal into the query store")?;
        if replayed > 0 {
            tracing::info!(replayed, "query store caught up with the journal");
        }
        let stage = crate::store::StoreStage::start(
            Arc::clone(&store),
            &settings.data_dir,
            journal.appender(),
            journal.size_records(),
            &mut registry,
        )?;
        Some((store, stage))
    } else {
        None
    };
    let dropped = Counter::default();
    registry.register(
        "apiwatch_events_dropped",
        "Events lost because the journal failed",
        dropped.clone(),
    );
    let sink = Arc::new(JournalSink {
        appender: journal.appender(),
        dropped,
        progress,
    });
    let mut gateway = Gateway::new(
        settings.gateway.clone(),
        sink,
        Fingerprinter::new(fingerprint_key),
    )
    .context("failed to build the gateway")?;
    if let Some(responder) = &responder {
        gateway = gateway.with_enforcer(responder.enforcer());
    }
    gateway.metrics().register(&mut registry);

    // Cleared by the gateway itself the moment it starts to stop (a failed serving thread
    // stops it without anyone asking), and by `stop`.
    let ready = Arc::new(AtomicBool::new(false));
    let gateway = gateway.with_readiness(Arc::clone(&ready));
    let (shutdown, _) = watch::channel(false);
    if let Some(responder) = &responder {
        tokio::spawn(responder.clone().run_expiry(shutdown.subscribe()));
    }
    if let Some(alerting) = &alerting {
        tokio::spawn(alerting.clone().run(shutdown.subscribe()));
    }
    // Ready from here (the journal is open, the gateway's listener bound), and before the
    // gateway runs, so that a serving thread failing at once clears it for good.
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let gateway_task = tokio::spawn(gateway.serve(gateway_listener, stopped(shutdown.subscribe())));
    let mut admin_state = apiwatch_server::AdminState::new(registry, Arc::clone(&ready))
        .with_api(tokens, settings.data_dir.clone());
    if let Some(responder) = &responder {
        admin_state = admin_state
            .with_decisions(Arc::new(responder.clone()))
            .with_bouncers(responder.table(), &settings.data_dir);
    }
    if let Some(alerting) = &alerting {
        admin_state = admin_state.with_alerts(Arc::new(alerting.clone()));
    }
    let retention = crate::retention::Retention::new(
        settings.retention.clone(),
        &settings.data_dir,
        store.as_ref().map(|(store, _)| Arc::clone(store)),
        journal.appender(),
    );
    tokio::spawn(Arc::clone(&retention).run(shutdown.subscribe()));
    admin_state = admin_state
        .with_retention(retention)
        .with_audit(Arc::new(crate::store::ReadAuditor::new(journal.appender())));
    let store = match store {
        Some((store, stage)) => {
            admin_state = admin_state.with_events(Arc::new(crate::store::QueryService::new(
                store,
                journal.appender(),
                settings.store.limits,
            )));
            Some(stage)
        }
        None => None,
    };
    let admin_task = tokio::spawn(apiwatch_server::serve(
        admin_listener,
        admin_state,
        stopped(shutdown.subscribe()),
    ));
    Ok(Running {
        gateway_addr,
        admin_addr,
        reload_rules,
        detect,
        store,
        ready,
        shutdown,
        gateway_task: Some(gateway_task),
        admin_task: Some(admin_task),
        journal,
    })
}

async fn stopped(mut receiver: watch::Receiver<bool>) {
    let _ = receiver.wait_for(|stop| *stop).await;
}

/// What a serving task's end means: `what` failed, or panicked.
fn task_outcome<E>(
    what: &str,
    ended: Result<Result<(), E>, tokio::task::JoinError>,
) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match ended {
        Ok(result) => result.with_context(|| format!("{what} failed")),
        Err(err) if err.is_panic() => Err(anyhow::anyhow!("{what} task panicked")),
        Err(_) => Err(anyhow::anyhow!("{what} task was cancelled")),
    }
}

impl Running {
    /// Serves until `signal` resolves, then stops as [`Running::stop`] does.
    ///
    /// When the gateway or the admin server ends first (a serving thread failed or panicked,
    /// a listener broke), everything else is stopped the same way, the journal closed with
    /// its checkpoint, and the error returned: the process exits non-zero and its supervisor
    /// restarts it, rather than running on without a gateway until the next restart.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (Some(gateway), Some(admin)) = (self.gateway_task.as_mut(), self.admin_task.as_mut())
        else {
            return self.stop().await;
        };
        let failure = tokio::select! {
            () = signal => None,
            ended = gateway => {
                self.gateway_task = None;
                Some(task_outcome("gateway", ended).and_then(|()| {
                    Err(anyhow::anyhow!("the gateway stopped without being asked"))
                }))
            }
            ended = admin => {
                self.admin_task = None;
                Some(task_outcome("admin server", ended).and_then(|()| {
                    Err(anyhow::anyhow!("the admin server stopped without being asked"))
                }))
            }
        };
        match failure {
            None => {
                tracing::info!("shutting down");
                self.stop().await
            }
            Some(Err(err)) => {
                tracing::error!(error = format!("{err:#}"), "shutting down after a failure");
                if let Err(stop_err) = self.stop().await {
                    tracing::error!(
                        error = format!("{stop_err:#}"),
                        "shutdown after the failure also failed"
                    );
                }
                Err(err)
            }
            Some(Ok(())) => unreachable!("an early end is always an error"),
        }
    }

    /// Stops accepting, drains in-flight requests, then closes the journal with a final
    /// checkpoint.
    ///
    /// Every stage is stopped even when an earlier one reports a failure (detection's last
    /// findings, the store's memtable and the journal's checkpoint are never skipped because
    /// the gateway ended badly); the first failure is returned, later ones are logged.
    pub async fn stop(self) -> anyhow::Result<()> {
        // Tell load balancers to stop sending traffic before the listeners close.
        self.ready
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        let mut outcome = StopOutcome::default();
        if let Some(task) = self.gateway_task {
            outcome.record(task_outcome("gateway", task.await));
        }
        if let Some(task) = self.admin_task {
            outcome.record(task_outcome("admin server", task.await));
        }
        if let Some(detect) = self.detect {
            outcome.record(
                tokio::task::spawn_blocking(move || detect.stop())
                    .await
                    .context("detection shutdown panicked"),
            );
        }
        if let Some(store) = self.store {
            outcome.record(
                tokio::task::spawn_blocking(move || store.stop())
                    .await
                    .context("store shutdown panicked"),
            );
        }
        let journal = self.journal;
        match tokio::task::spawn_blocking(move || journal.shutdown())
            .await
            .context("journal shutdown panicked")
            .and_then(|closed| closed.context("failed to close the journal"))
        {
            Ok(checkpoint) => tracing::info!(?checkpoint, "journal closed"),
            Err(err) => outcome.record(Err(err)),
        }
        outcome.finish()
    }
}

/// The first failure met while stopping; the stages after it are still stopped.
#[derive(Default)]
struct StopOutcome {
    first: Option<anyhow::Error>,
}

impl StopOutcome {
    fn record(&mut self, result: anyhow::Result<()>) {
        if let Err(err) = result {
            if self.first.is_some() {
                tracing::error!(error = format!("{err:#}"), "shutdown: a further failure");
            } else {
                self.first = Some(err);
            }
        }
    }

    fn finish(self) -> anyhow::Result<()> {
        self.first.map_or(Ok(()), Err)
    }
}

/// How long a start waits for another process (a CLI read bringing the store up to the
/// journal) to let go of the store.
const STORE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Opens the query store for writing, waiting up to [`STORE_LOCK_WAIT`] while another process
/// holds it.
async fn open_store_waiting(settings: &Settings) -> anyhow::Result<apiwatch_store::Store> {
    let deadline = std::time::Instant::now() + STORE_LOCK_WAIT;
    let mut told = false;
    loop {
        match apiwatch_store::Store::open_writer(&settings.data_dir, settings.store.config.clone())
        {
            Err(apiwatch_store::Error::Locked(path)) if std::time::Instant::now() < deadline => {
                if !told {
                    tracing::warn!(path = %path.display(), "another process holds the query store (a CLI read catching it up?); waiting for it");
                    told = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            opened => return opened.context("failed to open the query store"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A start finding the store held by another process (a CLI read catching it up) waits
    /// for it instead of failing.
    #[tokio::test]
    async fn a_start_waits_for_another_holder_of_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let overrides = crate::config::Overrides {
            upstream: Some("http://127.0.0.1:9".into()),
            data_dir: Some(dir.path().to_path_buf()),
            ..crate::config::Overrides::default()
        };
        let settings = crate::config::load(None, &overrides).unwrap();
        let holder =
            apiwatch_store::Store::open_writer(dir.path(), apiwatch_store::StoreConfig::default())
                .unwrap();
        let opening = tokio::spawn(async move { open_store_waiting(&settings).await });
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        assert!(!opening.is_finished(), "it waited while the store was held");
        drop(holder);
        let opened = tokio::time::timeout(std::time::Duration::from_secs(5), opening)
            .await
            .expect("it opened once the store was let go")
            .unwrap();
        assert!(opened.is_ok(), "{:?}", opened.err());
    }

    /// An event the journal can no longer take is counted as dropped (the metric operators
    /// alert on), never lost silently; one it took is not.
    #[tokio::test]
    async fn an_event_the_journal_refuses_is_counted_as_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) =
            apiwatch_journal::Journal::open(apiwatch_journal::JournalConfig::new(dir.path()))
                .unwrap();
        let sink = JournalSink {
            appender: journal.appender(),
            dropped: Counter::default(),
            progress: Arc::default(),
        };
        let event = || {
            Event::new(
                apiwatch_event::EventKind::Request,
                "test",
                time::OffsetDateTime::now_utc(),
            )
        };
        sink.emit(event()).await;
        assert_eq!(sink.dropped.get(), 0);
        journal.shutdown().unwrap();
        sink.emit(event()).await;
        assert_eq!(sink.dropped.get(), 1);
        let progress = &sink.progress;
        assert_eq!(
            progress
                .submitted
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        assert_eq!(
            progress.answered.load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_gateway_that_ends_early_stops_everything_and_closes_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let overrides = crate::config::Overrides {
            // Nothing listens there: the request is answered 502, and journaled.
            upstream: Some("http://127.0.0.1:9".into()),
            listen: Some("127.0.0.1:0".into()),
            admin: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.path().to_path_buf()),
            ..crate::config::Overrides::default()
        };
        let settings = crate::config::load(None, &overrides).unwrap();
        let running = start(settings).await.unwrap();
        let ready = Arc::clone(&running.ready);
        assert!(ready.load(std::sync::atomic::Ordering::Relaxed));

        let mut client = tokio::net::TcpStream::connect(running.gateway_addr)
            .await
            .unwrap();
        client
            .write_all(b"GET /x HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 502"), "{answer:?}");

        // The gateway ends without being asked (as when a serving thread fails).
        running.gateway_task.as_ref().unwrap().abort();
        let err = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            running.run_until(std::future::pending()),
        )
        .await
        .expect("an early end stops apiwatch without a signal")
        .expect_err("and is reported as a failure");
        assert!(
            format!("{err:#}").contains("gateway task was cancelled"),
            "{err:#}"
        );
        assert!(!ready.load(std::sync::atomic::Ordering::Relaxed));

        // Everything else was stopped the normal way: the journal was closed with a final
        // checkpoint covering every record (the request's event among them).
        let report = apiwatch_journal::verify(dir.path(), &Default::default()).unwrap();
        assert!(report.records >= 1, "{report}");
        assert_eq!(
            report
                .last_checkpoint
                .map(|checkpoint| checkpoint.tree_size),
            Some(report.records),
            "the final checkpoint covers every record"
        );
    }
}
