//! `quota-bench`: load generator for a running quota-sidecar. Drives Reserve→Settle (or
//! Reserve→Release) cycles over many accounts at a fixed concurrency and reports throughput and
//! per-RPC latency. With `--baseline-redis` it also runs the same store operations directly
//! against Redis (one `FCALL` each) to show what the sidecar costs on top of Redis. With
//! `--memory-history` it loads no sidecar: it times GetBalance and Reserve on the in-process
//! memory store for an account with a long past against a fresh account.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

use quota_sidecar::client;
use quota_sidecar::ledger::{Catalog, CreditSource, Kind, MAX_GRANT_UNITS};
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};
use quota_sidecar::store::keys::Shards;
use quota_sidecar::store::memory::MemoryStore;
use quota_sidecar::store::redis::RedisStore;
use quota_sidecar::store::{Fleet, GrantCmd, ReleaseReason, ReserveCmd, SetPlanCmd, Store};

/// Plan every bench account is put on: it allows the most concurrent holds per account.
const PLAN: &str = "hollywood";
/// Open holds the plan allows per account; workers sharing an account must stay under it.
const MAX_HOLDS_PER_ACCOUNT: usize = 8;
/// Credits per account, so that no call of a long run fails for lack of funds.
const GRANT_UNITS: u64 = MAX_GRANT_UNITS / 10;
/// Longest a single RPC may take before it counts as an error.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// `--memory-history`: how much slower a call on the account with a past may be than on a
/// fresh account (the cost of a call must not grow with the account's past).
const HISTORY_SLOWDOWN_LIMIT: f64 = 1.5;
/// `--memory-history`: timed calls per operation and account.
const HISTORY_SAMPLES: u64 = 30_000;
/// `--memory-history`: timed calls in a row on one account before the other's turn, so noise
/// of the machine falls on both alike.
const HISTORY_ROUND: u64 = 500;

#[derive(Parser, Clone)]
#[command(
    name = "quota-bench",
    version,
    about = "Load a running quota-sidecar with Reserve→Settle/Release cycles"
)]
struct Cli {
    /// Worker listener of the sidecar: `host:port` or `http://host:port`.
    #[arg(long, env = "QUOTA_TARGET", default_value = "http://127.0.0.1:50051")]
    target: String,
    /// Admin listener of the sidecar (accounts are set up through it): `host:port` or
    /// `http://host:port`.
    #[arg(
        long,
        env = "QUOTA_ADMIN_TARGET",
        default_value = "http://127.0.0.1:50052"
    )]
    admin_target: String,
    /// How long each phase runs: `10s`, `500ms`, `2m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Cycles in flight at once (one task each).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    concurrency: u64,
    /// Accounts the load is spread over; each task sticks to one.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    accounts: u64,
    /// Each cycle picks one of the accounts at random instead of each task sticking to one,
    /// so a run touches keys all over a large keyspace.
    #[arg(long)]
    spread: bool,
    /// Set the accounts up straight in this Redis (`redis://host:port`) through the store's
    /// own scripts, many at a time, instead of two admin RPCs per account one after the
    /// other: what a run over 100k+ accounts needs.
    #[arg(long, value_name = "URL")]
    setup_redis: Option<String>,
    /// Set-up calls in flight at once with `--setup-redis`.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    setup_concurrency: u64,
    /// Only set the accounts up, then exit.
    #[arg(long, conflicts_with = "skip_setup")]
    setup_only: bool,
    /// The accounts exist already (an earlier run or `--setup-only`): go straight to the load.
    #[arg(long)]
    skip_setup: bool,
    /// Share of cycles that end with Release instead of Settle (0.0–1.0).
    #[arg(long, default_value_t = 0.1, value_parser = parse_ratio)]
    release_ratio: f64,
    /// HTTP/2 connections to the sidecar; the tasks share them round-robin.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    connections: u64,
    /// Also run the same store scripts straight against this Redis (`redis://host:port`)
    /// and read its command counters around the sidecar phase.
    #[arg(long, value_name = "URL")]
    baseline_redis: Option<String>,
    /// Cap on the offered load, in RPCs per second over all tasks (each cycle is two RPCs);
    /// 0 means as fast as the tasks go. Latency at a fixed rate below capacity is what callers
    /// see in production; an uncapped run measures capacity.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    json: bool,
    /// With `--baseline-redis`: what each operation costs inside Redis, measured from its
    /// command counters (`INFO commandstats`: µs per `FCALL`, commands each runs), one
    /// operation at a time and with `--concurrency` in flight; then exit.
    #[arg(long, requires = "baseline_redis")]
    inside_redis: bool,
    /// The deployment's shard count, as the sidecars run with it (`--setup-redis` and
    /// `--redis` use it; a Redis that recorded another count is refused).
    #[arg(
        long,
        env = "QUOTA_SHARDS",
        default_value_t = Shards::DEFAULT.count(),
        value_parser = clap::value_parser!(u32).range(1..=i64::from(Shards::MAX))
    )]
    shards: u32,
    /// Load no sidecar: give an account of the in-process memory store this many finished
    /// holds (a third settled, a third released, a third expired by the sweeper), then time
    /// GetBalance and Reserve (each followed by an untimed Release) on it and on fresh
    /// accounts (a new one every 500 calls). Fails unless both stay within 1.5× of the fresh
    /// accounts (medians).
    #[arg(long, value_name = "HOLDS")]
    memory_history: Option<u64>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{s}`: expected a number followed by ms, s, m or h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("`{s}`: must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}`: expected a number from 0.0 to 1.0")),
    }
}

