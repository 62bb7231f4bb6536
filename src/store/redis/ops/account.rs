//! GetAccount: `lua/account.lua`.

use serde::Deserialize;

use super::holds;
use crate::store::keys::AccountKeys;
use crate::store::redis::library::Function;
use crate::store::redis::reply::{list, num, BalanceReply, GrantReply, HoldReply};
use crate::store::redis::RedisStore;
use crate::store::{AccountView, ChargedTotals, StoreResult};

/// `ok {balance, grants (burn order), holds (open, oldest first), charged_allowance,
/// charged_credits}`
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Ok(View),
}

#[derive(Debug, Deserialize)]
struct View {
    balance: BalanceReply,
    #[serde(default, deserialize_with = "list")]
    grants: Vec<GrantReply>,
    #[serde(default, deserialize_with = "list")]
    holds: Vec<HoldReply>,
    #[serde(deserialize_with = "num")]
    charged_allowance: u64,
    #[serde(deserialize_with = "num")]
    charged_credits: u64,
}

impl RedisStore {
    pub(super) async fn fcall_account(
        &self,
        account_id: &str,
        now_ms: i64,
    ) -> StoreResult<AccountView> {
        let keys = AccountKeys::new(account_id, self.shards);
        let reply = self
            .run(
                Function::Account,
                &keys,
                account_id,
                &keys.account,
                now_ms,
                |_| {},
            )
            .await?;
        let Reply::Ok(view) = reply;
        Ok(AccountView {
            balance: view.balance.into_balance(account_id),
            grants: view
                .grants
                .into_iter()
                .map(|g| g.into_grant())
                .collect::<StoreResult<_>>()?,
            holds: holds(view.holds, account_id)?,
            lifetime_charged: ChargedTotals {
                allowance_units: view.charged_allowance,
                credit_units: view.charged_credits,
            },
        })
    }
}
