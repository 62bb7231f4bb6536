//! `--durability wait-replicas=N`: a primary and a replica started here; the primary is killed
//! (SIGKILL) under a load of Reserves and Settles, the replica promoted, and a sidecar pointed
//! at it. With the option every Reserve and Settle answered OK is there; without it, the run
//! prints how many were lost (asynchronous replication loses some, or none, by chance).

mod harness;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::sidecar::{channel, Sidecar};
use harness::RedisServer;
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};

const TOKEN: &str = "durability-token";
const ACCOUNT: &str = "durable-1";
const WORKERS: usize = 8;

/// A primary and a replica that follows it, linked.
fn primary_and_replica() -> (RedisServer, RedisServer) {
    let primary = RedisServer::start();
    let port = primary.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !replica
        .cli(&["INFO", "replication"])
        .contains("master_link_status:up")
    {
        assert!(Instant::now() < deadline, "the replica never linked");
        std::thread::sleep(Duration::from_millis(50));
    }
    (primary, replica)
}

/// What the load saw answered OK: ("reserve" | "settle", generation id).
type Confirmed = Arc<Mutex<Vec<(&'static str, String)>>>;

/// Reserve latencies (µs) of the calls answered OK before the kill.
type Latencies = Arc<Mutex<Vec<u128>>>;

fn reserve(generation: &str) -> pb::ReserveRequest {
    pb::ReserveRequest {
        account_id: ACCOUNT.into(),
        generation_id: generation.into(),
        kind: pb::GenerationKind::CharacterImage as i32,
        model: "standard".into(),
        quantity: 1,
        ttl_seconds: 600,
        labels: Default::default(),
    }
}

fn settle(generation: &str) -> pb::SettleRequest {
    pb::SettleRequest {
        account_id: ACCOUNT.into(),
        generation_id: generation.into(),
        actual_quantity: None,
    }
}

/// Runs the load on `sidecar`, kills the primary after a while, promotes the replica and
/// returns how many confirmed answers a sidecar on the promoted replica does not find, of how
/// many.
async fn lost_after_failover(durability: Option<&str>) -> (usize, usize, u128) {
    let (mut primary, replica) = primary_and_replica();
    let mut args = vec!["--redis-timeout-ms", "500"];
    if let Some(d) = durability {
        args.extend(["--durability", d]);
    }
    let sidecar = Sidecar::start_with(&primary.url(), Some(TOKEN), &args, &[]);
    let mut admin = QuotaAdminClient::new(channel(sidecar.admin()).await);
    let setup = pb::SetPlanRequest {
        request_id: "start".into(),
        account_id: ACCOUNT.into(),
        plan: "hollywood".into(),
        cycle_anchor: None,
    };
    let started = Instant::now();
    while admin
        .set_plan(harness::bearer(TOKEN, setup.clone()))
        .await
        .is_err()
    {
        assert!(started.elapsed() < Duration::from_secs(10), "no plan");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let grant = pb::GrantCreditsRequest {
        account_id: ACCOUNT.into(),
        grant_id: "pack".into(),
        units: 1_000_000,
        source: pb::CreditSource::Purchased as i32,
        expires_at: None,
    };
    admin
        .grant_credits(harness::bearer(TOKEN, grant))
        .await
        .expect("grant");

    let confirmed: Confirmed = Arc::default();
    let latencies: Latencies = Arc::default();
    let stop_at = Instant::now() + Duration::from_millis(1_500);
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let confirmed = confirmed.clone();
            let latencies = latencies.clone();
            let addr = sidecar.worker;
            tokio::spawn(async move {
                let mut quota = QuotaClient::new(channel(addr).await);
                let mut n = 0;
                while Instant::now() < stop_at {
                    n += 1;
                    let generation = format!("w{w}-{n}");
                    let sent = Instant::now();
                    if quota.reserve(reserve(&generation)).await.is_ok() {
                        latencies.lock().unwrap().push(sent.elapsed().as_micros());
                        confirmed
                            .lock()
                            .unwrap()
                            .push(("reserve", generation.clone()));
                        if quota.settle(settle(&generation)).await.is_ok() {
                            confirmed.lock().unwrap().push(("settle", generation));
                        }
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    primary.stop(); // SIGKILL
    assert_eq!(replica.cli(&["REPLICAOF", "NO", "ONE"]), "OK");
    for w in workers {
        w.await.unwrap();
    }
    drop(sidecar);

    let after = Sidecar::start_with(&replica.url(), Some(TOKEN), &[], &[]);
    let mut quota = QuotaClient::new(channel(after.worker).await);
    let confirmed = confirmed.lock().unwrap().clone();
    let mut lost = 0;
    for (what, generation) in &confirmed {
        let found = loop {
            let answer = match *what {
                "reserve" => quota
                    .reserve(reserve(generation))
                    .await
                    .map(|r| r.into_inner().replayed),
                _ => quota
                    .settle(settle(generation))
                    .await
                    .map(|r| r.into_inner().replayed),
            };
            match answer {
                Ok(replayed) => break replayed,
                // Not a replay of a lost Reserve's Settle: the hold is not there.
                Err(s) if s.code() == tonic::Code::NotFound => break false,
                // The new sidecar reads the store's clock first.
                Err(s) if s.code() == tonic::Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(s) => panic!("{what} {generation}: {s:?}"),
            }
        };
        if !found {
            lost += 1;
        }
    }
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort_unstable();
    let median_us = latencies.get(latencies.len() / 2).copied().unwrap_or(0);
    (lost, confirmed.len(), median_us)
}

#[tokio::test]
async fn with_wait_replicas_no_confirmed_write_is_lost_in_a_failover() {
    let (lost, confirmed, median_us) =
        lost_after_failover(Some("wait-replicas=1,timeout-ms=200")).await;
    println!(
        "with --durability wait-replicas=1: {lost} of {confirmed} confirmed answers lost; \
         Reserve median {median_us} µs under load"
    );
    assert!(
        confirmed > 20,
        "the load confirmed too little to show anything: {confirmed}"
    );
    assert_eq!(lost, 0, "confirmed writes vanished in the failover");
}

/// The same failover without the option, reported rather than asserted: whether asynchronous
/// replication loses a confirmed write depends on where the kill lands.
#[tokio::test]
async fn without_it_a_failover_may_lose_confirmed_writes() {
    let (lost, confirmed, median_us) = lost_after_failover(None).await;
    println!(
        "without --durability: {lost} of {confirmed} confirmed answers lost; Reserve median \
         {median_us} µs under load"
    );
    assert!(
        confirmed > 20,
        "the load confirmed too little to show anything: {confirmed}"
    );
}

/// A primary that lost its scripts (restarted, or flushed) gets the one script a durable write
/// needs loaded again, and the write goes through: the pipeline of script and `WAIT` does not
/// reload by itself.
#[tokio::test]
async fn a_durable_write_reloads_a_missing_script() {
    use quota_sidecar::ledger::{Catalog, CreditSource};
    use quota_sidecar::store::redis::durability::Durability;
    use quota_sidecar::store::redis::RedisStore;
    use quota_sidecar::store::{GrantCmd, Store};

    let (primary, _replica) = primary_and_replica();
    let store = RedisStore::connect(
        &primary.url(),
        Arc::new(Catalog::builtin()),
        Duration::from_secs(2),
    )
    .await
    .unwrap()
    .with_durability(Some(Durability::parse("wait-replicas=1", 1_000).unwrap()));
    let grant = |id: &str| GrantCmd {
        account_id: ACCOUNT.into(),
        grant_id: id.into(),
        units: 10,
        source: CreditSource::Purchased,
        expires_at_ms: None,
    };
    let now_ms = 1_780_000_000_000;
    store.grant_credits(&grant("g1"), now_ms).await.unwrap();
    assert_eq!(primary.cli(&["FUNCTION", "FLUSH"]), "OK");
    let granted = store.grant_credits(&grant("g2"), now_ms).await.unwrap();
    assert_eq!(granted.balance.credits_available, 20);
}
