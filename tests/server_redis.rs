//! The real binary on a private Redis, through gRPC: racing Reserves never overspend nor
//! exceed the plan's concurrency, and a Redis that dies mid-run makes the sidecar fail closed
//! (UNAVAILABLE fast, health NOT_SERVING, process alive) and recover by itself.

mod harness;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Barrier;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_health::pb::health_check_response::ServingStatus;

use harness::sidecar::{channel, health_status, wait_serving, Sidecar};
use harness::RedisServer;
use quota_sidecar::ledger::{Catalog, Kind};
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};

const TOKEN: &str = "server-redis-admin-token";
const RACERS: usize = 200;

fn authed<T>(message: T) -> Request<T> {
    harness::bearer(TOKEN, message)
}

async fn set_plan(admin: SocketAddr, account: &str, plan: &str, request_id: &str) -> pb::Balance {
    QuotaAdminClient::new(channel(admin).await)
        .set_plan(authed(pb::SetPlanRequest {
            request_id: request_id.into(),
            account_id: account.into(),
            plan: plan.into(),
            cycle_anchor: None,
        }))
        .await
        .expect("set plan")
        .into_inner()
        .balance
        .unwrap()
}

fn reserve_request(
    account: &str,
    generation: &str,
    kind: pb::GenerationKind,
    model: &str,
    quantity: u32,
) -> pb::ReserveRequest {
    pb::ReserveRequest {
        account_id: account.into(),
        generation_id: generation.into(),
        kind: kind as i32,
        model: model.into(),
        quantity,
        ttl_seconds: 0,
        labels: Default::default(),
    }
}

async fn balance(quota: &mut QuotaClient<Channel>, account: &str) -> pb::Balance {
    quota
        .get_balance(pb::GetBalanceRequest {
            account_id: account.into(),
        })
        .await
        .expect("balance")
        .into_inner()
}

/// Sends every request at once (released together by a barrier, spread over a few HTTP/2
/// connections) and returns the successes and the refusals.
async fn race(
    worker: SocketAddr,
    requests: Vec<pb::ReserveRequest>,
) -> (Vec<pb::ReserveResponse>, Vec<Status>) {
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(channel(worker).await);
    }
    let barrier = Arc::new(Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .enumerate()
        .map(|(i, request)| {
            let mut quota = QuotaClient::new(channels[i % channels.len()].clone());
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                quota.reserve(request).await.map(|r| r.into_inner())
            })
        })
        .collect();
    let (mut ok, mut refused) = (Vec::new(), Vec::new());
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("every racer answers in time")
            .unwrap()
        {
            Ok(reserved) => ok.push(reserved),
            Err(status) => refused.push(status),
        }
    }
    (ok, refused)
}

