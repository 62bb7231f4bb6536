//! Faults under load, through the real binary on a private Redis:
//! - Redis killed and restarted (AOF, fsync always) while workers reserve, settle and release:
//!   no confirmed hold or charge is lost, calls meanwhile fail fast with UNAVAILABLE only, and
//!   the time until calls succeed again is measured;
//! - Redis stalled (`DEBUG SLEEP`): Reserve answers UNAVAILABLE within the Redis deadline, and
//!   the retry after the stall finds the one hold the stalled call made;
//! - the sidecar SIGKILLed under load (short TTLs): holds it left open expire through the new
//!   sidecar's sweeper and return their units, and Settle retried against the new sidecar gives
//!   the first result or a clean error, never a second charge. (`crash.rs` checks the event log
//!   after a kill; this adds expiry and repeated Settle retries.)

mod harness;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use harness::sidecar::{channel, wait_serving, Sidecar};
use harness::RedisServer;
use quota_sidecar::events::{self, UsageEvent};
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};

const TOKEN: &str = "faults-test-token";
/// The binary's default Redis deadline (`--redis-timeout-ms`).
const REDIS_DEADLINE: Duration = Duration::from_millis(250);
/// What a caller may wait for an answer while Redis is down or stalled: the deadline plus
/// slack for a loaded two-core machine.
const FAIL_FAST: Duration = Duration::from_secs(1);

fn authed<T>(message: T) -> Request<T> {
    harness::bearer(TOKEN, message)
}

async fn admin_client(sidecar: &Sidecar) -> QuotaAdminClient<Channel> {
    QuotaAdminClient::new(channel(sidecar.admin()).await)
}

async fn set_plan(admin: &mut QuotaAdminClient<Channel>, account: &str, plan: &str) {
    admin
        .set_plan(authed(pb::SetPlanRequest {
            request_id: format!("plan-{account}"),
            account_id: account.into(),
            plan: plan.into(),
            cycle_anchor: None,
        }))
        .await
        .expect("set plan");
}

async fn grant(admin: &mut QuotaAdminClient<Channel>, account: &str, grant_id: &str, units: u64) {
    admin
        .grant_credits(authed(pb::GrantCreditsRequest {
            account_id: account.into(),
            grant_id: grant_id.into(),
            units,
            source: pb::CreditSource::Purchased as i32,
            expires_at: None,
        }))
        .await
        .expect("grant");
}

async fn account(admin: &mut QuotaAdminClient<Channel>, account: &str) -> pb::Account {
    admin
        .get_account(authed(pb::GetAccountRequest {
            account_id: account.into(),
        }))
        .await
        .expect("get account")
        .into_inner()
}

fn image(account: &str, generation: &str, ttl_seconds: u32) -> pb::ReserveRequest {
    pb::ReserveRequest {
        account_id: account.into(),
        generation_id: generation.into(),
        kind: pb::GenerationKind::CharacterImage as i32,
        model: "standard".into(),
        quantity: 1,
        ttl_seconds,
        labels: Default::default(),
    }
}

fn settle(account: &str, generation: &str) -> pb::SettleRequest {
    pb::SettleRequest {
        account_id: account.into(),
        generation_id: generation.into(),
        actual_quantity: None,
    }
}

fn release(account: &str, generation: &str) -> pb::ReleaseRequest {
    pb::ReleaseRequest {
        account_id: account.into(),
        generation_id: generation.into(),
        reason: pb::ReleaseReason::Failed as i32,
    }
}

fn charged(a: &pb::Account) -> u64 {
    a.lifetime_charged_allowance_units + a.lifetime_charged_credit_units
}

/// One call as a worker saw it.
struct Call {
    started: Instant,
    took: Duration,
    code: Code,
}

/// What the restart test's workers were told and how their calls went.
#[derive(Default)]
struct Ledger {
    /// Per account: Σ charged units of Settle answers (each generation once).
    charged: HashMap<String, u64>,
    /// Holds confirmed by Reserve and deliberately left open.
    open: HashSet<(String, String)>,
    calls: Vec<Call>,
}

