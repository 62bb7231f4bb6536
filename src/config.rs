//! Command line and environment of the `quota-sidecar` binary.
//!
//! Every flag also reads an environment variable. The admin token is the exception: it comes
//! from `QUOTA_ADMIN_TOKEN` only, because a secret on a command line shows up in `ps` and in
//! shell history.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::events::Retention;
use crate::store::keys::Shards;
use crate::store::redis::conn::{cluster_nodes, CLUSTER_SCHEME};
use crate::store::redis::durability::Durability;
use crate::store::redis::sentinel::{SentinelTarget, SENTINEL_SCHEME};

/// Environment variable holding the admin listener's bearer token.
pub const ADMIN_TOKEN_ENV: &str = "QUOTA_ADMIN_TOKEN";

/// Default of `--sweep-interval-ms`: an unsettled hold is returned at most a second late.
pub const DEFAULT_SWEEP_INTERVAL_MS: u64 = 1_000;
/// Default of `--events-poll-ms`: events reach an idle consumer within a fifth of a second.
pub const DEFAULT_EVENTS_POLL_MS: u64 = 200;
/// Default of `--events-claim-idle-ms`: long enough for a consumer to process and ack a batch.
pub const DEFAULT_EVENTS_CLAIM_IDLE_MS: u64 = 30_000;
/// Default of `--events-max-in-flight`.
pub const DEFAULT_EVENTS_MAX_IN_FLIGHT: u32 = 1_000;
/// Default of `--events-keep-seconds`: a week of acked history for replays and audits.
pub const DEFAULT_EVENTS_KEEP_SECONDS: u64 = 7 * 86_400;
/// Default of `--events-keep-max-per-shard` with the default 16 shards: 16 × 250,000 events of
/// ~250 B bound acked history near 1 GB of Redis memory, whatever the traffic. Other shard
/// counts share the same total ([`per_shard_default`]).
pub const DEFAULT_EVENTS_KEEP_MAX_PER_SHARD: u64 = 250_000;
/// Default hard cap of events per shard stream, acked or not. One event takes about 220 bytes
/// of Redis memory (`MEMORY USAGE` of the streams after 4,000 reserve and settle events with
/// a label, `tests/event_log.rs`): 16 shards × 100,000 × 220 B ≈ 350 MB, about a third of a
/// 1 GB Redis, leaving the rest to accounts, holds (kept 7 days) and headroom. Other shard
/// counts share the same total ([`per_shard_default`]), so a consumer that stops reading
/// cannot fill Redis whatever `--shards` is.
pub const DEFAULT_EVENTS_MAX_RETAINED_PER_SHARD: u64 = 100_000;

/// Fewest events a default per-shard bound keeps: one busy account's events all go to one
/// shard, and a consumer a burst behind must not lose them to a bound sized for thousands of
/// quiet shards. 10,000 events are about 2 MB.
pub const MIN_DEFAULT_EVENTS_PER_SHARD: u64 = 10_000;

/// A per-shard default given for the default 16 shards, for `shards` shards: the same total
/// over the deployment, shared, but at least [`MIN_DEFAULT_EVENTS_PER_SHARD`].
pub fn per_shard_default(per_default_shard: u64, shards: Shards) -> u64 {
    let total = per_default_shard.saturating_mul(u64::from(Shards::DEFAULT.count()));
    (total / u64::from(shards.count())).max(MIN_DEFAULT_EVENTS_PER_SHARD)
}

/// Whose clock the ledger runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClockSource {
    /// The store's clock (Redis `TIME`), read every second: one clock for the whole fleet.
    Store,
    /// This machine's clock (a single sidecar, or tests).
    Local,
}

/// Settings of one sidecar process.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "quota-sidecar",
    version,
    about = "Reserves, settles and releases generation quota for GPU workers"
)]
pub struct Config {
    /// Worker listener (Quota, health, reflection).
    #[arg(long, env = "QUOTA_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Admin listener (QuotaAdmin, UsageEvents behind the bearer token; health, reflection).
    /// Not started unless QUOTA_ADMIN_TOKEN is set.
    #[arg(long, env = "QUOTA_ADMIN_LISTEN", default_value = "127.0.0.1:50052")]
    pub admin_listen: SocketAddr,

