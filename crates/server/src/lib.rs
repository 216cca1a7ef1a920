//! The Deadbolt server: the check API, the SDK API and the operator CLI, built as a library so
//! that `main`, the tests and the benchmarks all start the same application.

pub mod alerts;
pub mod api;
pub mod app;
pub mod attempts;
pub mod check;
pub mod cli;
pub mod conn;
pub mod crypto;
pub mod error;
pub mod logs;
pub mod mail;
pub mod metrics;
pub mod portal;
pub mod rate;
pub mod request;
pub mod request_id;
pub mod service;
pub mod tls;

use anyhow::Context;
use deadbolt_core::token::TokenPolicy;
use deadbolt_core::Clock;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use error::Error;
pub use service::{MasterKeySource, Service};

/// Everything `deadbolt serve` can be told, built once (by the CLI from its flags and
/// `DEADBOLT_*` variables, by tests in code) and passed in: nothing below reads the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub db_url: String,
    pub listen: String,
    /// The API's public URL; the tokens' audience. Defaults to the bound address.
    pub public_url: Option<String>,
    pub master_key: MasterKeySource,
    /// Checks per second per application (twice that as a burst); 0 turns the limit off.
    pub rate_limit: u32,
    /// Attempts that may wait for the writer; past that a check waits a moment, then its
    /// attempt is dropped (and counted).
    pub attempt_queue: usize,
    /// How long a request may wait on the store before it is answered 503.
    pub store_timeout: std::time::Duration,
    /// How long attempts are kept; older ones are removed in the background. `None`: for ever.
    pub attempts_retention: Option<std::time::Duration>,
    /// How often the background housekeeping runs (the change log, the throttle's forgotten
    /// counts, used form tokens, attempts past the retention): a minute; tests shorten it.
    pub housekeeping_every: std::time::Duration,
    /// PostgreSQL: connections in the pool (the change listener has one more of its own).
    pub pg_pool_size: usize,
    /// PostgreSQL: how long opening a connection may take.
    pub pg_connect_timeout: std::time::Duration,
    /// Where `/metrics` is served: its own address, never the public one. `None`: not served.
    pub metrics_listen: Option<String>,
    /// Connection caps and timeouts of every listener.
    pub connections: conn::Limits,
    /// The portal's public URL and mail settings.
    pub portal: portal::PortalConfig,
    /// HTTPS on the public listener (never on the metrics one); `None`: plain HTTP.
    pub tls: Option<tls::TlsConfig>,
    /// Alerts to people and webhooks to companies on blocked checks.
    pub alerts: alerts::AlertsConfig,
}

impl Config {
    pub fn new(db_url: impl Into<String>) -> Self {
        Self {
            db_url: db_url.into(),
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            master_key: MasterKeySource::default(),
            rate_limit: 10_000,
            attempt_queue: 100_000,
            store_timeout: deadbolt_store::DEFAULT_TIMEOUT,
            attempts_retention: Some(DEFAULT_RETENTION),
            housekeeping_every: PRUNE_EVERY,
            pg_pool_size: deadbolt_store::StoreOptions::default().pg_pool_size,
            pg_connect_timeout: deadbolt_store::StoreOptions::default().pg_connect_timeout,
            metrics_listen: None,
            connections: conn::Limits::default(),
            portal: portal::PortalConfig::default(),
            tls: None,
            alerts: alerts::AlertsConfig::default(),
        }
    }

    /// How the store is opened.
    pub fn store_options(&self) -> deadbolt_store::StoreOptions {
        deadbolt_store::StoreOptions {
            pg_pool_size: self.pg_pool_size,
            pg_connect_timeout: self.pg_connect_timeout,
            ..deadbolt_store::StoreOptions::default()
        }
    }
}

/// The server put together and bound, not yet serving: `run_until` serves until a signal.
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    audiences: Vec<String>,
    service: Service,
    router: app::Front,
    metrics: Option<(tokio::net::TcpListener, axum::Router, Arc<metrics::Metrics>)>,
    writer: tokio::task::JoinHandle<()>,
    connections: conn::Limits,
    /// Turned true when `run_until`'s signal comes: the portal's live streams end on it.
    closing: tokio::sync::watch::Sender<bool>,
    checks: Arc<check::CheckService>,
    portal: Arc<portal::Portal>,
    housekeeping: (std::time::Duration, Option<std::time::Duration>),
    tls: Option<tls::Tls>,
    /// Sends alerts and webhook deliveries in the background until the server stops.
    alerts: Arc<alerts::AlertWorker>,
}

