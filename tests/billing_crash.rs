//! quota-billing and the sidecar SIGKILLed at random points, and the database cut, under a
//! load of reserves, settles, releases, expiries, refunds (partial, whole, and replayed with the
//! same refund id) and plan upgrades on Redis. After restarts and once the stream is drained,
//! per account: Σ usage in PostgreSQL net of refunds equals the ledger's lifetime charge
//! (allowance and credits separately), refunds equal Σ `hold.refunded`, refund grants hold what
//! did not go back to the allowance, upgrade charges equal Σ `plan.upgraded` cents, every
//! event of the streams is in PostgreSQL exactly once, and no sequence gap is left open.

mod harness;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use harness::billing::Billing;
use harness::postgres::{Relay, TestDatabase};
use harness::sidecar::{wait_serving, Sidecar};
use quota_sidecar::events;
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};

const TOKEN: &str = "billing-crash-token";
const ACCOUNTS: usize = 6;
const WORKERS: usize = 6;
/// How long the load runs while things are killed.
const LOAD: Duration = Duration::from_secs(7);
/// How long a call is retried while the sidecar is down.
const RETRY_FOR: Duration = Duration::from_secs(20);
const PLANS: [&str; 3] = ["microbudget", "independent", "hollywood"];

/// The last account never has a plan: it spends credits only, and its refunds (no cycle to
/// give allowance back to) all become refund grants.
const CREDITS_ONLY: usize = ACCOUNTS - 1;

fn account(i: usize) -> String {
    format!("bc-{i}")
}

fn admin<T>(message: T) -> Request<T> {
    harness::bearer(TOKEN, message)
}

/// The sidecar is away (killed, restarting): the call is retried.
fn transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

/// Retries `call` while the sidecar is away; `Err` for an answer that is not transient.
async fn retry<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    let deadline = Instant::now() + RETRY_FOR;
    loop {
        match call().await {
            Ok(r) => return Ok(r.into_inner()),
            Err(status) if transient(&status) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => return Err(status),
        }
    }
}

/// A lazily connecting channel to a fixed address: it reconnects by itself after a restart.
fn lazy_channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(3))
        .connect_lazy()
}

#[derive(Default)]
struct Counts {
    settles: AtomicU64,
    releases: AtomicU64,
    abandoned: AtomicU64,
    denied: AtomicU64,
    upgrades: AtomicU64,
    refunds: AtomicU64,
    replays: AtomicU64,
}

struct Load {
    worker: Channel,
    admin: Channel,
    stop: AtomicBool,
    counts: Counts,
    /// Plan index per account.
    plans: Mutex<HashMap<String, usize>>,
    /// Settled generations with something left to refund.
    settled: Mutex<Vec<(String, String)>>,
    /// Refunds done, to replay: the request and the units it refunded.
    refunded: Mutex<Vec<(pb::RefundRequest, u64)>>,
    /// Whether a charge of the credits-only account was refunded yet: the first refunds look
    /// for one, so the run always has refunds that become refund grants, however few
    /// operations a loaded machine gets through.
    credits_only_refunded: AtomicBool,
}

