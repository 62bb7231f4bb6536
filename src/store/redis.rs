//! Redis store: every operation is one `EVALSHA` of one Lua script (`lua/<op>.lua` behind the
//! shared prelude `lua/lib.lua`), touching only keys of the account's `{s<shard>}` hash tag.
//!
//! Scripts are loaded once when the store is created and reloaded by redis-rs on `NOSCRIPT`
//! (a restarted or failed-over Redis). Every call is bounded by a deadline: Redis down or slow
//! gives [`StoreError::Unavailable`] within it, and the connection reconnects in the
//! background, so the store recovers by itself. On a Redis Cluster each call is for one slot
//! (see `redis_conn.rs`).

use std::sync::Arc;
use std::time::Duration;

use ::redis::{Script, ScriptInvocation, Value};
use async_trait::async_trait;

use super::keys::AccountKeys;
use super::redis_conn::RedisConn;
use super::unavailable::store_error;
use super::*;
use crate::ledger::account::{conflict, wrong_state};
use crate::ledger::cycle::{month_window, Anchor};
use crate::ledger::{
    Catalog, CreditSource, GrantDraw, Kind, MAX_HOLD_LIFETIME_SECONDS, MAX_LIVE_GRANTS,
    RETENTION_SECONDS,
};

const RETENTION_MS: i64 = RETENTION_SECONDS as i64 * 1000;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/lib.lua"),
            include_str!(concat!("lua/", $file))
        ))
    };
}

/// The compiled-in scripts, one per operation.
struct Scripts {
    reserve: Script,
    settle: Script,
    release: Script,
    extend: Script,
    balance: Script,
    account: Script,
    set_plan: Script,
    grant: Script,
    revoke: Script,
    sweep: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            reserve: script!("reserve.lua"),
            settle: script!("settle.lua"),
            release: script!("release.lua"),
            extend: script!("extend.lua"),
            balance: script!("balance.lua"),
            account: script!("account.lua"),
            set_plan: script!("set_plan.lua"),
            grant: script!("grant.lua"),
            revoke: script!("revoke.lua"),
            sweep: script!("sweep.lua"),
        }
    }

    fn all(&self) -> [&Script; RedisStore::SCRIPT_COUNT] {
        [
            &self.reserve,
            &self.settle,
            &self.release,
            &self.extend,
            &self.balance,
            &self.account,
            &self.set_plan,
            &self.grant,
            &self.revoke,
            &self.sweep,
        ]
    }
}

