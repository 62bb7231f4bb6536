//! A Redis that answers but refuses writes is as down as one that does not answer: the real
//! binary on a full Redis (`maxmemory` under `noeviction`) answers UNAVAILABLE naming OOM,
//! turns health NOT_SERVING, counts the error as `kind="oom"`, and serves again by itself once
//! memory is freed.

mod harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;

use harness::http::http_get;
use harness::sidecar::{channel, health_status, wait_serving, Sidecar};
use harness::{free_port, RedisServer};
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};

const TOKEN: &str = "redis-refusals-admin-token";

fn authed<T>(message: T) -> Request<T> {
    harness::bearer(TOKEN, message)
}

fn image(account: &str, generation: &str) -> pb::ReserveRequest {
    pb::ReserveRequest {
        account_id: account.into(),
        generation_id: generation.into(),
        kind: pb::GenerationKind::CharacterImage as i32,
        model: "standard".into(),
        quantity: 1,
        ttl_seconds: 0,
        labels: Default::default(),
    }
}

async fn wait_health(worker: &Channel, expected: ServingStatus, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let root = health_status(worker.clone(), "").await;
        let quota = health_status(worker.clone(), "quota.v1.Quota").await;
        if root == expected as i32 && quota == expected as i32 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "health is ({root}, {quota}) after {within:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics(addr: SocketAddr) -> String {
    http_get(addr, "/metrics").await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_is_unavailable_and_not_serving_until_memory_is_freed() {
    let redis = (0..5)
        .find_map(|_| {
            RedisServer::try_start(
                free_port(),
                &["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"],
            )
        })
        .expect("start redis-server");
    let sidecar = Sidecar::start(&redis.url(), Some(TOKEN));
    wait_serving(sidecar.worker).await;
    let account = "acct-full";
    QuotaAdminClient::new(channel(sidecar.admin()).await)
        .set_plan(authed(pb::SetPlanRequest {
            request_id: "plan-1".into(),
            account_id: account.into(),
            plan: "microbudget".into(),
            cycle_anchor: None,
        }))
        .await
        .expect("set plan");
    let worker = channel(sidecar.worker).await;
    let mut quota = QuotaClient::new(worker.clone());
    quota
        .reserve(image(account, "before"))
        .await
        .expect("reserve");

    // One 3 MB value: the write starts below maxmemory, so Redis takes it, and is full after.
    let filled = redis.cli(&[
        "EVAL",
        "redis.call('SET', KEYS[1], string.rep('x', 3000000)) return 'filled'",
        "1",
        "filler",
    ]);
    assert_eq!(filled, "filled");
    let full_at = Instant::now();
    let status = quota
        .reserve(image(account, "while-full"))
        .await
        .expect_err("Redis is full");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("out of memory (OOM)"),
        "{}",
        status.message()
    );
    wait_health(&worker, ServingStatus::NotServing, Duration::from_secs(5)).await;
    let not_serving_after = full_at.elapsed();
    let text = metrics(sidecar.metrics()).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("quota_store_errors_total")
                && l.contains("op=\"reserve\"")
                && l.contains("kind=\"oom\"")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("quota_store_errors_total")
                && l.contains("op=\"health_probe\"")
                && l.contains("kind=\"oom\"")),
        "{text}"
    );

    // DEL frees memory and is allowed on a full Redis.
    assert_eq!(redis.cli(&["DEL", "filler"]), "1");
    let serving_after = wait_health(&worker, ServingStatus::Serving, Duration::from_secs(5)).await;
    let after = quota
        .reserve(image(account, "after"))
        .await
        .expect("reserve once memory is free")
        .into_inner();
    assert_eq!(after.balance.unwrap().open_holds, 2);
    println!(
        "full Redis: UNAVAILABLE ({}), NOT_SERVING within {not_serving_after:?}; \
         SERVING {serving_after:?} after memory was freed",
        status.message()
    );
}
