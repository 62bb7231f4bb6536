//! Sweeping once per fleet: five sidecars on one Redis sweep each due hold exactly once, and the
//! sweep work inside Redis (index reads) does not grow with the number of sidecars: one of them
//! holds the sweep lease for an interval and the others skip the pass. The event-log trimmer
//! works the same way with its own lease.

mod harness;

use std::time::Duration;

use harness::sidecar::{channel, Sidecar};
use harness::RedisServer;
use quota_sidecar::events::HOLD_EXPIRED;
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};

const TOKEN: &str = "sweep-lease-token";
const HOLDS: usize = 20;

/// Calls of `command` Redis has counted since the last `CONFIG RESETSTAT`.
fn calls(redis: &RedisServer, command: &str) -> u64 {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Index reads of the sweepers of `n` sidecars over two seconds.
async fn index_reads_with(redis: &RedisServer, n: usize) -> u64 {
    let sidecars: Vec<Sidecar> = (0..n)
        .map(|_| {
            Sidecar::start_with(
                &redis.url(),
                Some(TOKEN),
                &["--sweep-interval-ms", "100"],
                &[],
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(redis.cli(&["CONFIG", "RESETSTAT"]), "OK");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reads = calls(redis, "zrangebyscore");
    drop(sidecars);
    reads
}

#[tokio::test]
async fn five_sidecars_sweep_like_one() {
    let redis = RedisServer::start();
    let one = index_reads_with(&redis, 1).await;
    let five = index_reads_with(&redis, 5).await;
    println!("index reads in 2 s: one sidecar {one}, five sidecars {five}");
    // 16 shards every 100 ms is 320 in 2 s for one sweeper; the lease keeps five at that.
    assert!(one >= 100, "the sweeper did not sweep: {one}");
    assert!(
        five * 10 <= one * 15,
        "sweep work grew with the fleet: {one} reads with one sidecar, {five} with five"
    );
}

#[tokio::test]
async fn five_sidecars_expire_each_hold_once() {
    let redis = RedisServer::start();
    let sidecars: Vec<Sidecar> = (0..5)
        .map(|_| {
            Sidecar::start_with(
                &redis.url(),
                Some(TOKEN),
                &["--sweep-interval-ms", "50"],
                &[],
            )
        })
        .collect();
    let mut admin = QuotaAdminClient::new(channel(sidecars[0].admin()).await);
    let mut quota = QuotaClient::new(channel(sidecars[1].worker).await);
    for i in 0..HOLDS {
        let account = format!("swept-{i}");
        admin
            .grant_credits(harness::bearer(
                TOKEN,
                pb::GrantCreditsRequest {
                    account_id: account.clone(),
                    grant_id: "pack".into(),
                    units: 100,
                    source: pb::CreditSource::Purchased as i32,
                    expires_at: None,
                },
            ))
            .await
            .expect("grant");
        let reserve = pb::ReserveRequest {
            account_id: account,
            generation_id: "g".into(),
            kind: pb::GenerationKind::CharacterImage as i32,
            model: "standard".into(),
            quantity: 1,
            ttl_seconds: 1,
            labels: Default::default(),
        };
        // The sidecar may not have read the store's clock yet.
        let mut tries = 0;
        while let Err(e) = quota.reserve(reserve.clone()).await {
            assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
            tries += 1;
            assert!(tries < 100, "the sidecar never read the store's clock");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Nobody touches the accounts again: only the sweepers can expire the holds.
    let mut expired = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let events = harness::events::redis_events(&redis.url()).await;
        expired = events
            .iter()
            .filter(|e| e.event_type == HOLD_EXPIRED)
            .count();
        if expired >= HOLDS {
            break;
        }
    }
    // A little longer: a second expiry of any hold would show now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = harness::events::redis_events(&redis.url()).await;
    let mut ids: Vec<&str> = events
        .iter()
        .filter(|e| e.event_type == HOLD_EXPIRED)
        .map(|e| e.id.as_str())
        .collect();
    let all = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(expired, HOLDS, "every hold expired");
    assert_eq!((all, ids.len()), (HOLDS, HOLDS), "each hold expired once");
}

#[tokio::test]
async fn five_sidecars_trim_the_event_log_like_one() {
    let redis = RedisServer::start();
    assert_eq!(redis.cli(&["CONFIG", "RESETSTAT"]), "OK");
    let sidecars: Vec<Sidecar> = (0..5)
        .map(|_| Sidecar::start_with(&redis.url(), Some(TOKEN), &[], &[]))
        .collect();
    // Each trimmer tries its first pass once it has read the store's clock (about a second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A pass's hard cap reads each shard's length once (no stream exists yet, so the
    // retention step has none to read); the next pass is a minute away. Five trimmers without
    // the lease would read 5 × 16.
    let reads = calls(&redis, "xlen");
    drop(sidecars);
    println!("stream length reads of five trimmers: {reads}");
    assert_eq!(reads, 16, "the event log was trimmed more than once");
}

#[tokio::test]
async fn a_pass_longer_than_its_lease_keeps_it() {
    use quota_sidecar::store::lease::run_leased;
    use quota_sidecar::store::redis::RedisStore;
    use quota_sidecar::store::Fleet;
    use quota_sidecar::store::FleetTask;

    let redis = RedisServer::start();
    let store = RedisStore::connect(
        &redis.url(),
        std::sync::Arc::new(quota_sidecar::ledger::Catalog::builtin()),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let task = FleetTask::Trim;
    // Taken by one owner, refused to another, extended for its holder.
    assert!(store.lease(task, "a", 200).await.unwrap());
    assert!(!store.lease(task, "b", 200).await.unwrap());
    assert!(store.lease(task, "a", 200).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Expired: the next sidecar takes it.
    assert!(store.lease(task, "b", 200).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A 2 s pass on a 600 ms lease: nobody else gets it while the pass runs.
    let rival = async {
        let mut taken = 0;
        for _ in 0..18 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            taken += u32::from(store.lease(task, "rival", 600).await.unwrap());
        }
        taken
    };
    let pass = run_leased(
        &store,
        task,
        "long-pass",
        600,
        tokio::time::sleep(Duration::from_secs(2)),
    );
    let (ran, rival_took) = tokio::join!(pass, rival);
    assert!(
        ran.unwrap().is_some(),
        "the pass did not get the free lease"
    );
    assert_eq!(
        rival_took, 0,
        "another owner took the lease during the pass"
    );
    // Without it, a held lease means no pass.
    let skipped = run_leased(&store, task, "late", 600, async {}).await;
    assert!(skipped.unwrap().is_none());
}
