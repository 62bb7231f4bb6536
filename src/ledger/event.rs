//! Usage events as the ledger produces them: types, fields and deterministic ids. A leaf module:
//! both stores build these, the event logs carry them, the API maps them to the wire.

use std::collections::BTreeMap;

use super::{GrantDraw, Kind};

/// Id of an event about an idempotency key: `<account>/<key>@<created_ms>:<what>`, e.g.
/// `studio-1/upgrade-2@1768435200000:upgraded` for a plan request; holds and grants name
/// what they are in the key ([`hold_event_id`], [`grant_event_id`]).
/// Deterministic for downstream de-duplication, and unique for all time: a key reused after
/// the store forgot it (see `RETENTION_SECONDS`) was created at another time. `@` and `/`
/// cannot occur in ids, so the parts never run together.
pub fn keyed_event_id(account_id: &str, key: &str, created_ms: i64, what: &str) -> String {
    format!("{account_id}/{key}@{created_ms}:{what}")
}

/// Id of an event about a hold: `<account>/hold/<generation>@<created_ms>:<what>`, e.g.
/// `studio-1/hold/gen-7@1768435200000:settled`. The `hold/` part keeps it apart from an event
/// about a grant of the same id created in the same millisecond (both can expire at once).
pub fn hold_event_id(account_id: &str, generation_id: &str, created_ms: i64, what: &str) -> String {
    keyed_event_id(
        account_id,
        &format!("hold/{generation_id}"),
        created_ms,
        what,
    )
}

/// Id of an event about a grant: `<account>/grant/<grant>@<created_ms>:<what>`, e.g.
/// `studio-1/grant/pack-7@1768435200000:granted`.
pub fn grant_event_id(account_id: &str, grant_id: &str, created_ms: i64, what: &str) -> String {
    keyed_event_id(account_id, &format!("grant/{grant_id}"), created_ms, what)
}

/// Event types. Billable: [`HOLD_SETTLED`] (usage), [`HOLD_REFUNDED`] (negative usage) and
/// [`PLAN_UPGRADED`] (prorated charge).
pub const HOLD_RESERVED: &str = "hold.reserved";
pub const HOLD_SETTLED: &str = "hold.settled";
pub const HOLD_RELEASED: &str = "hold.released";
pub const HOLD_EXPIRED: &str = "hold.expired";
pub const HOLD_EXTENDED: &str = "hold.extended";
pub const CREDITS_GRANTED: &str = "credits.granted";
pub const CREDITS_REVOKED: &str = "credits.revoked";
pub const PLAN_UPGRADED: &str = "plan.upgraded";
pub const PLAN_DOWNGRADE_SCHEDULED: &str = "plan.downgrade_scheduled";
pub const PLAN_CHANGED: &str = "plan.changed";
pub const CYCLE_RENEWED: &str = "cycle.renewed";
/// A grant expired with units left; `units` is what was lost.
pub const CREDITS_EXPIRED: &str = "credits.expired";
pub const HOLD_REFUNDED: &str = "hold.refunded";
pub const USAGE_THRESHOLD: &str = "usage.threshold";

/// One change to an account. Fields that do not apply to a type stay empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageEvent {
    /// Deterministic, for downstream de-duplication: `<account>/hold/<generation>@<ms>:settled`,
    /// `<account>/grant/<grant>@<ms>:granted`, `<account>/<request>@<ms>:<change>`,
    /// `<account>:<cycle_start_ms>:renewed` (see docs/events.md).
    pub id: String,
    /// One of the type constants of this module.
    pub event_type: String,
    pub account_id: String,
    pub time_ms: i64,
    /// Strictly increasing per account.
    pub sequence: u64,
    /// Where the event sits in its log, for acknowledging it; empty until read from a log.
    pub ack_id: String,
    pub generation_id: String,
    pub kind: Option<Kind>,
    pub model: String,
    pub quantity: u32,
    /// hold.reserved/released/expired: the hold's cost; hold.settled: the charge;
    /// hold.refunded: the units refunded; usage.threshold: the allowance used when crossed;
    /// credits.*: the units granted, revoked or expired (credits.expired: the units that were
    /// left, not those still held).
    pub units: u64,
    /// hold.reserved: held from the allowance / credits, and per grant; hold.settled: charged;
    /// hold.released/expired: what actually went back (allowance only to the hold's own cycle,
    /// credits only to grants that can still be spent); hold.refunded: the parts of the
    /// original charge refunded, and in `grants` the promotional grant that got the credits.
    pub from_allowance: u64,
    pub from_credits: u64,
    pub grants: Vec<GrantDraw>,
    pub reason: String,
    pub plan: String,
    pub previous_plan: String,
    pub cycle_start_ms: Option<i64>,
    /// plan.*: allowance added now; cycle.renewed: the new cycle's allowance; hold.refunded:
    /// units that went back to the current cycle's allowance.
    pub allowance_added: u64,
    pub prorated_charge_cents: u64,
    pub grant_id: String,
    pub source: String,
    pub expires_at_ms: Option<i64>,
    pub effective_at_ms: Option<i64>,
    pub labels: BTreeMap<String, String>,
    /// hold.settled/released/expired: credit units that could not go back because their grant
    /// had expired or been revoked (on hold.settled, `grants` lists what was charged; the lost
    /// units are the rest of the hold's draws on such grants).
    pub units_lost: u64,
    /// usage.threshold: the percent of the cycle's allowance reached.
    pub threshold_percent: u32,
    /// hold.refunded: the refund's idempotency key.
    pub refund_id: String,
}
