//! The ledger's data: commands, holds, grants, balances and what each operation answers.
//! Both stores speak in these types; the account state machine (`account/`) produces them.

use std::collections::BTreeMap;

pub use super::hold_state::HoldState;
use super::{CreditSource, GrantDraw, Kind};

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
    /// What of the hold went back: the allowance it drew and the charge did not take, and its
    /// credits the charge did not take, less those that could not go back (their grant expired
    /// or was revoked while held; the event's `units_lost`). A charge that took allowance freed
    /// since the Reserve gives back credits the hold drew, so this may exceed cost − charge.
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

/// Ask what Reserve would answer now, without holding anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteCmd {
    pub account_id: String,
    pub kind: Kind,
    /// A catalog model id (the API turns "" into `standard`).
    pub model: String,
    pub quantity: u32,
}

/// Result of Quote: what Reserve would answer at that instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted {
    pub cost_units: u64,
    /// How Reserve would split the cost; when funds fall short, as far as they go.
    pub from_allowance: u64,
    pub from_credits: u64,
    /// The refusal Reserve would give (a plan denial or insufficient funds); `None`: allowed.
    pub denial: Option<crate::ledger::error::LedgerError>,
    pub balance: Balance,
}

/// One generation of a ReserveBatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub generation_id: String,
    pub kind: Kind,
    pub model: String,
    pub quantity: u32,
    pub labels: BTreeMap<String, String>,
}

/// Ask to hold several generations of one account, all or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveBatchCmd {
    pub account_id: String,
    /// 1–64 items with distinct generation ids.
    pub items: Vec<BatchItem>,
    /// Time to live of every hold of the batch.
    pub ttl_seconds: u32,
}

impl ReserveBatchCmd {
    /// The Reserve of item `i`.
    pub fn reserve_cmd(&self, i: usize) -> ReserveCmd {
        let item = &self.items[i];
        ReserveCmd {
            account_id: self.account_id.clone(),
            generation_id: item.generation_id.clone(),
            kind: item.kind,
            model: item.model.clone(),
            quantity: item.quantity,
            ttl_seconds: self.ttl_seconds,
            labels: item.labels.clone(),
        }
    }
}

/// Result of ReserveBatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedBatch {
    /// In the order of the items.
    pub holds: Vec<Hold>,
    pub replayed: bool,
    pub balance: Balance,
}

/// Ask to give back a settled generation's charge, whole or in part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundCmd {
    pub account_id: String,
    pub generation_id: String,
    /// Idempotency key.
    pub refund_id: String,
    /// Units to give back; 0: all that is still refundable.
    pub units: u64,
    pub reason: String,
}

/// Result of Refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refunded {
    pub refunded_units: u64,
    /// Back to the allowance of the hold's cycle, while it is the current one.
    pub to_allowance: u64,
    /// As credits, to the promotional grant `grant_id`.
    pub to_credits: u64,
    /// `refund:<digest>` (see `account::refund_grant_id`), when anything went to credits.
    pub grant_id: Option<String>,
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
