//! The two gRPC listeners and their lifecycle.
//!
//! - Worker listener: `quota.v1.Quota`, `grpc.health.v1.Health`, reflection (v1 and v1alpha).
//!   It never serves the admin API: workers run next to it and must not grant themselves
//!   credits.
//! - Admin listener: `quota.v1.QuotaAdmin` and `quota.v1.UsageEvents` behind the bearer token,
//!   plus health and reflection without it (probes and `grpcurl list` carry no secret).
//! - Health listener (optional): `grpc.health.v1.Health` only, always plaintext, for probes
//!   that cannot use the others (Kubernetes gRPC probes speak no TLS and dial the pod IP).
//!
//! With TLS configured ([`ListenerTls`]), the worker and admin listeners serve TLS, and the
//! admin listener may also require client certificates.
//!
//! Health follows the store: a background probe checks it (on Redis whether every primary
//! would take a write, see [`crate::store::health_probe`]) and turns `""` and the listener's
//! own services (`quota.v1.Quota`; `quota.v1.QuotaAdmin` and `quota.v1.UsageEvents`)
//! NOT_SERVING while it does not answer or refuses writes, SERVING again when it takes them.
//! `liveness` and the health and reflection services stay SERVING until shutdown. The
//! health-only listener answers for every service of the process.
//!
//! Also in the background while serving: the expiry sweeper (so `hold.expired` is emitted for
//! accounts nobody touches) and the event-log trimmer. Everything stops on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server as TonicServer, ServerTlsConfig};
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;

use crate::api::admin::AdminService;
use crate::api::auth::BearerAuth;
use crate::api::events::{EventStreamSettings, EventsService};
use crate::api::quota::QuotaService;
use crate::clock::{Clock, SkewedClock, StoreClock, SystemClock};
use crate::config::{
    redacted_url, AdminToken, ClockSource, Config, StoreSpec, ADMIN_TOKEN_ENV,
    DEFAULT_EVENTS_KEEP_MAX_PER_SHARD, DEFAULT_EVENTS_KEEP_SECONDS,
    DEFAULT_EVENTS_MAX_RETAINED_PER_SHARD, DEFAULT_SWEEP_INTERVAL_MS,
};
use crate::events::instrumented::InstrumentedEventLog;
use crate::events::pending_gauge::{run_pending_gauge, PENDING_SAMPLE_INTERVAL};
use crate::events::trimmer::run_trimmer;
use crate::events::{EventLog, Retention};
use crate::ledger::catalog::CatalogError;
use crate::ledger::{Catalog, SharedCatalog};
use crate::pb;
use crate::store::health_probe::{HealthProbe, PingProbe, RedisWriteProbe};
use crate::store::instrumented::{observe, store_span, InstrumentedStore};
use crate::store::memory::MemoryStore;
use crate::store::redis::{RedisStore, ShardCheckError};
use crate::store::redis_conn::TLS_SCHEME;
use crate::store::sweeper::run_sweeper;
use crate::store::Store;
use crate::telemetry::metrics_endpoint::serve_metrics;
use crate::telemetry::rpc_layer::{ObservedRouter, ObservedServer, RpcLayer};
use crate::tls::{read_redis_ca, ListenerTls, TlsError, REDIS_CA_FLAG};

/// How often the health probe checks the store.
pub const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest one health check may take before the store counts as down. Stores bound their own
/// calls; this only guards against one that does not.
pub const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the trimmer drops fully acked history: retention is counted in days, so a
/// minute late costs nothing and keeps the per-shard scans rare.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(60);
/// How long shutdown waits for in-flight calls (and open health watches) before it stops
/// anyway; below Kubernetes' default 30 s grace period.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Name of the worker API.
const QUOTA_SERVICE: &str = pb::quota_server::SERVICE_NAME;
/// Names of the admin listener's own services.
const ADMIN_SERVICES: [&str; 2] = [
    <pb::quota_admin_server::QuotaAdminServer<AdminService> as NamedService>::NAME,
    <pb::usage_events_server::UsageEventsServer<EventsService> as NamedService>::NAME,
];
/// The health and reflection services every gRPC listener serves besides its own.
const COMMON_SERVICES: [&str; 3] = [
    tonic_health::pb::health_server::SERVICE_NAME,
    tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
    tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
];
/// Health service name for liveness probes: SERVING for as long as the process serves,
/// whatever the store does. A liveness probe on `""` would restart every sidecar during a
/// Redis outage, which restarts cannot fix; readiness probes use `""`. The name is the one
/// Kubernetes documents for a gRPC liveness probe's `service` field.
pub const LIVENESS_SERVICE: &str = "liveness";

