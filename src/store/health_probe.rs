//! What health checks: that the store can take the calls that matter, which are writes.
//!
//! A `PING` answers while Redis refuses every write (`OOM` under `noeviction`, a `READONLY`
//! replica, `NOREPLICAS`), so on Redis the probe asks to write without writing anything: it
//! runs [`WRITE_INTENT_SCRIPT`], a script that declares it may write (a shebang without the
//! `no-writes` flag). Redis refuses to start such a script exactly when it would refuse a
//! write command, with the same error, and otherwise runs it without touching any key.
//!
//! Having no key, the check can go to every primary of a Redis Cluster, and it does: each
//! primary holds the accounts of its own slots and can be full or demoted alone, so any
//! primary refusing fails the check, naming the reason and the node. A Cluster node also
//! serves keyless commands while it considers the cluster down (`cluster_state:fail`, every
//! keyed command refused with `CLUSTERDOWN`), so on a Cluster the probe also reads each
//! primary's `CLUSTER INFO`.
//!
//! It costs one tiny command a second per sidecar (two per primary on a Cluster), fails
//! exactly when a `Reserve` would, and recovers as soon as writes are accepted again, whether
//! or not any worker is calling. Deriving health from the errors of real calls could not see
//! a full Redis before a worker's call failed, nor its recovery without more failing calls.

use std::sync::Arc;
use std::time::Duration;

use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use ::redis::{Cmd, RedisError, Value};
use async_trait::async_trait;

use super::redis::conn::RedisConn;
use super::unavailable::{no_answer_within, store_error};
use super::{Store, StoreError, StoreResult};

/// The probe's script: a shebang without `flags=no-writes` makes Redis check, before running
/// it, everything it checks before a write (memory, replica, good replicas). Without the
/// shebang Redis would run it and check only the commands called inside, which are none.
pub const WRITE_INTENT_SCRIPT: &str = "#!lua\nreturn 1";

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

/// Health by asking Redis (every primary of a Cluster) whether it would take a write now.
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
        let check = async {
            match self.conn.clone() {
                RedisConn::Cluster(cluster) => check_primaries(cluster).await,
                mut conn => write_intent()
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| store_error(&e)),
            }
        };
        match tokio::time::timeout(self.timeout, check).await {
            Err(_) => Err(no_answer_within(self.timeout)),
            Ok(result) => result,
        }
    }
}

/// `EVAL` of [`WRITE_INTENT_SCRIPT`] with no key.
fn write_intent() -> Cmd {
    let mut cmd = ::redis::cmd("EVAL");
    cmd.arg(WRITE_INTENT_SCRIPT).arg(0);
    cmd
}

/// Every primary of the cluster would take a write now and considers the cluster up.
async fn check_primaries(cluster: ClusterConnection) -> StoreResult<()> {
    let mut info = ::redis::cmd("CLUSTER");
    info.arg("INFO");
    let (writes, states) = tokio::try_join!(
        on_every_primary(cluster.clone(), write_intent()),
        on_every_primary(cluster, info),
    )?;
    for (node, reply) in writes {
        if let Value::ServerError(e) = reply {
            return Err(at_node(store_error(&RedisError::from(e)), &node));
        }
    }
    for (node, reply) in states {
        let text = match reply {
            Value::ServerError(e) => return Err(at_node(store_error(&RedisError::from(e)), &node)),
            reply => ::redis::from_redis_value::<String>(reply)
                .map_err(|e| at_node(StoreError::Internal(e.to_string()), &node))?,
        };
        if !text.lines().any(|l| l.trim() == "cluster_state:ok") {
            return Err(StoreError::Unavailable(format!(
                "Redis Cluster is down (CLUSTERDOWN): node {node} reports no cluster_state:ok, \
                 keyed calls refused"
            )));
        }
    }
    Ok(())
}

/// Runs `cmd` on every primary; each node's reply (a refusal is a [`Value::ServerError`])
/// with its address. No reply policy: redis-rs' `AllSucceeded` counts a node's error reply as
/// a success and returns one node's reply, which would hide a refusing primary.
async fn on_every_primary(
    mut cluster: ClusterConnection,
    cmd: Cmd,
) -> StoreResult<Vec<(String, Value)>> {
    let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
    let reply = cluster
        .route_command(cmd, routing)
        .await
        .map_err(|e| store_error(&e))?;
    let Value::Map(replies) = reply else {
        return Err(StoreError::Internal(format!(
            "unexpected reply from the cluster's primaries: {reply:?}"
        )));
    };
    Ok(replies
        .into_iter()
        .map(|(node, reply)| {
            let node = ::redis::from_redis_value::<String>(node).unwrap_or_default();
            (node, reply)
        })
        .collect())
}

/// `e` with the node it came from; a refusal's message still starts with its headline.
fn at_node(e: StoreError, node: &str) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("{m} (node {node})")),
        StoreError::Internal(m) => StoreError::Internal(format!("{m} (node {node})")),
        other => other,
    }
}
