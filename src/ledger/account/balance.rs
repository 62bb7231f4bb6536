//! GetBalance: the account's funds now (the twin of `src/store/redis/lua/balance.lua`; its
//! `balance_reply` in `lib.lua` is the reply every operation carries).

use super::Account;
use crate::ledger::model::Balance;

impl Account {
    /// The account's funds now.
    pub fn balance(&self) -> Balance {
        Balance {
            account_id: self.account_id.clone(),
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
