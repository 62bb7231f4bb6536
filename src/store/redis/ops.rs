//! The ledger operations on Redis: per operation, its arguments to the library's function and
//! the mapping of its reply.

use async_trait::async_trait;

use super::library::Function;
use super::reply::{anomaly, parse_state, ScriptReply};
use super::RedisStore;
use crate::ledger::account::{batch_conflict, conflict, wrong_state};
use crate::ledger::prepare::{self, unknown_model, unknown_plan};
use crate::ledger::{Catalog, Kind, MAX_HOLD_LIFETIME_SECONDS, MAX_LIVE_GRANTS};
use crate::store::keys::AccountKeys;
use crate::store::sweeper::{due_accounts, SWEEP_ENTRIES_PER_ACCOUNT};
use crate::store::*;

impl RedisStore {
    fn not_found(account_id: &str, generation_id: &str) -> StoreError {
        StoreError::HoldNotFound {
            account_id: account_id.to_string(),
            generation_id: generation_id.to_string(),
        }
    }
}

/// The conflict a script reported for `generation_id`, which `requested` asked for again.
fn conflict_of(
    r: ScriptReply,
    generation_id: &str,
    requested: &ReserveCmd,
) -> StoreResult<StoreError> {
    let kind = ScriptReply::need(r.kind, "kind")?;
    let kind = Kind::parse(&kind).ok_or_else(|| anomaly(kind))?;
    let model = ScriptReply::need(r.model, "model")?;
    let qty = ScriptReply::need(r.qty, "qty")?;
    Ok(conflict(generation_id, kind, &model, qty, requested))
}

/// The unit cost argument of a Reserve or batch item ([`prepare::unit_cost`]), or empty for a
/// model the catalog does not have. The script answers a replay of a known generation before
/// it looks at the cost, and `unknown_model` for a new one.
fn unit_arg(catalog: &Catalog, kind: Kind, model: &str) -> String {
    prepare::unit_cost(catalog, kind, model)
        .map(|unit| unit.to_string())
        .unwrap_or_default()
}

