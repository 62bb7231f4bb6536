//! Reserve: a replay of a known generation gets its first hold; a new one is checked against
//! the catalog, the plan's features and the funds, and holds the cost (the twin of
//! `src/store/redis/lua/reserve.lua`).

use super::{Account, HoldRecord, LedgerResult};
use crate::ledger::allocation::allocate;
use crate::ledger::error::LedgerError;
use crate::ledger::event as events;
use crate::ledger::model::{Hold, HoldState, ReserveCmd, Reserved};
use crate::ledger::prepare::unit_cost;
use crate::ledger::{Catalog, Kind};

impl Account {
    /// Checks features and funds and holds the cost; a replay returns the first hold, before
    /// anything is checked against the catalog (which may have dropped the model since).
    pub fn reserve(
        &mut self,
        catalog: &Catalog,
        cmd: &ReserveCmd,
        now_ms: i64,
    ) -> LedgerResult<Reserved> {
        if let Some(existing) = self.holds.get(&cmd.generation_id) {
            let h = &existing.hold;
            if h.kind == cmd.kind && h.model == cmd.model && h.quantity == cmd.quantity {
                return Ok(Reserved {
                    hold: h.clone(),
                    replayed: true,
                    balance: self.balance(),
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
        let hold = self.reserve_new(catalog, cmd, now_ms)?;
        Ok(Reserved {
            hold,
            replayed: false,
            balance: self.balance(),
        })
    }

    /// Reserve of a generation that is not known yet (`reserve_new` in `lua/lib.lua`, which
    /// ReserveBatch shares): the unit cost (the catalog may lack the model), the plan's
    /// features, the funds (allowance first, then grants in burn order), and the new hold.
    fn reserve_new(
        &mut self,
        catalog: &Catalog,
        cmd: &ReserveCmd,
        now_ms: i64,
    ) -> LedgerResult<Hold> {
        let unit_cost = unit_cost(catalog, cmd.kind, &cmd.model)?;
        let cost_units = unit_cost * u64::from(cmd.quantity);
        catalog
            .check_features(
                &self.plan,
                cmd.kind,
                &cmd.model,
                cmd.quantity,
                self.open_holds(),
            )
            .map_err(LedgerError::Denied)?;
        let spendable: Vec<(&str, u64)> = self
            .grants_in_burn_order()
            .into_iter()
            .filter(|g| g.spendable(now_ms) && g.grant.units_remaining > 0)
            .map(|g| (g.grant.grant_id.as_str(), g.grant.units_remaining))
            .collect();
        let allocation =
            allocate(cost_units, self.allowance_available(), &spendable).map_err(|s| {
                LedgerError::InsufficientFunds {
                    needed: s.needed,
                    available: s.available,
                }
            })?;
        for draw in &allocation.draws {
            let g = self
                .grants
                .get_mut(&draw.grant_id)
                .expect("allocated grant");
            g.grant.units_remaining -= draw.units;
            g.grant.units_held += draw.units;
        }
        self.allowance_held += allocation.from_allowance;
        let hold = Hold {
            account_id: self.account_id.clone(),
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
            cycle_number: self.cycle_number,
            cycle_start_ms: self.cycle.map(|c| c.start_ms),
            returned_units: 0,
            charged_from_allowance: 0,
            refunded_units: 0,
            labels: cmd.labels.clone(),
            forget_at_ms: None,
        };
        self.hold_event(
            &record,
            events::HOLD_RESERVED,
            cmd.quantity,
            (hold.from_allowance, &hold.grants),
            0,
            "",
            now_ms,
        );
        self.holds.insert(cmd.generation_id.clone(), record);
        Ok(hold)
    }
}

/// The error both stores give when a generation id is reused for another generation.
pub fn conflict(
    generation_id: &str,
    kind: Kind,
    model: &str,
    quantity: u32,
    requested: &ReserveCmd,
) -> LedgerError {
    LedgerError::GenerationConflict {
        generation_id: generation_id.to_string(),
        existing: format!("{kind} × {quantity} on `{model}`"),
        requested: format!(
            "{} × {} on `{}`",
            requested.kind, requested.quantity, requested.model
        ),
    }
}
