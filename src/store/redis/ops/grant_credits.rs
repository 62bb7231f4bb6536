//! GrantCredits: `lua/grant_credits.lua`.

use serde::Deserialize;

use crate::ledger::MAX_LIVE_GRANTS;
use crate::store::keys::AccountKeys;
use crate::store::redis::library::Function;
use crate::store::redis::reply::{BalanceReply, GrantReply};
use crate::store::redis::RedisStore;
use crate::store::{GrantCmd, Granted, LedgerError, StoreResult};

/// `ok|replayed {grant, balance} | conflict | expired | too_many`
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Ok(Grant),
    Replayed(Grant),
    Conflict,
    Expired,
    TooMany,
}

#[derive(Debug, Deserialize)]
struct Grant {
    grant: GrantReply,
    balance: BalanceReply,
}

impl RedisStore {
    pub(super) async fn fcall_grant_credits(
        &self,
        cmd: &GrantCmd,
        now_ms: i64,
    ) -> StoreResult<Granted> {
        let keys = AccountKeys::new(&cmd.account_id, self.shards);
        let expires = cmd
            .expires_at_ms
            .map(|ms| ms.to_string())
            .unwrap_or_default();
        let reply = self
            .run(
                Function::GrantCredits,
                &keys,
                &cmd.account_id,
                &keys.account,
                now_ms,
                |call| {
                    call.arg(&cmd.grant_id)
                        .arg(cmd.units)
                        .arg(cmd.source.as_str())
                        .arg(&expires)
                        .arg(MAX_LIVE_GRANTS);
                },
            )
            .await?;
        let granted = |g: Grant, replayed| {
            Ok(Granted {
                grant: g.grant.into_grant()?,
                replayed,
                balance: g.balance.into_balance(&cmd.account_id),
            })
        };
        match reply {
            Reply::Ok(g) => granted(g, false),
            Reply::Replayed(g) => granted(g, true),
            Reply::Conflict => Err(LedgerError::GrantConflict {
                grant_id: cmd.grant_id.clone(),
            }
            .into()),
            Reply::Expired => Err(LedgerError::InvalidArgument {
                field: "expires_at",
                message: "must be in the future".into(),
            }
            .into()),
            Reply::TooMany => Err(LedgerError::TooManyGrants {
                account_id: cmd.account_id.clone(),
                limit: MAX_LIVE_GRANTS,
            }
            .into()),
        }
    }
}