/// Why the server did not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The catalog file is unreadable or invalid; the message names the key.
    #[error("--catalog {path}: {source}")]
    Catalog { path: String, source: CatalogError },
    /// `--store` is malformed or names an unsupported backend.
    #[error("{0}")]
    Store(String),
    /// While serving, the deployment's recorded shard count stopped being this sidecar's.
    #[error("{0}")]
    ShardCountChanged(String),
    /// The admin token cannot be used.
    #[error("{ADMIN_TOKEN_ENV}: {0}")]
    AdminToken(&'static str),
    /// A TLS file is unreadable or unusable; the message names the flag.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// A listen address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr} ({listener} listener): {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The compiled-in descriptors could not be served by reflection; a build bug.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The SIGHUP handler (catalog reload) could not be installed.
    #[error("cannot handle SIGHUP (catalog reload): {0}")]
    Signal(std::io::Error),
    /// The metrics recorder could not be installed.
    #[error("metrics: {0}")]
    Metrics(String),
    /// A listener failed while serving.
    #[error("serving failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// What the services run on. Tests inject a memory store and a manual clock here.
#[derive(Clone)]
pub struct ServerParts {
    pub store: Arc<dyn Store>,
    /// The store's event log; both stores are one object serving both traits.
    pub events: Arc<dyn EventLog>,
    pub clock: Arc<dyn Clock>,
    /// The catalog in force; a reload replaces it for the services and the store alike.
    pub catalog: SharedCatalog,
}

/// How health checks the store: [`Store::ping`] unless a probe is given.
type Probe = Option<Arc<dyn HealthProbe>>;

/// Timings and limits of the background tasks and the event streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    /// How often the expiry sweeper runs.
    pub sweep_interval: Duration,
    /// Retention of events every consumer group has acked.
    pub events_retention: Retention,
    /// How `Subscribe` streams behave.
    pub events: EventStreamSettings,
}

impl Default for ServerSettings {
    /// The flags' defaults.
    fn default() -> Self {
        ServerSettings {
            sweep_interval: Duration::from_millis(DEFAULT_SWEEP_INTERVAL_MS),
            events_retention: Retention {
                keep_ms: DEFAULT_EVENTS_KEEP_SECONDS as i64 * 1000,
                max_events_per_shard: DEFAULT_EVENTS_KEEP_MAX_PER_SHARD,
                max_retained_per_shard: DEFAULT_EVENTS_MAX_RETAINED_PER_SHARD,
            },
            events: EventStreamSettings::default(),
        }
    }
}

impl ServerSettings {
    /// The settings named by the flags.
    pub fn from_config(config: &Config) -> ServerSettings {
        ServerSettings {
            sweep_interval: config.sweep_interval(),
            events_retention: config.events_retention(),
            events: EventStreamSettings {
                poll_interval: Duration::from_millis(config.events_poll_ms),
                claim_idle_ms: config.events_claim_idle_ms,
                max_in_flight: config.events_max_in_flight as usize,
            },
        }
    }
}

/// The listeners, bound and ready to serve.
pub struct Server {
    parts: ServerParts,
    settings: ServerSettings,
    worker: TcpListener,
    admin: Option<(TcpListener, AdminToken)>,
    health: Option<TcpListener>,
    tls: ListenerTls,
    probe: Probe,
}

impl Server {
    /// A server with only the worker listener and default settings.
    pub fn new(parts: ServerParts, worker: TcpListener) -> Server {
        Server {
            parts,
            settings: ServerSettings::default(),
            worker,
            admin: None,
            health: None,
            tls: ListenerTls::plaintext(),
            probe: None,
        }
    }

    /// Replaces the default settings.
    pub fn with_settings(mut self, settings: ServerSettings) -> Server {
        self.settings = settings;
        self
    }

    /// Adds the admin listener, guarded by `token`.
    pub fn with_admin(mut self, listener: TcpListener, token: AdminToken) -> Server {
        self.admin = Some((listener, token));
        self
    }

