//! Settle: `lua/settle.lua`.

use serde::Deserialize;

use super::not_found;
use crate::ledger::account::wrong_state;
use crate::ledger::prepare::thresholds_arg;
use crate::store::keys::AccountKeys;
use crate::store::redis::library::Function;
use crate::store::redis::reply::{hold_state, num, BalanceReply, HoldReply};
use crate::store::redis::RedisStore;
use crate::store::{HoldState, LedgerError, Settled, StoreResult};

/// `ok|replayed {hold, charged, returned, balance} | not_found | state {state} | above {reserved}`
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Ok(Settlement),
    Replayed(Settlement),
    NotFound,
    State {
        #[serde(deserialize_with = "hold_state")]
        state: HoldState,
    },
    Above {
        #[serde(deserialize_with = "num")]
        reserved: u32,
    },
}

#[derive(Debug, Deserialize)]
struct Settlement {
    hold: HoldReply,
    #[serde(deserialize_with = "num")]
    charged: u64,
    #[serde(deserialize_with = "num")]
    returned: u64,
    balance: BalanceReply,
}

impl RedisStore {
    pub(super) async fn fcall_settle(
        &self,
        account_id: &str,
        generation_id: &str,
        actual_quantity: Option<u32>,
        now_ms: i64,
    ) -> StoreResult<Settled> {
        let keys = AccountKeys::new(account_id, self.shards);
        let own = keys.finished_hold(account_id, generation_id);
        let actual = actual_quantity.map(|q| q.to_string()).unwrap_or_default();
        let catalog = self.catalog.current();
        let thresholds = thresholds_arg(&catalog);
        let reply = self
            .run_on(
                &catalog,
                Function::Settle,
                &keys,
                account_id,
                &own,
                now_ms,
                |call| {
                    call.arg(generation_id).arg(&actual).arg(&thresholds);
                },
            )
            .await?;
        let settled = |s: Settlement, replayed| {
            Ok(Settled {
                hold: s.hold.into_hold(account_id)?,
                charged_units: s.charged,
                returned_units: s.returned,
                replayed,
                balance: s.balance.into_balance(account_id),
            })
        };
        match reply {
            Reply::Ok(s) => settled(s, false),
            Reply::Replayed(s) => settled(s, true),
            Reply::NotFound => Err(not_found(account_id, generation_id).into()),
            Reply::State { state } => Err(wrong_state(generation_id, state, "settle").into()),
            Reply::Above { reserved } => Err(LedgerError::SettleAboveHold {
                generation_id: generation_id.to_string(),
                actual_quantity: actual_quantity.unwrap_or_default(),
                reserved_quantity: reserved,
            }
            .into()),
        }
    }
}
