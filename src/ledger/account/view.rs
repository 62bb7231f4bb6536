//! GetAccount: balance, live grants in burn order, open holds oldest first, lifetime charges
//! (the twin of `src/store/redis/lua/account.lua`).

use super::Account;
use crate::ledger::model::{AccountView, Hold, HoldState};

impl Account {
    /// Balance, live grants in burn order, open holds oldest first, lifetime charges.
    pub fn view(&self) -> AccountView {
        let grants = self
            .grants_in_burn_order()
            .into_iter()
            .map(|g| g.grant.clone())
            .collect();
        let mut holds: Vec<Hold> = self
            .holds
            .values()
            .filter(|r| r.hold.state == HoldState::Held)
            .map(|r| r.hold.clone())
            .collect();
        holds.sort_by(|x, y| {
            (x.created_at_ms, &x.generation_id).cmp(&(y.created_at_ms, &y.generation_id))
        });
        AccountView {
            balance: self.balance(),
            grants,
            holds,
            lifetime_charged: self.lifetime_charged,
        }
    }
}