/// Store on a single Redis server.
pub struct RedisStore {
    conn: RedisConn,
    scripts: Scripts,
    catalog: Arc<Catalog>,
    /// The catalog's plans as the scripts read them (see `lua/lib.lua`), built once.
    plan_table: String,
    timeout: Duration,
    /// Consumer groups this process has created on every shard's stream.
    pub(crate) known_groups: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl RedisStore {
    /// How many scripts the store loads into Redis (one per operation).
    pub const SCRIPT_COUNT: usize = 10;

    /// Store on `url` (`redis://host:port[/db]`, `rediss://host:port[/db]` for TLS checked
    /// against the system's trust store, or `redis+cluster://host:port,host:port,…` for a
    /// Redis Cluster). Connects lazily, so a Redis that is down at
    /// start only makes calls fail with `Unavailable` until it is up. Every call is bounded by
    /// `timeout`.
    pub async fn connect(
        url: &str,
        catalog: Arc<Catalog>,
        timeout: Duration,
    ) -> StoreResult<RedisStore> {
        RedisStore::connect_with_ca(url, catalog, timeout, None).await
    }

    /// Like [`RedisStore::connect`]; a `rediss://` server's certificate must be signed by a CA
    /// in `root_ca_pem` (PEM) instead of the system's trust store, when given.
    pub async fn connect_with_ca(
        url: &str,
        catalog: Arc<Catalog>,
        timeout: Duration,
        root_ca_pem: Option<&[u8]>,
    ) -> StoreResult<RedisStore> {
        let conn = RedisConn::open_with_ca(url, timeout, root_ca_pem)?;
        let store = RedisStore {
            conn,
            scripts: Scripts::new(),
            plan_table: plan_table(&catalog),
            catalog,
            timeout,
            known_groups: Default::default(),
        };
        // Best effort: a Redis that is down now gets the scripts on the first NOSCRIPT.
        if let Err(e) = store.load_scripts().await {
            tracing::warn!(error = %e, "could not load scripts into Redis yet");
        }
        Ok(store)
    }

    /// Loads every script (`SCRIPT LOAD`), so calls are a single `EVALSHA`.
    pub async fn load_scripts(&self) -> StoreResult<()> {
        for script in self.scripts.all() {
            let mut conn = self.conn.clone();
            self.bounded(script.load_async(&mut conn)).await?;
        }
        Ok(())
    }

    /// The shared connection (cheap to clone), for the event readers.
    pub(crate) fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// Runs `call` within the store's deadline, mapping failures to store errors.
    pub(crate) async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = ::redis::RedisResult<T>>,
    ) -> StoreResult<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(StoreError::Unavailable(format!(
                "Redis did not answer within {} ms",
                self.timeout.as_millis()
            ))),
            Ok(Err(e)) => Err(store_error(&e)),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Runs `script` for `account_id`, whose `keys` the caller built once, with the common
    /// arguments (see `lua/lib.lua`) followed by what `args` adds.
    async fn run(
        &self,
        script: &Script,
        keys: &AccountKeys,
        account_id: &str,
        own_key: &str,
        now_ms: i64,
        args: impl FnOnce(&mut ScriptInvocation<'_>),
    ) -> StoreResult<Reply> {
        let window = month_window(now_ms).0;
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&keys.account)
            .key(&keys.grants)
            .key(&keys.open_holds)
            .key(&keys.shard_expiry)
            .key(own_key)
            .arg(now_ms)
            .arg(account_id)
            .arg(&self.plan_table)
            .arg(window[0])
            .arg(window[1])
            .arg(window[2])
            .arg(window[3])
            .arg(RETENTION_MS)
            .arg(&keys.prefix);
        args(&mut invocation);
        let mut conn = self.conn.clone();
        let value: Value = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Reply::new(value)
    }

    fn not_found(account_id: &str, generation_id: &str) -> StoreError {
        StoreError::HoldNotFound {
            account_id: account_id.to_string(),
            generation_id: generation_id.to_string(),
        }
    }
}

/// The catalog's plans for the scripts: `id,price,allowance,max_holds,max_seconds,models;`.
fn plan_table(catalog: &Catalog) -> String {
    catalog
        .plans()
        .iter()
        .map(|p| {
            format!(
                "{},{},{},{},{},{};",
                p.id,
                p.price_cents,
                p.allowance_units,
                p.max_concurrent_holds,
                p.max_video_seconds,
                p.models.join(" ")
            )
        })
        .collect()
}

fn anomaly(what: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("unexpected script reply: {what}"))
}

/// A script's reply: an array read front to back.
struct Reply(std::vec::IntoIter<Value>);

impl Reply {
    fn new(value: Value) -> StoreResult<Reply> {
        match value {
            Value::Array(items) => Ok(Reply(items.into_iter())),
            other => Err(anomaly(format!("{other:?}"))),
        }
    }

    fn next(&mut self) -> StoreResult<Value> {
        self.0.next().ok_or_else(|| anomaly("reply too short"))
    }

    fn string(&mut self) -> StoreResult<String> {
        match self.next()? {
            Value::BulkString(bytes) => String::from_utf8(bytes).map_err(anomaly),
            Value::SimpleString(s) => Ok(s),
            Value::Int(n) => Ok(n.to_string()),
            other => Err(anomaly(format!("{other:?} where a string was expected"))),
        }
    }

    fn i64(&mut self) -> StoreResult<i64> {
        match self.next()? {
            Value::Int(n) => Ok(n),
            Value::BulkString(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anomaly("number expected")),
            other => Err(anomaly(format!("{other:?} where a number was expected"))),
        }
    }