    /// Adds the plaintext health-only listener.
    pub fn with_health_listener(mut self, listener: TcpListener) -> Server {
        self.health = Some(listener);
        self
    }

    /// Checks the store's health with `probe` instead of pinging it.
    pub fn with_health_probe(mut self, probe: Arc<dyn HealthProbe>) -> Server {
        self.probe = Some(probe);
        self
    }

    /// Serves the worker and admin listeners with `tls`.
    pub fn with_tls(mut self, tls: ListenerTls) -> Server {
        self.tls = tls;
        self
    }

    /// Address of the health-only listener, if there is one.
    pub fn health_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.health.as_ref().map(TcpListener::local_addr)
    }

    /// Address of the worker listener (the real port when bound to port 0).
    pub fn worker_addr(&self) -> std::io::Result<SocketAddr> {
        self.worker.local_addr()
    }

    /// Address of the admin listener, if there is one.
    pub fn admin_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.admin.as_ref().map(|(l, _)| l.local_addr())
    }

    /// Serves until `shutdown` completes, then sets health NOT_SERVING (and ends health
    /// watches), stops accepting and lets in-flight calls finish (at most [`DRAIN_TIMEOUT`]).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Server {
            parts,
            settings,
            worker,
            admin,
            health,
            tls,
            probe,
        } = self;
        // Every store and event-log call from here on is timed and traced.
        let (events, groups) = InstrumentedEventLog::wrap(parts.events);
        let parts = ServerParts {
            store: InstrumentedStore::wrap(parts.store),
            events,
            ..parts
        };
        let probe = probe.unwrap_or_else(|| Arc::new(PingProbe(parts.store.clone())));
        // Each listener answers health for the services it serves; the health-only listener
        // for every service of the process.
        let admin_services: &[&'static str] = if admin.is_some() {
            &ADMIN_SERVICES
        } else {
            &[]
        };
        let worker_health = ListenerHealth::new(&[QUOTA_SERVICE], &COMMON_SERVICES);
        // API.md: health is served on both listeners for `""` and `quota.v1.Quota`; the admin
        // listener adds the services it serves itself.
        let admin_health_services: Vec<&'static str> = std::iter::once(QUOTA_SERVICE)
            .chain(admin_services.iter().copied())
            .collect();
        let admin_health = ListenerHealth::new(&admin_health_services, &COMMON_SERVICES);
        let process_services: Vec<&'static str> = std::iter::once(QUOTA_SERVICE)
            .chain(admin_services.iter().copied())
            .collect();
        let health_only = ListenerHealth::new(
            &process_services,
            &[tonic_health::pb::health_server::SERVICE_NAME],
        );
        let mut healths = vec![worker_health.clone(), health_only.clone()];
        if admin.is_some() {
            healths.push(admin_health.clone());
        }
        let store_ok = check(probe.as_ref()).await;
        for listener in &healths {
            listener.start(store_ok).await;
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut probe = tokio::spawn(probe_store(
            probe,
            healths.clone(),
            store_ok,
            stop_rx.clone(),
        ));
        let sweeper = tokio::spawn(run_sweeper(
            parts.store.clone(),
            parts.clock.clone(),
            settings.sweep_interval,
            stop_rx.clone(),
        ));
        let trimmer = tokio::spawn(run_trimmer(
            parts.events.clone(),
            parts.store.clone(),
            parts.clock.clone(),
            settings.events_retention,
            TRIM_INTERVAL,
            stop_rx.clone(),
        ));
        let pending = tokio::spawn(run_pending_gauge(
            parts.events.clone(),
            groups,
            parts.clock.clone(),
            PENDING_SAMPLE_INTERVAL,
            stop_rx.clone(),
        ));

        let worker = worker_router(&parts, &worker_health.reporter, tls.worker())?
            .serve_with_incoming_shutdown(incoming(worker), stopped(stop_rx.clone()));
        let admin = match admin {
            Some((listener, token)) => Some(
                admin_router(
                    &parts,
                    &settings,
                    &admin_health.reporter,
                    &token,
                    tls.admin(),
                    stop_rx.clone(),
                )?
                .serve_with_incoming_shutdown(incoming(listener), stopped(stop_rx.clone())),
            ),
            None => None,
        };
        let health = health.map(|listener| {
            TonicServer::builder()
                .layer(RpcLayer)
                .add_service(health_server(&health_only.reporter))
                .serve_with_incoming_shutdown(incoming(listener), stopped(stop_rx.clone()))
        });
        let servers = async {
            let admin = async {
                match admin {
                    Some(admin) => admin.await,
                    None => Ok(()),
                }
            };
            let health = async {
                match health {
                    Some(health) => health.await,
                    None => Ok(()),
                }
            };
            tokio::try_join!(worker, admin, health).map(|_| ())
        };
        tokio::pin!(servers, shutdown);

        let result = tokio::select! {
            // A listener failed before anyone asked us to stop.
            result = &mut servers => result.map_err(ServerError::from),
            () = &mut shutdown => {
                tracing::info!("shutting down: no new connections, finishing in-flight calls");
                // The probe must not turn health back to SERVING once shutdown has begun.
                probe.abort();
                let _ = (&mut probe).await;
                for listener in &mut healths {
                    listener.stop().await;
                }
                let _ = stop_tx.send(true);
                match tokio::time::timeout(DRAIN_TIMEOUT, &mut servers).await {
                    Ok(result) => result.map_err(ServerError::from),
                    Err(_) => {
                        tracing::warn!(
                            timeout_ms = DRAIN_TIMEOUT.as_millis() as u64,
                            "calls still open after the drain timeout; stopping anyway"
                        );
                        Ok(())
                    }
                }
            }
        };
        let _ = stop_tx.send(true);
        probe.abort();
        // Each finishes its current store call (bounded by the store's deadline) and returns.
        let _ = tokio::join!(sweeper, trimmer, pending);
        result
    }
}