/// The refusal a script gave a generation (`unknown_model`, `denied` or `insufficient`). A
/// denial is decided by the script; the catalog rebuilds the same denial with its message.
fn refusal(
    catalog: &Catalog,
    r: ScriptReply,
    kind: Kind,
    model: &str,
    quantity: u32,
) -> StoreResult<StoreError> {
    match r.status.as_str() {
        "unknown_model" => Ok(unknown_model(catalog, model)),
        "denied" => {
            let plan = ScriptReply::need(r.plan, "plan")?;
            let open_holds = ScriptReply::need(r.open, "open")?;
            match catalog.check_features(&plan, kind, model, quantity, open_holds) {
                Err(denial) => Ok(StoreError::Denied(denial)),
                Ok(()) => Err(anomaly("script denied what the catalog allows")),
            }
        }
        "insufficient" => Ok(StoreError::InsufficientFunds {
            needed: ScriptReply::need(r.needed, "needed")?,
            available: ScriptReply::need(r.available, "available")?,
        }),
        other => Err(anomaly(other)),
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn reserve(&self, cmd: &ReserveCmd, now_ms: i64) -> StoreResult<Reserved> {
        let catalog = self.catalog.current();
        let unit_cost = unit_arg(&catalog, cmd.kind, &cmd.model);
        let labels = serde_json::to_string(&cmd.labels).map_err(anomaly)?;
        let keys = AccountKeys::new(&cmd.account_id, self.shards);
        let own = keys.finished_hold(&cmd.account_id, &cmd.generation_id);
        let mut r = self
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
        match r.status.as_str() {
            "ok" | "replayed" => Ok(Reserved {
                hold: r.hold(&cmd.account_id)?,
                replayed: r.status == "replayed",
                balance: r.balance(&cmd.account_id)?,
            }),
            "conflict" => Err(conflict_of(r, &cmd.generation_id, cmd)?),
            _ => Err(refusal(&catalog, r, cmd.kind, &cmd.model, cmd.quantity)?),
        }
    }

    async fn settle(
        &self,
        account_id: &str,
        generation_id: &str,
        actual_quantity: Option<u32>,
        now_ms: i64,
    ) -> StoreResult<Settled> {
        let keys = AccountKeys::new(account_id, self.shards);
        let own = keys.finished_hold(account_id, generation_id);
        let actual = actual_quantity.map(|q| q.to_string()).unwrap_or_default();
        let catalog = self.catalog.current();
        let thresholds = prepare::thresholds_arg(&catalog);
        let mut r = self
            .run_on(
                &catalog,
                Function::Settle,
                &keys,
                account_id,
                &own,
                now_ms,
                |call| {
                    call.arg(generation_id).arg(&actual).arg(&thresholds);
                },
            )
            .await?;
        match r.status.as_str() {
            "ok" | "replayed" => Ok(Settled {
                hold: r.hold(account_id)?,
                charged_units: ScriptReply::need(r.charged, "charged")?,
                returned_units: ScriptReply::need(r.returned, "returned")?,
                replayed: r.status == "replayed",
                balance: r.balance(account_id)?,
            }),
            "not_found" => Err(Self::not_found(account_id, generation_id)),
            "state" => Err(wrong_state(
                generation_id,
                parse_state(&ScriptReply::need(r.state, "state")?)?,
                "settle",
            )),
            "above" => Err(StoreError::SettleAboveHold {
                generation_id: generation_id.to_string(),
                actual_quantity: actual_quantity.unwrap_or_default(),
                reserved_quantity: ScriptReply::need(r.reserved, "reserved")?,
            }),
            other => Err(anomaly(other)),
        }
    }

    async fn release(
        &self,
        account_id: &str,
        generation_id: &str,
        reason: ReleaseReason,
        now_ms: i64,
    ) -> StoreResult<Released> {
        let keys = AccountKeys::new(account_id, self.shards);
        let own = keys.finished_hold(account_id, generation_id);
        let mut r = self
            .run(Function::Release, &keys, account_id, &own, now_ms, |call| {
                call.arg(generation_id).arg(reason.as_str());
            })
            .await?;
        match r.status.as_str() {
            "ok" | "replayed" => Ok(Released {
                hold: r.hold(account_id)?,
                returned_units: ScriptReply::need(r.returned, "returned")?,
                replayed: r.status == "replayed",
                balance: r.balance(account_id)?,
            }),
            "not_found" => Err(Self::not_found(account_id, generation_id)),
            "state" => Err(wrong_state(
                generation_id,
                parse_state(&ScriptReply::need(r.state, "state")?)?,
                "release",
            )),
            other => Err(anomaly(other)),
        }
    }

    async fn extend(
        &self,
        account_id: &str,
        generation_id: &str,
        ttl_seconds: u32,
        now_ms: i64,
    ) -> StoreResult<Hold> {
        let keys = AccountKeys::new(account_id, self.shards);
        let own = keys.finished_hold(account_id, generation_id);
        let mut r = self
            .run(Function::Extend, &keys, account_id, &own, now_ms, |call| {
                call.arg(generation_id)
                    .arg(i64::from(ttl_seconds) * 1000)
                    .arg(i64::from(MAX_HOLD_LIFETIME_SECONDS) * 1000);
            })
            .await?;
        match r.status.as_str() {
            "ok" => r.hold(account_id),
            "not_found" => Err(Self::not_found(account_id, generation_id)),
            "state" => Err(wrong_state(
                generation_id,
                parse_state(&ScriptReply::need(r.state, "state")?)?,
                "extend",
            )),
            other => Err(anomaly(other)),
        }
    }

    async fn balance(&self, account_id: &str, now_ms: i64) -> StoreResult<Balance> {
        let keys = AccountKeys::new(account_id, self.shards);
        let mut r = self
            .run(
                Function::Balance,
                &keys,
                account_id,
                &keys.account,
                now_ms,
                |_| {},
            )
            .await?;
        match r.status.as_str() {
            "ok" => r.balance(account_id),
            other => Err(anomaly(other)),
        }
    }

    async fn account(&self, account_id: &str, now_ms: i64) -> StoreResult<AccountView> {
        let keys = AccountKeys::new(account_id, self.shards);
        let mut r = self
            .run(
                Function::Account,
                &keys,
                account_id,
                &keys.account,
                now_ms,
                |_| {},
            )
            .await?;
        match r.status.as_str() {
            "ok" => Ok(AccountView {
                balance: r.balance(account_id)?,
                grants: std::mem::take(&mut r.grants)
                    .into_iter()
                    .map(|g| g.into_grant())
                    .collect::<StoreResult<_>>()?,
                holds: std::mem::take(&mut r.holds)
                    .into_iter()
                    .map(|h| h.into_hold(account_id))
                    .collect::<StoreResult<_>>()?,
                lifetime_charged: ChargedTotals {
                    allowance_units: ScriptReply::need(r.charged_allowance, "charged_allowance")?,
                    credit_units: ScriptReply::need(r.charged_credits, "charged_credits")?,
                },
            }),
            other => Err(anomaly(other)),
        }
    }

    async fn set_plan(&self, cmd: &SetPlanCmd, now_ms: i64) -> StoreResult<PlanSet> {
        // Whether the catalog has the plan is the script's check, after a replay is answered.
        let catalog = self.catalog.current();
        let keys = AccountKeys::new(&cmd.account_id, self.shards);
        let own = keys.plan_request(&cmd.account_id, &cmd.request_id);
        let requested = cmd
            .cycle_anchor_ms
            .map(|ms| ms.to_string())
            .unwrap_or_default();
        let anchor = prepare::anchor(cmd.cycle_anchor_ms, now_ms);
        let mut r = self
            .run_on(
                &catalog,
                Function::SetPlan,
                &keys,
                &cmd.account_id,
                &own,
                now_ms,
                |call| {
                    call.arg(&cmd.request_id)
                        .arg(&cmd.plan)
                        .arg(&requested)
                        .arg(anchor.day)
                        .arg(anchor.time_of_day_ms);
                },
            )
            .await?;
        match r.status.as_str() {
            "ok" | "replayed" => {
                let change = ScriptReply::need(r.change.take(), "change")?;
                Ok(PlanSet {
                    change: PlanChange::parse(&change).ok_or_else(|| anomaly(change))?,
                    effective_at_ms: ScriptReply::need(r.effective, "effective")?,
                    allowance_added: ScriptReply::need(r.added, "added")?,
                    prorated_charge_cents: ScriptReply::need(r.charge, "charge")?,
                    replayed: r.status == "replayed",
                    balance: r.balance(&cmd.account_id)?,
                })
            }
            "conflict" => Err(StoreError::RequestConflict {
                request_id: cmd.request_id.clone(),
            }),
            "unknown_plan" => Err(unknown_plan(&catalog, &cmd.plan)),
            other => Err(anomaly(other)),
        }
    }

    async fn grant_credits(&self, cmd: &GrantCmd, now_ms: i64) -> StoreResult<Granted> {
        let keys = AccountKeys::new(&cmd.account_id, self.shards);
        let expires = cmd
            .expires_at_ms
            .map(|ms| ms.to_string())
            .unwrap_or_default();
        let mut r = self
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
        match r.status.as_str() {
            "ok" | "replayed" => Ok(Granted {
                grant: ScriptReply::need(r.grant.take(), "grant")?.into_grant()?,
                replayed: r.status == "replayed",
                balance: r.balance(&cmd.account_id)?,
            }),
            "conflict" => Err(StoreError::GrantConflict {
                grant_id: cmd.grant_id.clone(),
            }),
            "expired" => Err(StoreError::InvalidArgument {
                field: "expires_at",
                message: "must be in the future".into(),
            }),
            "too_many" => Err(StoreError::TooManyGrants {
                account_id: cmd.account_id.clone(),
                limit: MAX_LIVE_GRANTS,
            }),
            other => Err(anomaly(other)),
        }
    }

    async fn revoke_credits(
        &self,
        account_id: &str,
        grant_id: &str,
        now_ms: i64,
    ) -> StoreResult<Revoked> {
        let keys = AccountKeys::new(account_id, self.shards);
        let mut r = self
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
        match r.status.as_str() {
            "ok" => Ok(Revoked {
                revoked_units: ScriptReply::need(r.revoked, "revoked")?,
                balance: r.balance(account_id)?,
            }),
            "not_found" => Err(StoreError::GrantNotFound {
                account_id: account_id.to_string(),
                grant_id: grant_id.to_string(),
            }),
            other => Err(anomaly(other)),
        }
    }

    async fn quote(&self, cmd: &QuoteCmd, now_ms: i64) -> StoreResult<Quoted> {
        let catalog = self.catalog.current();
        let unit = prepare::unit_cost(&catalog, cmd.kind, &cmd.model)?;
        let keys = AccountKeys::new(&cmd.account_id, self.shards);
        let mut r = self
            .run_on(
                &catalog,
                Function::Quote,
                &keys,
                &cmd.account_id,
                &keys.account,
                now_ms,
                |call| {
                    call.arg(cmd.kind.as_str())
                        .arg(&cmd.model)
                        .arg(cmd.quantity)
                        .arg(unit);
                },
            )
            .await?;
        if r.status != "quote" {
            return Err(anomaly(&r.status));
        }
        let denial = match r.refusal.take() {
            Some(refused) => Some(refusal(
                &catalog,
                *refused,
                cmd.kind,
                &cmd.model,
                cmd.quantity,
            )?),
            None => None,
        };
        Ok(Quoted {
            cost_units: ScriptReply::need(r.cost, "cost")?,
            from_allowance: ScriptReply::need(r.fa, "fa")?,
            from_credits: ScriptReply::need(r.fc, "fc")?,
            denial,
            balance: r.balance(&cmd.account_id)?,
        })
    }

    async fn reserve_batch(
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
        let mut r = self
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
        match r.status.as_str() {
            "ok" | "replayed" => Ok(ReservedBatch {
                holds: std::mem::take(&mut r.holds)
                    .into_iter()
                    .map(|h| h.into_hold(&cmd.account_id))
                    .collect::<StoreResult<_>>()?,
                replayed: r.status == "replayed",
                balance: r.balance(&cmd.account_id)?,
            }),
            "conflict" => {
                let gen = ScriptReply::need(r.gen.take(), "gen")?;
                let i = cmd
                    .items
                    .iter()
                    .position(|item| item.generation_id == gen)
                    .ok_or_else(|| anomaly(format!("conflict on unknown `{gen}`")))?;
                let new_generation = match r.index {
                    Some(j) => Some(
                        cmd.items
                            .get(j)
                            .ok_or_else(|| anomaly(format!("item {j}")))?
                            .generation_id
                            .as_str(),
                    ),
                    None => None,
                };
                let kind = ScriptReply::need(r.kind, "kind")?;
                let kind = Kind::parse(&kind).ok_or_else(|| anomaly(kind))?;
                let model = ScriptReply::need(r.model, "model")?;
                let qty = ScriptReply::need(r.qty, "qty")?;
                Err(batch_conflict(
                    &gen,
                    kind,
                    &model,
                    qty,
                    &cmd.reserve_cmd(i),
                    new_generation,
                ))
            }
            "item" => {
                let index = ScriptReply::need(r.index, "index")?;
                let item = cmd
                    .items
                    .get(index)
                    .ok_or_else(|| anomaly(format!("item {index}")))?;
                let refused = ScriptReply::need(r.refusal.take(), "refusal")?;
                let source = refusal(&catalog, *refused, item.kind, &item.model, item.quantity)?;
                Err(StoreError::BatchItem {
                    index,
                    generation_id: item.generation_id.clone(),
                    source: Box::new(source),
                })
            }
            other => Err(anomaly(other)),
        }
    }

    async fn refund(&self, cmd: &RefundCmd, now_ms: i64) -> StoreResult<Refunded> {
        let keys = AccountKeys::new(&cmd.account_id, self.shards);
        let own = keys.finished_hold(&cmd.account_id, &cmd.generation_id);
        let record = keys.refund(&cmd.account_id, &cmd.refund_id);
        let mut r = self
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
        match r.status.as_str() {
            "ok" | "replayed" => {
                let grant_id = ScriptReply::need(r.refund_grant.take(), "refund_grant")?;
                Ok(Refunded {
                    refunded_units: ScriptReply::need(r.refunded, "refunded")?,
                    to_allowance: ScriptReply::need(r.to_allowance, "to_allowance")?,
                    to_credits: ScriptReply::need(r.to_credits, "to_credits")?,
                    grant_id: (!grant_id.is_empty()).then_some(grant_id),
                    replayed: r.status == "replayed",
                    balance: r.balance(&cmd.account_id)?,
                })
            }
            "not_found" => Err(Self::not_found(&cmd.account_id, &cmd.generation_id)),
            "state" => Err(wrong_state(
                &cmd.generation_id,
                parse_state(&ScriptReply::need(r.state, "state")?)?,
                "refund",
            )),
            "above" => Err(StoreError::RefundAboveCharge {
                generation_id: cmd.generation_id.clone(),
                requested: ScriptReply::need(r.requested, "requested")?,
                refundable: ScriptReply::need(r.refundable, "refundable")?,
            }),
            "conflict" => Err(StoreError::RefundConflict {
                refund_id: cmd.refund_id.clone(),
            }),
            "too_many" => Err(StoreError::TooManyGrants {
                account_id: cmd.account_id.clone(),
                limit: MAX_LIVE_GRANTS,
            }),
            other => Err(anomaly(other)),
        }
    }

    async fn expire_due(&self, shard: u32, now_ms: i64, max_accounts: usize) -> StoreResult<u32> {
        self.shards_ready().await?;
        if !self.shards.contains(shard) {
            return Ok(0);
        }
        let index = crate::store::keys::shard_expiry(&crate::store::keys::shard_prefix(shard));
        let window = max_accounts.saturating_mul(SWEEP_ENTRIES_PER_ACCOUNT);
        // Holds other calls found expired wait in the index below every expiry (MOVE_SCORE):
        // moved to their own keys first. They are no account's due work (the memory store has
        // no such entries), so they neither count nor take the window's places.
        let mut cmd = ::redis::cmd("ZRANGEBYSCORE");
        cmd.arg(&index).arg("-inf").arg("(0").arg("LIMIT").arg(0);
        cmd.arg(window);
        let mut conn = self.conn.clone();
        let waiting: Vec<String> = self.bounded(cmd.query_async(&mut conn)).await?;
        for (account, members) in due_accounts(waiting, usize::MAX) {
            match self.sweep_account(&account, &members, "move", now_ms).await {
                Ok(_) => {}
                Err(e @ StoreError::Unavailable(_)) => return Err(e),
                Err(e) => crate::store::sweeper::skipped(&account, &e),
            }
        }
        // The window both stores read: the first entries due by now, earliest first.
        let mut cmd = ::redis::cmd("ZRANGEBYSCORE");
        cmd.arg(&index).arg(0).arg(now_ms).arg("LIMIT").arg(0);
        cmd.arg(window);
        let due: Vec<String> = self.bounded(cmd.query_async(&mut conn)).await?;
        let mut expired = 0;
        for (account, members) in due_accounts(due, max_accounts) {
            match self
                .sweep_account(&account, &members, "expire", now_ms)
                .await
            {
                Ok(n) => expired += n,
                Err(e @ StoreError::Unavailable(_)) => return Err(e),
                // One broken account must not stop the expiry of every other one.
                Err(e) => crate::store::sweeper::skipped(&account, &e),
            }
        }
        Ok(expired)
    }
}

impl RedisStore {
    /// One ExpireDue call for `account`'s index `members` in `mode` (`move`: holds another
    /// call found expired, moved to their keys; `expire`: due holds): the holds it expired.
    async fn sweep_account(
        &self,
        account: &str,
        members: &[String],
        mode: &str,
        now_ms: i64,
    ) -> StoreResult<u32> {
        let keys = AccountKeys::new(account, self.shards);
        // Each entry's finished-hold key, declared: the expiry is written there.
        let finished: Vec<String> = members
            .iter()
            .map(|member| {
                let generation = member.get(account.len() + 1..).unwrap_or_default();
                keys.finished_hold(account, generation)
            })
            .collect();
        let Some((first, more)) = finished.split_first() else {
            return Ok(0);
        };
        let r = self
            .run(Function::ExpireDue, &keys, account, first, now_ms, |call| {
                for key in more {
                    call.key(key);
                }
                call.arg(mode).arg(members);
            })
            .await?;
        match r.status.as_str() {
            "ok" => ScriptReply::need(r.expired, "expired"),
            "moved" => Ok(0),
            other => Err(anomaly(other)),
        }
    }
}
