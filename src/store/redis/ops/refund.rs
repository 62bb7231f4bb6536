//! Refund: `lua/refund.lua`.

use serde::Deserialize;

use super::not_found;
use crate::ledger::account::wrong_state;
use crate::ledger::MAX_LIVE_GRANTS;
use crate::store::keys::AccountKeys;
use crate::store::redis::library::Function;
use crate::store::redis::reply::{hold_state, num, BalanceReply};
use crate::store::redis::RedisStore;
use crate::store::{HoldState, LedgerError, RefundCmd, Refunded, StoreResult};

/// `ok|replayed {refunded, to_allowance, to_credits, refund_grant, balance} | not_found
/// | state {state} | above {requested, refundable} | conflict | too_many`
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Ok(Refund),
    Replayed(Refund),
    NotFound,
    State {
        #[serde(deserialize_with = "hold_state")]
        state: HoldState,
    },
    Above {
        #[serde(deserialize_with = "num")]
        requested: u64,
        #[serde(deserialize_with = "num")]
        refundable: u64,
    },
    Conflict,
    TooMany,
}

#[derive(Debug, Deserialize)]
struct Refund {
    #[serde(deserialize_with = "num")]
    refunded: u64,
    #[serde(deserialize_with = "num")]
    to_allowance: u64,
    #[serde(deserialize_with = "num")]
    to_credits: u64,
    /// Empty when nothing went to credits.
    refund_grant: String,
    balance: BalanceReply,
}

impl RedisStore {
    pub(super) async fn fcall_refund(&self, cmd: &RefundCmd, now_ms: i64) -> StoreResult<Refunded> {
        let keys = AccountKeys::new(&cmd.account_id, self.shards);
        let own = keys.finished_hold(&cmd.account_id, &cmd.generation_id);
        let record = keys.refund(&cmd.account_id, &cmd.refund_id);
        let reply = self
            .run(
                Function::Refund,
                &keys,
                &cmd.account_id,
                &own,
                now_ms,
                |call| {
                    call.key(&record)
                        .arg(&cmd.generation_id)
                        .arg(&cmd.refund_id)
                        .arg(cmd.units)
                        .arg(&cmd.reason)
                        .arg(MAX_LIVE_GRANTS);
                },
            )
            .await?;
        let refunded = |r: Refund, replayed| Refunded {
            refunded_units: r.refunded,
            to_allowance: r.to_allowance,
            to_credits: r.to_credits,
            grant_id: (!r.refund_grant.is_empty()).then_some(r.refund_grant),
            replayed,
            balance: r.balance.into_balance(&cmd.account_id),
        };
        match reply {
            Reply::Ok(r) => Ok(refunded(r, false)),
            Reply::Replayed(r) => Ok(refunded(r, true)),
            Reply::NotFound => Err(not_found(&cmd.account_id, &cmd.generation_id).into()),
            Reply::State { state } => Err(wrong_state(&cmd.generation_id, state, "refund").into()),
            Reply::Above {
                requested,
                refundable,
            } => Err(LedgerError::RefundAboveCharge {
                generation_id: cmd.generation_id.clone(),
                requested,
                refundable,
            }
            .into()),
            Reply::Conflict => Err(LedgerError::RefundConflict {
                refund_id: cmd.refund_id.clone(),
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
