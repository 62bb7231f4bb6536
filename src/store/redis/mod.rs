//! Redis store: every operation is one `FCALL` of one function of the Functions library (see
//! [`library`]: `lua/lib.lua` and `lua/<operation>.lua`), touching only keys of the account's
//! `{s<shard>}` hash tag.
//!
//! The library is loaded when the store is created and again, one extra round trip, when Redis
//! answers that the function is missing (a restarted or failed-over Redis without it, `FUNCTION
//! FLUSH`, a new Cluster node). Every call is bounded by a deadline: Redis down or slow
//! gives [`StoreError::Unavailable`] within it, and the connection reconnects in the
//! background, so the store recovers by itself. On a Redis Cluster each call is for one slot
//! (see `redis_conn.rs`).

use std::sync::Arc;
use std::time::Duration;

use ::redis::Script;
use async_trait::async_trait;

pub mod library;

use library::{is_function_missing, Call, Function, Library};

use super::durability::Durability;
use super::keys::{AccountKeys, Shards, SHARD_COUNT_RECORD};
use super::redis_conn::RedisConn;
use super::redis_reply::{anomaly, parse_state, ScriptReply};
use super::sweeper::{due_accounts, SWEEP_ENTRIES_PER_ACCOUNT};
use super::unavailable::{no_answer_within, store_error};
use super::*;
use crate::ledger::account::{
    batch_conflict, conflict, unit_cost, unknown_model, unknown_plan, wrong_state,
};
use crate::ledger::cycle::{month_window, Anchor};
use crate::ledger::{
    Catalog, Kind, SharedCatalog, MAX_HOLD_LIFETIME_SECONDS, MAX_LIVE_GRANTS, RETENTION_SECONDS,
};

const RETENTION_MS: i64 = RETENTION_SECONDS as i64 * 1000;

/// Takes or extends a fleet task's lease (see `lease.lua`).
static LEASE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("../lease.lua")));

/// Why [`RedisStore::check_shards`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardCheckError {
    /// The deployment recorded another shard count: this sidecar must not serve it.
    #[error("{0}")]
    Mismatch(String),
    /// Redis could not tell now.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ShardCheckError> for StoreError {
    fn from(e: ShardCheckError) -> StoreError {
        match e {
            ShardCheckError::Mismatch(message) => StoreError::Internal(message),
            ShardCheckError::Store(e) => e,
        }
    }
}

/// Store on a single Redis server.
pub struct RedisStore {
    conn: RedisConn,
    /// The Functions library this store calls (this build's, unless a test names another).
    library: Library,
    /// The catalog in force; each call reads it once (see [`RedisStore::run_on`]).
    catalog: SharedCatalog,
    timeout: Duration,
    /// `WAIT` for replicas after every write script, when asked for.
    durability: Option<Durability>,
    /// The plan table the scripts read, built once per catalog version (a reload changes it).
    plan_table: std::sync::Mutex<(String, Arc<str>)>,
    /// Consumer groups this process has created on every shard's stream.
    pub(crate) known_groups: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The deployment's shard count (see [`Shards`]).
    shards: Shards,
    /// Whether `shards` was found (or made) the count recorded in Redis; until then every call
    /// checks it first, so nothing is read or written under another deployment's layout.
    shards_checked: std::sync::atomic::AtomicBool,
}

impl RedisStore {
    /// Store on `url` (`redis://host:port[/db]`, `rediss://host:port[/db]` for TLS checked
    /// against the system's trust store, or `redis+cluster://host:port,host:port,…` for a
    /// Redis Cluster). Connects lazily, so a Redis that is down at
    /// start only makes calls fail with `Unavailable` until it is up. Every call is bounded by
    /// `timeout`.
    pub async fn connect(
        url: &str,
        catalog: impl Into<SharedCatalog>,
        timeout: Duration,
    ) -> StoreResult<RedisStore> {
        RedisStore::connect_with_ca(url, catalog, timeout, None).await
    }

