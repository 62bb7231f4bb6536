//! RevokeCredits: `lua/revoke_credits.lua`.

use serde::Deserialize;

use crate::store::keys::AccountKeys;
use crate::store::redis::library::Function;
use crate::store::redis::reply::{num, BalanceReply};
use crate::store::redis::RedisStore;
use crate::store::{LedgerError, Revoked, StoreResult};

/// `ok {revoked, balance} | not_found`
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Ok {
        #[serde(deserialize_with = "num")]
        revoked: u64,
        balance: BalanceReply,
    },
    NotFound,
}

impl RedisStore {
    pub(super) async fn fcall_revoke_credits(
        &self,
        account_id: &str,
        grant_id: &str,
        now_ms: i64,
    ) -> StoreResult<Revoked> {
        let keys = AccountKeys::new(account_id, self.shards);
        let reply = self
            .run(
                Function::RevokeCredits,
                &keys,
                account_id,
                &keys.account,
                now_ms,
                |call| {
                    call.arg(grant_id);
                },
            )
            .await?;
        match reply {
            Reply::Ok { revoked, balance } => Ok(Revoked {
                revoked_units: revoked,
                balance: balance.into_balance(account_id),
            }),
            Reply::NotFound => Err(LedgerError::GrantNotFound {
                account_id: account_id.to_string(),
                grant_id: grant_id.to_string(),
            }
            .into()),
        }
    }
}
