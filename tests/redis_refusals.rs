//! A Redis that answers but refuses writes is as down as one that does not answer: the real
//! binary on a full Redis (`maxmemory` under `noeviction`) answers UNAVAILABLE naming OOM,
//! turns health NOT_SERVING, counts the error as `kind="oom"`, and serves again by itself once
//! memory is freed. The health probe sees a refusal on any primary of a Cluster (full, or
//! considering the cluster down), a replica, and a primary without enough replicas.

mod harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;

use harness::cluster::RedisCluster;
use harness::http::http_get;
use harness::sidecar::{channel, health_status, wait_serving, Sidecar};
use harness::RedisServer;
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};
use quota_sidecar::store::health_probe::{HealthProbe, RedisWriteProbe, WRITE_INTENT_SCRIPT};
use quota_sidecar::store::redis::conn::RedisConn;
use quota_sidecar::store::StoreError;

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
    let redis =
        RedisServer::start_with(&["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]);
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

fn probe(url: &str) -> RedisWriteProbe {
    let timeout = Duration::from_secs(2);
    RedisWriteProbe::new(RedisConn::open(url, timeout).expect("open Redis"), timeout)
}

/// The message of the probe's failure, which must be UNAVAILABLE.
async fn probe_refusal(probe: &RedisWriteProbe) -> String {
    match probe.check().await {
        Err(StoreError::Unavailable(message)) => message,
        other => panic!("expected the probe to fail UNAVAILABLE, got {other:?}"),
    }
}

/// Checks until the probe passes (a node may take a moment to consider the cluster up).
async fn wait_probe_ok(probe: &RedisWriteProbe, within: Duration) {
    let started = Instant::now();
    loop {
        match probe.check().await {
            Ok(()) => return,
            Err(e) => assert!(started.elapsed() < within, "probe still fails: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_full_primary_of_a_cluster_fails_the_probe_until_memory_is_freed() {
    let cluster = RedisCluster::start();
    let probe = probe(&cluster.url());
    probe.check().await.expect("every primary takes writes");

    // Not the first node: a probe asking only one node would likely miss it.
    let full = &cluster.nodes[2];
    assert_eq!(full.cli(&["CONFIG", "SET", "maxmemory", "1"]), "OK");
    // The node refuses writes to its own keys (others' keys are MOVED before any OOM check).
    let refused = (0..1000)
        .map(|i| full.cli(&["SET", &format!("key-{i}"), "v"]))
        .find(|reply| !reply.starts_with("MOVED"))
        .expect("a key on the full node");
    assert!(refused.contains("OOM"), "{refused}");

    let message = probe_refusal(&probe).await;
    assert!(message.contains("out of memory (OOM)"), "{message}");
    assert!(
        message.contains(&format!(":{})", full.port())),
        "names the node: {message}"
    );

    assert_eq!(full.cli(&["CONFIG", "SET", "maxmemory", "0"]), "OK");
    probe.check().await.expect("the node takes writes again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_considers_the_cluster_down_fails_the_probe() {
    let cluster = RedisCluster::start();
    let probe = probe(&cluster.url());
    probe.check().await.expect("the cluster is up");

    // Giving up one of its slots leaves the node without full coverage: it considers the
    // cluster down and refuses every keyed command, while still serving keyless ones.
    let node = &cluster.nodes[2];
    let nodes = node.cli(&["CLUSTER", "NODES"]);
    let myself = nodes
        .lines()
        .find(|l| l.contains("myself"))
        .expect("CLUSTER NODES lists the node itself");
    let slot = myself
        .split_whitespace()
        .nth(8)
        .and_then(|range| range.split('-').next())
        .expect("the node owns slots")
        .to_string();
    assert_eq!(node.cli(&["CLUSTER", "DELSLOTS", &slot]), "OK");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node
        .cli(&["CLUSTER", "INFO"])
        .contains("cluster_state:fail")
    {
        assert!(
            Instant::now() < deadline,
            "the node still considers the cluster up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(node.cli(&["EVAL", WRITE_INTENT_SCRIPT, "0"]), "1");

    let message = probe_refusal(&probe).await;
    assert!(message.contains("CLUSTERDOWN"), "{message}");
    assert!(
        message.contains(&format!(":{} ", node.port())),
        "names the node: {message}"
    );

    assert_eq!(node.cli(&["CLUSTER", "ADDSLOTS", &slot]), "OK");
    wait_probe_ok(&probe, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_or_a_primary_short_of_replicas_fails_the_probe() {
    let primary = RedisServer::start();
    let server = RedisServer::start();
    let probe = probe(&server.url());
    probe.check().await.expect("a primary takes writes");
    assert_eq!(server.cli(&["DBSIZE"]), "0", "the probe writes no key");

    let port = primary.port().to_string();
    assert_eq!(server.cli(&["REPLICAOF", "127.0.0.1", &port]), "OK");
    let message = probe_refusal(&probe).await;
    assert!(
        message.contains("read-only replica (READONLY)"),
        "{message}"
    );
    assert_eq!(server.cli(&["REPLICAOF", "NO", "ONE"]), "OK");
    probe.check().await.expect("promoted back to primary");

    let replicas = ["CONFIG", "SET", "min-replicas-to-write", "1"];
    assert_eq!(server.cli(&replicas), "OK");
    let message = probe_refusal(&probe).await;
    assert!(
        message.contains("too few replicas (NOREPLICAS)"),
        "{message}"
    );
    assert_eq!(
        server.cli(&["CONFIG", "SET", "min-replicas-to-write", "0"]),
        "OK"
    );
    probe.check().await.expect("no replica required any more");
}

#[tokio::test]
async fn a_redis_that_cannot_save_refuses_writes_as_unavailable() {
    use quota_sidecar::ledger::{Catalog, CreditSource};
    use quota_sidecar::store::redis::RedisStore;
    use quota_sidecar::store::{GrantCmd, Store};

    // `dir` is a protected setting: this server lets the test move it somewhere unwritable.
    let server = RedisServer::start_with(&["--enable-protected-configs", "yes"]);
    let store = RedisStore::connect(
        &server.url(),
        std::sync::Arc::new(Catalog::builtin()),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let grant = |id: &str| GrantCmd {
        account_id: "studio-1".into(),
        grant_id: id.into(),
        units: 10,
        source: CreditSource::Purchased,
        expires_at_ms: None,
    };
    let now_ms = 1_780_000_000_000;
    store.grant_credits(&grant("g1"), now_ms).await.unwrap();
    let probe = probe(&server.url());
    probe.check().await.expect("a healthy server");

    // A snapshot that fails stops writes: the server's directory is removed under it, so
    // not even root can make the file.
    let dir = server
        .cli(&["CONFIG", "GET", "dir"])
        .lines()
        .nth(1)
        .expect("dir")
        .to_string();
    let gone = tempfile::tempdir().unwrap();
    let gone_path = gone.path().to_str().unwrap().to_string();
    assert_eq!(server.cli(&["CONFIG", "SET", "save", "3600 1"]), "OK");
    assert_eq!(server.cli(&["CONFIG", "SET", "dir", &gone_path]), "OK");
    drop(gone);
    assert!(server
        .cli(&["BGSAVE"])
        .starts_with("Background saving started"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .cli(&["INFO", "persistence"])
        .contains("rdb_last_bgsave_status:err")
    {
        assert!(Instant::now() < deadline, "the snapshot did not fail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match store.grant_credits(&grant("g2"), now_ms).await {
        Err(StoreError::Unavailable(m)) => {
            assert!(m.contains("cannot save to disk (MISCONF)"), "{m}")
        }
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    let message = probe_refusal(&probe).await;
    assert!(message.contains("(MISCONF)"), "{message}");

    // A snapshot that succeeds lets writes in again.
    assert_eq!(server.cli(&["CONFIG", "SET", "dir", &dir]), "OK");
    assert!(server
        .cli(&["BGSAVE"])
        .starts_with("Background saving started"));
    wait_probe_ok(&probe, Duration::from_secs(10)).await;
    store.grant_credits(&grant("g2"), now_ms).await.unwrap();
}
