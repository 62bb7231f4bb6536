//! RevokeCredits: takes what is left of a grant (the twin of
//! `src/store/redis/lua/revoke_credits.lua`).

use super::{Account, GrantState, LedgerResult};
use crate::ledger::error::LedgerError;
use crate::ledger::event::{self as events, UsageEvent};
use crate::ledger::model::Revoked;

impl Account {
    /// Takes what is left of a grant; units held by open holds stay chargeable, and what a
    /// release would give back to it is lost. A retry answers what the first call took, also
    /// after the grant was dropped; a grant spent to nothing and never revoked answers 0.
    pub fn revoke_credits(&mut self, grant_id: &str, now_ms: i64) -> LedgerResult<Revoked> {
        let revoked_units = match self.grants.get_mut(grant_id) {
            Some(GrantState {
                revoked: Some(units),
                ..
            }) => *units,
            Some(g) => {
                let units = std::mem::take(&mut g.grant.units_remaining);
                g.revoked = Some(units);
                let event = UsageEvent {
                    grant_id: grant_id.to_string(),
                    units,
                    source: g.grant.source.as_str().to_string(),
                    ..UsageEvent::default()
                };
                let id = events::grant_event_id(
                    &self.account_id,
                    grant_id,
                    g.grant.created_at_ms,
                    "revoked",
                );
                self.emit(events::CREDITS_REVOKED, id, now_ms, event);
                units
            }
            None if self.tombstones.contains_key(grant_id) => {
                self.tombstones[grant_id].revoked_units.unwrap_or(0)
            }
            None => {
                return Err(LedgerError::GrantNotFound {
                    account_id: self.account_id.clone(),
                    grant_id: grant_id.to_string(),
                })
            }
        };
        self.sweep_grants(now_ms);
        Ok(Revoked {
            revoked_units,
            balance: self.balance(),
        })
    }
}