    /// Like [`RedisStore::connect`]; a `rediss://` server's certificate must be signed by a CA
    /// in `root_ca_pem` (PEM) instead of the system's trust store, when given.
    pub async fn connect_with_ca(
        url: &str,
        catalog: impl Into<SharedCatalog>,
        timeout: Duration,
        root_ca_pem: Option<&[u8]>,
    ) -> StoreResult<RedisStore> {
        let conn = RedisConn::open_with_ca(url, timeout, root_ca_pem)?;
        let store = RedisStore {
            conn,
            library: Library::current().clone(),
            catalog: catalog.into(),
            timeout,
            durability: None,
            plan_table: std::sync::Mutex::new((String::new(), Arc::from(""))),
            known_groups: Default::default(),
            shards: Shards::DEFAULT,
            shards_checked: std::sync::atomic::AtomicBool::new(false),
        };
        // Best effort: a Redis that is down now gets the library when a call finds it missing.
        if let Err(e) = store.load_library().await {
            tracing::warn!(error = %e, "could not load the Functions library into Redis yet");
        }
        Ok(store)
    }

    /// The same store calling `library` instead of this build's (two versions side by side).
    pub fn with_library(mut self, library: Library) -> RedisStore {
        self.library = library;
        self
    }

    /// The Functions library this store calls.
    pub fn library(&self) -> &Library {
        &self.library
    }

    /// Loads the library (`FUNCTION LOAD REPLACE`; on a Cluster, on every primary), so each
    /// call is a single `FCALL`.
    pub async fn load_library(&self) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        self.bounded(self.library.load_cmd().query_async::<String>(&mut conn))
            .await
            .map(drop)
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
            Err(_) => Err(no_answer_within(self.timeout)),
            Ok(Err(e)) => Err(store_error(&e)),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// [`RedisStore::run_on`] the catalog in force now.
    async fn run(
        &self,
        function: Function,
        keys: &AccountKeys,
        account_id: &str,
        own_key: &str,
        now_ms: i64,
        args: impl FnOnce(&mut Call),
    ) -> StoreResult<ScriptReply> {
        let catalog = self.catalog.current();
        self.run_on(&catalog, function, keys, account_id, own_key, now_ms, args)
            .await
    }

    /// Calls `function` for `account_id` with every key a call on the account may touch (see
    /// `lua/lib.lua`): `own_key` is the operation's own one (a finished hold or a plan
    /// request). The common arguments come first, then what `args` adds. The library reads
    /// plans from `catalog`: the snapshot the caller computed costs with, so a call never
    /// mixes two.
    #[allow(clippy::too_many_arguments)]
    async fn run_on(
        &self,
        catalog: &Catalog,
        function: Function,
        keys: &AccountKeys,
        account_id: &str,
        own_key: &str,
        now_ms: i64,
        args: impl FnOnce(&mut Call),
    ) -> StoreResult<ScriptReply> {
        self.shards_ready().await?;
        let window = month_window(now_ms).0;
        let mut call = Call::new();
        call.key(&keys.account)
            .key(&keys.grants)
            .key(&keys.shard_expiry)
            .key(&keys.events)
            .key(own_key)
            .arg(now_ms)
            .arg(account_id)
            .arg(&*self.plan_table_of(catalog))
            .arg(window[0])
            .arg(window[1])
            .arg(window[2])
            .arg(window[3])
            .arg(RETENTION_MS);
        args(&mut call);
        let cmd = call.cmd(&self.library, function);
        let json = match self.durability {
            Some(durability) if function.writes() => self.call_durably(&cmd, durability).await?,
            _ => self.call(&cmd).await?,
        };
        ScriptReply::parse(&json)
    }

