//! The account as a pure state machine: every operation is a function from a state, a command
//! and `now_ms` to a new state, a reply and the events it emits. No I/O, no clock, no locks.
//!
//! [`Account::execute`] is the only way in: it loads a copy of the live state with the records
//! of the past the call recalled, runs the lazy work every operation starts with (`touch`:
//! forgetting what retention dropped, cycle rollover, reclaiming expired holds, expiring
//! grants), the operation itself and the grant sweep after it, checks every invariant, and
//! hands back the new state with its events only when all of that succeeded. A refused or
//! failed operation leaves the caller's state untouched and emits nothing. The memory store is
//! a lock around this; the Functions library in `src/store/redis/lua/` is its twin, and the
//! conformance suite holds the two together.
//!
//! This file holds the state, [`Account::execute`] and the steps operations share (touch and
//! rollover, finalize, hold events, the grant sweep, thresholds, invariants): the twin of
//! `lua/lib.lua`. Each operation is a file of its own, named as the operation and as its Lua
//! twin `lua/<operation>.lua` is; what is computed before a call (costs, the month window, the
//! plan check) is [`crate::ledger::prepare`].
//!
//! An [`Account`] is its live state only: counters, grants and open holds, all bounded. What it
//! remembers of its past for replays (finished holds, tombstones of dropped grants, SetPlan
//! requests, refunds) is a [`Past`] kept apart by the store: a call is handed the few records
//! its ids name ([`Recall`]) and hands back those it read or made, so no call reads or copies
//! more of the past than that, however long the account has lived.

mod balance;
mod extend;
mod grant_credits;
mod quote;
mod refund;
mod release;
mod reserve;
mod reserve_batch;
mod revoke_credits;
mod set_plan;
mod settle;
mod view;

pub use refund::refund_grant_id;
pub use reserve::conflict;
pub use reserve_batch::batch_conflict;

use std::collections::{BTreeMap, HashMap};

use super::allocation::{burn_order, split_charge, Allocation, BurnKey};
use super::catalog::NO_PLAN;
use super::cycle::{cycle_containing, Anchor, Cycle};
use super::error::LedgerError;
use super::event::{self as events, UsageEvent};
use super::model::*;
use super::prepare;
use super::{Catalog, GrantDraw, PlanSpec, MAX_LIVE_GRANTS, RETENTION_SECONDS};

/// How long finished holds, tombstones and plan requests are remembered.
pub const RETENTION_MS: i64 = RETENTION_SECONDS as i64 * 1000;

/// Result of a ledger operation.
pub type LedgerResult<T> = Result<T, LedgerError>;

/// A credit grant and, once revoked, what the revocation took (a retried RevokeCredits
/// answers it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantState {
    pub grant: Grant,
    pub revoked: Option<u64>,
}

impl GrantState {
    fn expired(&self, now_ms: i64) -> bool {
        self.grant.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// Returned units only go back to a grant that can still be spent.
    fn spendable(&self, now_ms: i64) -> bool {
        self.revoked.is_none() && !self.expired(now_ms)
    }

    fn burn_key(&self) -> BurnKey<'_> {
        BurnKey {
            expires_at_ms: self.grant.expires_at_ms,
            source: self.grant.source,
            created_at_ms: self.grant.created_at_ms,
            grant_id: &self.grant.grant_id,
        }
    }
}

/// A hold with what the ledger needs to finish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRecord {
    pub hold: Hold,
    /// Cost of one image or video second when reserved: a settle for less charges at it.
    pub unit_cost: u64,
    /// The cycle the hold drew allowance from, by number: allowance goes back only to it.
    pub cycle_number: u64,
    /// Start of that cycle, for events (`None`: no plan).
    pub cycle_start_ms: Option<i64>,
    pub returned_units: u64,
    /// The part of the charge paid from the allowance, as Settle split it (0 until settled):
    /// refunds give this part back to the allowance first.
    pub charged_from_allowance: u64,
    /// Units of the charge given back by refunds so far.
    pub refunded_units: u64,
    pub labels: BTreeMap<String, String>,
    /// When a finished hold is forgotten.
    pub forget_at_ms: Option<i64>,
}

/// A refund remembered for replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    pub generation_id: String,
    /// What was asked (0: all that was left).
    pub units_requested: u64,
    pub refunded_units: u64,
    pub to_allowance: u64,
    pub to_credits: u64,
    pub grant_id: Option<String>,
    pub forget_at_ms: i64,
}

/// A SetPlan request remembered for replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRecord {
    pub plan: String,
    pub requested_anchor_ms: Option<i64>,
    pub change: PlanChange,
    pub effective_at_ms: i64,
    pub allowance_added: u64,
    pub prorated_charge_cents: u64,
    pub forget_at_ms: i64,
}

/// What a plan costs and gives per cycle, as recorded on the account when the plan started,
/// changed or renewed: an upgrade is prorated from these, never from a catalog that may have
/// repriced or removed the plan since (DESIGN.md §9, "an account keeps the terms it bought").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanTerms {
    pub price_cents: u64,
    pub allowance_units: u64,
}

impl PlanTerms {
    /// The terms `plan` has in the catalog.
    pub fn of(plan: &PlanSpec) -> PlanTerms {
        PlanTerms {
            price_cents: plan.price_cents,
            allowance_units: plan.allowance_units,
        }
    }