/// How often the change log (and the sign-in throttle's forgotten counts) are pruned, and how
/// many of the log's last rows are kept: at a hundred changes a second, a quarter of an hour for
/// a process that stopped looking (one that falls further behind forgets its whole cache, once).
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
const CHANGES_KEPT: i64 = 100_000;
/// Removes the attempts older than `keep` (see [`Service::remove_attempts_before`]).
async fn prune_attempts_past(service: &Service, keep: std::time::Duration) {
    let Ok(keep) = chrono::Duration::from_std(keep) else {
        return;
    };
    let before = service.now() - keep;
    match service.remove_attempts_before(before).await {
        Ok(0) => {}
        Ok(removed) => {
            tracing::info!(removed, before = %before, "attempts past the retention removed")
        }
        Err(e) => tracing::warn!(error = %e, "cannot remove attempts past the retention"),
    }
}

/// Attempts are kept 90 days unless configured otherwise.
pub const DEFAULT_RETENTION: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);

impl Server {
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let service = Service::open_with(
            &config.db_url,
            &config.store_options(),
            &config.master_key,
            clock,
        )
        .await?;
        Self::build_with(config, service).await
    }

    /// Builds on an opened store (tests use this to keep a handle on it).
    pub async fn build_with(config: Config, service: Service) -> anyhow::Result<Self> {
        // Every connection is a descriptor: take all the system allows, then cap the
        // connections to what fits.
        let connections = config.connections.fitted(conn::raise_fd_limit());
        tracing::debug!(?connections, "connection limits");
        // Before binding: a certificate that does not load stops the start with its reason.
        let tls = config.tls.as_ref().map(tls::Tls::new).transpose()?;
        let https = tls.is_some();
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        // Under TLS a URL written without a scheme is an https one: the portal's links and its
        // cookies' `Secure` follow the scheme of the first audience.
        let scheme = if https { "https://" } else { "" };
        let audiences = match &config.public_url {
            Some(u) => vec![with_scheme(u, https)],
            None => {
                let mut v = vec![
                    format!("{scheme}127.0.0.1:{}", addr.port()),
                    format!("{scheme}localhost:{}", addr.port()),
                ];
                if !v.contains(&addr.to_string()) {
                    v.push(addr.to_string());
                }
                v
            }
        };
        // The composition hands the store to the two readers that own their access to it (see
        // `Service`); everything else goes through the service.
        #[allow(clippy::disallowed_methods)]
        let store = service.store().clone();
        store.set_timeout(config.store_timeout);
        let metrics = Arc::new(metrics::Metrics::default());
        // The alert worker takes the blocked attempts this server writes from the writer
        // instead of reading them back from the store.
        let feed = Arc::new(attempts::BlockedFeed::default());
        let (queue, writer) = attempts::AttemptQueue::start(
            store.clone(),
            config.attempt_queue,
            metrics.clone(),
            Some(feed.clone()),
        );
        let checks = Arc::new(check::CheckService {
            service: service.clone(),
            store: store.clone(),
            policy: TokenPolicy::new(&audiences),
            cache: check::CheckCache::default(),
            limiter: rate::RateLimiter::new(config.rate_limit),
            attempts: queue,
            metrics: metrics.clone(),
        });
        let metrics_listener = match &config.metrics_listen {
            Some(at) => Some((
                tokio::net::TcpListener::bind(at)
                    .await
                    .with_context(|| format!("cannot listen on {at} for metrics"))?,
                app::metrics_router(metrics.clone(), store.clone()),
                metrics.clone(),
            )),
            None => None,
        };
        let (closing, closing_rx) = tokio::sync::watch::channel(false);
        let mut portal_config = config.portal.clone();
        portal_config.public_url = portal_config.public_url.map(|u| with_scheme(&u, https));
        let portal = Arc::new(portal::Portal::new(
            &service,
            store.clone(),
            portal_config,
            audiences.clone(),
            closing_rx,
        ));
        let alerts = alerts::AlertWorker::new(
            service.clone(),
            portal.mailer(),
            portal.link_base(),
            &config.alerts,
            metrics.clone(),
            Some(feed),
        )?;
        let router = app::router(app::AppState {
            service: service.clone(),
            checks: checks.clone(),
            metrics,
            portal: portal.clone(),
        });
        Ok(Self {
            listener,
            addr,
            audiences,
            service,
            router,
            metrics: metrics_listener,
            writer,
            connections,
            closing,
            checks,
            portal,
            housekeeping: (config.housekeeping_every, config.attempts_retention),
            tls,
            alerts,
        })
    }

    /// The check path (tests look into its cache). Weak: the attempt writer ends only once
    /// every handle on the check path is gone.
    pub fn checks(&self) -> std::sync::Weak<check::CheckService> {
        Arc::downgrade(&self.checks)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The bound address as a URL: `https://` when TLS is on.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The pair the public listener serves now, when TLS is on.
    pub fn certificates(&self) -> Option<Arc<tls::Certificates>> {
        self.tls.as_ref().map(tls::Tls::certificates)
    }

    /// Where `/metrics` is served, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
            .as_ref()
            .and_then(|(l, _, _)| l.local_addr().ok())
    }

    /// The audiences tokens may name.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The connection limits in force (the configured ones, fitted to the descriptor limit).
    pub fn connection_limits(&self) -> conn::Limits {
        self.connections
    }

    pub fn deadbolt(&self) -> &Service {
        &self.service
    }

    /// Serves until `shutdown` resolves, then finishes open requests and drains the attempt queue.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            metrics,
            writer,
            connections,
            closing,
            service,
            checks,
            portal,
            housekeeping: (every_period, retention),
            tls,
            alerts,
            ..
        } = self;
        // Ends on the same signal as the portal's live streams; what it has not sent yet is
        // in the store, and the next start sends it.
        let alert_tasks = alerts.spawn(closing.subscribe());
        let acceptor = tls.as_ref().map(tls::Tls::acceptor);
        // New certificates from the files are served without a restart.
        let reloads = tls.map(|tls| tokio::spawn(tls.watch()));
        // The router holds the check path (and the attempt queue) from here on.
        drop(checks);
        let pruner = tokio::spawn(async move {
            // Not at start: a server started on a store that cannot take writes is not made to
            // fail one before anybody asked it anything.
            let mut every =
                tokio::time::interval_at(tokio::time::Instant::now() + every_period, every_period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = service.prune_changes(CHANGES_KEPT).await {
                    tracing::warn!(error = %e, "cannot prune the change log");
                }
                if let Err(e) = portal.prune_throttle(service.now()).await {
                    tracing::warn!(error = %e, "cannot prune the sign-in throttle");
                }
                if let Err(e) = service.prune_form_tokens(service.now()).await {
                    tracing::warn!(error = %e, "cannot prune the portal's used form tokens");
                }
                if let Some(keep) = retention {
                    prune_attempts_past(&service, keep).await;
                }
            }
        });
        let (stop_metrics, stopped) = tokio::sync::watch::channel(false);
        // The metrics listener has the same caps and timeouts as the public one.
        let metrics = metrics.map(|(listener, router, counters)| {
            let mut stopped = stopped.clone();
            let limits = connections;
            tokio::spawn(async move {
                let until = async move {
                    let _ = stopped.changed().await;
                };
                // How late the runtime gets to ready tasks, for `/metrics` only: a hundred
                // wake-ups a second that nobody reads are not made without it.
                let probe = tokio::spawn(metrics::probe_runtime(counters));
                // Plain HTTP: it is meant for a private address.
                conn::serve(listener, router, limits, None, until).await;
                probe.abort();
            })
        });
        // The accept loop gives handlers the client's address (`ConnectInfo`): the portal
        // throttles sign-ins by it.
        let shutdown = async move {
            shutdown.await;
            let _ = closing.send(true);
        };
        conn::serve(listener, router, connections, acceptor, shutdown).await;
        pruner.abort();
        if let Some(r) = reloads {
            r.abort();
        }
        let _ = stop_metrics.send(true);
        if let Some(m) = metrics {
            let _ = m.await;
        }
        // The router (and with it every queue handle) is gone: the writer drains and ends.
        for t in alert_tasks {
            let _ = t.await;
        }
        writer.await.context("attempt writer")?;
        Ok(())
    }
}

/// `url` as given when it has a scheme; else `https://url` under TLS (and as given without).
pub fn with_scheme(url: &str, https: bool) -> String {
    let u = url.trim();
    let lower = u.to_ascii_lowercase();
    if !https || lower.starts_with("http://") || lower.starts_with("https://") {
        return u.to_string();
    }
    format!("https://{u}")
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing requests and writing queued attempts");
}