    /// Prometheus metrics endpoint (`GET /metrics`, plain HTTP).
    #[arg(long, env = "QUOTA_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,

    /// Where the ledger lives: `memory` (single instance, forgotten on restart) or
    /// `redis://HOST:PORT[/DB]`, `rediss://HOST:PORT[/DB]` (TLS) or a Redis Cluster
    /// `redis+cluster://HOST:PORT,HOST:PORT,...`, or the primary that Sentinel names,
    /// `redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME`.
    #[arg(long, env = "QUOTA_STORE", default_value = "memory")]
    pub store: String,

    /// Plan and cost catalog (TOML). Without it the built-in default catalog is used.
    #[arg(long, env = "QUOTA_CATALOG", value_name = "FILE")]
    pub catalog: Option<PathBuf>,

    /// Deadline of every Redis call, in milliseconds; a slower Redis answers UNAVAILABLE.
    #[arg(
        long,
        env = "QUOTA_REDIS_TIMEOUT_MS",
        default_value_t = 250,
        value_parser = clap::value_parser!(u64).range(1..=60_000)
    )]
    pub redis_timeout_ms: u64,

    /// How often the expiry sweeper looks for due holds on accounts nobody touches, in
    /// milliseconds.
    #[arg(
        long,
        env = "QUOTA_SWEEP_INTERVAL_MS",
        default_value_t = DEFAULT_SWEEP_INTERVAL_MS,
        value_parser = clap::value_parser!(u64).range(10..=3_600_000)
    )]
    pub sweep_interval_ms: u64,

    /// How often an idle event subscription asks the store for new events, in milliseconds.
    #[arg(
        long,
        env = "QUOTA_EVENTS_POLL_MS",
        default_value_t = DEFAULT_EVENTS_POLL_MS,
        value_parser = clap::value_parser!(u64).range(10..=60_000)
    )]
    pub events_poll_ms: u64,

    /// How long an event may stay unacked before another consumer of its group may take it
    /// over, in milliseconds.
    #[arg(
        long,
        env = "QUOTA_EVENTS_CLAIM_IDLE_MS",
        default_value_t = DEFAULT_EVENTS_CLAIM_IDLE_MS,
        value_parser = clap::value_parser!(u64).range(100..=86_400_000)
    )]
    pub events_claim_idle_ms: u64,

    /// Most events one subscription holds delivered and unacked; it waits for acks beyond.
    #[arg(
        long,
        env = "QUOTA_EVENTS_MAX_IN_FLIGHT",
        default_value_t = DEFAULT_EVENTS_MAX_IN_FLIGHT,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub events_max_in_flight: u32,

    /// How long events that every consumer group has acked are kept, in seconds. Unacked
    /// events are never dropped.
    #[arg(
        long,
        env = "QUOTA_EVENTS_KEEP_SECONDS",
        default_value_t = DEFAULT_EVENTS_KEEP_SECONDS,
        value_parser = clap::value_parser!(u64).range(0..=31_622_400)
    )]
    pub events_keep_seconds: u64,

    /// Most events every consumer group has acked that are kept per shard stream; the oldest
    /// go first. Unacked events are never dropped. Default: 4,000,000 over all shards
    /// (250,000 each with 16), at least 10,000 per shard.
    #[arg(
        long,
        env = "QUOTA_EVENTS_KEEP_MAX_PER_SHARD",
        value_parser = clap::value_parser!(u64).range(0..)
    )]
    pub events_keep_max_per_shard: Option<u64>,

    /// Hard cap of events per shard stream, acked or not: past it the oldest are dropped even
    /// if a group has not acked them (counted, logged, and the group's next Subscribe answers
    /// DATA_LOSS), so that a consumer that stops reading cannot fill Redis. Default:
    /// 1,600,000 over all shards (100,000 each with 16), at least 10,000 per shard.
    #[arg(
        long,
        env = "QUOTA_EVENTS_MAX_RETAINED_PER_SHARD",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub events_max_retained_per_shard: Option<u64>,

    /// How many shards the deployment spreads its accounts over (1 to 16384): each has its own
    /// hash tag, event stream and expiry index, so a Redis Cluster can spread the load over as
    /// many primaries. Recorded in Redis by the first sidecar to start; a sidecar set to
    /// another count refuses to start. Every sidecar of a deployment uses the same number.
    #[arg(
        long,
        env = "QUOTA_SHARDS",
        default_value_t = Shards::DEFAULT.count(),
        value_parser = clap::value_parser!(u32).range(1..=i64::from(Shards::MAX))
    )]
    pub shards: u32,

    /// Log format.
    #[arg(long, env = "QUOTA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// `wait-replicas=N[,timeout-ms=T]`: a write answers only once N replicas have it (one
    /// `WAIT` in the same round trip as the script); fewer make the call UNAVAILABLE. T
    /// defaults to half of --redis-timeout-ms. Not with a Redis Cluster.
    #[arg(
        long,
        env = "QUOTA_DURABILITY",
        value_name = "wait-replicas=N[,timeout-ms=T]"
    )]
    pub durability: Option<String>,

    /// Whose clock the ledger runs on: `store` (Redis `TIME`, the same for every sidecar of a
    /// fleet) or `local` (this machine's).
    #[arg(long, env = "QUOTA_CLOCK", value_enum, default_value_t = ClockSource::Store)]
    pub clock: ClockSource,

    /// Shifts this process's own clock by this many milliseconds, as a machine whose clock is
    /// off would be. For tests of the fleet's one clock.
    #[arg(
        long,
        env = "QUOTA_CLOCK_SKEW_MS",
        default_value_t = 0,
        hide = true,
        allow_hyphen_values = true
    )]
    pub clock_skew_ms: i64,

    /// Plaintext listener serving only `grpc.health.v1.Health`, for Kubernetes gRPC probes
    /// (which cannot speak TLS and connect to the pod IP). Not started unless given.
    #[arg(long, env = "QUOTA_HEALTH_LISTEN", value_name = "ADDR")]
    pub health_listen: Option<SocketAddr>,

    /// Certificate chain (PEM) for TLS on the worker and admin listeners; needs --tls-key.
    #[arg(
        long,
        env = "QUOTA_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert; needs --tls-cert.
    #[arg(
        long,
        env = "QUOTA_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// CA (PEM) that admin clients' certificates must be signed by: mutual TLS on the admin
    /// listener, on top of the bearer token. Needs --tls-cert and --tls-key.
    #[arg(
        long,
        env = "QUOTA_ADMIN_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub admin_client_ca: Option<PathBuf>,

    /// CA (PEM) of a `rediss://` server's certificate, when the system's trust store does not
    /// have it.
    #[arg(long, env = "QUOTA_REDIS_CA", value_name = "FILE")]
    pub redis_ca: Option<PathBuf>,

    /// Bearer token of the admin listener, from `QUOTA_ADMIN_TOKEN` only.
    #[arg(skip)]
    pub admin_token: Option<AdminToken>,
}

