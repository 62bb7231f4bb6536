//! Redis store: every operation is one `FCALL` of one function of the Functions library (see
//! [`library`]: `lua/lib.lua` and `lua/<operation>.lua`), touching only keys of the account's
//! `{s<shard>}` hash tag.
//!
//! The library is loaded when the store is created and again, one extra round trip, when Redis
//! answers that the function is missing (a restarted or failed-over Redis without it, `FUNCTION
//! FLUSH`, a new Cluster node). Every call is bounded by a deadline: Redis down or slow
//! gives [`StoreError::Unavailable`] within it, and the connection reconnects in the
//! background, so the store recovers by itself. On a Redis Cluster each call is for one slot
//! (see `conn.rs`).
//!
//! Here: the store and its call path (one `FCALL`, with `WAIT` under `--durability`). Beside it:
//! `ops/` (per operation, its arguments and its typed reply), `reply.rs` (the parts replies
//! share, and the parse), `plan_table.rs` (the plan table, kept per catalog version; what a
//! call is handed is computed by `ledger::prepare`), `shards.rs` (the shard-count check),
//! `fleet.rs` (time, leases, ping), `event_log.rs` (the event log on the shards' streams),
//! `conn.rs`/`sentinel.rs` (connections), `durability.rs` (`--durability`), `library.rs` and
//! `lua/` (the Functions library), `scripts/` (the plain scripts of leases and event losses).

use std::sync::Arc;
use std::time::Duration;

pub mod conn;
pub mod durability;
pub mod event_log;
mod fleet;
pub mod library;
mod ops;
mod plan_table;
pub mod reply;
pub mod sentinel;
mod shards;

pub use shards::ShardCheckError;

use library::{is_function_missing, Call, Function, Library};

use super::keys::{AccountKeys, Shards};
use super::unavailable::{no_answer_within, store_error};
use super::*;
use crate::ledger::{prepare, Catalog, SharedCatalog, RETENTION_SECONDS};
use conn::RedisConn;
use durability::Durability;
use serde::de::DeserializeOwned;

const RETENTION_MS: i64 = RETENTION_SECONDS as i64 * 1000;

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
    known_groups: std::sync::Mutex<std::collections::HashSet<String>>,
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
    async fn bounded<T>(
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
    async fn run<R: DeserializeOwned>(
        &self,
        function: Function,
        keys: &AccountKeys,
        account_id: &str,
        own_key: &str,
        now_ms: i64,
        args: impl FnOnce(&mut Call),
    ) -> StoreResult<R> {
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
    async fn run_on<R: DeserializeOwned>(
        &self,
        catalog: &Catalog,
        function: Function,
        keys: &AccountKeys,
        account_id: &str,
        own_key: &str,
        now_ms: i64,
        args: impl FnOnce(&mut Call),
    ) -> StoreResult<R> {
        self.shards_ready().await?;
        let window = prepare::month_window(now_ms).0;
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
        reply::parse(&json)
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

    /// Makes every write wait for `durability` (see [`Durability`]). Not for a Redis Cluster,
    /// where `WAIT` would not follow the script to its node.
    pub fn with_durability(mut self, durability: Option<Durability>) -> RedisStore {
        self.durability = durability;
        self
    }
}