    /// The terms a cycle of plan `id` starts with: the catalog's while it has the plan (a
    /// repricing applies from the next cycle on), else `recorded`.
    fn renewed(catalog: &Catalog, id: &str, recorded: PlanTerms) -> PlanTerms {
        catalog.plan(id).map_or(recorded, PlanTerms::of)
    }
}

/// A dropped grant's terms, remembered so GrantCredits stays idempotent, and what its
/// revocation took, if it was revoked, so RevokeCredits does too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub grant: Grant,
    pub revoked_units: Option<u64>,
    pub forget_at_ms: i64,
}

/// One account's live state: counters, grants and open holds. Between calls it holds nothing
/// of the past; during a call also the records of the past the call recalled or made, which
/// [`Account::execute`] hands back apart ([`Transition::remembered`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    account_id: String,
    /// Sequence of the last event.
    seq: u64,
    plan: String,
    /// The terms of `plan` when it started, changed or last renewed.
    terms: PlanTerms,
    scheduled_plan: Option<String>,
    /// The terms of `scheduled_plan` when the change was scheduled.
    scheduled_terms: PlanTerms,
    anchor: Anchor,
    cycle: Option<Cycle>,
    /// Counts cycles: every rollover and every plan start increments it. Holds pin their
    /// cycle by this number, never by its start time (two cycles may start at one instant).
    cycle_number: u64,
    allowance_total: u64,
    allowance_used: u64,
    allowance_held: u64,
    lifetime_charged: ChargedTotals,
    grants: BTreeMap<String, GrantState>,
    /// Open holds; during a call also the recalled finished holds and those it finishes.
    holds: HashMap<String, HoldRecord>,
    /// During a call only: the recalled records of the past and those the call makes.
    tombstones: HashMap<String, Tombstone>,
    plan_requests: HashMap<String, PlanRecord>,
    refunds: HashMap<String, RefundRecord>,
    /// The highest usage alert threshold (percent) already announced in this cycle.
    threshold_reached: u32,
    /// Events of the running operation.
    outbox: Vec<UsageEvent>,
}

/// What a successful operation produced.
#[derive(Debug)]
pub struct Transition<T> {
    /// The new live state: counters, grants and open holds, nothing of the past.
    pub account: Account,
    pub reply: T,
    /// In sequence order.
    pub events: Vec<UsageEvent>,
    /// The records of the past the call read or made, to be kept (replacing those of the same
    /// ids) until their forget times. Records the call found forgotten are not among them.
    pub remembered: Past,
}

/// What an account remembers of its past, each record until its forget time: finished holds
/// (settled, released, expired), tombstones of dropped grants, SetPlan requests and refunds,
/// each by its id. Stores keep it apart from the live [`Account`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Past {
    /// Finished holds by generation id. A finished hold keeps no labels: nothing after the
    /// hold's end reads them.
    pub holds: HashMap<String, HoldRecord>,
    /// Dropped grants by grant id.
    pub tombstones: HashMap<String, Tombstone>,
    /// SetPlan requests by request id.
    pub plan_requests: HashMap<String, PlanRecord>,
    /// Refunds by refund id.
    pub refunds: HashMap<String, RefundRecord>,
}

impl Past {
    /// No record at all.
    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
            && self.tombstones.is_empty()
            && self.plan_requests.is_empty()
            && self.refunds.is_empty()
    }

    /// How many records, of every kind.
    pub fn len(&self) -> usize {
        self.holds.len() + self.tombstones.len() + self.plan_requests.len() + self.refunds.len()
    }

    /// Copies of the records `recall` names (those this past has).
    pub fn recall(&self, recall: &Recall) -> Past {
        fn pick<'a, R: Clone>(
            map: &HashMap<String, R>,
            ids: impl IntoIterator<Item = &'a String>,
        ) -> HashMap<String, R> {
            ids.into_iter()
                .filter_map(|id| map.get_key_value(id))
                .map(|(id, r)| (id.clone(), r.clone()))
                .collect()
        }
        // A refund's grant is named from its hold, so its tombstone is found once the hold is.
        let refund_grant = recall
            .refund_grant
            .as_ref()
            .and_then(|(generation_id, refund_id)| {
                let r = self.holds.get(generation_id)?;
                Some(refund_grant_id(
                    generation_id,
                    r.hold.created_at_ms,
                    refund_id,
                ))
            });
        Past {
            holds: pick(&self.holds, &recall.holds),
            tombstones: pick(&self.tombstones, recall.grants.iter().chain(&refund_grant)),
            plan_requests: pick(&self.plan_requests, &recall.plan_requests),
            refunds: pick(&self.refunds, &recall.refunds),
        }
    }

    /// Takes `other`'s records, replacing those of the same ids.
    pub fn absorb(&mut self, other: Past) {
        self.holds.extend(other.holds);
        self.tombstones.extend(other.tombstones);
        self.plan_requests.extend(other.plan_requests);
        self.refunds.extend(other.refunds);
    }
}