/// Which RPC a latency sample belongs to.
#[derive(Clone, Copy)]
enum Op {
    Reserve = 0,
    Settle = 1,
    Release = 2,
}

/// What one worker task saw.
struct Tally {
    /// Per [`Op`], in microseconds.
    latency: [Histogram<u64>; 3],
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        let h = || Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        Tally {
            latency: [h(), h(), h()],
            errors: 0,
            first_error: None,
        }
    }

    fn record(&mut self, op: Op, started: Instant) {
        let us = (started.elapsed().as_micros() as u64).max(1);
        self.latency[op as usize].saturating_record(us);
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }

    fn merge(&mut self, other: Tally) {
        for (mine, theirs) in self.latency.iter_mut().zip(other.latency.iter()) {
            mine.add(theirs).expect("same bounds");
        }
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn all(&self) -> Histogram<u64> {
        let mut all = self.latency[0].clone();
        all.add(&self.latency[1]).expect("same bounds");
        all.add(&self.latency[2]).expect("same bounds");
        all
    }
}

/// Result of one phase.
struct Phase {
    tally: Tally,
    elapsed: Duration,
}

impl Phase {
    /// Completed RPCs (errors included) per second.
    fn rps(&self) -> f64 {
        (self.tally.all().len() + self.tally.errors) as f64 / self.elapsed.as_secs_f64()
    }
}

/// Counters the progress line reads.
#[derive(Default)]
struct Live {
    calls: AtomicU64,
    errors: AtomicU64,
}

/// Deterministic per-task choice of Settle or Release, so runs are repeatable.
struct Coin(u64);

impl Coin {
    fn release(&mut self, ratio: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < ratio
    }

