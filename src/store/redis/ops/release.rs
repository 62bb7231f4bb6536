//! Release: `lua/release.lua`.

use serde::Deserialize;

use super::not_found;
use crate::ledger::account::wrong_state;
use crate::store::keys::AccountKeys;
use crate::store::redis::library::Function;
use crate::store::redis::reply::{hold_state, num, BalanceReply, HoldReply};
use crate::store::redis::RedisStore;
use crate::store::{HoldState, ReleaseReason, Released, StoreResult};

/// `ok|replayed {hold, returned, balance} | not_found | state {state}`
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Ok(Release),
    Replayed(Release),
    NotFound,
    State {
        #[serde(deserialize_with = "hold_state")]
        state: HoldState,
    },
}

#[derive(Debug, Deserialize)]
struct Release {
    hold: HoldReply,
    #[serde(deserialize_with = "num")]
    returned: u64,
    balance: BalanceReply,
}

impl RedisStore {
    pub(super) async fn fcall_release(
        &self,
        account_id: &str,
        generation_id: &str,
        reason: ReleaseReason,
        now_ms: i64,
    ) -> StoreResult<Released> {
        let keys = AccountKeys::new(account_id, self.shards);
        let own = keys.finished_hold(account_id, generation_id);
        let reply = self
            .run(Function::Release, &keys, account_id, &own, now_ms, |call| {
                call.arg(generation_id).arg(reason.as_str());
            })
            .await?;
        let released = |r: Release, replayed| {
            Ok(Released {
                hold: r.hold.into_hold(account_id)?,
                returned_units: r.returned,
                replayed,
                balance: r.balance.into_balance(account_id),
            })
        };
        match reply {
            Reply::Ok(r) => released(r, false),
            Reply::Replayed(r) => released(r, true),
            Reply::NotFound => Err(not_found(account_id, generation_id).into()),
            Reply::State { state } => Err(wrong_state(generation_id, state, "release").into()),
        }
    }
}
