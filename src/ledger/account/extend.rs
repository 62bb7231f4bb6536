//! Extend: moves a held hold's expiry later, within its total lifetime (the twin of
//! `src/store/redis/lua/extend.lua`).

use super::{wrong_state, Account, LedgerResult};
use crate::ledger::event::{self as events, UsageEvent};
use crate::ledger::model::{Hold, HoldState};
use crate::ledger::MAX_HOLD_LIFETIME_SECONDS;

impl Account {
    /// Moves a held hold's expiry to `now + ttl`, within its total lifetime, never earlier.
    pub fn extend(
        &mut self,
        generation_id: &str,
        ttl_seconds: u32,
        now_ms: i64,
    ) -> LedgerResult<Hold> {
        let record = self.hold_record(generation_id)?;
        if record.hold.state != HoldState::Held {
            return Err(wrong_state(generation_id, record.hold.state, "extend"));
        }
        let record = self.holds.get_mut(generation_id).expect("found");
        let hold = &mut record.hold;
        let cap_ms = hold.created_at_ms + i64::from(MAX_HOLD_LIFETIME_SECONDS) * 1000;
        let wanted_ms = (now_ms + i64::from(ttl_seconds) * 1000).min(cap_ms);
        if wanted_ms <= hold.expires_at_ms {
            return Ok(hold.clone());
        }
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
        let id = events::hold_event_id(
            &self.account_id,
            generation_id,
            hold.created_at_ms,
            &format!("extended:{wanted_ms}"),
        );
        self.emit(events::HOLD_EXTENDED, id, now_ms, event);
        Ok(hold)
    }
}
