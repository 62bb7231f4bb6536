//! The Redis store as the fleet's plumbing: `TIME`, the fleet tasks' leases (`lease.lua`), the
//! shard count and `PING`.

use ::redis::Script;
use async_trait::async_trait;

use super::reply::anomaly;
use super::RedisStore;
use crate::store::keys::Shards;
use crate::store::{Fleet, FleetTask, StoreResult};

/// Takes or extends a fleet task's lease (see `lease.lua`).
static LEASE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("scripts/lease.lua")));

#[async_trait]
impl Fleet for RedisStore {
    fn shards(&self) -> Shards {
        self.shards
    }

    async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let pong: String = self
            .bounded(::redis::cmd("PING").query_async(&mut conn))
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(anomaly(pong))
        }
    }

    async fn lease(&self, task: FleetTask, owner: &str, ttl_ms: u64) -> StoreResult<bool> {
        // A sidecar on another shard count takes no lease: its passes would fail shard by shard.
        self.shards_ready().await?;
        let mut conn = self.conn.clone();
        let held: u64 = self
            .bounded(
                LEASE
                    .key(task.lease_key())
                    .arg(owner)
                    .arg(ttl_ms)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(held == 1)
    }

    async fn time_ms(&self) -> StoreResult<i64> {
        let mut conn = self.conn.clone();
        let reply: Vec<String> = self
            .bounded(::redis::cmd("TIME").query_async(&mut conn))
            .await?;
        time_reply_ms(&reply)
    }
}

/// `TIME`'s reply, seconds and microseconds, in milliseconds.
fn time_reply_ms(reply: &[String]) -> StoreResult<i64> {
    match reply {
        [secs, micros] => {
            let secs: i64 = secs.parse().map_err(anomaly)?;
            let micros: i64 = micros.parse().map_err(anomaly)?;
            Ok(secs * 1000 + micros / 1000)
        }
        other => Err(anomaly(format!("TIME answered {other:?}"))),
    }
}