    fn u64(&mut self) -> StoreResult<u64> {
        u64::try_from(self.i64()?).map_err(anomaly)
    }

    fn u32(&mut self) -> StoreResult<u32> {
        u32::try_from(self.i64()?).map_err(anomaly)
    }

    /// A number, or `None` for the empty string.
    fn opt_i64(&mut self) -> StoreResult<Option<i64>> {
        let s = self.string()?;
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(anomaly)
    }

    fn nested(&mut self) -> StoreResult<Reply> {
        Reply::new(self.next()?)
    }

    fn status(&mut self) -> StoreResult<String> {
        self.string()
    }

    fn balance(&mut self, account_id: &str) -> StoreResult<Balance> {
        let mut r = self.nested()?;
        let plan = r.string()?;
        let scheduled = r.string()?;
        Ok(Balance {
            account_id: account_id.to_string(),
            plan,
            scheduled_plan: (!scheduled.is_empty()).then_some(scheduled),
            cycle_start_ms: r.opt_i64()?,
            cycle_end_ms: r.opt_i64()?,
            allowance_total: r.u64()?,
            allowance_used: r.u64()?,
            allowance_held: r.u64()?,
            allowance_available: r.u64()?,
            credits_available: r.u64()?,
            credits_held: r.u64()?,
            open_holds: r.u32()?,
        })
    }

    fn hold(&mut self, account_id: &str) -> StoreResult<Hold> {
        let mut r = self.nested()?;
        let generation_id = r.string()?;
        let kind = r.string()?;
        Ok(Hold {
            account_id: account_id.to_string(),
            generation_id,
            kind: Kind::parse(&kind).ok_or_else(|| anomaly(format!("kind `{kind}`")))?,
            model: r.string()?,
            quantity: r.u32()?,
            cost_units: r.u64()?,
            from_allowance: r.u64()?,
            from_credits: r.u64()?,
            grants: parse_draws(&r.string()?)?,
            state: {
                let s = r.string()?;
                HoldState::parse(&s).ok_or_else(|| anomaly(format!("state `{s}`")))?
            },
            expires_at_ms: r.i64()?,
            created_at_ms: r.i64()?,
            charged_units: r.u64()?,
        })
    }

    fn grant(&mut self) -> StoreResult<Grant> {
        let mut r = self.nested()?;
        let grant_id = r.string()?;
        let source = r.string()?;
        Ok(Grant {
            grant_id,
            source: CreditSource::parse(&source)
                .ok_or_else(|| anomaly(format!("source `{source}`")))?,
            units_granted: r.u64()?,
            units_remaining: r.u64()?,
            units_held: r.u64()?,
            expires_at_ms: r.opt_i64()?,
            created_at_ms: r.i64()?,
        })
    }

    fn list<T>(
        &mut self,
        mut item: impl FnMut(&mut Reply) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let mut r = self.nested()?;
        let mut out = Vec::new();
        while r.0.len() > 0 {
            // Each element is itself an array: wrap it so `item` can read it as nested.
            let one = r.next()?;
            out.push(item(&mut Reply(vec![one].into_iter()))?);
        }
        Ok(out)
    }
}

/// `"g1=5,g2=3"` → draws.
fn parse_draws(text: &str) -> StoreResult<Vec<GrantDraw>> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|pair| {
            let (grant_id, units) = pair.split_once('=').ok_or_else(|| anomaly(pair))?;
            Ok(GrantDraw {
                grant_id: grant_id.to_string(),
                units: units.parse().map_err(anomaly)?,
            })
        })
        .collect()
}

