//! In-process store: one mutex over a map of accounts. For development and single-instance
//! use (state dies with the process), and the model the Redis store is held against: every
//! operation runs the same steps as its Lua twin in `lua/`, calling the ledger's Rust rules.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::keys::shard_of;
use super::*;
use crate::events::memory_log::MemoryLog;
use crate::events::{self, UsageEvent};
use crate::ledger::allocation::{allocate, burn_order, split_charge, Allocation, BurnKey};
use crate::ledger::catalog::NO_PLAN;
use crate::ledger::cycle::{cycle_at, Anchor, Cycle};
use crate::ledger::proration::prorate;
use crate::ledger::{
    Catalog, PlanSpec, MAX_HOLD_LIFETIME_SECONDS, MAX_LIVE_GRANTS, RETENTION_SECONDS,
};

const RETENTION_MS: i64 = RETENTION_SECONDS as i64 * 1000;
/// Entries of the expiry index one sweep reads per wanted account, as `RedisStore::expire_due`
/// does: several due holds may share an account.
const SWEEP_ENTRIES_PER_ACCOUNT: usize = 4;

/// Single-instance store; everything is lost when the process exits.
pub struct MemoryStore {
    catalog: Arc<Catalog>,
    state: Mutex<State>,
}

/// Accounts and the event log under one lock: a change and its event are one step.
struct State {
    accounts: HashMap<String, AccountState>,
    log: MemoryLog,
}

#[derive(Debug, Clone)]
struct GrantState {
    grant: Grant,
    revoked: bool,
}

