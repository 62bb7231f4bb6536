//! The ledger's state: one trait, two backends that pass one conformance suite.
//!
//! - [`memory::MemoryStore`]: in-process, single instance; also the model the Redis store is
//!   held against.
//! - [`redis::RedisStore`]: one atomic Lua script (one `EVALSHA`) per operation.
//!
//! Every operation takes `now_ms` from the service's clock; nothing in a store reads the time.

pub mod instrumented;
pub mod keys;
pub mod memory;
pub mod redis;
pub mod redis_conn;

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::fmt;

use crate::ledger::{CreditSource, Denial, GrantDraw, Kind};

/// Lifecycle of a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldState {
    Held,
    Settled,
    Released,
    Expired,
}

impl HoldState {
    /// The stable id used in the store and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Held => "held",
            HoldState::Settled => "settled",
            HoldState::Released => "released",
            HoldState::Expired => "expired",
        }
    }

    /// Parses the stable id back.
    pub fn parse(s: &str) -> Option<HoldState> {
        [
            HoldState::Held,
            HoldState::Settled,
            HoldState::Released,
            HoldState::Expired,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

impl fmt::Display for HoldState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a generation gave its hold back. Every reason returns the whole hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    Failed,
    ContentFiltered,
    SystemError,
    Cancelled,
}

impl ReleaseReason {
    /// The stable id used in the store and events.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Failed => "failed",
            ReleaseReason::ContentFiltered => "content_filtered",
            ReleaseReason::SystemError => "system_error",
            ReleaseReason::Cancelled => "cancelled",
        }
    }
}

/// What a SetPlan call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanChange {
    /// From `none` to a plan: a cycle starts at the anchor with the full allowance.
    Started,
    /// To a higher price: at once, with a prorated allowance and charge.
    Upgraded,
    /// To a lower price or `none`: at the end of the cycle.
    DowngradeScheduled,
    /// The current plan asked for while a change was scheduled: the change is dropped.
    ScheduledChangeCancelled,
    /// The current plan asked for, nothing scheduled.
    Unchanged,
}

impl PlanChange {
    /// The stable id used in the store and events.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanChange::Started => "started",
            PlanChange::Upgraded => "upgraded",
            PlanChange::DowngradeScheduled => "downgrade_scheduled",
            PlanChange::ScheduledChangeCancelled => "scheduled_change_cancelled",
            PlanChange::Unchanged => "unchanged",
        }
    }

    /// Parses the stable id back.
    pub fn parse(s: &str) -> Option<PlanChange> {
        [
            PlanChange::Started,
            PlanChange::Upgraded,
            PlanChange::DowngradeScheduled,
            PlanChange::ScheduledChangeCancelled,
            PlanChange::Unchanged,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// Ask to hold the cost of one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveCmd {
    pub account_id: String,
    pub generation_id: String,
    pub kind: Kind,
    /// A catalog model id (the API turns "" into `standard`).
    pub model: String,
    /// Images, or video seconds.
    pub quantity: u32,
    /// Time to live of the hold.
    pub ttl_seconds: u32,
    /// Caller's labels, carried into events.
    pub labels: BTreeMap<String, String>,
}

/// Ask to start, upgrade, downgrade or cancel a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetPlanCmd {
    pub request_id: String,
    pub account_id: String,
    /// A catalog plan id or `none`.
    pub plan: String,
    /// Start of the first cycle when a plan starts; `None` means now.
    pub cycle_anchor_ms: Option<i64>,
}

/// Ask to add credits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantCmd {
    pub account_id: String,
    pub grant_id: String,
    pub units: u64,
    pub source: CreditSource,
    pub expires_at_ms: Option<i64>,
}

/// An account's funds at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub account_id: String,
    /// A catalog plan id or `none`.
    pub plan: String,
    /// The plan from `cycle_end_ms` on, if a change is scheduled.
    pub scheduled_plan: Option<String>,
    /// The current cycle; `None` without a plan.
    pub cycle_start_ms: Option<i64>,
    pub cycle_end_ms: Option<i64>,
    pub allowance_total: u64,
    pub allowance_used: u64,
    pub allowance_held: u64,
    pub allowance_available: u64,
    /// Spendable credits of live grants (held units excluded).
    pub credits_available: u64,
    /// Credits drawn by open holds.
    pub credits_held: u64,
    pub open_holds: u32,
}