impl Config {
    /// Parses the command line (exits with usage on a bad flag) and reads the admin token from
    /// the environment.
    pub fn load() -> Config {
        let mut config = Config::parse();
        config.admin_token = std::env::var(ADMIN_TOKEN_ENV)
            .ok()
            .and_then(AdminToken::new);
        config
    }

    /// Deadline of every Redis call.
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    /// `--shards`.
    pub fn shards(&self) -> Shards {
        Shards::new(self.shards).expect("clap keeps --shards in range")
    }

    /// `--durability`, parsed and checked against the store and the Redis timeout.
    pub fn durability(&self) -> Result<Option<Durability>, String> {
        let Some(text) = &self.durability else {
            return Ok(None);
        };
        let d = Durability::parse(text, self.redis_timeout_ms / 2)
            .map_err(|e| format!("--durability {text}: {e}"))?;
        if d.timeout_ms >= self.redis_timeout_ms {
            return Err(format!(
                "--durability {text}: timeout-ms must be below --redis-timeout-ms ({}), or every \
                 wait would outlast the call",
                self.redis_timeout_ms
            ));
        }
        if self.store == "memory" || self.store.starts_with(CLUSTER_SCHEME) {
            return Err(format!(
                "--durability needs a single Redis or Sentinel store (WAIT cannot follow a \
                 script to its Cluster node), not `{}`",
                redacted_url(&self.store)
            ));
        }
        Ok(Some(d))
    }

