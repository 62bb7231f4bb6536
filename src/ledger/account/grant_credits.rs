//! GrantCredits: adds a grant; idempotent on the grant id (the twin of
//! `src/store/redis/lua/grant_credits.lua`).

use super::{Account, LedgerResult, Recall};
use crate::ledger::error::LedgerError;
use crate::ledger::event::{self as events, UsageEvent};
use crate::ledger::model::{Grant, GrantCmd, Granted};

impl Recall {
    /// GrantCredits and RevokeCredits of one grant.
    pub fn grant(grant_id: &str) -> Recall {
        Recall {
            grants: vec![grant_id.to_string()],
            ..Recall::default()
        }
    }
}

impl Account {
    /// Adds a grant; idempotent on the grant id (also after the grant was used up).
    pub fn grant_credits(&mut self, cmd: &GrantCmd, now_ms: i64) -> LedgerResult<Granted> {
        let same_terms = |g: &Grant| {
            g.units_granted == cmd.units
                && g.source == cmd.source
                && g.expires_at_ms == cmd.expires_at_ms
        };
        let known = self
            .grants
            .get(&cmd.grant_id)
            .map(|g| g.grant.clone())
            .or_else(|| self.tombstones.get(&cmd.grant_id).map(|t| gone(&t.grant)));
        if let Some(grant) = known {
            if !same_terms(&grant) {
                return Err(LedgerError::GrantConflict {
                    grant_id: cmd.grant_id.clone(),
                });
            }
            return Ok(Granted {
                grant,
                replayed: true,
                balance: self.balance(),
            });
        }
        if cmd.expires_at_ms.is_some_and(|at| at <= now_ms) {
            return Err(LedgerError::InvalidArgument {
                field: "expires_at",
                message: "must be in the future".into(),
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
        self.add_grant(grant.clone())?;
        let event = UsageEvent {
            grant_id: cmd.grant_id.clone(),
            units: cmd.units,
            source: cmd.source.as_str().to_string(),
            expires_at_ms: cmd.expires_at_ms,
            ..UsageEvent::default()
        };
        let id = events::grant_event_id(&self.account_id, &cmd.grant_id, now_ms, "granted");
        self.emit(events::CREDITS_GRANTED, id, now_ms, event);
        Ok(Granted {
            grant,
            replayed: false,
            balance: self.balance(),
        })
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
