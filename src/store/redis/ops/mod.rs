//! The ledger operations on Redis: one file per operation, named like its Lua twin
//! (`ops/reserve.rs` calls `lua/reserve.lua`), with the function's arguments and its typed
//! reply (an enum of the statuses the Lua file lists) mapped to the operation's answer or
//! refusal. Here: the `Store` implementation that hands each operation to its file, and what
//! several operations share.

use async_trait::async_trait;

use super::reply::{anomaly, Refusal};
use super::RedisStore;
use crate::ledger::prepare::{self, unknown_model};
use crate::ledger::{Catalog, Kind};
use crate::store::*;

mod account;
mod balance;
mod expire_due;
mod extend;
mod grant_credits;
mod quote;
mod refund;
mod release;
mod reserve;
mod reserve_batch;
mod revoke_credits;
mod set_plan;
mod settle;

fn not_found(account_id: &str, generation_id: &str) -> LedgerError {
    LedgerError::HoldNotFound {
        account_id: account_id.to_string(),
        generation_id: generation_id.to_string(),
    }
}

/// The unit cost argument of a Reserve or batch item ([`prepare::unit_cost`]), or empty for a
/// model the catalog does not have. The script answers a replay of a known generation before
/// it looks at the cost, and `unknown_model` for a new one.
fn unit_arg(catalog: &Catalog, kind: Kind, model: &str) -> String {
    prepare::unit_cost(catalog, kind, model)
        .map(|unit| unit.to_string())
        .unwrap_or_default()
}

/// The error of a script's refusal of a generation. A denial is decided by the script; the
/// catalog rebuilds the same denial with its message.
fn refused(
    catalog: &Catalog,
    refusal: Refusal,
    kind: Kind,
    model: &str,
    quantity: u32,
) -> StoreResult<LedgerError> {
    match refusal {
        Refusal::UnknownModel => Ok(unknown_model(catalog, model)),
        Refusal::Denied(denied) => {
            match catalog.check_features(&denied.plan, kind, model, quantity, denied.open) {
                Err(denial) => Ok(LedgerError::Denied(denial)),
                Ok(()) => Err(anomaly("script denied what the catalog allows")),
            }
        }
        Refusal::Insufficient(short) => Ok(LedgerError::InsufficientFunds {
            needed: short.needed,
            available: short.available,
        }),
    }
}

/// Holds as the replies describe them, as the store's.
fn holds(replies: Vec<super::reply::HoldReply>, account_id: &str) -> StoreResult<Vec<Hold>> {
    replies
        .into_iter()
        .map(|h| h.into_hold(account_id))
        .collect()
}

#[async_trait]
impl Store for RedisStore {
    async fn reserve(&self, cmd: &ReserveCmd, now_ms: i64) -> StoreResult<Reserved> {
        self.fcall_reserve(cmd, now_ms).await
    }

    async fn settle(
        &self,
        account_id: &str,
        generation_id: &str,
        actual_quantity: Option<u32>,
        now_ms: i64,
    ) -> StoreResult<Settled> {
        self.fcall_settle(account_id, generation_id, actual_quantity, now_ms)
            .await
    }

    async fn release(
        &self,
        account_id: &str,
        generation_id: &str,
        reason: ReleaseReason,
        now_ms: i64,
    ) -> StoreResult<Released> {
        self.fcall_release(account_id, generation_id, reason, now_ms)
            .await
    }

    async fn extend(
        &self,
        account_id: &str,
        generation_id: &str,
        ttl_seconds: u32,
        now_ms: i64,
    ) -> StoreResult<Hold> {
        self.fcall_extend(account_id, generation_id, ttl_seconds, now_ms)
            .await
    }

    async fn balance(&self, account_id: &str, now_ms: i64) -> StoreResult<Balance> {
        self.fcall_balance(account_id, now_ms).await
    }

    async fn account(&self, account_id: &str, now_ms: i64) -> StoreResult<AccountView> {
        self.fcall_account(account_id, now_ms).await
    }

    async fn set_plan(&self, cmd: &SetPlanCmd, now_ms: i64) -> StoreResult<PlanSet> {
        self.fcall_set_plan(cmd, now_ms).await
    }

    async fn grant_credits(&self, cmd: &GrantCmd, now_ms: i64) -> StoreResult<Granted> {
        self.fcall_grant_credits(cmd, now_ms).await
    }

    async fn revoke_credits(
        &self,
        account_id: &str,
        grant_id: &str,
        now_ms: i64,
    ) -> StoreResult<Revoked> {
        self.fcall_revoke_credits(account_id, grant_id, now_ms)
            .await
    }

    async fn quote(&self, cmd: &QuoteCmd, now_ms: i64) -> StoreResult<Quoted> {
        self.fcall_quote(cmd, now_ms).await
    }

    async fn reserve_batch(
        &self,
        cmd: &ReserveBatchCmd,
        now_ms: i64,
    ) -> StoreResult<ReservedBatch> {
        self.fcall_reserve_batch(cmd, now_ms).await
    }

    async fn refund(&self, cmd: &RefundCmd, now_ms: i64) -> StoreResult<Refunded> {
        self.fcall_refund(cmd, now_ms).await
    }

    async fn expire_due(&self, shard: u32, now_ms: i64, max_accounts: usize) -> StoreResult<u32> {
        self.fcall_expire_due(shard, now_ms, max_accounts).await
    }
}