async fn worker(load: Arc<Load>, id: usize) {
    let quota = QuotaClient::new(load.worker.clone());
    let mut admin_client = QuotaAdminClient::new(load.admin.clone());
    let mut n = 0usize;
    while !load.stop.load(Ordering::Relaxed) {
        n += 1;
        let i = (id + n) % ACCOUNTS;
        let a = account(i);
        let g = format!("w{id}-{n}");
        let op = fastrand::u32(0..20);
        if op == 0 && i != CREDITS_ONLY {
            upgrade_or_downgrade(&load, &mut admin_client, &a, &g).await;
            continue;
        }
        if op == 1 {
            refund(&load, &mut admin_client, &g).await;
            continue;
        }
        let (kind, quantity) = match fastrand::u32(0..3) {
            0 => (pb::GenerationKind::CharacterImage, fastrand::u32(1..4)),
            1 => (pb::GenerationKind::FirstFrame, 1),
            _ => (pb::GenerationKind::Video, fastrand::u32(1..6)),
        };
        let abandon = op == 2;
        let reserve = pb::ReserveRequest {
            account_id: a.clone(),
            generation_id: g.clone(),
            kind: kind as i32,
            model: "standard".into(),
            quantity,
            ttl_seconds: if abandon { 1 } else { 600 },
            labels: Default::default(),
        };
        match retry(|| {
            let (mut c, r) = (quota.clone(), reserve.clone());
            async move { c.reserve(r).await }
        })
        .await
        {
            Ok(_) => {}
            Err(s) if matches!(s.code(), Code::ResourceExhausted | Code::PermissionDenied) => {
                load.counts.denied.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(s) => panic!("reserve {a}/{g}: {s:?}"),
        }
        if abandon {
            // Nobody settles it: the sweeper expires it.
            load.counts.abandoned.fetch_add(1, Ordering::Relaxed);
        } else if op < 6 {
            let release = pb::ReleaseRequest {
                account_id: a.clone(),
                generation_id: g.clone(),
                reason: pb::ReleaseReason::Failed as i32,
            };
            retry(|| {
                let (mut c, r) = (quota.clone(), release.clone());
                async move { c.release(r).await }
            })
            .await
            .unwrap_or_else(|s| panic!("release {a}/{g}: {s:?}"));
            load.counts.releases.fetch_add(1, Ordering::Relaxed);
        } else {
            // Now and then the job produced less than reserved.
            let actual_quantity = (quantity > 1 && fastrand::bool()).then_some(quantity - 1);
            let settle = pb::SettleRequest {
                account_id: a.clone(),
                generation_id: g.clone(),
                actual_quantity,
            };
            retry(|| {
                let (mut c, r) = (quota.clone(), settle.clone());
                async move { c.settle(r).await }
            })
            .await
            .unwrap_or_else(|s| panic!("settle {a}/{g}: {s:?}"));
            load.counts.settles.fetch_add(1, Ordering::Relaxed);
            load.settled.lock().unwrap().push((a, g));
        }
    }
}

/// Upgrades an account one plan up; at the top, schedules a downgrade (not billable).
async fn upgrade_or_downgrade(
    load: &Load,
    client: &mut QuotaAdminClient<Channel>,
    a: &str,
    request_id: &str,
) {
    let current = *load.plans.lock().unwrap().get(a).unwrap_or(&0);
    let target = if current + 1 < PLANS.len() {
        current + 1
    } else {
        0
    };
    let request = pb::SetPlanRequest {
        request_id: request_id.into(),
        account_id: a.into(),
        plan: PLANS[target].into(),
        cycle_anchor: None,
    };
    let answer = retry(|| {
        let (mut c, r) = (client.clone(), request.clone());
        async move { c.set_plan(admin(r)).await }
    })
    .await
    .unwrap_or_else(|s| panic!("set plan {a}: {s:?}"));
    if answer.change == pb::PlanChange::Upgraded as i32 {
        load.plans.lock().unwrap().insert(a.into(), target);
        load.counts.upgrades.fetch_add(1, Ordering::Relaxed);
    }
}

/// Refunds a settled generation: 1 or 2 units of it, or whatever is left of it; now and then
/// replays an earlier refund with the same id instead, which must answer what it did the first
/// time (and emit nothing: every event id is checked once below).
async fn refund(load: &Load, client: &mut QuotaAdminClient<Channel>, refund_id: &str) {
    let earlier = {
        let done = load.refunded.lock().unwrap();
        (!done.is_empty() && fastrand::u32(0..4) == 0)
            .then(|| done[fastrand::usize(0..done.len())].clone())
    };
    if let Some((request, units)) = earlier {
        let answer = retry(|| {
            let (mut c, r) = (client.clone(), request.clone());
            async move { c.refund(admin(r)).await }
        })
        .await
        .unwrap_or_else(|s| panic!("replaying refund {}: {s:?}", request.refund_id));
        assert!(answer.replayed, "{}: a replay", request.refund_id);
        assert_eq!(answer.refunded_units, units, "{}", request.refund_id);
        load.counts.replays.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let picked = {
        let mut settled = load.settled.lock().unwrap();
        (!settled.is_empty()).then(|| {
            let credits_only = account(CREDITS_ONLY);
            let i = settled
                .iter()
                .position(|(a, _)| {
                    *a == credits_only && !load.credits_only_refunded.load(Ordering::Relaxed)
                })
                .unwrap_or_else(|| fastrand::usize(0..settled.len()));
            settled.swap_remove(i)
        })
    };
    let Some((a, g)) = picked else {
        return;
    };
    // 0: the whole rest of the charge.
    let units = [0, 1, 2][fastrand::usize(0..3)];
    let request = pb::RefundRequest {
        account_id: a.clone(),
        generation_id: g.clone(),
        refund_id: refund_id.into(),
        units,
        reason: "bad output".into(),
    };
    match retry(|| {
        let (mut c, r) = (client.clone(), request.clone());
        async move { c.refund(admin(r)).await }
    })
    .await
    {
        Ok(answer) => {
            // A retry after the sidecar was killed may find the refund done: a replay then.
            load.counts.refunds.fetch_add(1, Ordering::Relaxed);
            if a == account(CREDITS_ONLY) {
                load.credits_only_refunded.store(true, Ordering::Relaxed);
            }
            load.refunded
                .lock()
                .unwrap()
                .push((request, answer.refunded_units));
            if units != 0 {
                // Some of it may be left to refund later.
                load.settled.lock().unwrap().push((a, g));
            }
        }
        // Less left than asked (a 1-unit charge asked for 2, or all of it refunded already).
        Err(s) if s.code() == Code::FailedPrecondition => {}
        Err(s) => panic!("refund {a}/{g}: {s:?}"),
    }
}

/// What chaos did.
#[derive(Default, Debug)]
struct Chaos {
    billing_kills: u32,
    sidecar_kills: u32,
    database_cuts: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_and_a_lost_database_lose_and_double_count_nothing() {
    let redis = harness::RedisServer::start();
    let db = TestDatabase::create().await;
    let relay = Relay::start().await;
    let ports: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", harness::free_port()))
        .collect();
    let sidecar_args: Vec<&str> = vec![
        "--listen",
        &ports[0],
        "--admin-listen",
        &ports[1],
        "--metrics-listen",
        &ports[2],
        "--sweep-interval-ms",
        "200",
        "--events-claim-idle-ms",
        "1000",
    ];
    let start_sidecar = {
        let url = redis.url();
        let args: Vec<String> = sidecar_args.iter().map(|s| s.to_string()).collect();
        move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Sidecar::start_with(&url, Some(TOKEN), &args, &[])
        }
    };
    let mut sidecar = start_sidecar();
    wait_serving(sidecar.worker).await;
    let worker_addr = sidecar.worker;
    let admin_addr = sidecar.admin();

    let (worker_channel, admin_channel) = (lazy_channel(worker_addr), lazy_channel(admin_addr));
    let mut admin_client = QuotaAdminClient::new(admin_channel.clone());
    for i in 0..ACCOUNTS {
        let a = account(i);
        if i != CREDITS_ONLY {
            admin_client
                .set_plan(admin(pb::SetPlanRequest {
                    request_id: format!("start-{a}"),
                    account_id: a.clone(),
                    plan: PLANS[0].into(),
                    cycle_anchor: None,
                }))
                .await
                .unwrap();
        }
        for (grant, units, source) in [
            ("pack", 20_000, pb::CreditSource::Purchased),
            ("promo", 300, pb::CreditSource::Promotional),
        ] {
            admin_client
                .grant_credits(admin(pb::GrantCreditsRequest {
                    account_id: a.clone(),
                    grant_id: grant.into(),
                    units,
                    source: source as i32,
                    expires_at: None,
                }))
                .await
                .unwrap();
        }
    }
    let load = Arc::new(Load {
        worker: worker_channel,
        admin: admin_channel,
        stop: AtomicBool::new(false),
        counts: Counts::default(),
        plans: Mutex::default(),
        settled: Mutex::default(),
        refunded: Mutex::default(),
        credits_only_refunded: AtomicBool::new(false),
    });

    let admin_target = admin_addr.to_string();
    let pg_url = db.url_at(relay.port);
    let billing_args = ["--batch-max-events", "40", "--batch-wait-ms", "20"];
    let mut billing = Billing::start(&admin_target, &pg_url, TOKEN, &billing_args);

    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| tokio::spawn(worker(load.clone(), id)))
        .collect();

    // Every kind of failure at least once, at random moments.
    let mut plan = vec![
        "billing", "database", "billing", "sidecar", "billing", "database",
    ];
    plan.push(["billing", "sidecar", "database"][fastrand::usize(0..3)]);
    fastrand::shuffle(&mut plan[1..]);
    let mut chaos = Chaos::default();
    for what in plan {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(300..900))).await;
        match what {
            "billing" => {
                billing.kill();
                chaos.billing_kills += 1;
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..300))).await;
                billing = Billing::start(&admin_target, &pg_url, TOKEN, &billing_args);
            }
            "sidecar" => {
                sidecar.kill();
                chaos.sidecar_kills += 1;
                tokio::time::sleep(Duration::from_millis(fastrand::u64(100..400))).await;
                sidecar = tokio::task::spawn_blocking(start_sidecar.clone())
                    .await
                    .unwrap();
            }
            _ => {
                relay.cut();
                chaos.database_cuts += 1;
                tokio::time::sleep(Duration::from_millis(fastrand::u64(300..800))).await;
                relay.restore().await;
            }
        }
    }
    tokio::time::sleep(LOAD.saturating_sub(started.elapsed())).await;
    load.stop.store(true, Ordering::Relaxed);
    for w in workers {
        tokio::time::timeout(RETRY_FOR + Duration::from_secs(5), w)
            .await
            .expect("workers stop")
            .unwrap();
    }

    // Abandoned holds expire (TTL 1 s, sweeper every 200 ms); then nothing is open.
    let mut quota = QuotaClient::new(load.worker.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0..ACCOUNTS {
        loop {
            let b = quota
                .get_balance(pb::GetBalanceRequest {
                    account_id: account(i),
                })
                .await
                .unwrap()
                .into_inner();
            if b.open_holds == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: holds never expired",
                account(i)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // The streams are the truth; wait until PostgreSQL has all of it.
    let stream = harness::events::redis_events(&redis.url()).await;
    let client = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = client
            .query_one("SELECT count(*) FROM usage_events", &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if n as usize >= stream.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL has {n} of {} events",
            stream.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = billing.terminate().await;
    assert!(status.success(), "exit after SIGTERM: {status:?}");

    let counts = &load.counts;
    println!(
        "{} events; {} settles, {} releases, {} expiries, {} upgrades, {} refunds ({} \
         hold.refunded, {} replays), {} denied; {chaos:?}; {:.1} s",
        stream.len(),
        counts.settles.load(Ordering::Relaxed),
        counts.releases.load(Ordering::Relaxed),
        counts.abandoned.load(Ordering::Relaxed),
        counts.upgrades.load(Ordering::Relaxed),
        counts.refunds.load(Ordering::Relaxed),
        stream
            .iter()
            .filter(|e| e.event_type == events::HOLD_REFUNDED)
            .count(),
        counts.replays.load(Ordering::Relaxed),
        counts.denied.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    assert!(
        counts.settles.load(Ordering::Relaxed) > 100,
        "too little load"
    );
    assert!(counts.upgrades.load(Ordering::Relaxed) > 0, "no upgrade");
    assert!(counts.refunds.load(Ordering::Relaxed) > 0, "no refund");
    assert!(
        counts.replays.load(Ordering::Relaxed) > 0,
        "no refund replayed"
    );
    let expired = stream
        .iter()
        .filter(|e| e.event_type == events::HOLD_EXPIRED)
        .count();
    assert!(expired > 0, "no hold expired");

    // No event id twice, none missing, none invented.
    let mut stream_ids = HashSet::new();
    for e in &stream {
        assert!(
            stream_ids.insert(e.id.clone()),
            "{} twice in the streams",
            e.id
        );
    }
    let stored: Vec<String> = client
        .query("SELECT event_id FROM usage_events", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let stored_ids: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), stored_ids.len());
    let missing: Vec<_> = stream_ids.difference(&stored_ids).take(5).collect();
    let invented: Vec<_> = stored_ids.difference(&stream_ids).take(5).collect();
    assert!(
        missing.is_empty() && invented.is_empty(),
        "missing {missing:?}, invented {invented:?}"
    );
    let dead: i64 = client
        .query_one("SELECT count(*) FROM dead_letters", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(dead, 0, "dead letters");

    // Each account's sequence arrived whole through the kills, cuts and redeliveries (gaps
    // opened on the way were filled): none open, and billing expects one past the last.
    let mut expected_next: BTreeMap<String, i64> = BTreeMap::new();
    for e in &stream {
        let next = expected_next.entry(e.account_id.clone()).or_default();
        *next = (*next).max(e.sequence as i64 + 1);
    }
    let tracked: BTreeMap<String, i64> = client
        .query("SELECT account_id, next_seq FROM account_sequences", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(tracked, expected_next);
    let open_gaps: Vec<(String, i64, i64)> = client
        .query(
            "SELECT account_id, first_seq, last_seq FROM sequence_gaps ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(open_gaps.is_empty(), "gaps left open: {open_gaps:?}");

    // Per account: usage against the ledger, upgrade charges against the events.
    let mut upgrade_cents: BTreeMap<&str, i64> = BTreeMap::new();
    let mut refunded: BTreeMap<&str, Refunds> = BTreeMap::new();
    for e in &stream {
        match e.event_type.as_str() {
            events::PLAN_UPGRADED => {
                *upgrade_cents.entry(&e.account_id).or_default() += e.prorated_charge_cents as i64
            }
            events::HOLD_REFUNDED => {
                let r = refunded.entry(&e.account_id).or_default();
                r.allowance += e.from_allowance as i64;
                r.credits += e.from_credits as i64;
                r.count += 1;
                r.restored += e.allowance_added as i64;
                r.granted += (e.units - e.allowance_added) as i64;
            }
            _ => {}
        }
    }
    // Both ways a refund goes: back to the allowance, and as a refund grant.
    let all: Vec<&Refunds> = refunded.values().collect();
    assert!(
        all.iter().any(|r| r.restored > 0) && all.iter().any(|r| r.granted > 0),
        "refunds went only one way: {all:?}"
    );
    for i in 0..ACCOUNTS {
        let a = account(i);
        let ledger = admin_client
            .get_account(admin(pb::GetAccountRequest {
                account_id: a.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        let row = client
            .query_one(
                "SELECT COALESCE(sum(allowance_units), 0)::bigint, \
                 COALESCE(sum(credit_units), 0)::bigint, \
                 COALESCE(sum(refunded_allowance_units), 0)::bigint, \
                 COALESCE(sum(refunded_credit_units), 0)::bigint, \
                 COALESCE(sum(refund_count), 0)::bigint, \
                 COALESCE(sum(refund_allowance_restored_units), 0)::bigint, \
                 COALESCE(sum(refund_credit_grant_units), 0)::bigint \
                 FROM cycle_usage WHERE account_id = $1",
                &[&a],
            )
            .await
            .unwrap();
        let (allowance, credits): (i64, i64) = (row.get(0), row.get(1));
        let pg_refunds = Refunds {
            allowance: row.get(2),
            credits: row.get(3),
            count: row.get(4),
            restored: row.get(5),
            granted: row.get(6),
        };
        assert_eq!(
            (
                (allowance - pg_refunds.allowance) as u64,
                (credits - pg_refunds.credits) as u64
            ),
            (
                ledger.lifetime_charged_allowance_units,
                ledger.lifetime_charged_credit_units
            ),
            "{a}: Σ usage net of refunds in PostgreSQL against the ledger's lifetime charge"
        );
        assert_eq!(
            pg_refunds,
            refunded.get(a.as_str()).copied().unwrap_or_default(),
            "{a}: refunds against Σ hold.refunded"
        );
        let cents: i64 = client
            .query_one(
                "SELECT COALESCE(sum(charge_cents), 0)::bigint FROM upgrade_charges \
                 WHERE account_id = $1",
                &[&a],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            cents,
            upgrade_cents.get(a.as_str()).copied().unwrap_or_default(),
            "{a}: upgrade charges"
        );
        // Per-grant draws add up to the credits charged; refund grants to what refunds did
        // not give back to the allowance.
        let grants = client
            .query_one(
                "SELECT COALESCE(sum(drawn_units), 0)::bigint, \
                 COALESCE(sum(granted_units) FILTER (WHERE grant_id LIKE 'refund:%'), 0)::bigint \
                 FROM credit_grants WHERE account_id = $1",
                &[&a],
            )
            .await
            .unwrap();
        assert_eq!(grants.get::<_, i64>(0), credits, "{a}: per-grant draws");
        assert_eq!(
            grants.get::<_, i64>(1),
            pg_refunds.granted,
            "{a}: refund grants"
        );
        // Nothing is held now: what PostgreSQL says is left of each grant is what the ledger
        // has left (a grant the ledger dropped has nothing left).
        let remaining: BTreeMap<String, i64> = client
            .query(
                "SELECT grant_id, granted_units - drawn_units - expired_units - revoked_units \
                 - lost_units FROM credit_grants WHERE account_id = $1",
                &[&a],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let in_ledger: BTreeMap<String, i64> = ledger
            .grants
            .iter()
            .map(|g| (g.grant_id.clone(), g.units_remaining as i64))
            .collect();
        for (grant, left) in &remaining {
            assert_eq!(
                *left,
                in_ledger.get(grant).copied().unwrap_or(0),
                "{a}: what is left of grant {grant}"
            );
        }
        for grant in in_ledger.keys() {
            assert!(remaining.contains_key(grant), "{a}: grant {grant} missing");
        }
    }
}

/// What an account's refunds came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Refunds {
    /// The parts of the original charges refunded.
    allowance: i64,
    credits: i64,
    count: i64,
    /// Back to the allowance, and as credits of refund grants.
    restored: i64,
    granted: i64,
}
