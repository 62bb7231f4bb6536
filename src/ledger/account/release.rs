//! Release: gives a whole hold back (the twin of `src/store/redis/lua/release.lua`).

use super::{wrong_state, Account, LedgerResult};
use crate::ledger::model::{HoldState, ReleaseReason, Released};

impl Account {
    /// Gives a whole hold back. Idempotent; after expiry it succeeds with nothing returned.
    /// `returned_units` is what went back: the cost less the credits that could not, because
    /// their grant had expired or been revoked (the event's `units_lost`).
    pub fn release(
        &mut self,
        generation_id: &str,
        reason: ReleaseReason,
        now_ms: i64,
    ) -> LedgerResult<Released> {
        let record = self.hold_record(generation_id)?;
        let (replayed, returned_units) = match record.hold.state {
            HoldState::Settled => {
                return Err(wrong_state(generation_id, HoldState::Settled, "release"))
            }
            HoldState::Released => (true, record.returned_units),
            // Expiry already gave everything back.
            HoldState::Expired => (false, 0),
            HoldState::Held => {
                self.finalize(
                    generation_id,
                    HoldState::Released,
                    0,
                    reason.as_str(),
                    now_ms,
                )?;
                (false, self.holds[generation_id].returned_units)
            }
        };
        self.sweep_grants(now_ms);
        Ok(Released {
            hold: self.holds[generation_id].hold.clone(),
            returned_units,
            replayed,
            balance: self.balance(),
        })
    }
}
