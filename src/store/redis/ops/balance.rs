//! GetBalance: `lua/balance.lua`.

use serde::Deserialize;

use crate::store::keys::AccountKeys;
use crate::store::redis::library::Function;
use crate::store::redis::reply::BalanceReply;
use crate::store::redis::RedisStore;
use crate::store::{Balance, StoreResult};

/// `ok {balance}`
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Ok { balance: BalanceReply },
}

impl RedisStore {
    pub(super) async fn fcall_balance(
        &self,
        account_id: &str,
        now_ms: i64,
    ) -> StoreResult<Balance> {
        let keys = AccountKeys::new(account_id, self.shards);
        let reply = self
            .run(
                Function::Balance,
                &keys,
                account_id,
                &keys.account,
                now_ms,
                |_| {},
            )
            .await?;
        match reply {
            Reply::Ok { balance } => Ok(balance.into_balance(account_id)),
        }
    }
}
