//! Wiring and the HTTP server loop.

use crate::config::{Config, Durations};
use anyhow::Context;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sluice_collector::{Collector, CollectorConfig, TrustedProxies};
use sluice_control::AdminState;
use sluice_core::time::time_before;
use sluice_core::{Clock, Limits};
use sluice_log::{EventLog, RetentionPolicy, SqliteLog, SqliteLogOptions};
use sluice_router::Router as DeliveryRouter;
use sluice_store::{SqliteStore, Store};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A started server: its address, its admin token, and the handle to stop it.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub admin_token: String,
    /// `true` when the token was generated on this start (print it once).
    pub admin_token_generated: bool,
    pub log: Arc<SqliteLog>,
    pub store: Arc<dyn Store>,
    pub router: DeliveryRouter,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, then flushes and closes the log.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Resolves when the server has stopped (after [`RunningServer::trigger_shutdown`] or a
    /// fatal error).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    pub fn trigger_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

fn metrics_handle() -> PrometheusHandle {
    // One recorder per process; tests start several servers in one process.
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder is installed; the handle still renders ours.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Reads the admin token from config, else `DATA_DIR/admin-token`, else generates one there.
fn admin_token(config: &Config) -> anyhow::Result<(String, bool)> {
    if !config.admin_token.trim().is_empty() {
        return Ok((config.admin_token.trim().to_owned(), false));
    }
    let path = config.data_dir.join("admin-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if !existing.trim().is_empty() {
            return Ok((existing.trim().to_owned(), false));
        }
    }
    let token = sluice_store::new_secret_token();
    write_private(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    Ok((token, true))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

#[derive(Clone)]
struct Health {
    log: Arc<SqliteLog>,
    store: Arc<dyn Store>,
}

async fn readyz(State(health): State<Health>) -> Response {
    let log_ok = health.log.stats().await.is_ok();
    let store_ok = health.store.ping().await.is_ok();
    let status = if log_ok && store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({"log": log_ok, "store": store_ok})),
    )
        .into_response()
}

fn public_url(config: &Config) -> Option<String> {
    Some(config.public_url.trim().trim_end_matches('/').to_owned()).filter(|u| !u.is_empty())
}

/// Opens the data folder and starts serving. Returns once the listener is bound.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<RunningServer> {
    let durations = config.durations()?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data folder {}",
            config.data_dir.display()
        )
    })?;
    let (admin_token, admin_token_generated) = admin_token(&config)?;

    let log = Arc::new(
        SqliteLog::open(
            config.data_dir.join("log.db"),
            SqliteLogOptions {
                durability: config.log.durability,
                dedupe_window: durations.dedupe_window,
                ..SqliteLogOptions::default()
            },
        )
        .context("cannot open the event log")?,
    );
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(config.data_dir.join("store.db")).context("cannot open the store")?,
    );
    let trusted_proxies = TrustedProxies::parse(&config.collector.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("collector.trusted_proxies: {e}"))?;
    let collector = Collector::new(
        log.clone(),
        store.clone(),
        clock.clone(),
        CollectorConfig {
            limits: Limits::default(),
            request_timeout: durations.request_timeout,
            trusted_proxies,
            default_rate_limit_per_second: Some(config.collector.rate_limit_per_second)
                .filter(|r| *r > 0),
            public_url: public_url(&config),
            tls: !config.tls_cert.trim().is_empty(),
        },
    );
    let router = DeliveryRouter::start(
        log.clone(),
        store.clone(),
        clock.clone(),
        sluice_destinations::builtin(),
        durations.router,
    )
    .await
    .context("cannot start the delivery engine")?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let metrics = metrics_handle();
    let health = Health {
        log: log.clone(),
        store: store.clone(),
    };
    let app = Router::new()
        .merge(sluice_collector::routes(collector))
        .merge(sluice_control::routes(AdminState {
            store: store.clone(),
            log: log.clone(),
            admin_token: admin_token.clone().into(),
            router: router.clone(),
            public_url: public_url(&config),
            tls: !config.tls_cert.trim().is_empty(),
            shutdown: shutdown_rx.clone(),
            sessions: Default::default(),
        }))
        .merge(
            Router::new()
                .route(
                    "/healthz",
                    get(|| async { Json(serde_json::json!({"status": "ok"})) }),
                )
                .route("/readyz", get(readyz))
                .with_state(health),
        )
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({"code": "not_found", "message": "no such endpoint"})),
            )
        });

    let tls = match (config.tls_cert.trim(), config.tls_key.trim()) {
        ("", _) | (_, "") => None,
        (cert, key) => Some(crate::tls::acceptor(Path::new(cert), Path::new(key))?),
    };
    let listener = TcpListener::bind(&config.listen).await.with_context(|| {
        format!(
            "cannot listen on {}; is another process using it?",
            config.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let retention = tokio::spawn(run_retention(
        log.clone(),
        store.clone(),
        router.clone(),
        clock,
        durations,
        config.log.retention_max_bytes,
        shutdown_rx.clone(),
    ));
    let serve_log = log.clone();
    let serve_router = router.clone();
    let header_limit = config.collector.max_header_bytes;
    let task = tokio::spawn(async move {
        serve(listener, app, durations, header_limit, tls, shutdown_rx).await;
        retention.abort();
        serve_router.shutdown().await;
        serve_log.close().await;
        tracing::info!("stopped; the event log is flushed and closed");
    });
    tracing::info!(%addr, data_dir = %config.data_dir.display(), durability = ?config.log.durability, "sluice is listening");
    Ok(RunningServer {
        addr,
        admin_token,
        admin_token_generated,
        log,
        store,
        router,
        shutdown,
        task,
    })
}

async fn serve(
    listener: TcpListener,
    app: Router,
    durations: Durations,
    max_header_bytes: usize,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(request.map(axum::body::Body::new))
            },
        );
        let http = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(durations.header_timeout)
            .max_buf_size(max_header_bytes.max(8192))
            .clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let handshake_timeout = durations.header_timeout;
        tokio::spawn(async move {
            let result =
                match tls {
                    None => {
                        watcher
                            .watch(http.serve_connection(TokioIo::new(stream), service))
                            .await
                    }
                    Some(acceptor) => {
                        // The handshake shares the header timeout: a silent client is dropped.
                        let stream =
                            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(error)) => {
                                    tracing::debug!(%error, %peer, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                        watcher
                            .watch(http.serve_connection(TokioIo::new(stream), service))
                            .await
                    }
                };
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within {DRAIN_TIMEOUT:?}");
    }
}

/// Resolves once shutdown was requested (or the sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

/// Trims the log by age and size, never above the lowest destination cursor, and expires old
/// dedupe entries and rejected-event records.
async fn run_retention(
    log: Arc<SqliteLog>,
    store: Arc<dyn Store>,
    router: DeliveryRouter,
    clock: Arc<dyn Clock>,
    durations: Durations,
    max_bytes: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let policy = RetentionPolicy {
        max_age: durations.retention_max_age,
        max_bytes: Some(max_bytes).filter(|b| *b > 0),
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(durations.retention_interval) => {}
            _ = stopped(&mut shutdown) => return,
        }
        if let Err(error) = retain(
            log.as_ref(),
            store.as_ref(),
            clock.as_ref(),
            &policy,
            &durations,
            router.identity().indexed_through(),
        )
        .await
        {
            tracing::warn!(%error, "retention pass failed; will retry");
        }
    }
}

/// One retention pass; returns how many events were deleted. Nothing the identity index has
/// not read yet (above `identity_indexed_through`) is deleted.
pub async fn retain(
    log: &dyn EventLog,
    store: &dyn Store,
    clock: &dyn Clock,
    policy: &RetentionPolicy,
    durations: &Durations,
    identity_indexed_through: u64,
) -> anyhow::Result<u64> {
    let now = clock.now();
    log.expire(
        time_before(now, durations.dedupe_window),
        time_before(now, durations.rejected_max_age),
    )
    .await?;
    let Some(point) = log.retention_point(policy, now).await? else {
        return Ok(0);
    };
    // A destination's cursor is the last event it has passed; everything above must stay.
    let floor = match store.lowest_destination_cursor().await? {
        Some(cursor) => point.min(cursor + 1),
        None => point,
    }
    .min(identity_indexed_through.saturating_add(1));
    let deleted = log.trim(floor).await?;
    if deleted > 0 {
        tracing::info!(deleted, below_seq = floor, "retention trimmed the log");
        metrics::counter!("sluice_log_trimmed_events_total").increment(deleted);
    }
    Ok(deleted)
}