/// The ids of the records of the past one operation may read: a store hands the operation
/// these records and no others, the twin of the keys a Redis script declares. An operation
/// given fewer would answer as if they were forgotten, so each operation's recall is built
/// beside the operation, in its file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recall {
    /// Finished holds, by generation id.
    pub holds: Vec<String>,
    /// Tombstones, by grant id.
    pub grants: Vec<String>,
    /// SetPlan requests, by request id.
    pub plan_requests: Vec<String>,
    /// Refunds, by refund id.
    pub refunds: Vec<String>,
    /// A refund's (generation id, refund id): the tombstone of the grant its credits would
    /// take, named from the recalled hold ([`refund_grant_id`] needs the hold's creation time).
    pub refund_grant: Option<(String, String)>,
}

impl Recall {
    /// Reads of the live state only (balance, account view, quote, the sweep).
    pub fn nothing() -> Recall {
        Recall::default()
    }

    /// Reserve, Settle, Release and Extend of one generation.
    pub fn hold(generation_id: &str) -> Recall {
        Recall {
            holds: vec![generation_id.to_string()],
            ..Recall::default()
        }
    }
}

fn broken(what: String) -> LedgerError {
    LedgerError::InvariantBroken(what)
}

/// `a - b`, or the invariant error naming `what`.
fn minus(a: u64, b: u64, what: &str) -> LedgerResult<u64> {
    a.checked_sub(b)
        .ok_or_else(|| broken(format!("{what}: {a} - {b} is below zero")))
}

impl Account {
    /// An account nobody has given anything: on `none`, no grants, no holds.
    pub fn new(account_id: &str) -> Account {
        Account {
            account_id: account_id.to_string(),
            seq: 0,
            plan: NO_PLAN.to_string(),
            terms: PlanTerms::default(),
            scheduled_plan: None,
            scheduled_terms: PlanTerms::default(),
            anchor: Anchor {
                day: 1,
                time_of_day_ms: 0,
            },
            cycle: None,
            cycle_number: 0,
            allowance_total: 0,
            allowance_used: 0,
            allowance_held: 0,
            lifetime_charged: ChargedTotals::default(),
            grants: BTreeMap::new(),
            tombstones: HashMap::new(),
            holds: HashMap::new(),
            plan_requests: HashMap::new(),
            refunds: HashMap::new(),
            threshold_reached: 0,
            outbox: Vec::new(),
        }
    }

    /// No live state worth keeping: a store may drop such an account (its past, kept apart,
    /// is not part of this).
    pub fn is_empty(&self) -> bool {
        self.seq == 0
            && self.plan == NO_PLAN
            && self.cycle.is_none()
            && self.grants.is_empty()
            && self.tombstones.is_empty()
            && self.holds.is_empty()
            && self.plan_requests.is_empty()
            && self.refunds.is_empty()
    }

    /// Hold entries the live state keeps: its open holds, since finished ones leave it.
    pub fn retained_holds(&self) -> usize {
        self.holds.len()
    }

    /// Runs `op` at `now_ms` on a copy of this account's live state given the `recalled`
    /// records of its past (those the operation's [`Recall`] names), between the lazy work
    /// every operation starts with and the grant sweep it ends with, and checks every
    /// invariant. Returns the new live state, its events and the records of the past to keep,
    /// or the error with nothing changed. The copy is of bounded size (counters, grants, open
    /// holds): the past is never copied beyond what `recalled` holds.
    ///
    /// The steps, in the library's order (`execute` in `lua/lib.lua`): load, touch, the
    /// operation, finish (the grant sweep, the invariants, then what the store writes).
    pub fn execute<T>(
        &self,
        recalled: Past,
        catalog: &Catalog,
        now_ms: i64,
        op: impl FnOnce(&mut Account) -> LedgerResult<T>,
    ) -> LedgerResult<Transition<T>> {
        let mut next = self.load(recalled);
        next.touch(catalog, now_ms)?;
        let reply = op(&mut next)?;
        next.finish(reply, now_ms)
    }

    /// A copy of the live state with the `recalled` records of the past, for one call.
    fn load(&self, recalled: Past) -> Account {
        let mut next = self.clone();
        next.outbox.clear();
        for (generation_id, record) in recalled.holds {
            // An open hold is the generation's newest: a finished record under its id is of
            // an earlier hold of that generation, past its forget time (the id could not have
            // been reserved again otherwise) though not dropped yet, and must not hide it.
            next.holds.entry(generation_id).or_insert(record);
        }
        next.tombstones = recalled.tombstones;
        next.plan_requests = recalled.plan_requests;
        next.refunds = recalled.refunds;
        next
    }

    /// After a successful operation: sweeps the grants, checks every invariant, and hands
    /// back the new live state, its events and the records of the past to keep (the store
    /// writes them; the library's `finish` performs its queued writes).
    fn finish<T>(mut self, reply: T, now_ms: i64) -> LedgerResult<Transition<T>> {
        self.sweep_grants(now_ms);
        self.check_invariants()?;
        let events = std::mem::take(&mut self.outbox);
        let remembered = self.split_past();
        Ok(Transition {
            account: self,
            reply,
            events,
            remembered,
        })
    }

