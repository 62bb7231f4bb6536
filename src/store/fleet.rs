//! Fleet plumbing: what the sidecars of one deployment need of their store besides the ledger —
//! its clock, the leases of the fleet-wide tasks, the shard count and a cheap liveness check.
//! Every [`Store`](super::Store) is one ([`Fleet`] is its supertrait); the background tasks
//! ([`super::lease`], the store clock of [`crate::clock`]) need only this.

use async_trait::async_trait;

use super::error::StoreResult;
use super::keys::Shards;

/// A fleet-wide background task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetTask {
    /// The expiry sweeper ([`super::sweeper`]).
    Sweep,
    /// The event-log trimmer and its hard cap ([`crate::events::trimmer`]).
    Trim,
}

impl FleetTask {
    /// The task's lease key: a hash tag of its own, one slot on a Cluster.
    pub fn lease_key(self) -> &'static str {
        match self {
            FleetTask::Sweep => "q:{sweep}:lease",
            FleetTask::Trim => "q:{trim}:lease",
        }
    }
}

/// The store as the fleet's shared plumbing.
#[async_trait]
pub trait Fleet: Send + Sync + 'static {
    /// The deployment's shard count: the shards `Store::expire_due` and the event log know.
    fn shards(&self) -> Shards;
    /// Cheap round trip that proves the store answers.
    async fn ping(&self) -> StoreResult<()>;
    /// The store's own clock (Redis `TIME`), which every sidecar of a fleet runs the ledger on.
    async fn time_ms(&self) -> StoreResult<i64>;
    /// Takes the lease of fleet task `task` for `ttl_ms` unless someone else holds it (extends
    /// it when `owner` holds it already); whether `owner` holds it now. One sidecar a pass does
    /// the task for the whole store (see [`super::lease`]).
    async fn lease(&self, task: FleetTask, owner: &str, ttl_ms: u64) -> StoreResult<bool>;
}