impl GrantState {
    fn expired(&self, now_ms: i64) -> bool {
        self.grant.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// Returned units only go back to a grant that can still be spent.
    fn spendable(&self, now_ms: i64) -> bool {
        !self.revoked && !self.expired(now_ms)
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

#[derive(Debug, Clone)]
struct HoldRecord {
    hold: Hold,
    unit_cost: u64,
    /// Start of the cycle the hold drew allowance from (`None`: no cycle).
    cycle_start_ms: Option<i64>,
    returned_units: u64,
    labels: BTreeMap<String, String>,
    /// When a finished hold is forgotten.
    forget_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
struct PlanRecord {
    plan: String,
    requested_anchor_ms: Option<i64>,
    change: PlanChange,
    effective_at_ms: i64,
    allowance_added: u64,
    prorated_charge_cents: u64,
    forget_at_ms: i64,
}

#[derive(Debug, Clone)]
struct Tombstone {
    grant: Grant,
    forget_at_ms: i64,
}

#[derive(Debug, Clone)]
struct AccountState {
    account_id: String,
    /// Sequence of the last event.
    seq: u64,
    /// Events of the running operation, moved to the shard's log when it ends.
    outbox: Vec<UsageEvent>,
    plan: String,
    scheduled_plan: Option<String>,
    anchor: Anchor,
    cycle: Option<Cycle>,
    allowance_total: u64,
    allowance_used: u64,
    allowance_held: u64,
    /// Lifetime units charged by Settle (`ca`/`cc` in `lua/lib.lua`).
    lifetime_charged: ChargedTotals,
    grants: BTreeMap<String, GrantState>,
    tombstones: HashMap<String, Tombstone>,
    holds: HashMap<String, HoldRecord>,
    plan_requests: HashMap<String, PlanRecord>,
}

impl AccountState {
    fn new(account_id: &str) -> AccountState {
        AccountState {
            account_id: account_id.to_string(),
            seq: 0,
            outbox: Vec::new(),
            plan: NO_PLAN.to_string(),
            scheduled_plan: None,
            anchor: Anchor {
                day: 1,
                time_of_day_ms: 0,
            },
            cycle: None,
            allowance_total: 0,
            allowance_used: 0,
            allowance_held: 0,
            lifetime_charged: ChargedTotals::default(),
            grants: BTreeMap::new(),
            tombstones: HashMap::new(),
            holds: HashMap::new(),
            plan_requests: HashMap::new(),
        }
    }

    /// Nothing worth keeping: the account of an id nobody has given anything.
    fn is_empty(&self) -> bool {
        self.seq == 0
            && self.plan == NO_PLAN
            && self.cycle.is_none()
            && self.grants.is_empty()
            && self.tombstones.is_empty()
            && self.holds.is_empty()
            && self.plan_requests.is_empty()
    }

    /// Outbox: queues an event with the account's next sequence (`emit` in `lua/lib.lua`).
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

    /// A hold.* event (`hold_event` in `lua/lib.lua`).
    #[allow(clippy::too_many_arguments)]
    fn hold_event(
        &mut self,
        record: &HoldRecord,
        event_type: &str,
        quantity: u32,
        charged: &Allocation,
        reason: &str,
        now_ms: i64,
    ) {
        let h = &record.hold;
        let suffix = event_type.trim_start_matches("hold.");
        let event = UsageEvent {
            generation_id: h.generation_id.clone(),
            kind: Some(h.kind),
            model: h.model.clone(),
            quantity,
            units: charged.from_allowance + charged.from_credits(),
            from_allowance: charged.from_allowance,
            from_credits: charged.from_credits(),
            grants: charged.draws.clone(),
            reason: reason.to_string(),
            cycle_start_ms: record.cycle_start_ms,
            labels: record.labels.clone(),
            ..UsageEvent::default()
        };
        let id =
            events::keyed_event_id(&self.account_id, &h.generation_id, h.created_at_ms, suffix);
        self.emit(event_type, id, now_ms, event);
    }

    fn allowance_available(&self) -> u64 {
        match self.cycle {
            Some(_) => self.allowance_total - self.allowance_used - self.allowance_held,
            None => 0,
        }
    }

    fn open_holds(&self) -> u32 {
        self.holds
            .values()
            .filter(|r| r.hold.state == HoldState::Held)
            .count() as u32
    }

    /// Every operation starts here: forget what retention dropped, roll the cycle over and
    /// reclaim expired holds (the Lua prelude's `rollover()` and `reclaim_expired()`).
    fn touch(&mut self, catalog: &Catalog, now_ms: i64) {
        self.holds
            .retain(|_, r| r.forget_at_ms.is_none_or(|at| at > now_ms));
        self.tombstones.retain(|_, t| t.forget_at_ms > now_ms);
        self.plan_requests.retain(|_, r| r.forget_at_ms > now_ms);
        self.rollover(catalog, now_ms);
        let mut expired: Vec<(i64, String)> = self
            .holds
            .values()
            .filter(|r| r.hold.state == HoldState::Held && r.hold.expires_at_ms <= now_ms)
            .map(|r| (r.hold.expires_at_ms, r.hold.generation_id.clone()))
            .collect();
        expired.sort();
        for (_, generation_id) in expired {
            self.finalize(&generation_id, HoldState::Expired, 0, "", now_ms);
        }
    }

    /// Lazy rollover: the first touch after a cycle ends starts the cycle containing now,
    /// however many were missed, applies a scheduled plan and resets the allowance.
    fn rollover(&mut self, catalog: &Catalog, now_ms: i64) {
        let Some(cycle) = self.cycle else { return };
        if now_ms < cycle.end_ms {
            return;
        }
        let previous = self.plan.clone();
        if let Some(plan) = self.scheduled_plan.take() {
            self.plan = plan;
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
        if self.plan == NO_PLAN {
            self.cycle = None;
            self.allowance_total = 0;
        } else {
            let next = cycle_at(self.anchor, now_ms);
            self.cycle = Some(next);
            self.allowance_total = plan_or_none(catalog, &self.plan).allowance_units;
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

    /// Ends a held hold, charging `charge_units`; the twin of `finalize` in `lua/lib.lua`.
    fn finalize(
        &mut self,
        generation_id: &str,
        state: HoldState,
        charge_units: u64,
        reason: &str,
        now_ms: i64,
    ) {
        let record = self.holds.get_mut(generation_id).expect("hold exists");
        let held = Allocation {
            from_allowance: record.hold.from_allowance,
            draws: record.hold.grants.clone(),
        };
        let split = split_charge(charge_units, &held);
        if record.cycle_start_ms == self.cycle.map(|c| c.start_ms) {
            self.allowance_held -= held.from_allowance;
            self.allowance_used += split.charged.from_allowance;
        }
        for draw in &held.draws {
            if let Some(g) = self.grants.get_mut(&draw.grant_id) {
                g.grant.units_held -= draw.units;
            }
        }
        for back in &split.returned.draws {
            if let Some(g) = self.grants.get_mut(&back.grant_id) {
                if g.spendable(now_ms) {
                    g.grant.units_remaining += back.units;
                }
            }
        }
        self.lifetime_charged.allowance_units += split.charged.from_allowance;
        self.lifetime_charged.credit_units += charge_units - split.charged.from_allowance;
        record.hold.state = state;
        record.hold.charged_units = charge_units;
        record.returned_units = record.hold.cost_units - charge_units;
        record.forget_at_ms = Some(now_ms + RETENTION_MS);
        let record = record.clone();
        if state == HoldState::Settled {
            let quantity = (charge_units / record.unit_cost) as u32;
            self.hold_event(
                &record,
                events::HOLD_SETTLED,
                quantity,
                &split.charged,
                "",
                now_ms,
            );
        } else {
            let event_type = format!("hold.{state}");
            let quantity = record.hold.quantity;
            self.hold_event(&record, &event_type, quantity, &held, reason, now_ms);
        }
    }

    /// An expired grant's remainder is gone; a grant with nothing left and nothing held is
    /// dropped, leaving a tombstone so GrantCredits stays idempotent.
    fn sweep_grants(&mut self, now_ms: i64) {
        let mut dropped = Vec::new();
        for (id, g) in self.grants.iter_mut() {
            if g.expired(now_ms) {
                g.grant.units_remaining = 0;
            }
            if g.grant.units_held == 0 && g.grant.units_remaining == 0 {
                dropped.push(id.clone());
            }
        }
        for id in dropped {
            let g = self.grants.remove(&id).expect("listed above");
            self.tombstones.insert(
                id,
                Tombstone {
                    grant: g.grant,
                    forget_at_ms: now_ms + RETENTION_MS,
                },
            );
        }
    }

    fn grants_in_burn_order(&self) -> Vec<&GrantState> {
        let mut list: Vec<&GrantState> = self.grants.values().collect();
        list.sort_by(|a, b| burn_order(&a.burn_key(), &b.burn_key()));
        list
    }

    fn balance(&self, account_id: &str) -> Balance {
        debug_assert!(self.allowance_used + self.allowance_held <= self.allowance_total);
        Balance {
            account_id: account_id.to_string(),
            plan: self.plan.clone(),
            scheduled_plan: self.scheduled_plan.clone(),
            cycle_start_ms: self.cycle.map(|c| c.start_ms),
            cycle_end_ms: self.cycle.map(|c| c.end_ms),
            allowance_total: self.allowance_total,
            allowance_used: self.allowance_used,
            allowance_held: self.allowance_held,
            allowance_available: self.allowance_available(),
            credits_available: self.grants.values().map(|g| g.grant.units_remaining).sum(),
            credits_held: self.grants.values().map(|g| g.grant.units_held).sum(),
            open_holds: self.open_holds(),
        }
    }
}

/// A plan removed from the catalog behaves like `none` (as in `Catalog::check_features`).
fn plan_or_none<'a>(catalog: &'a Catalog, id: &str) -> &'a PlanSpec {
    catalog.plan(id).unwrap_or_else(|| catalog.no_plan())
}

impl MemoryStore {
    /// An empty store.
    pub fn new(catalog: Arc<Catalog>) -> MemoryStore {
        MemoryStore {
            catalog,
            state: Mutex::new(State {
                accounts: HashMap::new(),
                log: MemoryLog::new(),
            }),
        }
    }

    /// Every retained event, in log order per shard (shard 0 first). For tests and tools.
    pub fn all_events(&self) -> Vec<UsageEvent> {
        self.with_log(|log| log.all())
    }

    /// Runs `op` on the event log, under the store's lock.
    pub(crate) fn with_log<T>(&self, op: impl FnOnce(&mut MemoryLog) -> T) -> T {
        let mut state = self.state.lock().expect("memory store lock poisoned");
        op(&mut state.log)
    }

    /// Runs `op` on the touched account. Nothing is created for an unknown account unless the
    /// operation leaves state behind.
    fn with_account<T>(
        &self,
        account_id: &str,
        now_ms: i64,
        op: impl FnOnce(&mut AccountState) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut state = self.state.lock().expect("memory store lock poisoned");
        let State { accounts, log } = &mut *state;
        let account = accounts
            .entry(account_id.to_string())
            .or_insert_with(|| AccountState::new(account_id));
        account.touch(&self.catalog, now_ms);
        let result = op(account);
        account.sweep_grants(now_ms);
        let shard = shard_of(account_id);
        for event in account.outbox.drain(..) {
            log.append(shard, event);
        }
        if account.is_empty() {
            accounts.remove(account_id);
        }
        result
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn reserve(&self, cmd: &ReserveCmd, now_ms: i64) -> StoreResult<Reserved> {
        let unit_cost = self
            .catalog
            .unit_cost(cmd.kind, &cmd.model)
            .ok_or_else(|| StoreError::InvalidArgument {
                field: "model",
                message: format!("unknown model `{}`", cmd.model),
            })?;
        let cost_units = unit_cost * u64::from(cmd.quantity);
        self.with_account(&cmd.account_id, now_ms, |a| {
            a.sweep_grants(now_ms);
            if let Some(existing) = a.holds.get(&cmd.generation_id) {
                let h = &existing.hold;
                if h.kind == cmd.kind && h.model == cmd.model && h.quantity == cmd.quantity {
                    return Ok(Reserved {
                        hold: h.clone(),
                        replayed: true,
                        balance: a.balance(&cmd.account_id),
                    });
                }
                return Err(conflict(
                    &cmd.generation_id,
                    h.kind,
                    &h.model,
                    h.quantity,
                    cmd,
                ));
            }
            self.catalog
                .check_features(&a.plan, cmd.kind, &cmd.model, cmd.quantity, a.open_holds())
                .map_err(StoreError::Denied)?;
            let spendable: Vec<(&str, u64)> = a
                .grants_in_burn_order()
                .into_iter()
                .filter(|g| g.spendable(now_ms) && g.grant.units_remaining > 0)
                .map(|g| (g.grant.grant_id.as_str(), g.grant.units_remaining))
                .collect();
            let allocation =
                allocate(cost_units, a.allowance_available(), &spendable).map_err(|s| {
                    StoreError::InsufficientFunds {
                        needed: s.needed,
                        available: s.available,
                    }
                })?;
            for draw in &allocation.draws {
                let g = a.grants.get_mut(&draw.grant_id).expect("allocated grant");
                g.grant.units_remaining -= draw.units;
                g.grant.units_held += draw.units;
            }
            a.allowance_held += allocation.from_allowance;
            let hold = Hold {
                account_id: cmd.account_id.clone(),
                generation_id: cmd.generation_id.clone(),
                kind: cmd.kind,
                model: cmd.model.clone(),
                quantity: cmd.quantity,
                cost_units,
                from_allowance: allocation.from_allowance,
                from_credits: allocation.from_credits(),
                grants: allocation.draws,
                state: HoldState::Held,
                expires_at_ms: now_ms + i64::from(cmd.ttl_seconds) * 1000,
                created_at_ms: now_ms,
                charged_units: 0,
            };
            let record = HoldRecord {
                hold: hold.clone(),
                unit_cost,
                cycle_start_ms: a.cycle.map(|c| c.start_ms),
                returned_units: 0,
                labels: cmd.labels.clone(),
                forget_at_ms: None,
            };
            let reserved = Allocation {
                from_allowance: hold.from_allowance,
                draws: hold.grants.clone(),
            };
            a.hold_event(
                &record,
                events::HOLD_RESERVED,
                cmd.quantity,
                &reserved,
                "",
                now_ms,
            );
            a.holds.insert(cmd.generation_id.clone(), record);
            Ok(Reserved {
                hold,
                replayed: false,
                balance: a.balance(&cmd.account_id),
            })
        })
    }

    async fn settle(
        &self,
        account_id: &str,
        generation_id: &str,
        actual_quantity: Option<u32>,
        now_ms: i64,
    ) -> StoreResult<Settled> {
        self.with_account(account_id, now_ms, |a| {
            let record = hold_record(a, account_id, generation_id)?.clone();
            match record.hold.state {
                HoldState::Settled => {
                    a.sweep_grants(now_ms);
                    let hold = record.hold;
                    return Ok(Settled {
                        charged_units: hold.charged_units,
                        returned_units: hold.cost_units - hold.charged_units,
                        hold,
                        replayed: true,
                        balance: a.balance(account_id),
                    });
                }
                HoldState::Held => {}
                state => return Err(wrong_state(generation_id, state, "settle")),
            }
            let reserved_quantity = record.hold.quantity;
            let actual = actual_quantity.unwrap_or(reserved_quantity);
            if actual > reserved_quantity {
                return Err(StoreError::SettleAboveHold {
                    generation_id: generation_id.to_string(),
                    actual_quantity: actual,
                    reserved_quantity,
                });
            }
            let charge_units = record.unit_cost * u64::from(actual);
            a.finalize(generation_id, HoldState::Settled, charge_units, "", now_ms);
            a.sweep_grants(now_ms);
            let hold = a.holds[generation_id].hold.clone();
            Ok(Settled {
                charged_units: charge_units,
                returned_units: hold.cost_units - charge_units,
                hold,
                replayed: false,
                balance: a.balance(account_id),
            })
        })
    }

    async fn release(
        &self,
        account_id: &str,
        generation_id: &str,
        reason: ReleaseReason,
        now_ms: i64,
    ) -> StoreResult<Released> {
        self.with_account(account_id, now_ms, |a| {
            let record = hold_record(a, account_id, generation_id)?;
            let (replayed, returned_units) = match record.hold.state {
                HoldState::Settled => {
                    return Err(wrong_state(generation_id, HoldState::Settled, "release"))
                }
                HoldState::Released => (true, record.returned_units),
                // Expiry already gave everything back.
                HoldState::Expired => (false, 0),
                HoldState::Held => {
                    a.finalize(
                        generation_id,
                        HoldState::Released,
                        0,
                        reason.as_str(),
                        now_ms,
                    );
                    (false, a.holds[generation_id].hold.cost_units)
                }
            };
            a.sweep_grants(now_ms);
            Ok(Released {
                hold: a.holds[generation_id].hold.clone(),
                returned_units,
                replayed,
                balance: a.balance(account_id),
            })
        })
    }

    async fn extend(
        &self,
        account_id: &str,
        generation_id: &str,
        ttl_seconds: u32,
        now_ms: i64,
    ) -> StoreResult<Hold> {
        self.with_account(account_id, now_ms, |a| {
            let record = hold_record(a, account_id, generation_id)?;
            if record.hold.state != HoldState::Held {
                return Err(wrong_state(generation_id, record.hold.state, "extend"));
            }
            let record = a.holds.get_mut(generation_id).expect("found");
            let hold = &mut record.hold;
            let cap_ms = hold.created_at_ms + i64::from(MAX_HOLD_LIFETIME_SECONDS) * 1000;
            let wanted_ms = (now_ms + i64::from(ttl_seconds) * 1000).min(cap_ms);
            if wanted_ms > hold.expires_at_ms {
                hold.expires_at_ms = wanted_ms;
                let event = UsageEvent {
                    generation_id: hold.generation_id.clone(),
                    kind: Some(hold.kind),
                    model: hold.model.clone(),
                    quantity: hold.quantity,
                    expires_at_ms: Some(wanted_ms),
                    labels: record.labels.clone(),
                    ..UsageEvent::default()
                };
                let hold = hold.clone();
                let id = events::keyed_event_id(
                    account_id,
                    generation_id,
                    hold.created_at_ms,
                    &format!("extended:{wanted_ms}"),
                );
                a.emit(events::HOLD_EXTENDED, id, now_ms, event);
                return Ok(hold);
            }
            Ok(hold.clone())
        })
    }

    async fn balance(&self, account_id: &str, now_ms: i64) -> StoreResult<Balance> {
        self.with_account(account_id, now_ms, |a| {
            a.sweep_grants(now_ms);
            Ok(a.balance(account_id))
        })
    }

    async fn account(&self, account_id: &str, now_ms: i64) -> StoreResult<AccountView> {
        self.with_account(account_id, now_ms, |a| {
            a.sweep_grants(now_ms);
            let grants = a
                .grants_in_burn_order()
                .into_iter()
                .map(|g| g.grant.clone())
                .collect();
            let mut holds: Vec<Hold> = a
                .holds
                .values()
                .filter(|r| r.hold.state == HoldState::Held)
                .map(|r| r.hold.clone())
                .collect();
            holds.sort_by(|x, y| {
                (x.created_at_ms, &x.generation_id).cmp(&(y.created_at_ms, &y.generation_id))
            });
            Ok(AccountView {
                balance: a.balance(account_id),
                grants,
                holds,
                lifetime_charged: a.lifetime_charged,
            })
        })
    }

    async fn set_plan(&self, cmd: &SetPlanCmd, now_ms: i64) -> StoreResult<PlanSet> {
        let Some(new) = self.catalog.plan(&cmd.plan) else {
            return Err(StoreError::InvalidArgument {
                field: "plan",
                message: format!("unknown plan `{}`", cmd.plan),
            });
        };
        let catalog = &self.catalog;
        self.with_account(&cmd.account_id, now_ms, |a| {
            a.sweep_grants(now_ms);
            if let Some(r) = a.plan_requests.get(&cmd.request_id) {
                if r.plan != cmd.plan || r.requested_anchor_ms != cmd.cycle_anchor_ms {
                    return Err(StoreError::RequestConflict {
                        request_id: cmd.request_id.clone(),
                    });
                }
                return Ok(PlanSet {
                    change: r.change,
                    effective_at_ms: r.effective_at_ms,
                    allowance_added: r.allowance_added,
                    prorated_charge_cents: r.prorated_charge_cents,
                    replayed: true,
                    balance: a.balance(&cmd.account_id),
                });
            }
            let current = plan_or_none(catalog, &a.plan);
            let previous = a.plan.clone();
            let (mut change, mut effective_at_ms, mut added, mut charge) =
                (PlanChange::Unchanged, now_ms, 0, 0);
            match a.cycle {
                None => {
                    if cmd.plan != NO_PLAN {
                        // none -> plan: a cycle anchored on the requested moment.
                        change = PlanChange::Started;
                        added = new.allowance_units;
                        a.plan = cmd.plan.clone();
                        a.scheduled_plan = None;
                        a.anchor = Anchor::from_ms(cmd.cycle_anchor_ms.unwrap_or(now_ms));
                        a.cycle = Some(cycle_at(a.anchor, now_ms));
                        a.allowance_total = new.allowance_units;
                        a.allowance_used = 0;
                        a.allowance_held = 0;
                    }
                }
                Some(_) if cmd.plan == a.plan => {
                    if a.scheduled_plan.take().is_some() {
                        change = PlanChange::ScheduledChangeCancelled;
                    }
                }
                Some(cycle) if new.price_cents > current.price_cents => {
                    let remaining_ms = cycle.end_ms - now_ms;
                    change = PlanChange::Upgraded;
                    added = prorate(
                        new.allowance_units.saturating_sub(current.allowance_units),
                        remaining_ms,
                        cycle.length_ms(),
                    );
                    charge = prorate(
                        new.price_cents - current.price_cents,
                        remaining_ms,
                        cycle.length_ms(),
                    );
                    a.plan = cmd.plan.clone();
                    a.scheduled_plan = None;
                    a.allowance_total += added;
                }
                Some(cycle) => {
                    change = PlanChange::DowngradeScheduled;
                    effective_at_ms = cycle.end_ms;
                    a.scheduled_plan = Some(cmd.plan.clone());
                }
            }
            let event_type = match change {
                PlanChange::Started | PlanChange::ScheduledChangeCancelled => {
                    Some(events::PLAN_CHANGED)
                }
                PlanChange::Upgraded => Some(events::PLAN_UPGRADED),
                PlanChange::DowngradeScheduled => Some(events::PLAN_DOWNGRADE_SCHEDULED),
                PlanChange::Unchanged => None,
            };
            if let Some(event_type) = event_type {
                let event = UsageEvent {
                    plan: cmd.plan.clone(),
                    previous_plan: previous,
                    cycle_start_ms: a.cycle.map(|c| c.start_ms),
                    allowance_added: added,
                    prorated_charge_cents: charge,
                    effective_at_ms: Some(effective_at_ms),
                    ..UsageEvent::default()
                };
                let id = events::keyed_event_id(
                    &cmd.account_id,
                    &cmd.request_id,
                    now_ms,
                    change.as_str(),
                );
                a.emit(event_type, id, now_ms, event);
            }
            a.plan_requests.insert(
                cmd.request_id.clone(),
                PlanRecord {
                    plan: cmd.plan.clone(),
                    requested_anchor_ms: cmd.cycle_anchor_ms,
                    change,
                    effective_at_ms,
                    allowance_added: added,
                    prorated_charge_cents: charge,
                    forget_at_ms: now_ms + RETENTION_MS,
                },
            );
            Ok(PlanSet {
                change,
                effective_at_ms,
                allowance_added: added,
                prorated_charge_cents: charge,
                replayed: false,
                balance: a.balance(&cmd.account_id),
            })
        })
    }

    async fn grant_credits(&self, cmd: &GrantCmd, now_ms: i64) -> StoreResult<Granted> {
        self.with_account(&cmd.account_id, now_ms, |a| {
            a.sweep_grants(now_ms);
            let same_terms = |g: &Grant| {
                g.units_granted == cmd.units
                    && g.source == cmd.source
                    && g.expires_at_ms == cmd.expires_at_ms
            };
            let known = a
                .grants
                .get(&cmd.grant_id)
                .map(|g| g.grant.clone())
                .or_else(|| a.tombstones.get(&cmd.grant_id).map(|t| gone(&t.grant)));
            if let Some(grant) = known {
                if !same_terms(&grant) {
                    return Err(StoreError::GrantConflict {
                        grant_id: cmd.grant_id.clone(),
                    });
                }
                return Ok(Granted {
                    grant,
                    replayed: true,
                    balance: a.balance(&cmd.account_id),
                });
            }
            if cmd.expires_at_ms.is_some_and(|at| at <= now_ms) {
                return Err(StoreError::InvalidArgument {
                    field: "expires_at",
                    message: "must be in the future".into(),
                });
            }
            if a.grants.len() >= MAX_LIVE_GRANTS {
                return Err(StoreError::TooManyGrants {
                    account_id: cmd.account_id.clone(),
                    limit: MAX_LIVE_GRANTS,
                });
            }
            let grant = Grant {
                grant_id: cmd.grant_id.clone(),
                source: cmd.source,
                units_granted: cmd.units,
                units_remaining: cmd.units,
                units_held: 0,
                expires_at_ms: cmd.expires_at_ms,
                created_at_ms: now_ms,
            };
            a.grants.insert(
                cmd.grant_id.clone(),
                GrantState {
                    grant: grant.clone(),
                    revoked: false,
                },
            );
            let event = UsageEvent {
                grant_id: cmd.grant_id.clone(),
                units: cmd.units,
                source: cmd.source.as_str().to_string(),
                expires_at_ms: cmd.expires_at_ms,
                ..UsageEvent::default()
            };
            let id = events::keyed_event_id(&cmd.account_id, &cmd.grant_id, now_ms, "granted");
            a.emit(events::CREDITS_GRANTED, id, now_ms, event);
            Ok(Granted {
                grant,
                replayed: false,
                balance: a.balance(&cmd.account_id),
            })
        })
    }

    async fn revoke_credits(
        &self,
        account_id: &str,
        grant_id: &str,
        now_ms: i64,
    ) -> StoreResult<Revoked> {
        self.with_account(account_id, now_ms, |a| {
            a.sweep_grants(now_ms);
            let revoked_units = match a.grants.get_mut(grant_id) {
                Some(g) if g.revoked => 0,
                Some(g) => {
                    g.revoked = true;
                    let units = std::mem::take(&mut g.grant.units_remaining);
                    let event = UsageEvent {
                        grant_id: grant_id.to_string(),
                        units,
                        source: g.grant.source.as_str().to_string(),
                        ..UsageEvent::default()
                    };
                    let id = events::keyed_event_id(
                        account_id,
                        grant_id,
                        g.grant.created_at_ms,
                        "revoked",
                    );
                    a.emit(events::CREDITS_REVOKED, id, now_ms, event);
                    units
                }
                None if a.tombstones.contains_key(grant_id) => 0,
                None => {
                    return Err(StoreError::GrantNotFound {
                        account_id: account_id.to_string(),
                        grant_id: grant_id.to_string(),
                    })
                }
            };
            a.sweep_grants(now_ms);
            Ok(Revoked {
                revoked_units,
                balance: a.balance(account_id),
            })
        })
    }

    async fn expire_due(&self, shard: u32, now_ms: i64, max_accounts: usize) -> StoreResult<u32> {
        // The twin of `RedisStore::expire_due`, so both sweep the same accounts in a pass: the
        // shard's expiry index (`<account>/<generation>` scored by expiry) is read earliest
        // due first, ties in byte order, a window of a few entries per wanted account; the
        // first `max_accounts` accounts in that window are swept.
        let due: Vec<String> = {
            let state = self.state.lock().expect("memory store lock poisoned");
            let mut entries: Vec<(i64, String)> = state
                .accounts
                .iter()
                .filter(|(id, _)| shard_of(id) == shard)
                .flat_map(|(id, a)| {
                    a.holds
                        .values()
                        .filter(|r| {
                            r.hold.state == HoldState::Held && r.hold.expires_at_ms <= now_ms
                        })
                        .map(move |r| {
                            (
                                r.hold.expires_at_ms,
                                format!("{id}/{}", r.hold.generation_id),
                            )
                        })
                })
                .collect();
            entries.sort();
            entries.truncate(max_accounts.saturating_mul(SWEEP_ENTRIES_PER_ACCOUNT));
            let mut due: Vec<String> = Vec::new();
            for (_, entry) in &entries {
                let (account_id, _) = entry.split_once('/').expect("built above");
                if due.len() < max_accounts && !due.iter().any(|a| a == account_id) {
                    due.push(account_id.to_string());
                }
            }
            due
        };
        let mut expired = 0;
        for account_id in due {
            expired += self.with_account(&account_id, now_ms, |a| {
                Ok(a.outbox
                    .iter()
                    .filter(|e| e.event_type == events::HOLD_EXPIRED)
                    .count() as u32)
            })?;
        }
        Ok(expired)
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}

/// A dropped grant as GrantCredits replays it: nothing left, nothing held.
fn gone(grant: &Grant) -> Grant {
    Grant {
        units_remaining: 0,
        units_held: 0,
        ..grant.clone()
    }
}

fn hold_record<'a>(
    a: &'a AccountState,
    account_id: &str,
    generation_id: &str,
) -> StoreResult<&'a HoldRecord> {
    a.holds
        .get(generation_id)
        .ok_or_else(|| StoreError::HoldNotFound {
            account_id: account_id.to_string(),
            generation_id: generation_id.to_string(),
        })
}

/// The error both stores give when a hold is not in a state that allows `operation`.
pub(crate) fn wrong_state(
    generation_id: &str,
    state: HoldState,
    operation: &'static str,
) -> StoreError {
    StoreError::HoldState {
        generation_id: generation_id.to_string(),
        state,
        operation,
    }
}

/// The error both stores give when a generation id is reused for another generation.
pub(crate) fn conflict(
    generation_id: &str,
    kind: Kind,
    model: &str,
    quantity: u32,
    requested: &ReserveCmd,
) -> StoreError {
    StoreError::GenerationConflict {
        generation_id: generation_id.to_string(),
        existing: format!("{kind} × {quantity} on `{model}`"),
        requested: format!(
            "{} × {} on `{}`",
            requested.kind, requested.quantity, requested.model
        ),
    }
}