    /// Sends one `FCALL`; when Redis answers that the function is missing, loads the library
    /// and sends it once more (one extra round trip, only then).
    async fn call(&self, cmd: &::redis::Cmd) -> StoreResult<String> {
        let mut conn = self.conn.clone();
        self.bounded(async {
            match cmd.query_async::<String>(&mut conn).await {
                Err(e) if is_function_missing(&e) => {
                    self.reloading(&e);
                    self.library
                        .load_cmd()
                        .query_async::<String>(&mut conn)
                        .await?;
                    cmd.query_async(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }

    /// Logs a reload of the library (how often this happens is worth seeing).
    fn reloading(&self, e: &::redis::RedisError) {
        tracing::info!(library = self.library.name(), error = %e, "Redis has no quota library; loading it");
    }

    /// Every write answers only once `durability.replicas` replicas have it: the `FCALL` and
    /// `WAIT` in one pipeline (one round trip). A missing function is loaded here, once.
    async fn call_durably(
        &self,
        cmd: &::redis::Cmd,
        durability: Durability,
    ) -> StoreResult<String> {
        let mut reloaded = false;
        loop {
            let mut pipe = ::redis::pipe();
            pipe.add_command(cmd.clone())
                .cmd("WAIT")
                .arg(durability.replicas)
                .arg(durability.timeout_ms);
            let mut conn = self.conn.clone();
            let may_reload = !reloaded;
            let sent = self
                .bounded(async {
                    match pipe.query_async::<(String, i64)>(&mut conn).await {
                        Err(e) if may_reload && is_function_missing(&e) => {
                            self.reloading(&e);
                            self.library
                                .load_cmd()
                                .query_async::<String>(&mut conn)
                                .await?;
                            Ok(None)
                        }
                        other => other.map(Some),
                    }
                })
                .await?;
            match sent {
                None => reloaded = true,
                Some((json, acked)) if acked >= i64::from(durability.replicas) => return Ok(json),
                Some((_, acked)) => {
                    return Err(StoreError::Unavailable(format!(
                        "written on the primary, not yet on {} replicas ({acked} acknowledged \
                         within {} ms); retry",
                        durability.replicas, durability.timeout_ms
                    )))
                }
            }
        }
    }

    /// The plan table of `catalog`, rebuilt only when its version changed.
    fn plan_table_of(&self, catalog: &Catalog) -> Arc<str> {
        let mut cached = self.plan_table.lock().unwrap_or_else(|p| p.into_inner());
        if cached.0 != catalog.version() {
            *cached = (
                catalog.version().to_string(),
                Arc::from(plan_table(catalog)),
            );
        }
        cached.1.clone()
    }

    /// Makes every write wait for `durability` (see [`Durability`]). Not for a Redis Cluster,
    /// where `WAIT` would not follow the script to its node.
    pub fn with_durability(mut self, durability: Option<Durability>) -> RedisStore {
        self.durability = durability;
        self
    }

    /// The same store on a deployment of `shards` shards (the default is [`Shards::DEFAULT`]).
    pub fn with_shards(mut self, shards: Shards) -> RedisStore {
        self.shards = shards;
        *self.shards_checked.get_mut() = false;
        self
    }

    /// The shard count recorded in Redis, if a sidecar has started on it yet.
    pub async fn recorded_shards(&self) -> StoreResult<Option<Shards>> {
        let mut conn = self.conn.clone();
        let mut get = ::redis::cmd("GET");
        get.arg(SHARD_COUNT_RECORD);
        let recorded: Option<String> = self.bounded(get.query_async(&mut conn)).await?;
        recorded
            .map(|text| {
                text.parse()
                    .map_err(|_| text.clone())
                    .and_then(Shards::new)
                    .map_err(|_| {
                        anomaly(format!(
                            "`{SHARD_COUNT_RECORD}` holds `{text}`, not a shard count"
                        ))
                    })
            })
            .transpose()
    }

    /// Records this store's shard count in Redis if none is recorded yet, and checks it against
    /// the recorded one: [`ShardCheckError::Mismatch`] naming both when they differ (the sidecar
    /// refuses to serve), a store error when Redis cannot tell now (every call checks again
    /// until it can).
    pub async fn check_shards(&self) -> Result<(), ShardCheckError> {
        let mut conn = self.conn.clone();
        let mut set = ::redis::cmd("SET");
        set.arg(SHARD_COUNT_RECORD)
            .arg(self.shards.count())
            .arg("NX");
        self.bounded(set.query_async::<Option<String>>(&mut conn))
            .await?;
        match self.recorded_shards().await? {
            Some(n) if n == self.shards => {
                self.shards_checked
                    .store(true, std::sync::atomic::Ordering::Release);
                Ok(())
            }
            Some(n) => {
                // Every call checks again, and is refused, from now on.
                self.shards_checked
                    .store(false, std::sync::atomic::Ordering::Release);
                Err(ShardCheckError::Mismatch(format!(
                "this sidecar is set to {} shards (--shards) but this Redis deployment recorded \
                 {n} when it first started (`{SHARD_COUNT_RECORD}`); start every sidecar with \
                 --shards {n}: another count would read and write every account under other keys",
                self.shards
            )))
            }
            // Deleted between the two commands (a flush): the next call records it again.
            None => Err(ShardCheckError::Store(StoreError::Unavailable(format!(
                "`{SHARD_COUNT_RECORD}` vanished while being recorded; retry"
            )))),
        }
    }

    /// Checks the shard count before the first real call (one load after that).
    pub(crate) async fn shards_ready(&self) -> StoreResult<()> {
        if self
            .shards_checked
            .load(std::sync::atomic::Ordering::Acquire)
        {
            Ok(())
        } else {
            self.check_shards().await.map_err(StoreError::from)
        }
    }

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

/// The unit cost argument of a Reserve: the catalog's, or empty for a model the catalog does
/// not have. The script answers a replay of a known generation before it looks at the cost,
/// and `unknown_model` for a new one.
fn unit_arg(catalog: &Catalog, kind: Kind, model: &str) -> String {
    catalog
        .unit_cost(kind, model)
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

/// The catalog's usage alert thresholds for the scripts: `80,100`.
fn thresholds_arg(catalog: &Catalog) -> String {
    catalog
        .alert_thresholds_percent()
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
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
        let thresholds = thresholds_arg(&catalog);
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
        let anchor = Anchor::from_ms(cmd.cycle_anchor_ms.unwrap_or(now_ms));
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
        let unit = unit_cost(&catalog, cmd.kind, &cmd.model)?;
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
        let index = super::keys::shard_expiry(&super::keys::shard_prefix(shard));
        let mut cmd = ::redis::cmd("ZRANGEBYSCORE");
        cmd.arg(&index).arg("-inf").arg(now_ms).arg("LIMIT").arg(0);
        cmd.arg(max_accounts.saturating_mul(SWEEP_ENTRIES_PER_ACCOUNT));
        let mut conn = self.conn.clone();
        let due: Vec<String> = self.bounded(cmd.query_async(&mut conn)).await?;
        let (mut expired, mut swept_accounts) = (0, 0);
        // An account whose entries were only holds another call found expired (`moved`) is
        // not one the memory store would visit: it does not count against `max_accounts`.
        for (account, members) in due_accounts(due, usize::MAX) {
            if swept_accounts == max_accounts {
                break;
            }
            let keys = AccountKeys::new(&account, self.shards);
            // Each due entry's finished-hold key, declared: the expiry is written there.
            let finished: Vec<String> = members
                .iter()
                .map(|member| {
                    let generation = member.get(account.len() + 1..).unwrap_or_default();
                    keys.finished_hold(&account, generation)
                })
                .collect();
            let Some((first, more)) = finished.split_first() else {
                continue;
            };
            let swept = self
                .run(
                    Function::ExpireDue,
                    &keys,
                    &account,
                    first,
                    now_ms,
                    |call| {
                        for key in more {
                            call.key(key);
                        }
                        call.arg(&members);
                    },
                )
                .await
                .and_then(|r| match r.status.as_str() {
                    "ok" => Ok(Some(ScriptReply::need(r.expired, "expired")?)),
                    "moved" => Ok(None),
                    other => Err(anomaly(other)),
                });
            match swept {
                Ok(Some(n)) => {
                    expired += n;
                    swept_accounts += 1;
                }
                Ok(None) => {}
                Err(e @ StoreError::Unavailable(_)) => return Err(e),
                // One broken account must not stop the expiry of every other one.
                Err(e) => {
                    super::sweeper::skipped(&account, &e);
                    swept_accounts += 1;
                }
            }
        }
        Ok(expired)
    }

    fn shards(&self) -> Shards {
        self.shards
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

    async fn lease(&self, task: lease::FleetTask, owner: &str, ttl_ms: u64) -> StoreResult<bool> {
        // A sidecar on another shard count takes no lease: its passes would fail shard by shard.
        self.shards_ready().await?;
        let mut conn = self.conn.clone();
        let held: u64 = self
            .bounded(
                LEASE
                    .key(task.lease_key())
                    .arg(owner)
                    .arg(ttl_ms)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(held == 1)
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