/// Accepted connections of `listener`, without Nagle: calls are small and latency-bound.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Completes once shutdown has been requested (or the server is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Whether the store can serve calls now; counted as store operation `health_probe`.
async fn check(probe: &dyn HealthProbe) -> bool {
    let call = observe("health_probe", store_span!("health_probe"), probe.check());
    match tokio::time::timeout(HEALTH_PROBE_TIMEOUT, call).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "store health check failed");
            false
        }
        Err(_) => false,
    }
}

/// What one listener's health service reports: `""` and the listener's own services follow
/// the store; [`LIVENESS_SERVICE`] and the health and reflection services are SERVING until
/// shutdown.
#[derive(Clone)]
struct ListenerHealth {
    reporter: HealthReporter,
    follows_store: Vec<&'static str>,
    steady: Vec<&'static str>,
}

impl ListenerHealth {
    fn new(services: &[&'static str], common: &[&'static str]) -> ListenerHealth {
        ListenerHealth {
            reporter: HealthReporter::new(),
            follows_store: std::iter::once("")
                .chain(services.iter().copied())
                .collect(),
            steady: std::iter::once(LIVENESS_SERVICE)
                .chain(common.iter().copied())
                .collect(),
        }
    }

    async fn start(&self, store_ok: bool) {
        self.set_store(store_ok).await;
        for service in &self.steady {
            self.reporter
                .set_service_status(*service, ServingStatus::Serving)
                .await;
        }
    }

    async fn set_store(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in &self.follows_store {
            self.reporter.set_service_status(*service, status).await;
        }
    }

    /// Every service NOT_SERVING, then forgotten. Forgetting ends open health watches (after
    /// they send NOT_SERVING): a watch never ends by itself, so a watching client would hold
    /// its connection, and the drain, until [`DRAIN_TIMEOUT`]. A Check on a connection still
    /// open answers NOT_FOUND from then on, which probes count as a failure, as they should.
    async fn stop(&mut self) {
        let services: Vec<&'static str> = self
            .follows_store
            .iter()
            .chain(&self.steady)
            .copied()
            .collect();
        for service in &services {
            self.reporter
                .set_service_status(*service, ServingStatus::NotServing)
                .await;
        }
        for service in &services {
            self.reporter.clear_service_status(service).await;
        }
    }
}

