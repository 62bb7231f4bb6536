//! Reserve: `lua/reserve.lua`.

use serde::Deserialize;

use super::{refused, unit_arg};
use crate::ledger::account::conflict;
use crate::store::keys::AccountKeys;
use crate::store::redis::library::Function;
use crate::store::redis::reply::{
    anomaly, BalanceReply, DeniedReply, HoldReply, HoldTerms, Refusal, ShortfallReply,
};
use crate::store::redis::RedisStore;
use crate::store::{ReserveCmd, Reserved, StoreResult};

/// `ok|replayed {hold, balance} | conflict {kind, model, qty} | denied {plan, open}
/// | insufficient {needed, available} | unknown_model`
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Ok(Held),
    Replayed(Held),
    Conflict(HoldTerms),
    Denied(DeniedReply),
    Insufficient(ShortfallReply),
    UnknownModel,
}

#[derive(Debug, Deserialize)]
struct Held {
    hold: HoldReply,
    balance: BalanceReply,
}

impl RedisStore {
    pub(super) async fn fcall_reserve(
        &self,
        cmd: &ReserveCmd,
        now_ms: i64,
    ) -> StoreResult<Reserved> {
        let catalog = self.catalog.current();
        let unit_cost = unit_arg(&catalog, cmd.kind, &cmd.model);
        let labels = serde_json::to_string(&cmd.labels).map_err(anomaly)?;
        let keys = AccountKeys::new(&cmd.account_id, self.shards);
        let own = keys.finished_hold(&cmd.account_id, &cmd.generation_id);
        let reply = self
            .run_on(
                &catalog,
                Function::Reserve,
                &keys,
                &cmd.account_id,
                &own,
                now_ms,
                |call| {
                    call.arg(&cmd.generation_id)
                        .arg(cmd.kind.as_str())
                        .arg(&cmd.model)
                        .arg(cmd.quantity)
                        .arg(&unit_cost)
                        .arg(i64::from(cmd.ttl_seconds) * 1000)
                        .arg(&labels);
                },
            )
            .await?;
        let reserved = |held: Held, replayed| {
            Ok(Reserved {
                hold: held.hold.into_hold(&cmd.account_id)?,
                replayed,
                balance: held.balance.into_balance(&cmd.account_id),
            })
        };
        let refusal = match reply {
            Reply::Ok(held) => return reserved(held, false),
            Reply::Replayed(held) => return reserved(held, true),
            Reply::Conflict(t) => {
                return Err(conflict(&cmd.generation_id, t.kind, &t.model, t.qty, cmd).into())
            }
            Reply::Denied(denied) => Refusal::Denied(denied),
            Reply::Insufficient(short) => Refusal::Insufficient(short),
            Reply::UnknownModel => Refusal::UnknownModel,
        };
        Err(refused(&catalog, refusal, cmd.kind, &cmd.model, cmd.quantity)?.into())
    }
}