    /// Moves the finished holds and every other record of the past out of the live state.
    fn split_past(&mut self) -> Past {
        let finished: Vec<String> = self
            .holds
            .iter()
            .filter(|(_, r)| r.hold.state != HoldState::Held)
            .map(|(id, _)| id.clone())
            .collect();
        let holds = finished
            .into_iter()
            .filter_map(|id| self.holds.remove_entry(&id))
            .map(|(id, mut r)| {
                r.labels.clear();
                (id, r)
            })
            .collect();
        Past {
            holds,
            tombstones: std::mem::take(&mut self.tombstones),
            plan_requests: std::mem::take(&mut self.plan_requests),
            refunds: std::mem::take(&mut self.refunds),
        }
    }

    /// Open holds that are due at `now_ms`: (expiry, generation id), earliest first.
    pub fn due_holds(&self, now_ms: i64) -> Vec<(i64, String)> {
        let mut due: Vec<(i64, String)> = self
            .holds
            .values()
            .filter(|r| r.hold.state == HoldState::Held && r.hold.expires_at_ms <= now_ms)
            .map(|r| (r.hold.expires_at_ms, r.hold.generation_id.clone()))
            .collect();
        due.sort();
        due
    }

    /// Events emitted so far by the running operation.
    pub fn pending_events(&self) -> &[UsageEvent] {
        &self.outbox
    }

    // ---------------------------------------------------------------------------------------
    // Lazy work and bookkeeping.

    /// Queues an event with the account's next sequence.
    fn emit(&mut self, event_type: &str, id: String, now_ms: i64, event: UsageEvent) {
        self.seq += 1;
        self.outbox.push(UsageEvent {
            id,
            event_type: event_type.to_string(),
            account_id: self.account_id.clone(),
            time_ms: now_ms,
            sequence: self.seq,
            ..event
        });
    }

    /// Forgets what retention dropped, rolls the cycle over, reclaims expired holds and
    /// expires grants.
    fn touch(&mut self, catalog: &Catalog, now_ms: i64) -> LedgerResult<()> {
        self.holds
            .retain(|_, r| r.forget_at_ms.is_none_or(|at| at > now_ms));
        self.tombstones.retain(|_, t| t.forget_at_ms > now_ms);
        self.plan_requests.retain(|_, r| r.forget_at_ms > now_ms);
        self.refunds.retain(|_, r| r.forget_at_ms > now_ms);
        self.rollover(catalog, now_ms);
        self.reclaim_expired(now_ms)?;
        self.sweep_grants(now_ms);
        Ok(())
    }

    /// Expires the open holds due at `now_ms`, earliest first (ties by generation id): each
    /// gives its units back.
    fn reclaim_expired(&mut self, now_ms: i64) -> LedgerResult<()> {
        for (_, generation_id) in self.due_holds(now_ms) {
            self.finalize(&generation_id, HoldState::Expired, 0, "", now_ms)?;
        }
        Ok(())
    }

    /// The first touch after a cycle ends starts the cycle containing now, however many were
    /// missed, applies a scheduled plan and resets the allowance. Holds keep their old cycle.
    fn rollover(&mut self, catalog: &Catalog, now_ms: i64) {
        let Some(cycle) = self.cycle else { return };
        if now_ms < cycle.end_ms {
            return;
        }
        let previous = self.plan.clone();
        if let Some(plan) = self.scheduled_plan.take() {
            self.plan = plan;
            self.terms = std::mem::take(&mut self.scheduled_terms);
        }
        if self.plan != previous {
            let event = UsageEvent {
                plan: self.plan.clone(),
                previous_plan: previous,
                cycle_start_ms: Some(cycle.end_ms),
                ..UsageEvent::default()
            };
            let id = format!("{}:{}:plan_changed", self.account_id, cycle.end_ms);
            self.emit(events::PLAN_CHANGED, id, now_ms, event);
        }
        self.cycle_number += 1;
        self.threshold_reached = 0;
        if self.plan == NO_PLAN {
            self.cycle = None;
            self.terms = PlanTerms::default();
            self.allowance_total = 0;
        } else {
            let next = cycle_containing(self.anchor, prepare::month_window(now_ms), now_ms);
            self.cycle = Some(next);
            self.terms = PlanTerms::renewed(catalog, &self.plan, self.terms);
            self.allowance_total = self.terms.allowance_units;
            let event = UsageEvent {
                plan: self.plan.clone(),
                cycle_start_ms: Some(next.start_ms),
                allowance_added: self.allowance_total,
                ..UsageEvent::default()
            };
            let id = format!("{}:{}:renewed", self.account_id, next.start_ms);
            self.emit(events::CYCLE_RENEWED, id, now_ms, event);
        }
        self.allowance_used = 0;
        self.allowance_held = 0;
    }

