//! Quote: what Reserve would answer now, changing nothing (the twin of
//! `src/store/redis/lua/quote.lua`).

use super::{Account, LedgerResult};
use crate::ledger::error::LedgerError;
use crate::ledger::model::{QuoteCmd, Quoted};
use crate::ledger::prepare::unit_cost;
use crate::ledger::Catalog;

impl Account {
    /// What Reserve would answer now: the cost, its split, and the refusal if any. Changes
    /// nothing (a store discards the transition).
    pub fn quote(&self, catalog: &Catalog, cmd: &QuoteCmd, now_ms: i64) -> LedgerResult<Quoted> {
        let unit_cost = unit_cost(catalog, cmd.kind, &cmd.model)?;
        let cost_units = unit_cost * u64::from(cmd.quantity);
        let allowance = self.allowance_available();
        let credits: u64 = self
            .grants
            .values()
            .filter(|g| g.spendable(now_ms))
            .map(|g| g.grant.units_remaining)
            .sum();
        let from_allowance = cost_units.min(allowance);
        let from_credits = (cost_units - from_allowance).min(credits);
        let denial = match catalog.check_features(
            &self.plan,
            cmd.kind,
            &cmd.model,
            cmd.quantity,
            self.open_holds(),
        ) {
            Err(denial) => Some(LedgerError::Denied(denial)),
            Ok(()) if from_allowance + from_credits < cost_units => {
                Some(LedgerError::InsufficientFunds {
                    needed: cost_units,
                    available: allowance + credits,
                })
            }
            Ok(()) => None,
        };
        Ok(Quoted {
            cost_units,
            from_allowance,
            from_credits,
            denial,
            balance: self.balance(),
        })
    }
}