#[async_trait]
impl Store for RedisStore {
    async fn reserve(&self, cmd: &ReserveCmd, now_ms: i64) -> StoreResult<Reserved> {
        let unit_cost = self
            .catalog
            .unit_cost(cmd.kind, &cmd.model)
            .ok_or_else(|| StoreError::InvalidArgument {
                field: "model",
                message: format!("unknown model `{}`", cmd.model),
            })?;
        let labels = serde_json::to_string(&cmd.labels).map_err(anomaly)?;
        let keys = AccountKeys::new(&cmd.account_id);
        let hold_key = keys.hold(&cmd.account_id, &cmd.generation_id);
        let mut r = self
            .run(
                &self.scripts.reserve,
                &keys,
                &cmd.account_id,
                &hold_key,
                now_ms,
                |inv| {
                    inv.arg(&cmd.generation_id)
                        .arg(cmd.kind.as_str())
                        .arg(&cmd.model)
                        .arg(cmd.quantity)
                        .arg(unit_cost)
                        .arg(i64::from(cmd.ttl_seconds) * 1000)
                        .arg(&labels);
                },
            )
            .await?;
        match r.status()?.as_str() {
            status @ ("ok" | "replayed") => Ok(Reserved {
                hold: r.hold(&cmd.account_id)?,
                replayed: status == "replayed",
                balance: r.balance(&cmd.account_id)?,
            }),
            "conflict" => {
                let kind = r.string()?;
                let kind = Kind::parse(&kind).ok_or_else(|| anomaly(kind))?;
                let model = r.string()?;
                Err(conflict(&cmd.generation_id, kind, &model, r.u32()?, cmd))
            }
            "denied" => {
                let plan = r.string()?;
                let open_holds = r.u32()?;
                // The script decided; the catalog rebuilds the same denial with its message.
                match self.catalog.check_features(
                    &plan,
                    cmd.kind,
                    &cmd.model,
                    cmd.quantity,
                    open_holds,
                ) {
                    Err(denial) => Err(StoreError::Denied(denial)),
                    Ok(()) => Err(anomaly("script denied what the catalog allows")),
                }
            }
            "insufficient" => Err(StoreError::InsufficientFunds {
                needed: r.u64()?,
                available: r.u64()?,
            }),
            other => Err(anomaly(other)),
        }
    }