    /// xorshift64*: plenty for picking an outcome or an account.
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn account_id(i: u64) -> String {
    format!("bench-{i}")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A channel to `target`; `host:port` without a scheme means `http://host:port`.
async fn connect(target: &str) -> Result<Channel, String> {
    let target = client::with_scheme(target);
    Endpoint::from_shared(target.clone())
        .map_err(|e| format!("bad address `{target}`: {e}"))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(CALL_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("cannot reach {target}: {e}"))
}

fn admin_request<T>(token: &str, message: T) -> Result<Request<T>, String> {
    let mut request = Request::new(message);
    let value = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| "QUOTA_ADMIN_TOKEN has characters not allowed in a header".to_string())?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// Puts every account on [`PLAN`] with a large purchased grant. Both calls are idempotent, so
/// re-running against the same sidecar reuses the accounts.
async fn setup_via_admin(cli: &Cli) -> Result<(), String> {
    let token = std::env::var("QUOTA_ADMIN_TOKEN").unwrap_or_default();
    if token.is_empty() {
        return Err("QUOTA_ADMIN_TOKEN is not set: accounts are set up via the admin API".into());
    }
    let mut admin = QuotaAdminClient::new(connect(&cli.admin_target).await?);
    for i in 0..cli.accounts {
        let account = account_id(i);
        admin
            .set_plan(admin_request(
                &token,
                pb::SetPlanRequest {
                    request_id: format!("{account}-plan"),
                    account_id: account.clone(),
                    plan: PLAN.into(),
                    cycle_anchor: None,
                },
            )?)
            .await
            .map_err(|s| format!("SetPlan {account}: {}", s.message()))?;
        admin
            .grant_credits(admin_request(
                &token,
                pb::GrantCreditsRequest {
                    account_id: account.clone(),
                    grant_id: "bench-credits".into(),
                    units: GRANT_UNITS,
                    source: pb::CreditSource::Purchased as i32,
                    expires_at: None,
                },
            )?)
            .await
            .map_err(|s| format!("GrantCredits {account}: {}", s.message()))?;
    }
    Ok(())
}

/// The Redis store on `url` with `--shards`, checked against the count the deployment
/// recorded (and recording it on a fresh Redis, as a sidecar would).
async fn connect_store(cli: &Cli, url: &str, catalog: Arc<Catalog>) -> Result<RedisStore, String> {
    let shards = Shards::new(cli.shards)?;
    let store = RedisStore::connect(url, catalog, CALL_TIMEOUT)
        .await
        .map_err(|e| format!("Redis {url}: {e}"))?
        .with_shards(shards);
    store
        .check_shards()
        .await
        .map_err(|e| format!("Redis {url}: {e}"))?;
    Ok(store)
}

/// Puts accounts `0..cli.accounts` on [`PLAN`] with their grant through [`RedisStore`] in this
/// process, `--setup-concurrency` accounts at a time: the same scripts the admin API runs.
async fn setup_via_redis(cli: &Cli, url: &str) -> Result<(), String> {
    let store = Arc::new(connect_store(cli, url, Arc::new(Catalog::builtin())).await?);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..cli.setup_concurrency {
        let (store, next, total) = (store.clone(), next.clone(), cli.accounts);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), String>(());
                }
                setup_one(store.as_ref(), &account_id(i)).await?;
                if (i + 1) % 100_000 == 0 {
                    eprintln!(
                        "[setup {:>4.0}s] {} accounts",
                        started.elapsed().as_secs_f64(),
                        i + 1
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    eprintln!(
        "[setup] {} accounts in {:.1} s",
        cli.accounts,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// [`PLAN`] and a large purchased grant for `account`, through the store.
async fn setup_one(store: &dyn Store, account: &str) -> Result<(), String> {
    store
        .set_plan(
            &SetPlanCmd {
                request_id: format!("{account}-plan"),
                account_id: account.to_string(),
                plan: PLAN.into(),
                cycle_anchor_ms: None,
            },
            now_ms(),
        )
        .await
        .map_err(|e| format!("set_plan {account}: {e}"))?;
    store
        .grant_credits(
            &GrantCmd {
                account_id: account.to_string(),
                grant_id: "bench-credits".into(),
                units: GRANT_UNITS,
                source: CreditSource::Purchased,
                expires_at_ms: None,
            },
            now_ms(),
        )
        .await
        .map_err(|e| format!("grant_credits {account}: {e}"))?;
    Ok(())
}

/// Account of task `task`'s cycle `n`: its own account, or with `--spread` any account.
fn pick_account(task: u64, n: u64, accounts: u64, spread: bool) -> u64 {
    if spread {
        Coin(task.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n.wrapping_add(7)).next() % accounts
    } else {
        task % accounts
    }
}

/// Prints a progress line once a second until `stop` fires.
fn spawn_progress(
    label: &'static str,
    live: Arc<Live>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut last = 0;
        loop {
            let mut stop = stop.clone();
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let calls = live.calls.load(Ordering::Relaxed);
            eprintln!(
                "[{label} {:>4.0}s] {:>8} rpc/s  total {:>9}  errors {}",
                started.elapsed().as_secs_f64(),
                calls - last,
                calls,
                live.errors.load(Ordering::Relaxed)
            );
            last = calls;
        }
    })
}

/// Runs `cycle(task, n)` in `concurrency` tasks until `duration` has passed.
async fn drive<F, Fut>(label: &'static str, cli: &Cli, cycle: F) -> Phase
where
    F: Fn(u64, u64, Arc<Live>, Tally) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Tally> + Send,
{
    let live = Arc::new(Live::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let progress = spawn_progress(label, live.clone(), stop_rx);
    let cycle = Arc::new(cycle);
    let started = Instant::now();
    let deadline = started + cli.duration;
    // Each task paces its own cycles: `rate / 2` cycles per second shared by all tasks.
    let period =
        (cli.rate > 0.0).then(|| Duration::from_secs_f64(2.0 * cli.concurrency as f64 / cli.rate));
    let concurrency = cli.concurrency;
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let cycle = cycle.clone();
        let live = live.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let mut n = 0;
            let mut pace = period.map(|p| {
                // Spread the tasks' first ticks over one period so the load is smooth.
                let offset = p.mul_f64(task as f64 / concurrency as f64);
                let mut i = tokio::time::interval_at(tokio::time::Instant::now() + offset, p);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                i
            });
            while Instant::now() < deadline {
                if let Some(pace) = &mut pace {
                    pace.tick().await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                tally = cycle(task, n, live.clone(), tally).await;
                n += 1;
            }
            tally
        }));
    }
    let mut total = Tally::new();
    for task in tasks {
        total.merge(task.await.expect("worker task"));
    }
    let elapsed = started.elapsed();
    let _ = stop_tx.send(true);
    let _ = progress.await;
    Phase {
        tally: total,
        elapsed,
    }
}

/// A prefix unique to this run, so generation ids never collide with earlier runs.
fn run_prefix() -> String {
    format!("r{:x}", now_ms())
}

async fn sidecar_phase(cli: &Cli) -> Result<Phase, String> {
    let mut channels = Vec::new();
    for _ in 0..cli.connections {
        channels.push(connect(&cli.target).await?);
    }
    let channels = Arc::new(channels);
    let run = run_prefix();
    let (accounts, ratio, spread) = (cli.accounts, cli.release_ratio, cli.spread);
    let phase = drive("sidecar", cli, move |task, n, live, mut tally| {
        let mut client = QuotaClient::new(channels[(task as usize) % channels.len()].clone());
        let account = account_id(pick_account(task, n, accounts, spread));
        let generation = format!("{run}.b{task}-{n}");
        let release =
            Coin(task.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n.wrapping_add(1)).release(ratio);
        async move {
            let started = Instant::now();
            let reserved = client
                .reserve(pb::ReserveRequest {
                    account_id: account.clone(),
                    generation_id: generation.clone(),
                    kind: pb::GenerationKind::CharacterImage as i32,
                    model: String::new(),
                    quantity: 1,
                    ttl_seconds: 0,
                    labels: Default::default(),
                })
                .await;
            live.calls.fetch_add(1, Ordering::Relaxed);
            if let Err(status) = reserved {
                live.errors.fetch_add(1, Ordering::Relaxed);
                tally.error(format!("Reserve: {:?} {}", status.code(), status.message()));
                return tally;
            }
            tally.record(Op::Reserve, started);
            let started = Instant::now();
            let (op, outcome) = if release {
                let r = client
                    .release(pb::ReleaseRequest {
                        account_id: account,
                        generation_id: generation,
                        reason: pb::ReleaseReason::Cancelled as i32,
                    })
                    .await;
                (Op::Release, r.map(drop))
            } else {
                let r = client
                    .settle(pb::SettleRequest {
                        account_id: account,
                        generation_id: generation,
                        actual_quantity: None,
                    })
                    .await;
                (Op::Settle, r.map(drop))
            };
            live.calls.fetch_add(1, Ordering::Relaxed);
            match outcome {
                Ok(()) => tally.record(op, started),
                Err(status) => {
                    live.errors.fetch_add(1, Ordering::Relaxed);
                    tally.error(format!("{:?} {}", status.code(), status.message()));
                }
            }
            tally
        }
    })
    .await;
    Ok(phase)
}

/// The same cycles as [`sidecar_phase`], but through the Redis store in this process: each
/// operation is exactly the one `FCALL` the sidecar would send.
async fn raw_redis_phase(cli: &Cli, url: &str) -> Result<Phase, String> {
    let catalog = Arc::new(Catalog::builtin());
    let store = connect_store(cli, url, catalog).await?;
    store
        .load_library()
        .await
        .map_err(|e| format!("Redis {url}: {e}"))?;
    let store = Arc::new(store);
    // Own accounts, so the two phases do not share hold limits or counters.
    let raw_account = |i: u64| format!("bench-raw-{i}");
    for i in 0..cli.accounts {
        setup_one(store.as_ref(), &raw_account(i)).await?;
    }
    let run = run_prefix();
    let (accounts, ratio) = (cli.accounts, cli.release_ratio);
    let phase = drive("redis", cli, move |task, n, live, mut tally| {
        let store = store.clone();
        let account = raw_account(task % accounts);
        let generation = format!("{run}.b{task}-{n}");
        let release =
            Coin(task.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n.wrapping_add(1)).release(ratio);
        async move {
            let cmd = ReserveCmd {
                account_id: account.clone(),
                generation_id: generation.clone(),
                kind: Kind::CharacterImage,
                model: "standard".into(),
                quantity: 1,
                ttl_seconds: quota_sidecar::ledger::DEFAULT_HOLD_TTL_SECONDS,
                labels: BTreeMap::new(),
            };
            let started = Instant::now();
            let reserved = store.reserve(&cmd, now_ms()).await;
            live.calls.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = reserved {
                live.errors.fetch_add(1, Ordering::Relaxed);
                tally.error(format!("reserve: {e}"));
                return tally;
            }
            tally.record(Op::Reserve, started);
            let started = Instant::now();
            let (op, outcome) = if release {
                let r = store
                    .release(&account, &generation, ReleaseReason::Cancelled, now_ms())
                    .await;
                (Op::Release, r.map(drop))
            } else {
                let r = store.settle(&account, &generation, None, now_ms()).await;
                (Op::Settle, r.map(drop))
            };
            live.calls.fetch_add(1, Ordering::Relaxed);
            match outcome {
                Ok(()) => tally.record(op, started),
                Err(e) => {
                    live.errors.fetch_add(1, Ordering::Relaxed);
                    tally.error(e.to_string());
                }
            }
            tally
        }
    })
    .await;
    Ok(phase)
}

/// Redis's command counters (`INFO commandstats`): command → calls.
async fn command_calls(url: &str) -> Result<BTreeMap<String, u64>, String> {
    let client = redis::Client::open(url).map_err(|e| format!("Redis {url}: {e}"))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("Redis {url}: {e}"))?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("Redis {url}: {e}"))?;
    Ok(info
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_string(), calls.parse().ok()?))
        })
        .collect())
}

