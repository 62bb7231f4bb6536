//! What health checks: that the store can take the calls that matter, which are writes.
//!
//! A `PING` answers while Redis refuses every write (`OOM` under `noeviction`, a `READONLY`
//! replica, `NOREPLICAS`), so on Redis the probe writes: a `SET` of one small key under a
//! hash tag of its own, expiring by itself. It costs one tiny command a second per sidecar,
//! fails exactly when a `Reserve` would (Redis refuses any write command that may grow memory
//! once `maxmemory` is reached), and recovers as soon as writes are accepted again, whether or
//! not any worker is calling. Deriving health from the errors of real calls could not see a
//! full Redis before a worker's call failed, nor its recovery without more failing calls.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::redis_conn::RedisConn;
use super::unavailable::store_error;
use super::{Store, StoreError, StoreResult};

/// The probe's key: a hash tag of its own, so that it never shares a slot's lock or memory
/// accounting with an account, and no account key can be named like it.
pub const PROBE_KEY: &str = super::keys::HEALTH_PROBE;
/// How long the probe key lives: a few probe intervals, so it never accumulates.
pub const PROBE_KEY_TTL_MS: u64 = 10_000;

/// Proves the store can serve calls now.
#[async_trait]
pub trait HealthProbe: Send + Sync + 'static {
    /// `Ok` when the store would take a write now; the error says why not.
    async fn check(&self) -> StoreResult<()>;
}

/// Health by [`Store::ping`], for stores whose writes cannot be refused (memory).
pub struct PingProbe(pub Arc<dyn Store>);

#[async_trait]
impl HealthProbe for PingProbe {
    async fn check(&self) -> StoreResult<()> {
        self.0.ping().await
    }
}

/// Health by a small expiring write to Redis.
pub struct RedisWriteProbe {
    conn: RedisConn,
    timeout: Duration,
}

impl RedisWriteProbe {
    /// A probe on `conn`, each check bounded by `timeout`.
    pub fn new(conn: RedisConn, timeout: Duration) -> RedisWriteProbe {
        RedisWriteProbe { conn, timeout }
    }
}

#[async_trait]
impl HealthProbe for RedisWriteProbe {
    async fn check(&self) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(PROBE_KEY)
            .arg(std::process::id())
            .arg("PX")
            .arg(PROBE_KEY_TTL_MS);
        match tokio::time::timeout(self.timeout, cmd.query_async::<()>(&mut conn)).await {
            Err(_) => Err(StoreError::Unavailable(format!(
                "Redis did not answer within {} ms",
                self.timeout.as_millis()
            ))),
            Ok(result) => result.map_err(|e| store_error(&e)),
        }
    }
}