/// Checks the store every [`HEALTH_PROBE_INTERVAL`] and reports changes until shutdown.
async fn probe_store(
    probe: Arc<dyn HealthProbe>,
    healths: Vec<ListenerHealth>,
    mut serving: bool,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(HEALTH_PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
        let ok = check(probe.as_ref()).await;
        // Shutdown may have set NOT_SERVING while the ping ran; leave it.
        if ok == serving || *stop.borrow() {
            continue;
        }
        serving = ok;
        if ok {
            tracing::info!("store answers again; health SERVING");
        } else {
            tracing::warn!("store does not answer or refuses writes; health NOT_SERVING");
        }
        for listener in &healths {
            listener.set_store(ok).await;
        }
    }
}

fn health_server(reporter: &HealthReporter) -> HealthServer<HealthService> {
    HealthServer::new(HealthService::from_health_reporter(reporter.clone()))
}

/// Adds health and reflection (v1 and v1alpha) to a router; reflection lists `services`, the
/// listener's own services, plus health and reflection, and resolves every one it lists.
fn with_common_services(
    router: ObservedRouter,
    reporter: &HealthReporter,
    services: &[&str],
) -> Result<ObservedRouter, ServerError> {
    let builder = || {
        // Both reflection versions are listed by both, so both carry both descriptors: each
        // builder adds only its own version's by itself.
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            );
        for service in COMMON_SERVICES.iter().chain(services) {
            builder = builder.with_service_name(*service);
        }
        builder
    };
    let reflection_error =
        |e: tonic_reflection::server::Error| ServerError::Reflection(e.to_string());
    let v1 = builder().build_v1().map_err(reflection_error)?;
    let v1alpha = builder().build_v1alpha().map_err(reflection_error)?;
    Ok(router
        .add_service(health_server(reporter))
        .add_service(v1)
        .add_service(v1alpha))
}

/// A server builder, with TLS when `tls` is given.
fn builder(tls: Option<&ServerTlsConfig>) -> Result<ObservedServer, ServerError> {
    let builder = match tls {
        Some(tls) => TonicServer::builder().tls_config(tls.clone())?,
        None => TonicServer::builder(),
    };
    Ok(builder.layer(RpcLayer))
}

fn worker_router(
    parts: &ServerParts,
    reporter: &HealthReporter,
    tls: Option<&ServerTlsConfig>,
) -> Result<ObservedRouter, ServerError> {
    let quota = pb::quota_server::QuotaServer::new(QuotaService::new(
        parts.store.clone(),
        parts.clock.clone(),
        parts.catalog.clone(),
    ));
    let router = builder(tls)?.add_service(quota);
    with_common_services(router, reporter, &[QUOTA_SERVICE])
}

fn admin_router(
    parts: &ServerParts,
    settings: &ServerSettings,
    reporter: &HealthReporter,
    token: &AdminToken,
    tls: Option<&ServerTlsConfig>,
    stop: watch::Receiver<bool>,
) -> Result<ObservedRouter, ServerError> {
    let auth = BearerAuth::new(token);
    let admin = pb::quota_admin_server::QuotaAdminServer::with_interceptor(
        AdminService::new(parts.store.clone(), parts.clock.clone()),
        auth.clone(),
    );
    let events = pb::usage_events_server::UsageEventsServer::with_interceptor(
        EventsService::new(
            parts.events.clone(),
            parts.clock.clone(),
            settings.events,
            stop,
        ),
        auth,
    );
    let router = builder(tls)?.add_service(admin).add_service(events);
    with_common_services(router, reporter, &ADMIN_SERVICES)
}

/// Loads the catalog named by `--catalog`, or the built-in one.
pub fn load_catalog(config: &Config) -> Result<Catalog, ServerError> {
    match &config.catalog {
        Some(path) => Catalog::load(path).map_err(|source| ServerError::Catalog {
            path: path.display().to_string(),
            source,
        }),
        None => Ok(Catalog::builtin()),
    }
}

/// The store named by `--store`: the ledger, its event log (one object) and, for Redis, the
/// write probe health checks it with.
pub struct OpenedStore {
    pub store: Arc<dyn Store>,
    pub events: Arc<dyn EventLog>,
    pub probe: Probe,
    /// The Redis store, whose recorded shard count is watched while serving.
    pub redis: Option<Arc<RedisStore>>,
}