    /// Ends a held hold, charging `charge_units` (split anew: what it drew from the allowance,
    /// then allowance free now in its own cycle, then its draws in burn order; see
    /// [`split_charge`]) and giving the rest back: allowance only to the hold's own cycle, credits only
    /// to grants that can still be spent; what cannot go back is lost, and the event says so.
    fn finalize(
        &mut self,
        generation_id: &str,
        state: HoldState,
        charge_units: u64,
        reason: &str,
        now_ms: i64,
    ) -> LedgerResult<()> {
        let record = self
            .holds
            .get(generation_id)
            .cloned()
            .ok_or_else(|| broken(format!("hold `{generation_id}` vanished")))?;
        let held = Allocation {
            from_allowance: record.hold.from_allowance,
            draws: record.hold.grants.clone(),
        };
        if charge_units > record.hold.cost_units {
            return Err(broken(format!(
                "charge {charge_units} above hold {}",
                record.hold.cost_units
            )));
        }
        let same_cycle = self.cycle.is_some() && record.cycle_number == self.cycle_number;
        // Allowance free now, beside what this hold drew: a charge takes it before credits.
        let allowance_free = if same_cycle {
            self.allowance_available()
        } else {
            0
        };
        let split = split_charge(charge_units, &held, allowance_free);
        let mut allowance_back = 0;
        if same_cycle {
            self.allowance_held =
                minus(self.allowance_held, held.from_allowance, "allowance held")?;
            self.allowance_used += split.charged.from_allowance;
            allowance_back = split.returned.from_allowance;
        }
        for draw in &held.draws {
            if let Some(g) = self.grants.get_mut(&draw.grant_id) {
                g.grant.units_held = minus(g.grant.units_held, draw.units, "grant units held")?;
            }
        }
        let mut back = Vec::new();
        let mut lost = 0;
        for draw in &split.returned.draws {
            match self.grants.get_mut(&draw.grant_id) {
                Some(g) if g.spendable(now_ms) => {
                    g.grant.units_remaining += draw.units;
                    back.push(draw.clone());
                }
                _ => lost += draw.units,
            }
        }
        self.lifetime_charged.allowance_units += split.charged.from_allowance;
        self.lifetime_charged.credit_units += charge_units - split.charged.from_allowance;
        let record = {
            let r = self.holds.get_mut(generation_id).expect("read above");
            r.hold.state = state;
            r.hold.charged_units = charge_units;
            // What of the hold went back: the allowance it drew and the charge did not take
            // (to an ended cycle, when the hold's cycle ended), and credits to grants that can
            // still be spent; those of a grant that cannot are lost, not returned. With the
            // re-split a charge may take allowance the hold did not draw and give back credits
            // it did.
            r.returned_units =
                split.returned.from_allowance + back.iter().map(|d| d.units).sum::<u64>();
            r.charged_from_allowance = split.charged.from_allowance;
            r.forget_at_ms = Some(now_ms + RETENTION_MS);
            r.clone()
        };
        if state == HoldState::Settled {
            let quantity = (charge_units / record.unit_cost.max(1)) as u32;
            self.hold_event(
                &record,
                events::HOLD_SETTLED,
                quantity,
                (split.charged.from_allowance, &split.charged.draws),
                lost,
                reason,
                now_ms,
            );
        } else {
            let returned = Allocation {
                from_allowance: allowance_back,
                draws: back,
            };
            let event_type = format!("hold.{state}");
            self.hold_event(
                &record,
                &event_type,
                record.hold.quantity,
                (returned.from_allowance, &returned.draws),
                lost,
                reason,
                now_ms,
            );
        }
        Ok(())
    }

    /// A hold.* event: `units` is the hold's cost, or the charge for hold.settled; `funds` the
    /// allowance part and the grant parts the type speaks of (see [`UsageEvent`]).
    #[allow(clippy::too_many_arguments)]
    fn hold_event(
        &mut self,
        record: &HoldRecord,
        event_type: &str,
        quantity: u32,
        funds: (u64, &[GrantDraw]),
        units_lost: u64,
        reason: &str,
        now_ms: i64,
    ) {
        let h = &record.hold;
        let (from_allowance, draws) = funds;
        let from_credits: u64 = draws.iter().map(|d| d.units).sum();
        let units = if event_type == events::HOLD_SETTLED {
            h.charged_units
        } else {
            h.cost_units
        };
        let event = UsageEvent {
            generation_id: h.generation_id.clone(),
            kind: Some(h.kind),
            model: h.model.clone(),
            quantity,
            units,
            from_allowance,
            from_credits,
            grants: draws.to_vec(),
            reason: reason.to_string(),
            cycle_start_ms: record.cycle_start_ms,
            labels: record.labels.clone(),
            units_lost,
            ..UsageEvent::default()
        };
        let suffix = event_type.trim_start_matches("hold.");
        let id = events::hold_event_id(&self.account_id, &h.generation_id, h.created_at_ms, suffix);
        self.emit(event_type, id, now_ms, event);
    }

    /// An expired grant's remainder is gone (`credits.expired`); a grant with nothing left and
    /// nothing held is dropped, leaving a tombstone so GrantCredits stays idempotent.
    fn sweep_grants(&mut self, now_ms: i64) {
        let mut expired = Vec::new();
        let mut dropped = Vec::new();
        for (id, g) in self.grants.iter_mut() {
            if g.expired(now_ms) && g.grant.units_remaining > 0 {
                expired.push((g.clone(), std::mem::take(&mut g.grant.units_remaining)));
            }
            if g.grant.units_held == 0 && g.grant.units_remaining == 0 {
                dropped.push(id.clone());
            }
        }
        for (g, units) in expired {
            let event = UsageEvent {
                grant_id: g.grant.grant_id.clone(),
                units,
                source: g.grant.source.as_str().to_string(),
                expires_at_ms: g.grant.expires_at_ms,
                ..UsageEvent::default()
            };
            let id = events::grant_event_id(
                &self.account_id,
                &g.grant.grant_id,
                g.grant.created_at_ms,
                "expired",
            );
            self.emit(events::CREDITS_EXPIRED, id, now_ms, event);
        }
        for id in dropped {
            let g = self.grants.remove(&id).expect("listed above");
            self.tombstones.insert(
                id,
                Tombstone {
                    grant: g.grant,
                    revoked_units: g.revoked,
                    forget_at_ms: now_ms + RETENTION_MS,
                },
            );
        }
    }

