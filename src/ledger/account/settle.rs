//! Settle: charges a hold, whole or in part, at the unit cost it was reserved at (the twin of
//! `src/store/redis/lua/settle.lua`).

use super::{wrong_state, Account, LedgerResult};
use crate::ledger::error::LedgerError;
use crate::ledger::model::{HoldState, Settled};
use crate::ledger::{prepare, Catalog};

impl Account {
    /// Charges a hold, or `actual_quantity` of it at the unit cost it was reserved at; the
    /// rest goes back, credits first. A second Settle replays the first.
    pub fn settle(
        &mut self,
        catalog: &Catalog,
        generation_id: &str,
        actual_quantity: Option<u32>,
        now_ms: i64,
    ) -> LedgerResult<Settled> {
        let record = self.hold_record(generation_id)?.clone();
        match record.hold.state {
            HoldState::Settled => {
                let hold = record.hold;
                return Ok(Settled {
                    charged_units: hold.charged_units,
                    returned_units: record.returned_units,
                    hold,
                    replayed: true,
                    balance: self.balance(),
                });
            }
            HoldState::Held => {}
            state => return Err(wrong_state(generation_id, state, "settle")),
        }
        let reserved_quantity = record.hold.quantity;
        let actual = actual_quantity.unwrap_or(reserved_quantity);
        if actual > reserved_quantity {
            return Err(LedgerError::SettleAboveHold {
                generation_id: generation_id.to_string(),
                actual_quantity: actual,
                reserved_quantity,
            });
        }
        let charge_units = record.unit_cost * u64::from(actual);
        self.finalize(generation_id, HoldState::Settled, charge_units, "", now_ms)?;
        self.announce_thresholds(prepare::alert_thresholds(catalog), now_ms);
        self.sweep_grants(now_ms);
        let record = &self.holds[generation_id];
        let (hold, returned_units) = (record.hold.clone(), record.returned_units);
        Ok(Settled {
            charged_units: charge_units,
            returned_units,
            hold,
            replayed: false,
            balance: self.balance(),
        })
    }
}
