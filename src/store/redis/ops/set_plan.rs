//! SetPlan: `lua/set_plan.lua`.

use serde::Deserialize;

use crate::ledger::prepare::{self, unknown_plan};
use crate::store::keys::AccountKeys;
use crate::store::redis::library::Function;
use crate::store::redis::reply::{anomaly, num, BalanceReply};
use crate::store::redis::RedisStore;
use crate::store::{LedgerError, PlanChange, PlanSet, SetPlanCmd, StoreResult};

/// `ok|replayed {change, effective, added, charge, balance} | conflict | unknown_plan`
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Ok(Change),
    Replayed(Change),
    Conflict,
    UnknownPlan,
}

#[derive(Debug, Deserialize)]
struct Change {
    change: String,
    #[serde(deserialize_with = "num")]
    effective: i64,
    #[serde(deserialize_with = "num")]
    added: u64,
    #[serde(deserialize_with = "num")]
    charge: u64,
    balance: BalanceReply,
}

impl RedisStore {
    pub(super) async fn fcall_set_plan(
        &self,
        cmd: &SetPlanCmd,
        now_ms: i64,
    ) -> StoreResult<PlanSet> {
        // Whether the catalog has the plan is the script's check, after a replay is answered.
        let catalog = self.catalog.current();
        let keys = AccountKeys::new(&cmd.account_id, self.shards);
        let own = keys.plan_request(&cmd.account_id, &cmd.request_id);
        let requested = cmd
            .cycle_anchor_ms
            .map(|ms| ms.to_string())
            .unwrap_or_default();
        let anchor = prepare::anchor(cmd.cycle_anchor_ms, now_ms);
        let reply = self
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
        let plan_set = |c: Change, replayed| {
            Ok(PlanSet {
                change: PlanChange::parse(&c.change).ok_or_else(|| anomaly(&c.change))?,
                effective_at_ms: c.effective,
                allowance_added: c.added,
                prorated_charge_cents: c.charge,
                replayed,
                balance: c.balance.into_balance(&cmd.account_id),
            })
        };
        match reply {
            Reply::Ok(c) => plan_set(c, false),
            Reply::Replayed(c) => plan_set(c, true),
            Reply::Conflict => Err(LedgerError::RequestConflict {
                request_id: cmd.request_id.clone(),
            }
            .into()),
            Reply::UnknownPlan => Err(unknown_plan(&catalog, &cmd.plan).into()),
        }
    }
}