    /// Allowance used + held ≤ total; held = what open holds of this cycle drew; every
    /// grant's held units = what open holds drew from it, and remaining + held ≤ granted.
    fn check_invariants(&self) -> LedgerResult<()> {
        let committed = self.allowance_used.checked_add(self.allowance_held);
        if committed.is_none_or(|c| c > self.allowance_total) {
            return Err(broken(format!(
                "allowance used {} + held {} against total {}",
                self.allowance_used, self.allowance_held, self.allowance_total
            )));
        }
        let open = || {
            self.holds
                .values()
                .filter(|r| r.hold.state == HoldState::Held)
        };
        let held_here: u64 = open()
            .filter(|r| self.cycle.is_some() && r.cycle_number == self.cycle_number)
            .map(|r| r.hold.from_allowance)
            .sum();
        if held_here != self.allowance_held {
            return Err(broken(format!(
                "allowance held {} but open holds of the cycle hold {held_here}",
                self.allowance_held
            )));
        }
        let mut drawn: HashMap<&str, u64> = HashMap::new();
        for r in open() {
            for d in &r.hold.grants {
                *drawn.entry(d.grant_id.as_str()).or_default() += d.units;
            }
        }
        for (id, g) in &self.grants {
            let held = drawn.get(id.as_str()).copied().unwrap_or(0);
            if g.grant.units_held != held
                || g.grant.units_remaining + g.grant.units_held > g.grant.units_granted
            {
                return Err(broken(format!(
                    "grant `{id}`: remaining {} + held {} (open holds drew {held}) of {}",
                    g.grant.units_remaining, g.grant.units_held, g.grant.units_granted
                )));
            }
        }
        Ok(())
    }

    fn allowance_available(&self) -> u64 {
        match self.cycle {
            // Saturating: a broken state is refused by `check_invariants`, never wrapped.
            Some(_) => self
                .allowance_total
                .saturating_sub(self.allowance_used)
                .saturating_sub(self.allowance_held),
            None => 0,
        }
    }

    fn open_holds(&self) -> u32 {
        self.holds
            .values()
            .filter(|r| r.hold.state == HoldState::Held)
            .count() as u32
    }

    fn grants_in_burn_order(&self) -> Vec<&GrantState> {
        let mut list: Vec<&GrantState> = self.grants.values().collect();
        list.sort_by(|a, b| burn_order(&a.burn_key(), &b.burn_key()));
        list
    }

    fn hold_record(&self, generation_id: &str) -> LedgerResult<&HoldRecord> {
        self.holds
            .get(generation_id)
            .ok_or_else(|| LedgerError::HoldNotFound {
                account_id: self.account_id.clone(),
                generation_id: generation_id.to_string(),
            })
    }

    /// Adds a new live grant (GrantCredits, or a refund's credits), unless the account holds
    /// [`MAX_LIVE_GRANTS`] already.
    fn add_grant(&mut self, grant: Grant) -> LedgerResult<()> {
        if self.grants.len() >= MAX_LIVE_GRANTS {
            return Err(LedgerError::TooManyGrants {
                account_id: self.account_id.clone(),
                limit: MAX_LIVE_GRANTS,
            });
        }
        self.grants.insert(
            grant.grant_id.clone(),
            GrantState {
                grant,
                revoked: None,
            },
        );
        Ok(())
    }

    /// `usage.threshold` for every alert threshold (percent of the cycle's allowance, in
    /// increasing order) that settled use has reached and that this cycle has not announced.
    fn announce_thresholds(&mut self, thresholds_percent: &[u32], now_ms: i64) {
        let Some(cycle) = self.cycle else { return };
        if self.allowance_total == 0 {
            return;
        }
        for &percent in thresholds_percent {
            let reached = u128::from(self.allowance_used) * 100
                >= u128::from(percent) * u128::from(self.allowance_total);
            if percent <= self.threshold_reached || !reached {
                continue;
            }
            self.threshold_reached = percent;
            let event = UsageEvent {
                plan: self.plan.clone(),
                cycle_start_ms: Some(cycle.start_ms),
                units: self.allowance_used,
                threshold_percent: percent,
                ..UsageEvent::default()
            };
            let id =
                threshold_event_id(&self.account_id, self.cycle_number, cycle.start_ms, percent);
            self.emit(events::USAGE_THRESHOLD, id, now_ms, event);
        }
    }
}

/// Id of a `usage.threshold` event: unique per account, cycle (by number) and threshold.
pub fn threshold_event_id(
    account_id: &str,
    cycle_number: u64,
    cycle_start_ms: i64,
    percent: u32,
) -> String {
    format!("{account_id}/cycle-{cycle_number}@{cycle_start_ms}:threshold:{percent}")
}