/// Script calls Redis received between two readings of its counters. Commands that scripts
/// run inside Redis are counted separately by Redis, so only the script entry points count as
/// round trips.
fn script_calls(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> u64 {
    [
        "evalsha",
        "eval",
        "evalsha_ro",
        "eval_ro",
        "fcall",
        "fcall_ro",
    ]
    .iter()
    .map(|c| after.get(*c).unwrap_or(&0) - before.get(*c).unwrap_or(&0))
    .sum()
}

/// Calls of every other command between two readings, minus the `INFO` of the reading itself.
fn other_calls(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| !name.starts_with("eval") && !name.starts_with("fcall"))
        .filter_map(|(name, &calls)| {
            let mut delta = calls - before.get(name).copied().unwrap_or(0);
            if name == "info" {
                delta = delta.saturating_sub(1);
            }
            (delta > 0).then(|| (name.clone(), delta))
        })
        .collect()
}

/// One operation's cost inside Redis, from `INFO commandstats` around a phase of its calls.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct InsideCost {
    calls: u64,
    usec_per_call: f64,
    commands_per_call: f64,
}

/// Redis's counters for `FCALL`/`FCALL_RO` (calls, µs) and every other command (calls).
async fn function_stats(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<(u64, f64, u64), String> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .map_err(|e| e.to_string())?;
    let (mut calls, mut usec, mut others) = (0, 0.0, 0);
    for line in info.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |key: &str| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        if name.starts_with("fcall") {
            calls += field("calls=") as u64;
            usec += field("usec=");
        } else if !matches!(name, "info" | "config|resetstat") {
            others += field("calls=") as u64;
        }
    }
    Ok((calls, usec, others))
}

