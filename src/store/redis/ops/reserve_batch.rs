//! ReserveBatch: `lua/reserve_batch.lua`.

use serde::Deserialize;

use super::{holds, refused, unit_arg};
use crate::ledger::account::batch_conflict;
use crate::ledger::Kind;
use crate::store::keys::AccountKeys;
use crate::store::redis::library::Function;
use crate::store::redis::reply::{
    anomaly, kind, list, num, opt_num, BalanceReply, HoldReply, Refusal,
};
use crate::store::redis::RedisStore;
use crate::store::{LedgerError, ReserveBatchCmd, ReservedBatch, StoreResult};

/// `ok|replayed {holds, balance} | conflict {gen, kind, model, qty, index?}
/// | item {index, gen, refusal: {status: unknown_model|denied|insufficient, ...}}`
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Ok(Batch),
    Replayed(Batch),
    Conflict(Conflict),
    Item {
        #[serde(deserialize_with = "num")]
        index: usize,
        refusal: Refusal,
    },
}

#[derive(Debug, Deserialize)]
struct Batch {
    #[serde(deserialize_with = "list")]
    holds: Vec<HoldReply>,
    balance: BalanceReply,
}

/// A generation of the batch known as another generation, or known outside this batch.
#[derive(Debug, Deserialize)]
struct Conflict {
    /// The generation the conflict names.
    gen: String,
    /// Its hold's terms.
    #[serde(deserialize_with = "kind")]
    kind: Kind,
    model: String,
    #[serde(deserialize_with = "num")]
    qty: u32,
    /// An item not reserved, when there is one.
    #[serde(default, deserialize_with = "opt_num")]
    index: Option<usize>,
}

impl RedisStore {
    pub(super) async fn fcall_reserve_batch(
        &self,
        cmd: &ReserveBatchCmd,
        now_ms: i64,
    ) -> StoreResult<ReservedBatch> {
        let catalog = self.catalog.current();
        let keys = AccountKeys::new(&cmd.account_id, self.shards);
        let mut item_args = Vec::with_capacity(cmd.items.len());
        for item in &cmd.items {
            let unit = unit_arg(&catalog, item.kind, &item.model);
            let labels = serde_json::to_string(&item.labels).map_err(anomaly)?;
            item_args.push((unit, labels));
        }
        let own_keys: Vec<String> = cmd
            .items
            .iter()
            .map(|item| keys.finished_hold(&cmd.account_id, &item.generation_id))
            .collect();
        let first = own_keys
            .first()
            .ok_or_else(|| anomaly("a batch without items"))?;
        let reply = self
            .run_on(
                &catalog,
                Function::ReserveBatch,
                &keys,
                &cmd.account_id,
                first,
                now_ms,
                |call| {
                    for key in &own_keys[1..] {
                        call.key(key);
                    }
                    call.arg(i64::from(cmd.ttl_seconds) * 1000)
                        .arg(cmd.items.len());
                    for (item, (unit, labels)) in cmd.items.iter().zip(&item_args) {
                        call.arg(&item.generation_id)
                            .arg(item.kind.as_str())
                            .arg(&item.model)
                            .arg(item.quantity)
                            .arg(unit)
                            .arg(labels);
                    }
                },
            )
            .await?;
        let reserved = |batch: Batch, replayed| {
            Ok(ReservedBatch {
                holds: holds(batch.holds, &cmd.account_id)?,
                replayed,
                balance: batch.balance.into_balance(&cmd.account_id),
            })
        };
        match reply {
            Reply::Ok(batch) => reserved(batch, false),
            Reply::Replayed(batch) => reserved(batch, true),
            Reply::Conflict(c) => {
                let i = cmd
                    .items
                    .iter()
                    .position(|item| item.generation_id == c.gen)
                    .ok_or_else(|| anomaly(format!("conflict on unknown `{}`", c.gen)))?;
                let new_generation = match c.index {
                    Some(j) => Some(
                        cmd.items
                            .get(j)
                            .ok_or_else(|| anomaly(format!("item {j}")))?
                            .generation_id
                            .as_str(),
                    ),
                    None => None,
                };
                Err(batch_conflict(
                    &c.gen,
                    c.kind,
                    &c.model,
                    c.qty,
                    &cmd.reserve_cmd(i),
                    new_generation,
                )
                .into())
            }
            Reply::Item { index, refusal } => {
                let item = cmd
                    .items
                    .get(index)
                    .ok_or_else(|| anomaly(format!("item {index}")))?;
                let source = refused(&catalog, refusal, item.kind, &item.model, item.quantity)?;
                Err(LedgerError::BatchItem {
                    index,
                    generation_id: item.generation_id.clone(),
                    source: Box::new(source),
                }
                .into())
            }
        }
    }
}