    /// Interval of the expiry sweeper.
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_millis(self.sweep_interval_ms)
    }

    /// Retention of fully acked events.
    pub fn events_retention(&self) -> Retention {
        Retention {
            keep_ms: self.events_keep_seconds as i64 * 1000,
            max_events_per_shard: self.events_keep_max_per_shard.unwrap_or_else(|| {
                per_shard_default(DEFAULT_EVENTS_KEEP_MAX_PER_SHARD, self.shards())
            }),
            max_retained_per_shard: self.events_max_retained_per_shard.unwrap_or_else(|| {
                per_shard_default(DEFAULT_EVENTS_MAX_RETAINED_PER_SHARD, self.shards())
            }),
        }
    }

    /// The store backend named by `--store`.
    pub fn store_spec(&self) -> Result<StoreSpec, String> {
        StoreSpec::parse(&self.store)
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The store backend chosen on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// In-process store: one instance, nothing survives a restart.
    Memory,
    /// A single Redis server, a Redis Cluster, or a primary found through Sentinel, by URL.
    Redis(String),
}

impl StoreSpec {
    /// Parses a `--store` value; the error is one line an operator can act on.
    pub fn parse(text: &str) -> Result<StoreSpec, String> {
        if text == "memory" {
            return Ok(StoreSpec::Memory);
        }
        let shown = redacted_url(text);
        if text.starts_with(CLUSTER_SCHEME) {
            return cluster_nodes(text)
                .map(|_| StoreSpec::Redis(text.to_string()))
                .map_err(|e| format!("--store {shown}: {e}"));
        }
        if text.starts_with(SENTINEL_SCHEME) {
            return SentinelTarget::parse(text)
                .map(|_| StoreSpec::Redis(text.to_string()))
                .map_err(|e| format!("--store {shown}: {e}"));
        }
        if text.starts_with("rediss+cluster://") {
            return Err(format!(
                "--store {shown}: TLS to a Redis Cluster is not supported yet; use \
                 rediss://HOST:PORT for one server or redis+cluster:// without TLS"
            ));
        }
        match text
            .strip_prefix("redis://")
            .or_else(|| text.strip_prefix("rediss://"))
        {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {
                Ok(StoreSpec::Redis(text.to_string()))
            }
            Some(_) => Err(format!(
                "--store {shown}: names no host; use redis://HOST:PORT or rediss://HOST:PORT"
            )),
            None => Err(format!(
                "--store {shown}: expected `memory`, redis://HOST:PORT[/DB], \
                 rediss://HOST:PORT[/DB] (TLS), redis+cluster://HOST:PORT,HOST:PORT or \
                 redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME"
            )),
        }
    }
}