/// One hold as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub account_id: String,
    pub generation_id: String,
    pub kind: Kind,
    pub model: String,
    pub quantity: u32,
    pub cost_units: u64,
    pub from_allowance: u64,
    pub from_credits: u64,
    /// Grants drawn from, in burn order.
    pub grants: Vec<GrantDraw>,
    pub state: HoldState,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    /// Units charged by Settle; 0 otherwise.
    pub charged_units: u64,
}

/// One credit grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub grant_id: String,
    pub source: CreditSource,
    pub units_granted: u64,
    /// Spendable now: not charged, held, revoked or expired.
    pub units_remaining: u64,
    /// Drawn by open holds.
    pub units_held: u64,
    pub expires_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// Result of Reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub hold: Hold,
    pub replayed: bool,
    pub balance: Balance,
}

/// Result of Settle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub hold: Hold,
    pub charged_units: u64,
    pub returned_units: u64,
    pub replayed: bool,
    pub balance: Balance,
}

/// Result of Release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub hold: Hold,
    pub returned_units: u64,
    pub replayed: bool,
    pub balance: Balance,
}

/// Result of SetPlan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSet {
    pub change: PlanChange,
    /// When the change applies (now, or the cycle's end for a downgrade).
    pub effective_at_ms: i64,
    pub allowance_added: u64,
    pub prorated_charge_cents: u64,
    pub replayed: bool,
    pub balance: Balance,
}

/// Result of GrantCredits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub grant: Grant,
    pub replayed: bool,
    pub balance: Balance,
}

/// Result of RevokeCredits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub revoked_units: u64,
    pub balance: Balance,
}

/// Everything about an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    pub balance: Balance,
    /// Live grants in burn order.
    pub grants: Vec<Grant>,
    /// Open holds, oldest first.
    pub holds: Vec<Hold>,
    /// Units ever charged by Settle from the allowance and from credits. They never reset, so
    /// billing can reconcile them with the `hold.settled` events of the account.
    pub lifetime_charged: ChargedTotals,
}

/// Units charged by Settle, split by where they came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChargedTotals {
    pub allowance_units: u64,
    pub credit_units: u64,
}

/// Why an operation did not happen. Every error leaves the account as it was, except that
/// lazy work (cycle rollover, reclaiming expired holds) may already have been applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A request field is out of range; `field` is its wire name.
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    /// The plan does not allow the generation (credits never unlock features).
    #[error("{0}")]
    Denied(Denial),
    /// Allowance and credits together do not cover the cost.
    #[error(
        "not enough funds: generation costs {needed} units, account has {available} available"
    )]
    InsufficientFunds { needed: u64, available: u64 },
    /// The generation id is already used for a different generation.
    #[error("generation `{generation_id}` is already reserved as {existing}; this request asks for {requested}")]
    GenerationConflict {
        generation_id: String,
        existing: String,
        requested: String,
    },
    /// The grant id is already used with different terms.
    #[error("grant `{grant_id}` already exists with different units, source or expiry")]
    GrantConflict { grant_id: String },
    /// The request id was already used for a different plan change.
    #[error("request `{request_id}` was already used for a different plan change")]
    RequestConflict { request_id: String },
    /// No hold with this generation id (or it was forgotten after the retention period).
    #[error("no hold for generation `{generation_id}` on account `{account_id}`")]
    HoldNotFound {
        account_id: String,
        generation_id: String,
    },
    /// No grant with this id on the account.
    #[error("no grant `{grant_id}` on account `{account_id}`")]
    GrantNotFound {
        account_id: String,
        grant_id: String,
    },
    /// The hold is not in a state that allows the operation.
    #[error("cannot {operation} generation `{generation_id}`: its hold is {state}")]
    HoldState {
        generation_id: String,
        state: HoldState,
        operation: &'static str,
    },
    /// Settle asked to charge more than was reserved.
    #[error("cannot settle generation `{generation_id}` for {actual_quantity}: only {reserved_quantity} were reserved")]
    SettleAboveHold {
        generation_id: String,
        actual_quantity: u32,
        reserved_quantity: u32,
    },
    /// The account has as many live grants as it may.
    #[error("account `{account_id}` already has {limit} live grants")]
    TooManyGrants { account_id: String, limit: usize },
    /// The store cannot be reached in time; nothing is known to have changed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt state; never expected.
    #[error("internal store error: {0}")]
    Internal(String),
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// The ledger's state. Every method is one atomic step; retries are safe where the API says
/// the call is idempotent.
#[async_trait]
pub trait Store: Send + Sync + 'static {
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
    /// Cheap round trip that proves the store answers.
    async fn ping(&self) -> StoreResult<()>;
}
