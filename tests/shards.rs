//! The shard count is a deployment setting (`--shards`): the first sidecar records it in Redis,
//! a sidecar set to another count refuses to start (or, when Redis could not tell at start,
//! refuses every call and writes nothing), and any count works end to end through the real
//! binary: holds, the expiry sweeper, and the event readers, on the memory store and on a
//! three-master Redis Cluster whose primaries all get a share of 256 shards.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use tonic::Request;

use harness::sidecar::{channel, Sidecar};
use harness::RedisServer;
use quota_sidecar::events::EventLog;
use quota_sidecar::ledger::{Catalog, CreditSource, Kind};
use quota_sidecar::pb::{
    self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient,
    usage_events_client::UsageEventsClient,
};
use quota_sidecar::store::keys::{Shards, SHARD_COUNT_RECORD};
use quota_sidecar::store::redis::RedisStore;
use quota_sidecar::store::{GrantCmd, ReserveCmd, Store, StoreError};

const TOKEN: &str = "shards-token";
/// 2026-06-01 00:00 UTC.
const NOW_MS: i64 = 1_780_272_000_000;

fn authed<T>(message: T) -> Request<T> {
    harness::bearer(TOKEN, message)
}

/// The binary with `args`, which must refuse to start: its exit code and stderr.
fn refused_start(store: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = harness::process::output_within(
        Command::new(env!("CARGO_BIN_EXE_quota-sidecar"))
            .args(["--store", store])
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .env_remove("QUOTA_ADMIN_TOKEN")
            .env_remove("QUOTA_SHARDS"),
        Duration::from_secs(20),
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_sidecar_set_to_another_count_refuses_to_start() {
    let redis = RedisServer::start();
    let url = redis.url();
    let first = Sidecar::start_with(&url, None, &["--shards", "32"], &[]);
    assert_eq!(redis.cli(&["GET", SHARD_COUNT_RECORD]), "32");

    // The default (16) on a deployment recorded with 32: refused, naming both numbers.
    let (code, stderr) = refused_start(&url, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("set to 16 shards") && errors[0].contains("recorded 32"),
        "{stderr}"
    );
    let (code, stderr) = refused_start(&url, &["--shards", "64"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("set to 64 shards") && stderr.contains("recorded 32"));
    // The refusals changed nothing.
    assert_eq!(redis.cli(&["GET", SHARD_COUNT_RECORD]), "32");

    // The same count, from the environment this time, starts.
    let second = Sidecar::start_with(&url, None, &[], &[("QUOTA_SHARDS", "32")]);
    drop((first, second));

    // Out of range: refused by the flag parser, naming the flag.
    for bad in ["0", "16385", "many"] {
        let (code, stderr) = refused_start("memory", &["--shards", bad]);
        assert_eq!(code, Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--shards"), "{bad}: {stderr}");
    }
}

#[tokio::test]
async fn a_running_sidecar_follows_its_recorded_count() {
    let redis = RedisServer::start();
    let mut sidecar = Sidecar::start_with(&redis.url(), None, &["--shards", "32"], &[]);
    harness::sidecar::wait_serving(sidecar.worker).await;
    // Flushed: the record is written again by the sidecar that notices.
    assert_eq!(redis.cli(&["FLUSHALL"]), "OK");
    let deadline = Instant::now() + Duration::from_secs(15);
    while redis.cli(&["GET", SHARD_COUNT_RECORD]) != "32" {
        assert!(
            Instant::now() < deadline,
            "the count was not recorded again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Taken over by a fleet on another count: this sidecar stops, naming both counts.
    assert_eq!(redis.cli(&["SET", SHARD_COUNT_RECORD, "16"]), "OK");
    let deadline = Instant::now() + Duration::from_secs(15);
    while sidecar.is_alive() {
        assert!(Instant::now() < deadline, "the sidecar kept serving");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped = sidecar
        .logs()
        .into_iter()
        .filter_map(|l| l["message"].as_str().map(str::to_string))
        .find(|m| m.starts_with("stopped with an error"))
        .expect("a last error line");
    assert!(
        stopped.contains("set to 32 shards") && stopped.contains("recorded 16"),
        "{stopped}"
    );
    assert_eq!(redis.cli(&["GET", SHARD_COUNT_RECORD]), "16");
}

fn grant(account: &str) -> GrantCmd {
    GrantCmd {
        account_id: account.into(),
        grant_id: "pack".into(),
        units: 100,
        source: CreditSource::Purchased,
        expires_at_ms: None,
    }
}

fn image(account: &str, generation: &str) -> ReserveCmd {
    ReserveCmd {
        account_id: account.into(),
        generation_id: generation.into(),
        kind: Kind::CharacterImage,
        model: "standard".into(),
        quantity: 1,
        ttl_seconds: 300,
        labels: BTreeMap::new(),
    }
}

/// Every key on the server with its `DUMP`, to show a refused call changed nothing.
fn dump_all(redis: &RedisServer) -> BTreeMap<String, String> {
    redis
        .cli(&["--scan"])
        .lines()
        .map(|key| (key.to_string(), redis.cli(&["DUMP", key])))
        .collect()
}

#[tokio::test]
async fn a_store_set_to_another_count_writes_nothing() {
    let mut redis = RedisServer::start();
    let catalog = Arc::new(Catalog::builtin());
    let timeout = Duration::from_secs(2);
    let sixteen = RedisStore::connect(&redis.url(), catalog.clone(), timeout)
        .await
        .unwrap();
    sixteen
        .grant_credits(&grant("studio-1"), NOW_MS)
        .await
        .unwrap();
    assert_eq!(redis.cli(&["GET", SHARD_COUNT_RECORD]), "16");
    let before = dump_all(&redis);

    let wrong = RedisStore::connect(&redis.url(), catalog.clone(), timeout)
        .await
        .unwrap()
        .with_shards(Shards::new(32).unwrap());
    let names_both = |e: StoreError| {
        let message = e.to_string();
        assert!(matches!(e, StoreError::Internal(_)), "{message}");
        assert!(
            message.contains("set to 32 shards") && message.contains("recorded 16"),
            "{message}"
        );
    };
    names_both(wrong.check_shards().await.unwrap_err().into());
    names_both(
        wrong
            .reserve(&image("studio-1", "g1"), NOW_MS)
            .await
            .unwrap_err(),
    );
    names_both(
        wrong
            .grant_credits(&grant("studio-2"), NOW_MS)
            .await
            .unwrap_err(),
    );
    names_both(wrong.expire_due(3, NOW_MS, 10).await.unwrap_err());
    names_both(
        wrong
            .read("billing", "c", 10, false, 0, NOW_MS)
            .await
            .unwrap_err(),
    );
    assert_eq!(dump_all(&redis), before, "a refused store wrote to Redis");

    // Redis down when the store starts: calls are UNAVAILABLE until it can check, and then
    // refused like above.
    redis.stop();
    let late = RedisStore::connect(&redis.url(), catalog, timeout)
        .await
        .unwrap()
        .with_shards(Shards::new(32).unwrap());
    let down = late
        .reserve(&image("studio-1", "g1"), NOW_MS)
        .await
        .unwrap_err();
    assert!(matches!(down, StoreError::Unavailable(_)), "{down:?}");
    redis.restart();
    redis.cli(&["SET", SHARD_COUNT_RECORD, "16"]);
    let before = dump_all(&redis);
    names_both(
        late.reserve(&image("studio-1", "g1"), NOW_MS)
            .await
            .unwrap_err(),
    );
    assert_eq!(dump_all(&redis), before, "a refused store wrote to Redis");
}

/// Accounts one end-to-end run drives: enough that almost every one of 256 shards gets some.
const ACCOUNTS: usize = 600;
/// How long the sweeper and the readers may take to deliver every event.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Through the binary on `--shards count`: every account gets credits and a 1 s hold that
/// nobody settles; the sweeper expires each hold once and one Subscribe delivers every event,
/// from every shard. Returns the shards the events came from.
async fn end_to_end(store: &str, count: u32) -> BTreeSet<u32> {
    let sidecar = Sidecar::start_with(
        store,
        Some(TOKEN),
        &["--shards", &count.to_string(), "--sweep-interval-ms", "100"],
        &[],
    );
    harness::sidecar::wait_serving(sidecar.worker).await;
    let mut admin = QuotaAdminClient::new(channel(sidecar.admin()).await);
    let mut quota = QuotaClient::new(channel(sidecar.worker).await);
    let accounts: Vec<String> = (0..ACCOUNTS).map(|i| format!("studio-{i}")).collect();
    for a in &accounts {
        // The sidecar may not have read the store's clock yet: UNAVAILABLE, retried.
        let mut tries = 0;
        loop {
            let granted = admin
                .grant_credits(authed(pb::GrantCreditsRequest {
                    account_id: a.clone(),
                    grant_id: "pack".into(),
                    units: 100,
                    source: pb::CreditSource::Purchased as i32,
                    expires_at: None,
                }))
                .await;
            match granted {
                Ok(_) => break,
                Err(s) if s.code() == tonic::Code::Unavailable && tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(s) => panic!("grant {a}: {s:?}"),
            }
        }
        quota
            .reserve(pb::ReserveRequest {
                account_id: a.clone(),
                generation_id: "g1".into(),
                kind: pb::GenerationKind::CharacterImage as i32,
                model: "standard".into(),
                quantity: 1,
                ttl_seconds: 1,
                labels: Default::default(),
            })
            .await
            .unwrap_or_else(|s| panic!("reserve {a}: {s:?}"));
    }

    let mut events = UsageEventsClient::new(channel(sidecar.admin()).await);
    let mut stream = events
        .subscribe(authed(pb::SubscribeRequest {
            group: "billing".into(),
            consumer: "c1".into(),
            ephemeral: false,
        }))
        .await
        .expect("subscribe")
        .into_inner();
    let mut by_type: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut shards = BTreeSet::new();
    let mut delivered = 0;
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while by_type.get("hold.expired").map_or(0, BTreeSet::len) < ACCOUNTS {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("not every hold expired in time: {by_type:?}"))
            .expect("the stream stays open")
            .expect("an event");
        delivered += 1;
        let (shard, _) = event.ack_id.split_once('/').expect("ack id");
        shards.insert(shard.parse::<u32>().expect("shard number"));
        assert!(
            by_type
                .entry(event.r#type.clone())
                .or_default()
                .insert(event.account_id.clone()),
            "{} delivered twice for {}",
            event.r#type,
            event.account_id
        );
        events
            .ack(authed(pb::AckRequest {
                group: "billing".into(),
                ack_ids: vec![event.ack_id],
            }))
            .await
            .expect("ack");
    }
    for kind in ["credits.granted", "hold.reserved", "hold.expired"] {
        assert_eq!(by_type[kind].len(), ACCOUNTS, "{kind}");
    }
    assert_eq!(delivered, 3 * ACCOUNTS);
    assert!(shards.iter().all(|&s| s < count), "{shards:?}");
    // Accounts land on shards at random: n accounts over c shards fill about
    // c × (1 − e^(−n/c)) of them (600 over 256: 232, far more than 16).
    let expected = f64::from(count) * (1.0 - (-(ACCOUNTS as f64) / f64::from(count)).exp());
    assert!(
        shards.len() as f64 > 0.9 * expected,
        "events from {} shards, about {expected:.0} expected",
        shards.len()
    );

    // Every hold came back whole: the credits are all there again.
    for a in accounts.iter().step_by(37) {
        let balance = quota
            .get_balance(pb::GetBalanceRequest {
                account_id: a.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(balance.open_holds, 0, "{a}");
        assert_eq!(balance.credits_available, 100, "{a}");
    }
    drop(stream);
    let groups = events
        .list_groups(authed(pb::ListGroupsRequest {}))
        .await
        .unwrap()
        .into_inner();
    let billing = groups.groups.iter().find(|g| g.name == "billing").unwrap();
    assert_eq!((billing.pending, billing.lag), (0, 0), "{billing:?}");
    shards
}

#[tokio::test]
async fn any_count_works_on_the_memory_store() {
    let shards = end_to_end("memory", 256).await;
    println!("events came from {} of 256 shards", shards.len());
}

#[tokio::test]
async fn one_shard_and_the_most_shards_work_on_redis() {
    for count in [1, Shards::MAX] {
        let redis = RedisServer::start();
        let started = Instant::now();
        let shards = end_to_end(&redis.url(), count).await;
        println!(
            "{count} shards: events came from {} shards; {:.1} s",
            shards.len(),
            started.elapsed().as_secs_f64()
        );
    }
}

#[tokio::test]
async fn two_hundred_fifty_six_shards_spread_over_every_cluster_primary() {
    let cluster = harness::cluster::RedisCluster::start();
    let shards = end_to_end(&cluster.url(), 256).await;
    // Each primary holds the keys of its own share of the shards: the event stream of every
    // shard (Subscribe made the group on all 256) and the accounts of those shards.
    let count = |pattern: &str| -> Vec<usize> {
        cluster
            .nodes
            .iter()
            .map(|n| n.cli(&["--scan", "--pattern", pattern]).lines().count())
            .collect()
    };
    let streams = count("q:{s*}:events");
    let accounts = count("q:{s*}:a:*");
    println!(
        "events came from {} shards; shard streams per primary: {streams:?}; accounts per \
         primary: {accounts:?}; keys per primary: {:?}",
        shards.len(),
        cluster.keys_per_node()
    );
    assert_eq!(streams.iter().sum::<usize>(), 256, "{streams:?}");
    assert_eq!(accounts.iter().sum::<usize>(), ACCOUNTS, "{accounts:?}");
    assert!(
        streams.iter().all(|&n| n > 256 / 6) && accounts.iter().all(|&n| n > ACCOUNTS / 6),
        "every primary holds a fair share: {streams:?} {accounts:?}"
    );
}
