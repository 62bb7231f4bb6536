//! The ledger's state: one trait, two backends that pass one conformance suite.
//!
//! - [`memory::MemoryStore`]: in-process, single instance; also the model the Redis store is
//!   held against.
//! - [`redis::RedisStore`]: one atomic Lua function (one `FCALL` of the store's Functions library) per operation.
//!
//! Every operation takes `now_ms` from the service's clock; nothing in a store reads the time.

pub mod error;
pub mod fleet;
pub mod health_probe;
pub mod instrumented;
pub mod keys;
pub mod lease;
pub mod memory;
pub mod redis;
pub mod sweeper;
pub mod unavailable;

pub use crate::ledger::model::*;
use async_trait::async_trait;
pub use error::{LedgerError, StoreError, StoreResult};
pub use fleet::{Fleet, FleetTask};

/// The ledger's state. Every method is one atomic step; retries are safe where the API says
/// the call is idempotent. The store's plumbing for the fleet (its clock, leases, shard count,
/// liveness) is the supertrait [`Fleet`].
#[async_trait]
pub trait Store: fleet::Fleet {
    /// Checks features and funds and holds the cost; replays return the first hold.
    async fn reserve(&self, cmd: &ReserveCmd, now_ms: i64) -> StoreResult<Reserved>;
    /// Charges a hold, or `actual_quantity` of it; returns the rest (credits first).
    async fn settle(
        &self,
        account_id: &str,
        generation_id: &str,
        actual_quantity: Option<u32>,
        now_ms: i64,
    ) -> StoreResult<Settled>;
    /// Returns a whole hold.
    async fn release(
        &self,
        account_id: &str,
        generation_id: &str,
        reason: ReleaseReason,
        now_ms: i64,
    ) -> StoreResult<Released>;
    /// Moves a held hold's expiry to `now + ttl`, within its total lifetime.
    async fn extend(
        &self,
        account_id: &str,
        generation_id: &str,
        ttl_seconds: u32,
        now_ms: i64,
    ) -> StoreResult<Hold>;
    /// The account's balance (an unknown account is on `none` with nothing).
    async fn balance(&self, account_id: &str, now_ms: i64) -> StoreResult<Balance>;
    /// Balance, live grants and open holds.
    async fn account(&self, account_id: &str, now_ms: i64) -> StoreResult<AccountView>;
    /// Starts, upgrades, downgrades or cancels a plan; idempotent on `request_id`.
    async fn set_plan(&self, cmd: &SetPlanCmd, now_ms: i64) -> StoreResult<PlanSet>;
    /// Adds a grant; idempotent on `grant_id`.
    async fn grant_credits(&self, cmd: &GrantCmd, now_ms: i64) -> StoreResult<Granted>;
    /// Takes what is left of a grant; held parts stay chargeable.
    async fn revoke_credits(
        &self,
        account_id: &str,
        grant_id: &str,
        now_ms: i64,
    ) -> StoreResult<Revoked>;
    /// Expires due holds on accounts nobody touches: walks up to `max_accounts` due accounts
    /// of `shard`'s expiry index and runs each through the usual reclaim path, which emits
    /// `hold.expired`. Safe with many sweepers at once: a hold expires once. Returns how many
    /// holds it expired.
    async fn expire_due(&self, shard: u32, now_ms: i64, max_accounts: usize) -> StoreResult<u32>;
    /// What Reserve would answer now; changes nothing at all (not even lazy work).
    async fn quote(&self, cmd: &QuoteCmd, now_ms: i64) -> StoreResult<Quoted>;
    /// Holds every item or none, in one atomic step; replays return the first holds.
    async fn reserve_batch(&self, cmd: &ReserveBatchCmd, now_ms: i64)
        -> StoreResult<ReservedBatch>;
    /// Gives back a settled generation's charge, whole or in part; idempotent on the refund id.
    async fn refund(&self, cmd: &RefundCmd, now_ms: i64) -> StoreResult<Refunded>;
}