/// A store URL without its credentials, for logs and error messages.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<credentials>{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// The admin listener's bearer token. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// A token from `raw`, with surrounding whitespace removed (secrets mounted from files
    /// often end in a newline); `None` when nothing is left.
    pub fn new(raw: impl AsRef<str>) -> Option<AdminToken> {
        let trimmed = raw.as_ref().trim();
        (!trimmed.is_empty()).then(|| AdminToken(trimmed.to_string()))
    }

    /// Whether a client can send the token in an `authorization` header at all: bearer
    /// tokens are visible ASCII without spaces (RFC 6750).
    pub fn is_sendable(&self) -> bool {
        self.0.bytes().all(|b| b.is_ascii_graphic())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::try_parse_from(["quota-sidecar"]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(c.admin_listen.to_string(), "127.0.0.1:50052");
        assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:9464");
        assert_eq!(c.store_spec(), Ok(StoreSpec::Memory));
        assert_eq!(c.catalog, None);
        assert_eq!(c.redis_timeout(), Duration::from_millis(250));
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.admin_token.is_none());
        assert_eq!(c.sweep_interval(), Duration::from_secs(1));
        assert_eq!(c.events_poll_ms, 200);
        assert_eq!(c.events_claim_idle_ms, 30_000);
        assert_eq!(c.events_max_in_flight, 1_000);
        assert_eq!(
            c.events_retention(),
            Retention {
                keep_ms: 604_800_000,
                max_events_per_shard: 250_000,
                max_retained_per_shard: 100_000,
            }
        );
    }

    #[test]
    fn event_caps_share_one_total_over_the_shards() {
        let retention = |args: &[&str]| {
            let mut argv = vec!["q"];
            argv.extend_from_slice(args);
            Config::try_parse_from(argv).unwrap().events_retention()
        };
        let more = retention(&["--shards", "64"]);
        assert_eq!(
            (more.max_events_per_shard, more.max_retained_per_shard),
            (62_500, 25_000)
        );
        // Never below the floor a busy account needs.
        let many = retention(&["--shards", "256"]);
        assert_eq!(
            (many.max_events_per_shard, many.max_retained_per_shard),
            (15_625, 10_000)
        );
        let most = retention(&["--shards", "16384"]);
        assert_eq!(
            (most.max_events_per_shard, most.max_retained_per_shard),
            (10_000, 10_000)
        );
        let one = retention(&["--shards", "1"]);
        assert_eq!(one.max_retained_per_shard, 1_600_000);
        // Given explicitly, a bound is per shard whatever the count.
        let set = retention(&["--shards", "256", "--events-max-retained-per-shard", "500"]);
        assert_eq!(set.max_retained_per_shard, 500);
    }

    #[test]
    fn event_settings_are_bounded() {
        for bad in [
            ["q", "--events-max-in-flight", "0"],
            ["q", "--events-poll-ms", "0"],
            ["q", "--sweep-interval-ms", "1"],
            ["q", "--events-claim-idle-ms", "5"],
        ] {
            assert!(Config::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let c = Config::try_parse_from(["q", "--events-max-in-flight", "3"]).unwrap();
        assert_eq!(c.events_max_in_flight, 3);
    }

    #[test]
    fn tls_flags_come_in_pairs() {
        for bad in [
            &["q", "--tls-cert", "c.pem"][..],
            &["q", "--tls-key", "k.pem"],
            &["q", "--admin-client-ca", "ca.pem"],
        ] {
            assert!(Config::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let c = Config::try_parse_from([
            "q",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--admin-client-ca",
            "ca.pem",
            "--health-listen",
            "0.0.0.0:50050",
        ])
        .unwrap();
        assert_eq!(c.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(c.admin_client_ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(c.health_listen, Some("0.0.0.0:50050".parse().unwrap()));
    }

    #[test]
    fn timeout_must_be_positive() {
        assert!(Config::try_parse_from(["q", "--redis-timeout-ms", "0"]).is_err());
        let c = Config::try_parse_from(["q", "--redis-timeout-ms", "40"]).unwrap();
        assert_eq!(c.redis_timeout_ms, 40);
    }

    #[test]
    fn store_urls() {
        assert_eq!(
            StoreSpec::parse("redis://127.0.0.1:6379/2"),
            Ok(StoreSpec::Redis("redis://127.0.0.1:6379/2".into()))
        );
        assert_eq!(
            StoreSpec::parse("rediss://redis.internal:6380"),
            Ok(StoreSpec::Redis("rediss://redis.internal:6380".into()))
        );
        assert_eq!(
            StoreSpec::parse("redis+cluster://a:1,b:2"),
            Ok(StoreSpec::Redis("redis+cluster://a:1,b:2".into()))
        );
        assert_eq!(
            StoreSpec::parse("redis+sentinel://s1:26379,s2:26379/quota"),
            Ok(StoreSpec::Redis(
                "redis+sentinel://s1:26379,s2:26379/quota".into()
            ))
        );
        for bad in [
            "redis+sentinel://s1:26379",
            "redis+sentinel://s1/quota",
            "redis://",
            "redis:///0",
            "redis+cluster://",
            "redis+cluster://a:1/2",
            "rediss://",
            "rediss+cluster://a:1,b:2",
            "postgres://x",
            "Memory",
            "",
        ] {
            assert!(StoreSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redacted_url("redis://user:pw@host:6379/0"),
            "redis://<credentials>@host:6379/0"
        );
        assert_eq!(redacted_url("redis://host:6379"), "redis://host:6379");
        let err = StoreSpec::parse("redis+cluster://:hunter2@a:7000/1").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn token_is_trimmed_and_never_printed() {
        assert_eq!(AdminToken::new(" \n"), None);
        let t = AdminToken::new("s3cret\n").unwrap();
        assert_eq!(t.expose(), "s3cret");
        assert!(t.is_sendable());
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(!AdminToken::new("a b").unwrap().is_sendable());
    }
}