async fn start() -> (RedisServer, Sidecar) {
    let redis = RedisServer::start();
    let sidecar = Sidecar::start(&redis.url(), Some(TOKEN));
    wait_serving(sidecar.worker).await;
    (redis, sidecar)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_reserves_through_grpc_stop_at_the_allowance() {
    let (_redis, sidecar) = start().await;
    let account = "acct-race-funds";
    // The binary runs the built-in catalog; the expected count comes from it.
    let catalog = Catalog::builtin();
    let plan = catalog.plan("hollywood").unwrap();
    let seconds = plan.max_video_seconds;
    let cost = catalog.cost_units(Kind::Video, "cinema", seconds).unwrap();
    let fits = (plan.allowance_units / cost) as usize;
    assert!(
        fits >= 1 && fits < plan.max_concurrent_holds as usize,
        "money, not concurrency, must be the limit here"
    );

    let start_balance = set_plan(sidecar.admin(), account, "hollywood", "plan-1").await;
    assert_eq!(start_balance.allowance_available, plan.allowance_units);
    assert_eq!(start_balance.credits_available, 0);

    let requests = (0..RACERS)
        .map(|i| {
            reserve_request(
                account,
                &format!("video-{i}"),
                pb::GenerationKind::Video,
                "cinema",
                seconds,
            )
        })
        .collect();
    let (ok, refused) = race(sidecar.worker, requests).await;

    assert_eq!(ok.len(), fits, "successes ({cost} units each)");
    for reserved in &ok {
        let hold = reserved.hold.as_ref().unwrap();
        assert!(!reserved.replayed);
        assert_eq!(
            (hold.cost_units, hold.from_allowance, hold.from_credits),
            (cost, cost, 0)
        );
    }
    // A refusal can only happen once the allowance is down to its remainder.
    let left = plan.allowance_units - fits as u64 * cost;
    let expected_message =
        format!("not enough funds: generation costs {cost} units, account has {left} available");
    assert_eq!(refused.len(), RACERS - fits);
    for status in &refused {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(status.message(), expected_message);
    }

    let mut quota = QuotaClient::new(channel(sidecar.worker).await);
    let b = balance(&mut quota, account).await;
    assert_eq!(
        (
            b.allowance_held,
            b.allowance_used,
            b.allowance_available,
            b.credits_held,
            b.open_holds
        ),
        (fits as u64 * cost, 0, left, 0, fits as u32)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_reserves_through_grpc_stop_at_the_concurrency_cap() {
    let (_redis, sidecar) = start().await;
    let account = "acct-race-holds";
    let catalog = Catalog::builtin();
    let plan = catalog.plan("hollywood").unwrap();
    let cap = plan.max_concurrent_holds as usize;
    let cost = catalog
        .cost_units(Kind::CharacterImage, "standard", 1)
        .unwrap();
    assert!(
        cap as u64 * cost < plan.allowance_units,
        "concurrency, not money, must be the limit here"
    );
    set_plan(sidecar.admin(), account, "hollywood", "plan-1").await;

    let image = |i: usize| {
        reserve_request(
            account,
            &format!("image-{i}"),
            pb::GenerationKind::CharacterImage,
            "standard",
            1,
        )
    };
    let (ok, refused) = race(sidecar.worker, (0..RACERS).map(image).collect()).await;

    assert_eq!(ok.len(), cap, "successes");
    assert_eq!(refused.len(), RACERS - cap);
    // DESIGN.md §3: the concurrency cap is a plan feature, so PERMISSION_DENIED.
    for status in &refused {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status
                .message()
                .contains(&format!("allows at once ({cap})")),
            "{status:?}"
        );
    }
    let mut quota = QuotaClient::new(channel(sidecar.worker).await);
    let b = balance(&mut quota, account).await;
    assert_eq!(
        (b.allowance_held, b.open_holds),
        (cap as u64 * cost, cap as u32)
    );

    // A refusal left no state: once a slot frees up, the same generation id goes through.
    let winner = ok[0].hold.as_ref().unwrap().generation_id.clone();
    quota
        .release(pb::ReleaseRequest {
            account_id: account.into(),
            generation_id: winner.clone(),
            reason: pb::ReleaseReason::Cancelled as i32,
        })
        .await
        .expect("release");
    let winners: Vec<&str> = ok
        .iter()
        .map(|r| r.hold.as_ref().unwrap().generation_id.as_str())
        .collect();
    let loser = (0..RACERS)
        .find(|i| !winners.contains(&format!("image-{i}").as_str()))
        .unwrap();
    let retried = quota
        .reserve(image(loser))
        .await
        .expect("retry")
        .into_inner();
    assert!(!retried.replayed);
    let b = retried.balance.unwrap();
    assert_eq!(
        (b.allowance_held, b.open_holds),
        (cap as u64 * cost, cap as u32)
    );
}

/// Polls the worker listener's health until both services report `expected`.
async fn wait_health(worker: &Channel, expected: ServingStatus, within: Duration) {
    let started = Instant::now();
    loop {
        let root = health_status(worker.clone(), "").await;
        let quota = health_status(worker.clone(), "quota.v1.Quota").await;
        if root == expected as i32 && quota == expected as i32 {
            return;
        }
        assert!(
            started.elapsed() < within,
            "health is ({root}, {quota}) after {within:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_fails_closed_and_recovers() {
    let (mut redis, mut sidecar) = start().await;
    let account = "acct-outage";
    let worker = channel(sidecar.worker).await;
    let mut quota = QuotaClient::new(worker.clone());
    let image = |generation: &str| {
        reserve_request(
            account,
            generation,
            pb::GenerationKind::CharacterImage,
            "standard",
            1,
        )
    };
    set_plan(sidecar.admin(), account, "microbudget", "plan-1").await;
    quota.reserve(image("before")).await.expect("reserve");

    redis.stop();
    let stopped_at = Instant::now();
    // Fail closed and fast: the default Redis deadline is 250 ms, well inside the 1 s budget.
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let started = Instant::now();
        let status = quota
            .reserve(image(&format!("down-{i}")))
            .await
            .expect_err("Redis is down");
        let took = started.elapsed();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(took < Duration::from_secs(1), "UNAVAILABLE after {took:?}");
        slowest = slowest.max(took);
    }
    // Workers retry Settle the same way; it must not hang either.
    let started = Instant::now();
    let status = quota
        .settle(pb::SettleRequest {
            account_id: account.into(),
            generation_id: "before".into(),
            actual_quantity: None,
        })
        .await
        .expect_err("Redis is down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(sidecar.is_alive(), "the sidecar must outlive Redis");

    // One probe interval (1 s) plus one ping deadline, with slack for a loaded machine.
    wait_health(&worker, ServingStatus::NotServing, Duration::from_secs(5)).await;
    let not_serving_after = stopped_at.elapsed();
    assert!(sidecar.is_alive(), "the sidecar must outlive Redis");

    redis.restart();
    let restarted_at = Instant::now();
    // The restarted Redis is empty (no persistence in the harness): the account has no plan,
    // so GetBalance is the first call that can succeed.
    let recovered_after = loop {
        match quota
            .get_balance(pb::GetBalanceRequest {
                account_id: account.into(),
            })
            .await
        {
            Ok(b) => {
                assert_eq!(b.into_inner().plan, "none");
                break restarted_at.elapsed();
            }
            Err(status) if status.code() == Code::Unavailable => {
                assert!(
                    restarted_at.elapsed() < Duration::from_secs(10),
                    "calls still UNAVAILABLE 10 s after Redis came back: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("unexpected {status:?}"),
        }
    };
    wait_health(&worker, ServingStatus::Serving, Duration::from_secs(5)).await;
    let serving_after = restarted_at.elapsed();
    set_plan(sidecar.admin(), account, "microbudget", "plan-2").await;
    let after = quota
        .reserve(image("after"))
        .await
        .expect("reserve after recovery")
        .into_inner();
    assert_eq!(after.balance.unwrap().open_holds, 1);
    println!(
        "UNAVAILABLE in at most {slowest:?}; NOT_SERVING {not_serving_after:?} after the stop; \
         calls back {recovered_after:?} and SERVING by {serving_after:?} after the restart"
    );

    drop((quota, worker));
    let status = sidecar.terminate().await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}