/// The error both stores give when a hold is not in a state that allows `operation`.
pub fn wrong_state(generation_id: &str, state: HoldState, operation: &'static str) -> LedgerError {
    LedgerError::HoldState {
        generation_id: generation_id.to_string(),
        state,
        operation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{CreditSource, Kind};

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    const DAY: i64 = 86_400_000;

    /// An account with its whole past, every call recalling all of it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Ledger {
        live: Account,
        past: Past,
    }

    impl Ledger {
        fn new(account_id: &str) -> Ledger {
            Ledger {
                live: Account::new(account_id),
                past: Past::default(),
            }
        }
    }

    impl std::ops::Deref for Ledger {
        type Target = Account;
        fn deref(&self) -> &Account {
            &self.live
        }
    }

    impl std::ops::DerefMut for Ledger {
        fn deref_mut(&mut self) -> &mut Account {
            &mut self.live
        }
    }

    fn run<T>(
        a: &mut Ledger,
        now_ms: i64,
        op: impl FnOnce(&mut Account) -> LedgerResult<T>,
    ) -> LedgerResult<(T, Vec<UsageEvent>)> {
        let t = a
            .live
            .execute(a.past.clone(), &Catalog::builtin(), now_ms, op)?;
        a.live = t.account;
        a.past.absorb(t.remembered);
        Ok((t.reply, t.events))
    }

    fn reserve_cmd(gen: &str, kind: Kind, model: &str, quantity: u32, ttl: u32) -> ReserveCmd {
        ReserveCmd {
            account_id: "a".into(),
            generation_id: gen.into(),
            kind,
            model: model.into(),
            quantity,
            ttl_seconds: ttl,
            labels: BTreeMap::new(),
        }
    }

    fn plan(a: &mut Ledger, id: &str, plan: &str, anchor: Option<i64>, now: i64) -> PlanSet {
        let cmd = SetPlanCmd {
            request_id: id.into(),
            account_id: "a".into(),
            plan: plan.into(),
            cycle_anchor_ms: anchor,
        };
        run(a, now, |x| x.set_plan(&Catalog::builtin(), &cmd, now))
            .unwrap()
            .0
    }

    #[test]
    fn refused_operation_changes_nothing() {
        let mut a = Ledger::new("a");
        plan(&mut a, "p1", "microbudget", None, T0);
        let before = a.clone();
        // Lazy work (a rollover) would happen, but the reserve is refused: nothing sticks.
        let later = T0 + 40 * DAY;
        let cmd = reserve_cmd("g", Kind::Video, "standard", 5, 300);
        let cmd_big = ReserveCmd {
            quantity: 5,
            model: "cinema".into(),
            ..cmd
        };
        let err = run(&mut a, later, |x| {
            x.reserve(&Catalog::builtin(), &cmd_big, later)
        })
        .unwrap_err();
        assert!(matches!(err, LedgerError::Denied(_)), "{err:?}");
        assert_eq!(a, before);
    }

    #[test]
    fn a_hold_pins_its_cycle_by_number_not_start() {
        // Finding: cancel, extend a last-day hold past the rollover, start a plan whose clamped
        // anchor makes the new cycle start at the old cycle's end. Releasing the old hold must
        // give nothing to the new cycle.
        let mut a = Ledger::new("a");
        let jan31 = T0 + 30 * DAY;
        plan(&mut a, "p1", "hollywood", Some(jan31), jan31);
        plan(&mut a, "p2", "none", None, jan31 + DAY);
        let end = a.cycle.unwrap().end_ms; // Feb 28
        let last_day = end - DAY / 48; // half an hour before the rollover
        let cmd = reserve_cmd("old", Kind::Video, "cinema", 20, 3_600);
        run(&mut a, last_day, |x| {
            x.reserve(&Catalog::builtin(), &cmd, last_day)
        })
        .unwrap();
        let after = end + 1_000;
        plan(&mut a, "p3", "hollywood", Some(jan31), after);
        assert_eq!(
            a.cycle.unwrap().start_ms,
            end,
            "clamped anchor: same instant"
        );
        let cmd = reserve_cmd("new", Kind::Video, "cinema", 20, 300);
        run(&mut a, after, |x| {
            x.reserve(&Catalog::builtin(), &cmd, after)
        })
        .unwrap();
        let (released, events) = run(&mut a, after, |x| {
            x.release("old", ReleaseReason::Failed, after)
        })
        .unwrap();
        let b = released.balance;
        assert_eq!((b.allowance_total, b.allowance_held), (5_000, 800));
        assert_eq!(b.allowance_available, 4_200);
        assert_eq!(events[0].from_allowance, 0, "nothing back to the new cycle");
        run(&mut a, after, |x| {
            x.release("new", ReleaseReason::Failed, after)
        })
        .unwrap();
        assert_eq!(a.balance().allowance_available, 5_000);
    }

    #[test]
    fn expired_grant_reports_expired_and_lost_units() {
        let mut a = Ledger::new("a");
        let grant = GrantCmd {
            account_id: "a".into(),
            grant_id: "promo".into(),
            units: 100,
            source: CreditSource::Promotional,
            expires_at_ms: Some(T0 + 60_000),
        };
        run(&mut a, T0, |x| x.grant_credits(&grant, T0)).unwrap();
        let cmd = reserve_cmd("g", Kind::CharacterImage, "standard", 10, 3_600);
        run(&mut a, T0, |x| x.reserve(&Catalog::builtin(), &cmd, T0)).unwrap();
        let later = T0 + 120_000;
        let (_, events) = run(&mut a, later, |x| {
            x.release("g", ReleaseReason::Failed, later)
        })
        .unwrap();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, [events::CREDITS_EXPIRED, events::HOLD_RELEASED]);
        assert_eq!(events[0].units, 60);
        assert_eq!((events[1].units_lost, events[1].from_credits), (40, 0));
        assert!(events[1].grants.is_empty());
        assert!(a.grants.is_empty(), "grant dropped once nothing is held");
    }

    #[test]
    fn a_finished_hold_leaves_the_live_state_and_answers_only_when_recalled() {
        let mut a = Ledger::new("a");
        plan(&mut a, "p1", "microbudget", None, T0);
        let mut cmd = reserve_cmd("g", Kind::CharacterImage, "standard", 1, 300);
        cmd.labels.insert("job".into(), "j-1".into());
        run(&mut a, T0, |x| x.reserve(&Catalog::builtin(), &cmd, T0)).unwrap();
        assert_eq!(a.retained_holds(), 1, "an open hold is live state");
        assert!(a.past.holds.is_empty());
        let (released, events) =
            run(&mut a, T0, |x| x.release("g", ReleaseReason::Failed, T0)).unwrap();
        assert!(!released.replayed);
        assert_eq!(events[0].labels.get("job").map(String::as_str), Some("j-1"));
        assert_eq!(
            a.retained_holds(),
            0,
            "the finished hold left the live state"
        );
        let finished = &a.past.holds["g"];
        assert_eq!(finished.hold.state, HoldState::Released);
        assert!(
            finished.labels.is_empty(),
            "a finished hold keeps no labels"
        );

        // Recalled, the finished hold answers the replay; not recalled, it is not there.
        let catalog = Catalog::builtin();
        let replay = |x: &mut Account| x.release("g", ReleaseReason::Failed, T0 + 1);
        let recalled = a.past.recall(&Recall::hold("g"));
        let t = a.live.execute(recalled, &catalog, T0 + 1, replay).unwrap();
        assert!(t.reply.replayed);
        assert!(t.events.is_empty());
        assert_eq!(
            t.remembered.holds.len(),
            1,
            "the recalled record is handed back"
        );
        let err = a
            .live
            .execute(Past::default(), &catalog, T0 + 1, replay)
            .unwrap_err();
        assert!(matches!(err, LedgerError::HoldNotFound { .. }), "{err:?}");

        // Past its forget time a recalled record is forgotten: not answered, not handed back.
        let later = T0 + RETENTION_MS + 1;
        let recalled = a.past.recall(&Recall::hold("g"));
        let err = a
            .live
            .execute(recalled, &catalog, later, |x| {
                x.release("g", ReleaseReason::Failed, later)
            })
            .unwrap_err();
        assert!(matches!(err, LedgerError::HoldNotFound { .. }), "{err:?}");
        let recalled = a.past.recall(&Recall::hold("g"));
        let t = a
            .live
            .execute(recalled, &catalog, later, |x| Ok(x.balance()))
            .unwrap();
        assert!(
            t.remembered.holds.is_empty(),
            "a forgotten record is not kept"
        );
    }

    #[test]
    fn a_record_past_its_forget_time_does_not_hide_the_generations_new_hold() {
        // This ledger's past keeps every record: a forgotten one is still recalled.
        let mut a = Ledger::new("a");
        plan(&mut a, "p1", "microbudget", None, T0);
        let cmd = reserve_cmd("g", Kind::CharacterImage, "standard", 1, 300);
        run(&mut a, T0, |x| x.reserve(&Catalog::builtin(), &cmd, T0)).unwrap();
        run(&mut a, T0, |x| x.release("g", ReleaseReason::Failed, T0)).unwrap();

        let later = T0 + RETENTION_MS;
        let (again, _) = run(&mut a, later, |x| {
            x.reserve(&Catalog::builtin(), &cmd, later)
        })
        .unwrap();
        assert!(!again.replayed);
        assert_eq!(a.past.holds["g"].hold.state, HoldState::Released);
        let (extended, _) = run(&mut a, later, |x| x.extend("g", 600, later)).unwrap();
        assert_eq!(
            (extended.state, extended.created_at_ms),
            (HoldState::Held, later)
        );
        let (released, _) = run(&mut a, later, |x| {
            x.release("g", ReleaseReason::Cancelled, later)
        })
        .unwrap();
        assert!(!released.replayed);
        assert_eq!(released.returned_units, released.hold.cost_units);
        assert_eq!(a.past.holds["g"].hold.created_at_ms, later);
    }

    #[test]
    fn a_broken_invariant_is_internal_and_changes_nothing() {
        let mut a = Ledger::new("a");
        plan(&mut a, "p1", "microbudget", None, T0);
        let cmd = reserve_cmd("g", Kind::CharacterImage, "standard", 1, 300);
        run(&mut a, T0, |x| x.reserve(&Catalog::builtin(), &cmd, T0)).unwrap();
        a.allowance_held = 0; // corrupt
        let before = a.clone();
        let err = run(&mut a, T0, |x| x.settle(&Catalog::builtin(), "g", None, T0)).unwrap_err();
        assert!(matches!(&err, LedgerError::InvariantBroken(_)), "{err:?}");
        assert_eq!(a, before);
    }
}