/// Sends one call built by `request` until it gets an answer other than UNAVAILABLE, as a
/// worker does with its idempotent calls; records every attempt.
async fn until_answered<T, F, Fut>(ledger: &Mutex<Ledger>, mut request: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let started = Instant::now();
        let result = request().await;
        let code = result.as_ref().err().map_or(Code::Ok, |s| s.code());
        ledger.lock().unwrap().calls.push(Call {
            started,
            took: started.elapsed(),
            code,
        });
        match result {
            Err(status) if status.code() == Code::Unavailable => {
                assert!(Instant::now() < give_up, "still UNAVAILABLE: {status:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other.map(|r| r.into_inner()),
        }
    }
}

/// One worker on its own account: reserve, then settle (or release one job in three, or leave
/// one open now and then, up to a few), retrying each call through outages.
async fn restart_worker(
    worker: SocketAddr,
    account: String,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let quota = QuotaClient::new(channel(worker).await);
    let mut left_open = 0;
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let g = format!("job-{n}");
        let reserved = until_answered(&ledger, || {
            let (mut quota, request) = (quota.clone(), image(&account, &g, 600));
            async move { quota.reserve(request).await }
        })
        .await
        .unwrap_or_else(|s| panic!("reserve {account}/{g}: {s:?}"));
        assert_eq!(reserved.hold.unwrap().generation_id, g);
        if n % 7 == 6 && left_open < 3 {
            left_open += 1;
            ledger.lock().unwrap().open.insert((account.clone(), g));
        } else if n % 3 == 1 {
            until_answered(&ledger, || {
                let (mut quota, request) = (quota.clone(), release(&account, &g));
                async move { quota.release(request).await }
            })
            .await
            .unwrap_or_else(|s| panic!("release {account}/{g}: {s:?}"));
        } else {
            let settled = until_answered(&ledger, || {
                let (mut quota, request) = (quota.clone(), settle(&account, &g));
                async move { quota.settle(request).await }
            })
            .await
            .unwrap_or_else(|s| panic!("settle {account}/{g}: {s:?}"));
            *ledger
                .lock()
                .unwrap()
                .charged
                .entry(account.clone())
                .or_default() += settled.charged_units;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_load_loses_no_confirmed_hold() {
    // Every write is on disk before Redis answers it, and the restart reads it back.
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut redis = RedisServer::start_with(&aof);
    assert!(redis.cli(&["CONFIG", "GET", "appendonly"]).contains("yes"));
    let sidecar = Sidecar::start(&redis.url(), Some(TOKEN));
    wait_serving(sidecar.worker).await;
    let mut admin = admin_client(&sidecar).await;
    const WORKERS: usize = 6;
    let accounts: Vec<String> = (0..WORKERS).map(|i| format!("aof-{i}")).collect();
    for a in &accounts {
        // Hollywood holds up to 8 at once; the credits outlast the allowance.
        set_plan(&mut admin, a, "hollywood").await;
        grant(&mut admin, a, "pack", 1_000_000).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let workers: Vec<_> = accounts
        .iter()
        .map(|a| {
            tokio::spawn(restart_worker(
                sidecar.worker,
                a.clone(),
                stop.clone(),
                ledger.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let before = ledger.lock().unwrap().calls.len();

    redis.stop();
    let stopped_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    redis.restart();
    let restarted_at = Instant::now();
    // Load keeps going a while after the restart.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        tokio::time::timeout(Duration::from_secs(40), w)
            .await
            .expect("workers finish their last job")
            .expect("worker");
    }

    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    let failed: Vec<&Call> = ledger.calls.iter().filter(|c| c.code != Code::Ok).collect();
    let ok = ledger.calls.len() - failed.len();
    assert!(before > 100, "only {before} calls before the restart");
    assert!(!failed.is_empty(), "the outage was never seen");
    for call in &failed {
        assert_eq!(call.code, Code::Unavailable);
        assert!(call.took < FAIL_FAST, "UNAVAILABLE after {:?}", call.took);
    }
    let slowest_failure = failed.iter().map(|c| c.took).max().unwrap();
    // Recovery: from Redis answering again to the first call that succeeded after it.
    let first_ok_after = ledger
        .calls
        .iter()
        .filter(|c| c.code == Code::Ok && c.started + c.took > restarted_at)
        .map(|c| c.started + c.took)
        .min()
        .expect("calls succeed after the restart");
    let recovery = first_ok_after - restarted_at;
    let last_failure = failed.iter().map(|c| c.started + c.took).max().unwrap();
    assert!(
        recovery < Duration::from_secs(5),
        "calls succeed {recovery:?} after Redis is back"
    );

    // Nothing confirmed before, during or after the outage was lost.
    for a in &accounts {
        let view = account(&mut admin, a).await;
        let open: HashSet<(String, String)> = view
            .holds
            .iter()
            .map(|h| (a.clone(), h.generation_id.clone()))
            .collect();
        let told: HashSet<(String, String)> = ledger
            .open
            .iter()
            .filter(|(acct, _)| acct == a)
            .cloned()
            .collect();
        assert_eq!(open, told, "{a}: open holds");
        let told_charged = ledger.charged.get(a).copied().unwrap_or(0);
        assert_eq!(charged(&view), told_charged, "{a}: charged once per settle");
        let b = view.balance.unwrap();
        let held: u64 = view.holds.iter().map(|h| h.cost_units).sum();
        assert_eq!(b.allowance_held + b.credits_held, held, "{a}: held");
    }
    println!(
        "{} calls ({ok} ok, {} UNAVAILABLE, slowest {slowest_failure:?}); Redis down for \
         {:?}; first success {recovery:?} after Redis was back (last failure {:?} after); \
         {} holds open across the restart",
        ledger.calls.len(),
        failed.len(),
        restarted_at - stopped_at,
        last_failure.saturating_duration_since(restarted_at),
        ledger.open.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_redis_makes_reserve_unavailable_within_the_deadline() {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&redis.url(), Some(TOKEN));
    wait_serving(sidecar.worker).await;
    let mut admin = admin_client(&sidecar).await;
    let a = "acct-stall";
    set_plan(&mut admin, a, "microbudget").await;
    let mut quota = QuotaClient::new(channel(sidecar.worker).await);
    quota
        .reserve(image(a, "before", 300))
        .await
        .expect("reserve");
    quota.settle(settle(a, "before")).await.expect("settle");

    let port = redis.port().to_string();
    let sleeper = std::thread::spawn(move || {
        std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port, "DEBUG", "SLEEP", "2"])
            .output()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let status = quota
        .reserve(image(a, "stalled", 300))
        .await
        .expect_err("Redis is stalled");
    let took = started.elapsed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        took < REDIS_DEADLINE + Duration::from_millis(250),
        "UNAVAILABLE after {took:?}"
    );
    // Settle and balance reads fail as fast.
    let started = Instant::now();
    let status = quota.settle(settle(a, "before")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < FAIL_FAST);
    sleeper.join().unwrap().unwrap();

    // The stalled Reserve reached Redis before its deadline and ran once Redis woke up: the
    // worker's retry finds that hold rather than making a second one.
    let deadline = Instant::now() + Duration::from_secs(5);
    let retried = loop {
        match quota.reserve(image(a, "stalled", 300)).await {
            Ok(r) => break r.into_inner(),
            Err(s) if s.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(s) => panic!("reserve after the stall: {s:?}"),
        }
    };
    assert!(
        retried.replayed,
        "the stalled call's hold is the one returned"
    );
    let b = retried.balance.unwrap();
    assert_eq!(
        (b.open_holds, b.allowance_held, b.allowance_used),
        (1, 4, 4)
    );
    println!("UNAVAILABLE after {took:?} while Redis slept");
}

/// What the kill test's workers were told.
#[derive(Default)]
struct Told {
    /// Per account and generation: charged units of a confirmed Settle.
    settled: BTreeMap<(String, String), u64>,
    reserved: HashSet<(String, String)>,
    /// Calls that got no answer when the sidecar died.
    lost: Vec<(String, String, &'static str)>,
}

/// One worker on its own account until the sidecar dies: reserve (TTL 1 s), then settle, or
/// release one job in four.
async fn kill_worker(channel: Channel, account: String, told: Arc<Mutex<Told>>) {
    let mut quota = QuotaClient::new(channel);
    for n in 0.. {
        let g = format!("job-{n}");
        let key = (account.clone(), g.clone());
        match quota.reserve(image(&account, &g, 1)).await {
            Ok(_) => told.lock().unwrap().reserved.insert(key.clone()),
            Err(_) => {
                told.lock().unwrap().lost.push((account, g, "reserve"));
                return;
            }
        };
        if n % 4 == 3 {
            if quota.release(release(&account, &g)).await.is_err() {
                told.lock().unwrap().lost.push((account, g, "release"));
                return;
            }
        } else {
            match quota.settle(settle(&account, &g)).await {
                Ok(r) => {
                    told.lock()
                        .unwrap()
                        .settled
                        .insert(key, r.into_inner().charged_units);
                }
                Err(_) => {
                    told.lock().unwrap().lost.push((account, g, "settle"));
                    return;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_leaves_holds_that_expire_and_retried_settles_never_charge_twice() {
    const WORKERS: usize = 8;
    const GRANTED: u64 = 1_000_000;
    let redis = RedisServer::start();
    let mut first = Sidecar::start(&redis.url(), Some(TOKEN));
    wait_serving(first.worker).await;
    let mut admin = admin_client(&first).await;
    let accounts: Vec<String> = (0..WORKERS).map(|i| format!("kill-{i}")).collect();
    for a in &accounts {
        grant(&mut admin, a, "pack", GRANTED).await;
    }
    // Long jobs of a worker that dies with the sidecar: holds on allowance and credits that
    // nobody will settle.
    let long = "kill-long";
    set_plan(&mut admin, long, "hollywood").await;
    grant(&mut admin, long, "pack", 2_000).await;
    let before_long = account(&mut admin, long).await.balance.unwrap();

    let told = Arc::new(Mutex::new(Told::default()));
    let worker_channel = channel(first.worker).await;
    let workers: Vec<_> = accounts
        .iter()
        .map(|a| tokio::spawn(kill_worker(worker_channel.clone(), a.clone(), told.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let mut quota = QuotaClient::new(worker_channel.clone());
    let mut long_jobs = Vec::new();
    for i in 0..8 {
        let g = format!("video-{i}");
        let r = quota
            .reserve(pb::ReserveRequest {
                account_id: long.into(),
                generation_id: g.clone(),
                kind: pb::GenerationKind::Video as i32,
                model: "cinema".into(),
                quantity: 20,
                ttl_seconds: 2,
                labels: Default::default(),
            })
            .await
            .expect("long job reserve")
            .into_inner();
        assert!(!r.replayed);
        long_jobs.push(g);
    }
    let during = quota
        .get_balance(pb::GetBalanceRequest {
            account_id: long.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(during.open_holds, 8);
    assert!(
        during.allowance_held > 0 && during.credits_held > 0,
        "{during:?}"
    );

    first.kill();
    let killed_at = Instant::now();
    for w in workers {
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("workers stop once the sidecar is gone")
            .unwrap();
    }
    drop((quota, worker_channel, admin));

    let second = Sidecar::start(&redis.url(), Some(TOKEN));
    wait_serving(second.worker).await;
    let started_after = killed_at.elapsed();
    let mut quota = QuotaClient::new(channel(second.worker).await);
    let mut admin = admin_client(&second).await;
    let mut told = Arc::try_unwrap(told).ok().unwrap().into_inner().unwrap();
    assert!(
        told.reserved.len() > 100,
        "only {} reserves before the kill",
        told.reserved.len()
    );

    // The new sidecar's sweeper ends every hold the dead one left open: the long jobs, and
    // the workers' holds whose Settle or Release never reached Redis or whose Reserve answer
    // was lost. Polled on the event streams, which does not touch the accounts (reading an
    // account would reclaim its expired holds itself).
    let all_ended_after = loop {
        let all = harness::events::redis_events(&redis.url()).await;
        let mut open: HashSet<(&str, &str)> = HashSet::new();
        for e in &all {
            let hold = (e.account_id.as_str(), e.generation_id.as_str());
            match e.event_type.as_str() {
                events::HOLD_RESERVED => assert!(open.insert(hold), "{hold:?} reserved twice"),
                events::HOLD_SETTLED | events::HOLD_RELEASED | events::HOLD_EXPIRED => {
                    assert!(open.remove(&hold), "{hold:?} ended twice")
                }
                _ => {}
            }
        }
        if open.is_empty() {
            let expired = all
                .iter()
                .filter(|e| e.account_id == long && e.event_type == events::HOLD_EXPIRED)
                .count();
            assert_eq!(expired, long_jobs.len(), "long jobs expired");
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "holds still open: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Workers come back after their holds' TTL and retry what they got no answer for. A lost
    // Reserve is given up. A lost Settle gives the first result (it reached Redis before the
    // kill) or a clean "expired" (it did not) — never a charge now, after the expiry. A lost
    // Release succeeds.
    let (mut replayed, mut expired) = (0, 0);
    for (a, g, what) in std::mem::take(&mut told.lost) {
        let key = (a.clone(), g.clone());
        match what {
            "reserve" => {}
            "settle" => match quota.settle(settle(&a, &g)).await {
                Ok(r) => {
                    let r = r.into_inner();
                    assert!(r.replayed, "{key:?} charged after its hold expired");
                    replayed += 1;
                    told.settled.insert(key, r.charged_units);
                }
                Err(s) if s.code() == Code::FailedPrecondition => {
                    assert!(s.message().contains("expired"), "{s:?}");
                    expired += 1;
                }
                Err(s) => panic!("retrying settle of {key:?}: {s:?}"),
            },
            _ => {
                if let Err(s) = quota.release(release(&a, &g)).await {
                    panic!("retrying release of {key:?}: {s:?}");
                }
            }
        }
    }
    // Every confirmed Settle retried once more, as if its answer had been lost: the same
    // charge comes back, marked replayed.
    for ((a, g), charged_units) in &told.settled {
        let r = quota
            .settle(settle(a, g))
            .await
            .unwrap_or_else(|s| panic!("settle again {a}/{g}: {s:?}"))
            .into_inner();
        assert!(r.replayed, "{a}/{g}");
        assert_eq!(r.charged_units, *charged_units, "{a}/{g}");
    }

    let view = account(&mut admin, long).await;
    assert!(view.holds.is_empty(), "{:?}", view.holds);
    assert_eq!(charged(&view), 0);
    assert_eq!(
        view.balance.unwrap(),
        before_long,
        "expired holds returned everything"
    );
    // Worker accounts: nothing open, and charged exactly the settles the workers were told
    // about.
    let all = harness::events::redis_events(&redis.url()).await;
    for a in &accounts {
        let view = account(&mut admin, a).await;
        assert!(view.holds.is_empty(), "{a}: open holds {:?}", view.holds);
        let told_charged: u64 = told
            .settled
            .iter()
            .filter(|((acct, _), _)| acct == a)
            .map(|(_, units)| units)
            .sum();
        assert_eq!(charged(&view), told_charged, "{a}: charged");
        let b = view.balance.unwrap();
        assert_eq!(b.credits_held, 0, "{a}");
        assert_eq!(b.credits_available, GRANTED - told_charged, "{a}: credits");
        let settled: Vec<&UsageEvent> = all
            .iter()
            .filter(|e| &e.account_id == a && e.event_type == events::HOLD_SETTLED)
            .collect();
        let units: u64 = settled.iter().map(|e| e.units).sum();
        assert_eq!(units, told_charged, "{a}: Σ hold.settled");
        let generations: HashSet<&str> = settled.iter().map(|e| e.generation_id.as_str()).collect();
        assert_eq!(generations.len(), settled.len(), "{a}: settled twice");
    }
    println!(
        "{} reserves and {} settles confirmed; lost settles retried: {replayed} replayed, \
         {expired} expired; new sidecar serving {started_after:?} after the kill; every hold \
         left open ended {all_ended_after:?} after the kill",
        told.reserved.len(),
        told.settled.len(),
    );
}