/// Opens the store named by `--store`.
pub async fn open_store(
    config: &Config,
    catalog: SharedCatalog,
) -> Result<OpenedStore, ServerError> {
    match config.store_spec().map_err(ServerError::Store)? {
        StoreSpec::Memory => {
            tracing::warn!(
                "store is `memory`: single instance only, and every plan, grant and hold is \
                 forgotten on restart; use --store redis://HOST:PORT in production"
            );
            let store = Arc::new(MemoryStore::new(catalog).with_shards(config.shards()));
            Ok(OpenedStore {
                store: store.clone(),
                events: store,
                probe: None,
                redis: None,
            })
        }
        StoreSpec::Redis(url) => {
            let root_ca = match &config.redis_ca {
                Some(path) => Some(read_redis_ca(path)?),
                None => None,
            };
            let store = RedisStore::connect_with_ca(
                &url,
                catalog,
                config.redis_timeout(),
                root_ca.as_deref(),
            )
            .await
            .map_err(|e| {
                // The store's message quotes the URL; keep its password out of the log.
                let message = e.to_string().replace(&url, &redacted_url(&url));
                ServerError::Store(message)
            })?;
            let durability = config.durability().map_err(ServerError::Store)?;
            let store = store
                .with_durability(durability)
                .with_shards(config.shards());
            // A deployment's shard count is fixed when its first sidecar starts; one set to
            // another count would read and write every account under other keys.
            match store.check_shards().await {
                Ok(()) => {}
                Err(ShardCheckError::Mismatch(message)) => return Err(ServerError::Store(message)),
                Err(ShardCheckError::Store(e)) => tracing::warn!(
                    error = %e,
                    "cannot check the shard count against Redis yet; every call checks it first"
                ),
            }
            tracing::info!(
                redis = %redacted_url(&url),
                timeout_ms = config.redis_timeout_ms,
                durability = durability.map(|d| d.to_string()).unwrap_or_else(|| "primary".into()),
                shards = config.shards,
                "store is Redis"
            );
            let probe = RedisWriteProbe::new(store.connection(), config.redis_timeout());
            let store = Arc::new(store);
            Ok(OpenedStore {
                store: store.clone(),
                events: store.clone(),
                probe: Some(Arc::new(probe)),
                redis: Some(store),
            })
        }
    }
}

async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            listener,
            addr,
            source,
        })
}