/// Runs `op` for `items` with `concurrency` calls in flight; what it cost inside Redis.
async fn inside_phase<T, F, Fut>(
    conn: &mut redis::aio::MultiplexedConnection,
    items: Vec<T>,
    concurrency: usize,
    op: F,
) -> Result<InsideCost, String>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(conn)
        .await
        .map_err(|e| e.to_string())?;
    let op = Arc::new(op);
    let queue = Arc::new(std::sync::Mutex::new(items));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, queue) = (op.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                match next {
                    Some(item) => op(item).await?,
                    None => return Ok::<(), String>(()),
                }
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let (calls, usec, others) = function_stats(conn).await?;
    Ok(InsideCost {
        calls,
        usec_per_call: usec / calls.max(1) as f64,
        commands_per_call: others as f64 / calls.max(1) as f64,
    })
}

/// `--inside-redis`: Reserve, Settle, Reserve, Release and GetBalance in phases of their own on
/// fresh accounts (allowance pays, nothing due: the common case), each phase's cost read from
/// Redis's counters; one call at a time, then `--concurrency` at once.
async fn inside_redis(cli: &Cli, url: &str) -> Result<Value, String> {
    let store = Arc::new(connect_store(cli, url, Arc::new(Catalog::builtin())).await?);
    let client = redis::Client::open(url).map_err(|e| format!("Redis {url}: {e}"))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("Redis {url}: {e}"))?;
    let run = run_prefix();
    let mut out = serde_json::Map::new();
    for concurrency in [1, cli.concurrency as usize] {
        let accounts: Vec<String> = (0..cli.accounts)
            .map(|i| format!("inside-{run}-{concurrency}-{i}"))
            .collect();
        for a in &accounts {
            setup_one(store.as_ref(), a).await?;
        }
        // Per operation: calls, µs and commands inside, summed over its phases.
        let mut costs: BTreeMap<&str, (u64, f64, f64)> = BTreeMap::new();
        let mut add = |name, c: InsideCost| {
            let total = costs.entry(name).or_default();
            total.0 += c.calls;
            total.1 += c.usec_per_call * c.calls as f64;
            total.2 += c.commands_per_call * c.calls as f64;
        };
        // Rounds of one hold per account (the plan caps open holds), settled or released.
        for round in 0..(2_000 / cli.accounts.max(1)).max(4) {
            let holds: Vec<(String, String)> = accounts
                .iter()
                .map(|a| (a.clone(), format!("{a}-{round}")))
                .collect();
            let reserve = {
                let store = store.clone();
                move |(account, generation): (String, String)| {
                    let store = store.clone();
                    async move {
                        let cmd = ReserveCmd {
                            account_id: account,
                            generation_id: generation,
                            kind: Kind::CharacterImage,
                            model: "standard".into(),
                            quantity: 1,
                            ttl_seconds: quota_sidecar::ledger::DEFAULT_HOLD_TTL_SECONDS,
                            labels: BTreeMap::new(),
                        };
                        store
                            .reserve(&cmd, now_ms())
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string())
                    }
                }
            };
            add(
                "reserve",
                inside_phase(&mut conn, holds.clone(), concurrency, reserve).await?,
            );
            let release = round % 2 == 1;
            let end = {
                let store = store.clone();
                move |(account, generation): (String, String)| {
                    let store = store.clone();
                    async move {
                        if release {
                            store
                                .release(&account, &generation, ReleaseReason::Cancelled, now_ms())
                                .await
                                .map(drop)
                        } else {
                            store
                                .settle(&account, &generation, None, now_ms())
                                .await
                                .map(drop)
                        }
                        .map_err(|e| e.to_string())
                    }
                }
            };
            let name = if release { "release" } else { "settle" };
            add(
                name,
                inside_phase(&mut conn, holds, concurrency, end).await?,
            );
            let balance = {
                let store = store.clone();
                move |account: String| {
                    let store = store.clone();
                    async move {
                        store
                            .balance(&account, now_ms())
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string())
                    }
                }
            };
            add(
                "balance",
                inside_phase(&mut conn, accounts.clone(), concurrency, balance).await?,
            );
        }
        let mut level = serde_json::Map::new();
        println!("inside Redis, {concurrency} call(s) in flight:");
        for (name, (calls, usec, commands)) in costs {
            let n = calls.max(1) as f64;
            let cost = InsideCost {
                calls,
                usec_per_call: usec / n,
                commands_per_call: commands / n,
            };
            println!(
                "  {name:<8} {:>6} calls  {:>6.2} µs per call  {:>4.1} commands inside",
                cost.calls, cost.usec_per_call, cost.commands_per_call
            );
            level.insert(name.to_string(), json!(cost));
        }
        out.insert(format!("concurrency_{concurrency}"), Value::Object(level));
    }
    // The cost of a call must not grow with the account's past: GetBalance on an account that
    // saw 2,400 holds expire (every one expired by the sweeper), against a fresh account.
    let (old, fresh) = (format!("inside-{run}-old"), format!("inside-{run}-fresh"));
    setup_one(store.as_ref(), &old).await?;
    setup_one(store.as_ref(), &fresh).await?;
    let shard = store.shards().of(&old);
    let mut at = now_ms();
    for i in 0..EXPIRED_HOLDS_OF_THE_PAST {
        let cmd = ReserveCmd {
            account_id: old.clone(),
            generation_id: format!("{old}-{i}"),
            kind: Kind::CharacterImage,
            model: "standard".into(),
            quantity: 1,
            ttl_seconds: 1,
            labels: BTreeMap::new(),
        };
        store.reserve(&cmd, at).await.map_err(|e| e.to_string())?;
        at += 1_001;
        store
            .expire_due(shard, at, 1_000)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut growth = serde_json::Map::new();
    for account in [&fresh, &old] {
        let balance = {
            let store = store.clone();
            move |account: String| {
                let store = store.clone();
                async move {
                    store
                        .balance(&account, at)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
            }
        };
        let cost = inside_phase(&mut conn, vec![account.clone(); 2_000], 1, balance).await?;
        let label = if account == &old {
            "after_expired_holds"
        } else {
            "fresh"
        };
        println!(
            "  balance, {label:<19} {:>6.2} µs per call",
            cost.usec_per_call
        );
        growth.insert(label.to_string(), json!(cost));
    }
    out.insert("balance_growth".into(), Value::Object(growth));
    Ok(Value::Object(out))
}

/// Holds of the past for the growth check of `--inside-redis` (the figure the second version's
/// growth was reported at).
const EXPIRED_HOLDS_OF_THE_PAST: u64 = 2_400;

fn latency_json(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50_us": h.value_at_quantile(0.50),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    })
}

fn print_phase(label: &str, phase: &Phase) {
    let all = phase.tally.all();
    println!(
        "{label}: {:.0} rpc/s over {:.1} s, {} calls, {} errors",
        phase.rps(),
        phase.elapsed.as_secs_f64(),
        all.len() + phase.tally.errors,
        phase.tally.errors
    );
    for (name, h) in [
        ("all", &all),
        ("reserve", &phase.tally.latency[Op::Reserve as usize]),
        ("settle", &phase.tally.latency[Op::Settle as usize]),
        ("release", &phase.tally.latency[Op::Release as usize]),
    ] {
        if h.is_empty() {
            continue;
        }
        println!(
            "  {name:<8} n={:<8} p50 {:>6} µs  p99 {:>6} µs  p99.9 {:>6} µs  max {:>6} µs",
            h.len(),
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    }
    if let Some(e) = &phase.tally.first_error {
        println!("  first error: {e}");
    }
}

/// Medians and 99th percentiles of one operation on both accounts, in nanoseconds.
struct Timed {
    fresh: Histogram<u64>,
    past: Histogram<u64>,
}

impl Timed {
    fn new() -> Timed {
        let h = || Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("valid bounds");
        Timed {
            fresh: h(),
            past: h(),
        }
    }

    /// Median on the account with a past over median on the fresh one.
    fn slowdown(&self) -> f64 {
        self.past.value_at_quantile(0.5) as f64 / self.fresh.value_at_quantile(0.5).max(1) as f64
    }

    fn json(&self) -> Value {
        json!({
            "fresh_p50_ns": self.fresh.value_at_quantile(0.5),
            "fresh_p99_ns": self.fresh.value_at_quantile(0.99),
            "past_p50_ns": self.past.value_at_quantile(0.5),
            "past_p99_ns": self.past.value_at_quantile(0.99),
            "slowdown": self.slowdown(),
        })
    }
}

/// `--memory-history`: GetBalance and Reserve on an account with `finished_holds` finished
/// holds against a fresh account, on the in-process memory store and a clock of its own (the
/// sweeper's expiries need time to pass, far faster than the wall clock).
async fn memory_history_bench(cli: &Cli, finished_holds: u64) -> Result<bool, String> {
    let store =
        MemoryStore::new(Arc::new(Catalog::builtin())).with_shards(Shards::new(cli.shards)?);
    let past = "history-past";
    setup_one(&store, past).await?;
    let shard = store.shards().of(past);
    let fail = |what: &str, e: quota_sidecar::store::StoreError| format!("{what}: {e}");
    let image = |account: &str, generation: String, ttl_seconds: u32| ReserveCmd {
        account_id: account.to_string(),
        generation_id: generation,
        kind: Kind::CharacterImage,
        model: "standard".into(),
        quantity: 1,
        ttl_seconds,
        labels: BTreeMap::from([("job".to_string(), "history-bench".to_string())]),
    };

    let started = Instant::now();
    let mut now = now_ms();
    let mut made = 0;
    while made < finished_holds {
        // One step: up to the plan's open holds at once, a third of each ending.
        let batch = (MAX_HOLDS_PER_ACCOUNT as u64).min(finished_holds - made);
        let mut expiring = false;
        for i in 0..batch {
            let n = made + i;
            let generation = format!("past-{n}");
            match n % 3 {
                0 => {
                    store
                        .reserve(&image(past, generation.clone(), 300), now)
                        .await
                        .map_err(|e| fail("reserve", e))?;
                    store
                        .settle(past, &generation, None, now)
                        .await
                        .map_err(|e| fail("settle", e))?;
                }
                1 => {
                    store
                        .reserve(&image(past, generation.clone(), 300), now)
                        .await
                        .map_err(|e| fail("reserve", e))?;
                    store
                        .release(past, &generation, ReleaseReason::Cancelled, now)
                        .await
                        .map_err(|e| fail("release", e))?;
                }
                _ => {
                    store
                        .reserve(&image(past, generation, 1), now)
                        .await
                        .map_err(|e| fail("reserve", e))?;
                    expiring = true;
                }
            }
            now += 1;
        }
        if expiring {
            now += 1_000;
            store
                .expire_due(shard, now, MAX_HOLDS_PER_ACCOUNT)
                .await
                .map_err(|e| fail("expire_due", e))?;
        }
        made += batch;
    }
    let view = store
        .account(past, now)
        .await
        .map_err(|e| fail("account", e))?;
    if !view.holds.is_empty() {
        return Err(format!(
            "{} holds still open after the set-up",
            view.holds.len()
        ));
    }
    eprintln!(
        "[history] {finished_holds} finished holds in {:.1} s; {} records of the past kept",
        started.elapsed().as_secs_f64(),
        store.remembered_records(past)
    );

    let (mut balance, mut reserve) = (Timed::new(), Timed::new());
    let mut n = 0;
    while n < HISTORY_SAMPLES {
        // A new fresh account each round: its own few finished holds stay under one round's.
        let fresh = format!("history-fresh-{n}");
        setup_one(&store, &fresh).await?;
        for (account, on_past) in [(fresh.as_str(), false), (past, true)] {
            for i in 0..HISTORY_ROUND {
                let at = Instant::now();
                store
                    .balance(account, now)
                    .await
                    .map_err(|e| fail("balance", e))?;
                let ns = at.elapsed().as_nanos() as u64;
                let h = if on_past {
                    &mut balance.past
                } else {
                    &mut balance.fresh
                };
                h.saturating_record(ns.max(1));

                let generation = format!("timed-{}", n + i);
                let cmd = image(account, generation.clone(), 300);
                let at = Instant::now();
                store
                    .reserve(&cmd, now)
                    .await
                    .map_err(|e| fail("reserve", e))?;
                let ns = at.elapsed().as_nanos() as u64;
                let h = if on_past {
                    &mut reserve.past
                } else {
                    &mut reserve.fresh
                };
                h.saturating_record(ns.max(1));
                store
                    .release(account, &generation, ReleaseReason::Cancelled, now)
                    .await
                    .map_err(|e| fail("release", e))?;
                now += 1;
            }
        }
        n += HISTORY_ROUND;
    }

    let within = balance.slowdown() <= HISTORY_SLOWDOWN_LIMIT
        && reserve.slowdown() <= HISTORY_SLOWDOWN_LIMIT;
    for (name, t) in [("GetBalance", &balance), ("Reserve", &reserve)] {
        println!(
            "  {name:<10} fresh p50 {:>7} ns p99 {:>7} ns | {finished_holds} finished holds \
             p50 {:>7} ns p99 {:>7} ns | slowdown {:.2}×",
            t.fresh.value_at_quantile(0.5),
            t.fresh.value_at_quantile(0.99),
            t.past.value_at_quantile(0.5),
            t.past.value_at_quantile(0.99),
            t.slowdown()
        );
    }
    println!(
        "memory store, {HISTORY_SAMPLES} calls per operation and account: {}",
        if within {
            format!("within {HISTORY_SLOWDOWN_LIMIT}× of a fresh account")
        } else {
            format!("SLOWER than {HISTORY_SLOWDOWN_LIMIT}× a fresh account")
        }
    );
    if cli.json {
        let out = json!({
            "finished_holds": finished_holds,
            "samples": HISTORY_SAMPLES,
            "balance": balance.json(),
            "reserve": reserve.json(),
            "limit": HISTORY_SLOWDOWN_LIMIT,
        });
        println!("{out}");
    }
    Ok(within)
}

async fn run(cli: Cli) -> Result<bool, String> {
    if let Some(finished_holds) = cli.memory_history {
        return memory_history_bench(&cli, finished_holds).await;
    }
    let per_account = cli.concurrency.div_ceil(cli.accounts) as usize;
    // With --spread, tasks share accounts at random; more tasks than accounts would collide.
    let crowded = cli.spread && cli.concurrency > cli.accounts;
    if per_account > MAX_HOLDS_PER_ACCOUNT || crowded {
        return Err(format!(
            "{} tasks over {} accounts puts {per_account} open holds on an account; plan \
             `{PLAN}` allows {MAX_HOLDS_PER_ACCOUNT}: raise --accounts",
            cli.concurrency, cli.accounts
        ));
    }
    if !cli.skip_setup {
        match &cli.setup_redis {
            Some(url) => setup_via_redis(&cli, url).await?,
            None => setup_via_admin(&cli).await?,
        }
    }
    if cli.setup_only {
        return Ok(true);
    }
    if let (true, Some(url)) = (cli.inside_redis, &cli.baseline_redis) {
        let costs = inside_redis(&cli, url).await?;
        if cli.json {
            println!("{costs}");
        }
        return Ok(true);
    }

    let before = match &cli.baseline_redis {
        Some(url) => Some(command_calls(url).await?),
        None => None,
    };
    let sidecar = sidecar_phase(&cli).await?;
    let counters = match (&cli.baseline_redis, before) {
        (Some(url), Some(before)) => Some((before, command_calls(url).await?)),
        _ => None,
    };
    let raw = match &cli.baseline_redis {
        Some(url) => Some(raw_redis_phase(&cli, url).await?),
        None => None,
    };

    let all = sidecar.tally.all();
    let rpcs = all.len() + sidecar.tally.errors;
    let mut out = json!({
        "rps": sidecar.rps(),
        "rpcs": rpcs,
        "errors": sidecar.tally.errors,
        "duration_s": sidecar.elapsed.as_secs_f64(),
        "concurrency": cli.concurrency,
        "accounts": cli.accounts,
        "connections": cli.connections,
        "release_ratio": cli.release_ratio,
        "rate_cap": cli.rate,
        "p50_us": all.value_at_quantile(0.50),
        "p99_us": all.value_at_quantile(0.99),
        "p999_us": all.value_at_quantile(0.999),
        "reserve": latency_json(&sidecar.tally.latency[Op::Reserve as usize]),
        "settle": latency_json(&sidecar.tally.latency[Op::Settle as usize]),
        "release": latency_json(&sidecar.tally.latency[Op::Release as usize]),
    });

    print_phase("sidecar", &sidecar);
    if let Some((before, after)) = &counters {
        let scripts = script_calls(before, after);
        let per_rpc = scripts as f64 / rpcs.max(1) as f64;
        let others = other_calls(before, after);
        println!(
            "redis: {scripts} script calls for {rpcs} RPCs = {per_rpc:.2} per RPC; other \
             commands (incl. those run inside scripts): {others:?}"
        );
        out["redis_script_calls"] = json!(scripts);
        out["redis_commands_per_rpc"] = json!(per_rpc);
        out["redis_other_commands"] = json!(others);
    }
    if let Some(raw) = &raw {
        print_phase("raw redis (same scripts, in process)", raw);
        let ratio = sidecar.rps() / raw.rps();
        println!("sidecar / raw redis throughput: {ratio:.2}");
        let raw_all = raw.tally.all();
        out["raw_redis_rps"] = json!(raw.rps());
        out["raw_redis_errors"] = json!(raw.tally.errors);
        out["raw_redis_p50_us"] = json!(raw_all.value_at_quantile(0.50));
        out["raw_redis_p99_us"] = json!(raw_all.value_at_quantile(0.99));
        out["ratio"] = json!(ratio);
    }
    if cli.json {
        println!("{out}");
    }
    Ok(sidecar.tally.errors == 0 && raw.is_none_or(|r| r.tally.errors == 0))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("quota-bench: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn coin_follows_the_ratio() {
        let released = (0..10_000u64)
            .filter(|n| Coin(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 1).release(0.25))
            .count();
        assert!((2_000..3_000).contains(&released), "{released}");
    }
}
