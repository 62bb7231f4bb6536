//! Extend: `lua/extend.lua`.

use serde::Deserialize;

use super::not_found;
use crate::ledger::account::wrong_state;
use crate::ledger::MAX_HOLD_LIFETIME_SECONDS;
use crate::store::keys::AccountKeys;
use crate::store::redis::library::Function;
use crate::store::redis::reply::{hold_state, HoldReply};
use crate::store::redis::RedisStore;
use crate::store::{Hold, HoldState, StoreResult};

/// `ok {hold} | not_found | state {state}`
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Ok {
        hold: HoldReply,
    },
    NotFound,
    State {
        #[serde(deserialize_with = "hold_state")]
        state: HoldState,
    },
}

impl RedisStore {
    pub(super) async fn fcall_extend(
        &self,
        account_id: &str,
        generation_id: &str,
        ttl_seconds: u32,
        now_ms: i64,
    ) -> StoreResult<Hold> {
        let keys = AccountKeys::new(account_id, self.shards);
        let own = keys.finished_hold(account_id, generation_id);
        let reply = self
            .run(Function::Extend, &keys, account_id, &own, now_ms, |call| {
                call.arg(generation_id)
                    .arg(i64::from(ttl_seconds) * 1000)
                    .arg(i64::from(MAX_HOLD_LIFETIME_SECONDS) * 1000);
            })
            .await?;
        match reply {
            Reply::Ok { hold } => hold.into_hold(account_id),
            Reply::NotFound => Err(not_found(account_id, generation_id).into()),
            Reply::State { state } => Err(wrong_state(generation_id, state, "extend").into()),
        }
    }
}