/// Runs the sidecar as configured until `shutdown` completes: loads the catalog, binds the
/// listeners (the admin one only with a token), opens the store and serves. Every problem
/// that can be found before serving is returned before anything listens for long.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let catalog = SharedCatalog::new(load_catalog(&config)?);
    tracing::info!(
        catalog = %config
            .catalog
            .as_ref()
            .map_or("built-in".to_string(), |p| p.display().to_string()),
        version = catalog.current().version(),
        "catalog loaded"
    );
    // Before anything listens: a SIGHUP sent once the listeners are up must reload, not end
    // the process (the default disposition of SIGHUP).
    let reloader = crate::catalog_reload::spawn_reloader(config.catalog.clone(), catalog.clone())
        .map_err(ServerError::Signal)?;
    // Checked before binding so that a bad flag fails fast.
    config.store_spec().map_err(ServerError::Store)?;
    config.durability().map_err(ServerError::Store)?;
    if let Some(path) = &config.redis_ca {
        if !config.store.starts_with(TLS_SCHEME) {
            return Err(ServerError::Tls(TlsError {
                flag: REDIS_CA_FLAG,
                message: format!(
                    "{} is only used with --store {TLS_SCHEME}HOST:PORT",
                    path.display()
                ),
            }));
        }
        read_redis_ca(path)?;
    }
    let tls = ListenerTls::from_config(&config)?;
    let admin_token = match &config.admin_token {
        Some(token) if !token.is_sendable() => {
            return Err(ServerError::AdminToken(
                "must be visible ASCII without spaces, as bearer tokens are",
            ))
        }
        Some(token) => Some(token.clone()),
        None => {
            tracing::warn!(
                "{ADMIN_TOKEN_ENV} is not set: the admin listener is not started (refusing to \
                 serve the admin API without a token)"
            );
            None
        }
    };
    let worker = bind("worker", config.listen).await?;
    let admin = match admin_token {
        Some(token) => Some((bind("admin", config.admin_listen).await?, token)),
        None => None,
    };
    let health = match config.health_listen {
        Some(addr) => Some(bind("health", addr).await?),
        None => None,
    };
    let metrics = bind("metrics", config.metrics_listen).await?;
    let metrics_handle = crate::telemetry::metrics::install().map_err(ServerError::Metrics)?;
    crate::telemetry::metrics::register_sidecar_series();
    let OpenedStore {
        store,
        events,
        probe,
        redis,
    } = open_store(&config, catalog.clone()).await?;
    // A deployment whose recorded shard count changes under a running sidecar (a flushed
    // Redis taken over by sidecars on another count) ends this one: it stops serving and exits
    // naming both counts, and a restart refuses to start until it is set right.
    let (fatal_tx, mut fatal_rx) = tokio::sync::oneshot::channel::<String>();
    let shard_watch = redis.map(|redis| tokio::spawn(watch_shard_count(redis, fatal_tx)));
    let fatal = std::sync::Mutex::new(None::<String>);
    let shutdown = async {
        tokio::select! {
            _ = shutdown => {}
            Ok(message) = &mut fatal_rx => {
                *fatal.lock().expect("lock") = Some(message);
            }
        }
    };
    let local: Arc<dyn Clock> = match config.clock_skew_ms {
        0 => Arc::new(SystemClock),
        skew_ms => Arc::new(SkewedClock { skew_ms }),
    };
    let (clock, clock_sync): (Arc<dyn Clock>, _) = match config.clock {
        ClockSource::Store => {
            let clock = Arc::new(StoreClock::new(local));
            let sync = clock.spawn_sync(store.clone());
            (clock, Some(sync))
        }
        ClockSource::Local => (local, None),
    };
    let parts = ServerParts {
        store,
        events,
        clock,
        catalog,
    };
    let tls_on = tls.worker().is_some();
    let client_certificates = tls.admin_requires_client_certificate();
    let mut server = Server::new(parts, worker)
        .with_settings(ServerSettings::from_config(&config))
        .with_tls(tls);
    if let Some((listener, token)) = admin {
        server = server.with_admin(listener, token);
    }
    if let Some(listener) = health {
        server = server.with_health_listener(listener);
    }
    if let Some(probe) = probe {
        server = server.with_health_probe(probe);
    }
    // Logged as fields so that tooling can read the bound ports when listening on port 0.
    if let Ok(addr) = server.worker_addr() {
        tracing::info!(listener = "worker", %addr, tls = tls_on, "listening");
    }
    if let Some(Ok(addr)) = server.admin_addr() {
        tracing::info!(
            listener = "admin",
            %addr,
            tls = tls_on,
            client_certificates,
            "listening"
        );
    }
    if let Some(Ok(addr)) = server.health_addr() {
        tracing::info!(listener = "health", %addr, tls = false, "listening");
    }
    if let Ok(addr) = metrics.local_addr() {
        tracing::info!(listener = "metrics", %addr, "listening");
    }
    // Scrapes keep answering while calls drain; the endpoint goes with the process.
    let metrics = tokio::spawn(serve_metrics(metrics, metrics_handle));
    let result = server.serve(shutdown).await;
    metrics.abort();
    reloader.abort();
    if let Some(sync) = clock_sync {
        sync.abort();
    }
    if let Some(watch) = shard_watch {
        watch.abort();
    }
    match fatal.into_inner().expect("lock") {
        Some(message) => Err(ServerError::ShardCountChanged(message)),
        None => result,
    }
}

/// How often a serving sidecar checks the deployment's recorded shard count again.
pub const SHARD_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Checks the recorded shard count every [`SHARD_CHECK_INTERVAL`] (recording it again if a
/// flush removed it) and sends the reason when it is no longer this sidecar's.
async fn watch_shard_count(redis: Arc<RedisStore>, fatal: tokio::sync::oneshot::Sender<String>) {
    loop {
        tokio::time::sleep(SHARD_CHECK_INTERVAL).await;
        match redis.check_shards().await {
            Ok(()) => {}
            // Only another recorded count ends the sidecar; whatever else Redis answers (down,
            // full, refusing the write) is what every call sees too, and passes.
            Err(ShardCheckError::Store(e)) => {
                tracing::debug!(error = %e, "cannot check the shard count now")
            }
            Err(ShardCheckError::Mismatch(message)) => {
                let _ = fatal.send(message);
                return;
            }
        }
    }
}