    async fn settle(
        &self,
        account_id: &str,
        generation_id: &str,
        actual_quantity: Option<u32>,
        now_ms: i64,
    ) -> StoreResult<Settled> {
        let keys = AccountKeys::new(account_id);
        let hold_key = keys.hold(account_id, generation_id);
        let actual = actual_quantity.map(|q| q.to_string()).unwrap_or_default();
        let mut r = self
            .run(
                &self.scripts.settle,
                &keys,
                account_id,
                &hold_key,
                now_ms,
                |inv| {
                    inv.arg(generation_id).arg(&actual);
                },
            )
            .await?;
        match r.status()?.as_str() {
            status @ ("ok" | "replayed") => Ok(Settled {
                hold: r.hold(account_id)?,
                charged_units: r.u64()?,
                returned_units: r.u64()?,
                replayed: status == "replayed",
                balance: r.balance(account_id)?,
            }),
            "not_found" => Err(Self::not_found(account_id, generation_id)),
            "state" => Err(wrong_state(
                generation_id,
                parse_state(&r.string()?)?,
                "settle",
            )),
            "above" => Err(StoreError::SettleAboveHold {
                generation_id: generation_id.to_string(),
                actual_quantity: actual_quantity.unwrap_or_default(),
                reserved_quantity: r.u32()?,
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
        let keys = AccountKeys::new(account_id);
        let hold_key = keys.hold(account_id, generation_id);
        let mut r = self
            .run(
                &self.scripts.release,
                &keys,
                account_id,
                &hold_key,
                now_ms,
                |inv| {
                    inv.arg(generation_id).arg(reason.as_str());
                },
            )
            .await?;
        match r.status()?.as_str() {
            status @ ("ok" | "replayed") => Ok(Released {
                hold: r.hold(account_id)?,
                returned_units: r.u64()?,
                replayed: status == "replayed",
                balance: r.balance(account_id)?,
            }),
            "not_found" => Err(Self::not_found(account_id, generation_id)),
            "state" => Err(wrong_state(
                generation_id,
                parse_state(&r.string()?)?,
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
        let keys = AccountKeys::new(account_id);
        let hold_key = keys.hold(account_id, generation_id);
        let mut r = self
            .run(
                &self.scripts.extend,
                &keys,
                account_id,
                &hold_key,
                now_ms,
                |inv| {
                    inv.arg(generation_id)
                        .arg(i64::from(ttl_seconds) * 1000)
                        .arg(i64::from(MAX_HOLD_LIFETIME_SECONDS) * 1000);
                },
            )
            .await?;
        match r.status()?.as_str() {
            "ok" => r.hold(account_id),
            "not_found" => Err(Self::not_found(account_id, generation_id)),
            "state" => Err(wrong_state(
                generation_id,
                parse_state(&r.string()?)?,
                "extend",
            )),
            other => Err(anomaly(other)),
        }
    }

    async fn balance(&self, account_id: &str, now_ms: i64) -> StoreResult<Balance> {
        let keys = AccountKeys::new(account_id);
        let mut r = self
            .run(
                &self.scripts.balance,
                &keys,
                account_id,
                &keys.account,
                now_ms,
                |_| {},
            )
            .await?;
        match r.status()?.as_str() {
            "ok" => r.balance(account_id),
            other => Err(anomaly(other)),
        }
    }

    async fn account(&self, account_id: &str, now_ms: i64) -> StoreResult<AccountView> {
        let keys = AccountKeys::new(account_id);
        let mut r = self
            .run(
                &self.scripts.account,
                &keys,
                account_id,
                &keys.account,
                now_ms,
                |_| {},
            )
            .await?;
        match r.status()?.as_str() {
            "ok" => Ok(AccountView {
                balance: r.balance(account_id)?,
                grants: r.list(|g| g.grant())?,
                holds: r.list(|h| h.hold(account_id))?,
                lifetime_charged: ChargedTotals {
                    allowance_units: r.u64()?,
                    credit_units: r.u64()?,
                },
            }),
            other => Err(anomaly(other)),
        }
    }

    async fn set_plan(&self, cmd: &SetPlanCmd, now_ms: i64) -> StoreResult<PlanSet> {
        if self.catalog.plan(&cmd.plan).is_none() {
            return Err(StoreError::InvalidArgument {
                field: "plan",
                message: format!("unknown plan `{}`", cmd.plan),
            });
        }
        let keys = AccountKeys::new(&cmd.account_id);
        let request_key = format!("{}r:{}/{}", keys.prefix, cmd.account_id, cmd.request_id);
        let requested = cmd
            .cycle_anchor_ms
            .map(|ms| ms.to_string())
            .unwrap_or_default();
        let anchor = Anchor::from_ms(cmd.cycle_anchor_ms.unwrap_or(now_ms));
        let mut r = self
            .run(
                &self.scripts.set_plan,
                &keys,
                &cmd.account_id,
                &request_key,
                now_ms,
                |inv| {
                    inv.arg(&cmd.request_id)
                        .arg(&cmd.plan)
                        .arg(&requested)
                        .arg(anchor.day)
                        .arg(anchor.time_of_day_ms);
                },
            )
            .await?;
        match r.status()?.as_str() {
            status @ ("ok" | "replayed") => {
                let change = r.string()?;
                Ok(PlanSet {
                    change: PlanChange::parse(&change).ok_or_else(|| anomaly(change))?,
                    effective_at_ms: r.i64()?,
                    allowance_added: r.u64()?,
                    prorated_charge_cents: r.u64()?,
                    replayed: status == "replayed",
                    balance: r.balance(&cmd.account_id)?,
                })
            }
            "conflict" => Err(StoreError::RequestConflict {
                request_id: cmd.request_id.clone(),
            }),
            other => Err(anomaly(other)),
        }
    }

    async fn grant_credits(&self, cmd: &GrantCmd, now_ms: i64) -> StoreResult<Granted> {
        let keys = AccountKeys::new(&cmd.account_id);
        let tombstone = format!("{}t:{}/{}", keys.prefix, cmd.account_id, cmd.grant_id);
        let expires = cmd
            .expires_at_ms
            .map(|ms| ms.to_string())
            .unwrap_or_default();
        let mut r = self
            .run(
                &self.scripts.grant,
                &keys,
                &cmd.account_id,
                &tombstone,
                now_ms,
                |inv| {
                    inv.arg(&cmd.grant_id)
                        .arg(cmd.units)
                        .arg(cmd.source.as_str())
                        .arg(&expires)
                        .arg(MAX_LIVE_GRANTS);
                },
            )
            .await?;
        match r.status()?.as_str() {
            status @ ("ok" | "replayed") => Ok(Granted {
                grant: r.grant()?,
                replayed: status == "replayed",
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
        let keys = AccountKeys::new(account_id);
        let tombstone = format!("{}t:{}/{}", keys.prefix, account_id, grant_id);
        let mut r = self
            .run(
                &self.scripts.revoke,
                &keys,
                account_id,
                &tombstone,
                now_ms,
                |inv| {
                    inv.arg(grant_id);
                },
            )
            .await?;
        match r.status()?.as_str() {
            "ok" => Ok(Revoked {
                revoked_units: r.u64()?,
                balance: r.balance(account_id)?,
            }),
            "not_found" => Err(StoreError::GrantNotFound {
                account_id: account_id.to_string(),
                grant_id: grant_id.to_string(),
            }),
            other => Err(anomaly(other)),
        }
    }

    async fn expire_due(&self, shard: u32, now_ms: i64, max_accounts: usize) -> StoreResult<u32> {
        let index = format!("{}expiry", super::keys::shard_prefix(shard));
        let mut cmd = ::redis::cmd("ZRANGEBYSCORE");
        cmd.arg(&index).arg("-inf").arg(now_ms).arg("LIMIT").arg(0);
        // Several due holds may share an account: read a few more entries than accounts.
        cmd.arg(max_accounts.saturating_mul(4));
        let mut conn = self.conn.clone();
        let due: Vec<String> = self.bounded(cmd.query_async(&mut conn)).await?;
        let mut by_account: Vec<(String, Vec<String>)> = Vec::new();
        for member in due {
            let Some((account, _)) = member.split_once('/') else {
                continue;
            };
            let known = by_account.iter().position(|(a, _)| a == account);
            match known {
                Some(i) => by_account[i].1.push(member),
                None if by_account.len() < max_accounts => {
                    by_account.push((account.to_string(), vec![member]))
                }
                None => {}
            }
        }
        let mut expired = 0;
        for (account, members) in by_account {
            let keys = AccountKeys::new(&account);
            let swept = self
                .run(
                    &self.scripts.sweep,
                    &keys,
                    &account,
                    &keys.account,
                    now_ms,
                    |inv| {
                        inv.arg(&members);
                    },
                )
                .await
                .and_then(|mut r| match r.status()?.as_str() {
                    "ok" => r.u32(),
                    other => Err(anomaly(other)),
                });
            match swept {
                Ok(n) => expired += n,
                Err(e @ StoreError::Unavailable(_)) => return Err(e),
                // One broken account must not stop the expiry of every other one.
                Err(e) => super::sweeper::skipped(&account, &e),
            }
        }
        Ok(expired)
    }

    async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let pong: String = self
            .bounded(::redis::cmd("PING").query_async(&mut conn))
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(anomaly(pong))
        }
    }

    async fn time_ms(&self) -> StoreResult<i64> {
        let mut conn = self.conn.clone();
        let reply: Vec<String> = self
            .bounded(::redis::cmd("TIME").query_async(&mut conn))
            .await?;
        time_reply_ms(&reply)
    }
}

/// `TIME`'s reply, seconds and microseconds, in milliseconds.
fn time_reply_ms(reply: &[String]) -> StoreResult<i64> {
    match reply {
        [secs, micros] => {
            let secs: i64 = secs.parse().map_err(anomaly)?;
            let micros: i64 = micros.parse().map_err(anomaly)?;
            Ok(secs * 1000 + micros / 1000)
        }
        other => Err(anomaly(format!("TIME answered {other:?}"))),
    }
}

fn parse_state(s: &str) -> StoreResult<HoldState> {
    HoldState::parse(s).ok_or_else(|| anomaly(format!("state `{s}`")))
}
