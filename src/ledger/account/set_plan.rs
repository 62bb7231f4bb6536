//! SetPlan: starts, upgrades, downgrades or cancels a plan; idempotent on the request id (the
//! twin of `src/store/redis/lua/set_plan.lua`).

use super::{Account, LedgerResult, PlanRecord, PlanTerms, Recall, RETENTION_MS};
use crate::ledger::catalog::NO_PLAN;
use crate::ledger::cycle::cycle_containing;
use crate::ledger::error::LedgerError;
use crate::ledger::event::{self as events, UsageEvent};
use crate::ledger::model::{PlanChange, PlanSet, SetPlanCmd};
use crate::ledger::prepare;
use crate::ledger::proration::prorate;
use crate::ledger::Catalog;

impl Recall {
    /// SetPlan.
    pub fn plan_request(request_id: &str) -> Recall {
        Recall {
            plan_requests: vec![request_id.to_string()],
            ..Recall::default()
        }
    }
}

impl Account {
    /// Starts, upgrades, downgrades or cancels a plan; idempotent on the request id.
    pub fn set_plan(
        &mut self,
        catalog: &Catalog,
        cmd: &SetPlanCmd,
        now_ms: i64,
    ) -> LedgerResult<PlanSet> {
        // A replay gets its first answer, even after a reload dropped the plan.
        if let Some(r) = self.plan_requests.get(&cmd.request_id) {
            if r.plan != cmd.plan || r.requested_anchor_ms != cmd.cycle_anchor_ms {
                return Err(LedgerError::RequestConflict {
                    request_id: cmd.request_id.clone(),
                });
            }
            return Ok(PlanSet {
                change: r.change,
                effective_at_ms: r.effective_at_ms,
                allowance_added: r.allowance_added,
                prorated_charge_cents: r.prorated_charge_cents,
                replayed: true,
                balance: self.balance(),
            });
        }
        let new = prepare::plan(catalog, &cmd.plan)?;
        let new_terms = PlanTerms::of(new);
        // Prorated from the terms the account has, not from what the catalog says now.
        let current = self.terms;
        let previous = self.plan.clone();
        let (mut change, mut effective_at_ms, mut added, mut charge) =
            (PlanChange::Unchanged, now_ms, 0, 0);
        match self.cycle {
            None => {
                if cmd.plan != NO_PLAN {
                    // none -> plan: a new cycle anchored on the requested moment.
                    change = PlanChange::Started;
                    added = new.allowance_units;
                    self.plan = cmd.plan.clone();
                    self.terms = new_terms;
                    self.scheduled_plan = None;
                    self.scheduled_terms = PlanTerms::default();
                    self.anchor = prepare::anchor(cmd.cycle_anchor_ms, now_ms);
                    let window = prepare::month_window(now_ms);
                    self.cycle = Some(cycle_containing(self.anchor, window, now_ms));
                    self.cycle_number += 1;
                    self.threshold_reached = 0;
                    self.allowance_total = new.allowance_units;
                    self.allowance_used = 0;
                    self.allowance_held = 0;
                }
            }
            Some(_) if cmd.plan == self.plan => {
                if self.scheduled_plan.take().is_some() {
                    self.scheduled_terms = PlanTerms::default();
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
                self.plan = cmd.plan.clone();
                self.terms = new_terms;
                self.scheduled_plan = None;
                self.scheduled_terms = PlanTerms::default();
                self.allowance_total += added;
            }
            Some(cycle) => {
                change = PlanChange::DowngradeScheduled;
                effective_at_ms = cycle.end_ms;
                self.scheduled_plan = Some(cmd.plan.clone());
                self.scheduled_terms = new_terms;
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
                cycle_start_ms: self.cycle.map(|c| c.start_ms),
                allowance_added: added,
                prorated_charge_cents: charge,
                effective_at_ms: Some(effective_at_ms),
                ..UsageEvent::default()
            };
            let id =
                events::keyed_event_id(&self.account_id, &cmd.request_id, now_ms, change.as_str());
            self.emit(event_type, id, now_ms, event);
        }
        self.plan_requests.insert(
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
            balance: self.balance(),
        })
    }
}
