//! What only the Redis store has: one round trip per operation, the Functions library and its
//! reloads, an account hash whose size does not grow with its past, a Redis that dies or stalls
//! mid-run, and atomicity under racing callers.

mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quota_sidecar::ledger::{Catalog, CreditSource, Kind};
use quota_sidecar::store::redis::RedisStore;
use quota_sidecar::store::*;

const NOW_MS: i64 = 1_780_000_000_000;
const DEADLINE: Duration = Duration::from_millis(250);

/// A store on `server`, started as the sidecar starts one: shard count checked (and recorded).
async fn store(server: &harness::RedisServer) -> Arc<RedisStore> {
    let store = RedisStore::connect(&server.url(), Arc::new(Catalog::builtin()), DEADLINE)
        .await
        .expect("connect");
    store.check_shards().await.expect("shard count");
    Arc::new(store)
}

fn reserve_cmd(
    account: &str,
    generation: &str,
    kind: Kind,
    model: &str,
    quantity: u32,
) -> ReserveCmd {
    ReserveCmd {
        account_id: account.into(),
        generation_id: generation.into(),
        kind,
        model: model.into(),
        quantity,
        ttl_seconds: 300,
        labels: BTreeMap::from([("job".to_string(), "j-1".to_string())]),
    }
}

fn image(account: &str, generation: &str) -> ReserveCmd {
    reserve_cmd(account, generation, Kind::CharacterImage, "standard", 1)
}

#[tokio::test]
async fn every_operation_is_one_fcall() {
    let server = harness::RedisServer::start();
    let proxy = harness::proxy::CountingProxy::start(server.port()).await;
    let s = RedisStore::connect(&proxy.url(), Arc::new(Catalog::builtin()), DEADLINE)
        .await
        .expect("connect");
    // Starting loads the library once and checks the shard count (as the sidecar does
    // before it serves); after that, one FCALL per operation.
    s.check_shards().await.expect("shard count");
    let startup = proxy.take();
    assert!(
        startup
            .iter()
            .all(|c| ["FUNCTION", "HELLO", "CLIENT", "SET", "GET"].contains(&c.as_str())),
        "{startup:?}"
    );
    assert_eq!(
        startup.iter().filter(|c| *c == "FUNCTION").count(),
        1,
        "{startup:?}"
    );
    let a = "acct";
    let mut table = Vec::new();
    macro_rules! measure {
        ($name:literal, $call:expr) => {{
            let result = $call.await;
            assert!(result.is_ok(), "{}: {:?}", $name, result.err());
            let sent = proxy.take();
            assert_eq!(sent, ["FCALL"], "{}", $name);
            table.push(($name, sent.len()));
        }};
    }
    let plan = SetPlanCmd {
        request_id: "r1".into(),
        account_id: a.into(),
        plan: "hollywood".into(),
        cycle_anchor_ms: None,
    };
    let grant = GrantCmd {
        account_id: a.into(),
        grant_id: "pack".into(),
        units: 100,
        source: CreditSource::Purchased,
        expires_at_ms: None,
    };
    measure!("set_plan", s.set_plan(&plan, NOW_MS));
    measure!("grant_credits", s.grant_credits(&grant, NOW_MS));
    measure!("reserve", s.reserve(&image(a, "g1"), NOW_MS));
    measure!("reserve (replay)", s.reserve(&image(a, "g1"), NOW_MS));
    measure!("extend", s.extend(a, "g1", 600, NOW_MS));
    measure!("settle", s.settle(a, "g1", None, NOW_MS));
    measure!("settle (replay)", s.settle(a, "g1", None, NOW_MS));
    measure!("reserve", s.reserve(&image(a, "g2"), NOW_MS));
    measure!("release", s.release(a, "g2", ReleaseReason::Failed, NOW_MS));
    measure!("balance", s.balance(a, NOW_MS));
    measure!("account", s.account(a, NOW_MS));
    measure!("revoke_credits", s.revoke_credits(a, "pack", NOW_MS));
    measure!("reserve", s.reserve(&image(a, "g3"), NOW_MS));
    // Lazy work (rolling a cycle over, reclaiming an expired hold) rides in the same script.
    measure!(
        "reserve after rollover, reclaiming an expired hold",
        s.reserve(&image(a, "g4"), NOW_MS + 40 * 86_400_000)
    );
    let denied = s
        .reserve(
            &reserve_cmd(a, "g5", Kind::Video, "standard", 21),
            NOW_MS + 40 * 86_400_000,
        )
        .await;
    assert!(
        matches!(denied, Err(StoreError::Ledger(LedgerError::Denied(_)))),
        "{denied:?}"
    );
    assert_eq!(proxy.take(), ["FCALL"], "a denied reserve");
    let quote = QuoteCmd {
        account_id: a.into(),
        kind: Kind::Video,
        model: "cinema".into(),
        quantity: 5,
    };
    s.quote(&quote, NOW_MS + 40 * 86_400_000).await.unwrap();
    assert_eq!(proxy.take(), ["FCALL_RO"], "a quote writes nothing");
    for (name, commands) in table {
        println!("{name}: {commands} command(s)");
    }
}

#[tokio::test]
async fn the_library_reloads_after_a_flush() {
    let server = harness::RedisServer::start();
    let proxy = harness::proxy::CountingProxy::start(server.port()).await;
    let s = RedisStore::connect(&proxy.url(), Arc::new(Catalog::builtin()), DEADLINE)
        .await
        .expect("connect");
    s.check_shards().await.expect("shard count");
    s.reserve(&image("acct-flushed", "g0"), NOW_MS)
        .await
        .unwrap_err();
    assert_eq!(server.cli(&["FUNCTION", "FLUSH"]), "OK");
    proxy.take();
    // Function not found → FUNCTION LOAD → FCALL again, invisibly to the caller.
    let err = s
        .reserve(&image("acct-flushed", "g1"), NOW_MS)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Ledger(LedgerError::InsufficientFunds { .. })
        ),
        "{err:?}"
    );
    assert_eq!(proxy.take(), ["FCALL", "FUNCTION", "FCALL"]);
    s.balance("acct-flushed", NOW_MS).await.unwrap();
    assert_eq!(proxy.take(), ["FCALL"], "loaded once");
    // A durable store (FCALL and WAIT in one pipeline) reloads the same way.
    let durable = RedisStore::connect(&proxy.url(), Arc::new(Catalog::builtin()), DEADLINE)
        .await
        .expect("connect")
        .with_durability(Some(quota_sidecar::store::redis::durability::Durability {
            replicas: 0,
            timeout_ms: 100,
        }));
    assert_eq!(server.cli(&["FUNCTION", "FLUSH"]), "OK");
    durable.balance("acct-flushed", NOW_MS).await.unwrap();
    assert!(server
        .cli(&["FUNCTION", "LIST"])
        .contains(s.library().name()));
}

/// Two builds with different Lua (a rolling deploy) each load and call their own library on
/// one Redis, at the same time, on the same accounts; neither disturbs the other.
#[tokio::test]
async fn two_library_versions_serve_side_by_side() {
    use quota_sidecar::store::redis::library::Library;
    let server = harness::RedisServer::start();
    let current = store(&server).await;
    let other = RedisStore::connect(&server.url(), Arc::new(Catalog::builtin()), DEADLINE)
        .await
        .expect("connect")
        .with_library(Library::named("quota_v3_rolling"));
    other.load_library().await.expect("load the other version");
    let libraries = server.cli(&["FUNCTION", "LIST"]);
    assert!(libraries.contains(current.library().name()), "{libraries}");
    assert!(libraries.contains("quota_v3_rolling"), "{libraries}");
    let grant = |id: &str| GrantCmd {
        account_id: "shared".into(),
        grant_id: id.into(),
        units: 1_000,
        source: CreditSource::Purchased,
        expires_at_ms: None,
    };
    current.grant_credits(&grant("a"), NOW_MS).await.unwrap();
    other.grant_credits(&grant("b"), NOW_MS).await.unwrap();
    let other = Arc::new(other);
    let mut calls = Vec::new();
    for i in 0..40 {
        let (a, b) = (current.clone(), other.clone());
        calls.push(tokio::spawn(async move {
            a.reserve(&image("shared", &format!("c-{i}")), NOW_MS).await
        }));
        calls.push(tokio::spawn(async move {
            b.reserve(&image("shared", &format!("o-{i}")), NOW_MS).await
        }));
    }
    let (mut held, mut cost) = (0, 0);
    for call in calls {
        if let Ok(r) = call.await.unwrap() {
            held += 1;
            cost += r.hold.cost_units;
        }
    }
    // Both versions share the account and each call is atomic: the plan's cap on open holds
    // and the credits add up whichever version made a hold.
    assert!(held > 0);
    for s in [&*current, &*other] {
        let balance = s.balance("shared", NOW_MS).await.unwrap();
        assert_eq!(balance.open_holds, held, "{balance:?}");
        assert_eq!(balance.credits_held, cost, "{balance:?}");
        assert_eq!(balance.credits_available, 2_000 - cost, "{balance:?}");
    }
}

#[tokio::test]
async fn redis_stopped_mid_run_is_unavailable_then_recovers() {
    let mut server = harness::RedisServer::start();
    let s = store(&server).await;
    let grant = GrantCmd {
        account_id: "acct".into(),
        grant_id: "pack".into(),
        units: 100,
        source: CreditSource::Purchased,
        expires_at_ms: None,
    };
    s.grant_credits(&grant, NOW_MS).await.unwrap();
    s.reserve(&image("acct", "before"), NOW_MS).await.unwrap();

    server.stop();
    for i in 0..5 {
        let started = Instant::now();
        let err = s
            .reserve(&image("acct", &format!("down-{i}")), NOW_MS)
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(took < Duration::from_secs(1), "answered after {took:?}");
        assert!(s.ping().await.is_err());
    }

    server.restart();
    // The connection comes back by itself; the restarted Redis is empty (no persistence here).
    let deadline = Instant::now() + Duration::from_secs(10);
    let recovered_after = loop {
        match s.grant_credits(&grant, NOW_MS).await {
            Ok(_) => break deadline - Instant::now(),
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("did not recover: {e:?}"),
        }
    };
    println!("recovered with {recovered_after:?} of the 10 s budget left");
    let r = s.reserve(&image("acct", "after"), NOW_MS).await.unwrap();
    assert_eq!(r.balance.credits_held, 4);
}

#[tokio::test]
async fn a_stalled_redis_answers_within_the_deadline() {
    let server = harness::RedisServer::start();
    let s = store(&server).await;
    s.ping().await.unwrap();
    let port = server.port().to_string();
    let sleeper = std::thread::spawn(move || {
        std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port, "DEBUG", "SLEEP", "1.5"])
            .output()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let err = s.reserve(&image("acct", "slow"), NOW_MS).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        took < DEADLINE + Duration::from_millis(150),
        "answered after {took:?}"
    );
    sleeper.join().unwrap().unwrap();
    // Once Redis answers again, so does the store.
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.balance("acct", NOW_MS).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "store did not come back after the stall"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn racing_reserves_never_overspend() {
    let server = harness::RedisServer::start();
    let s = store(&server).await;
    let a = "racer";
    let plan = SetPlanCmd {
        request_id: "r1".into(),
        account_id: a.into(),
        plan: "hollywood".into(),
        cycle_anchor_ms: None,
    };
    s.set_plan(&plan, NOW_MS).await.unwrap();
    // 5,000 units and 8 concurrent holds: 800-unit videos are limited by money (6 fit).
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let cmd = reserve_cmd(a, &format!("v{i}"), Kind::Video, "cinema", 20);
                s.reserve(&cmd, NOW_MS).await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Ledger(LedgerError::InsufficientFunds { .. })) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 6);
    let b = s.balance(a, NOW_MS).await.unwrap();
    assert_eq!(
        (b.allowance_held, b.allowance_available, b.open_holds),
        (4800, 200, 6)
    );
}

/// 50 ReserveBatch calls race 50 single Reserves on one account whose money runs out long
/// before: nothing is overspent, every batch is held whole or not at all, and what is held is
/// exactly what the successes cost.
#[tokio::test]
async fn racing_batches_and_reserves_never_overspend() {
    let server = harness::RedisServer::start();
    let s = store(&server).await;
    let a = "batch-racer";
    let plan = SetPlanCmd {
        request_id: "r1".into(),
        account_id: a.into(),
        plan: "hollywood".into(),
        cycle_anchor_ms: None,
    };
    s.set_plan(&plan, NOW_MS).await.unwrap();
    // A 5,000-unit allowance; a batch is two 20 s cinema videos (1,600 units), a single one
    // 800: money for six holds, below the plan's cap of 8.
    let batches = (0..50).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            let item = |n: u32| BatchItem {
                generation_id: format!("b{i}-{n}"),
                kind: Kind::Video,
                model: "cinema".into(),
                quantity: 20,
                labels: BTreeMap::new(),
            };
            let cmd = ReserveBatchCmd {
                account_id: a.into(),
                items: vec![item(0), item(1)],
                ttl_seconds: 300,
            };
            s.reserve_batch(&cmd, NOW_MS).await.map(|b| b.holds.len())
        })
    });
    let singles = (0..50).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            let cmd = reserve_cmd(a, &format!("s{i}"), Kind::Video, "cinema", 20);
            s.reserve(&cmd, NOW_MS).await.map(|_| 1)
        })
    });
    let tasks: Vec<_> = batches.chain(singles).collect();
    let mut holds = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(n) => holds += n,
            Err(
                StoreError::Ledger(LedgerError::InsufficientFunds { .. })
                | StoreError::Ledger(LedgerError::Denied(_)),
            ) => {}
            Err(StoreError::Ledger(LedgerError::BatchItem { source, .. }))
                if matches!(
                    *source,
                    LedgerError::InsufficientFunds { .. } | LedgerError::Denied(_)
                ) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    let view = s.account(a, NOW_MS).await.unwrap();
    let b = &view.balance;
    assert_eq!(b.open_holds as usize, holds);
    assert_eq!(view.holds.len(), holds);
    assert_eq!(
        b.allowance_held,
        800 * holds as u64,
        "held = what the successes cost"
    );
    assert_eq!(holds, 6, "money for six 800-unit holds, and they all went");
    assert!(b.allowance_held <= b.allowance_total, "{b:?}");
    assert!(holds <= 8, "the plan's cap counts each hold: {holds}");
    // Batches are whole: both items of a batch or neither.
    for i in 0..50 {
        let have = |n: u32| {
            view.holds
                .iter()
                .any(|h| h.generation_id == format!("b{i}-{n}"))
        };
        assert_eq!(have(0), have(1), "batch {i} half held");
    }
    println!("{holds} holds of 100 calls");
}

#[tokio::test]
async fn a_broken_invariant_leaves_every_key_as_it_was() {
    let server = harness::RedisServer::start();
    let s = store(&server).await;
    harness::corruption::broken_invariants_write_nothing(&*s, &[server.port()], NOW_MS).await;
}

/// Accounts earlier versions stored (the first: no `v`, holds in hashes of their own; the
/// second: `v` 2, a field per counter and per hold) are refused as INTERNAL, naming the
/// layout, and nothing is written to them.
#[tokio::test]
async fn an_account_in_the_first_layout_is_refused() {
    let server = harness::RedisServer::start();
    let s = store(&server).await;
    let a = "first-layout";
    let keys = quota_sidecar::store::keys::AccountKeys::new(
        a,
        quota_sidecar::store::keys::Shards::DEFAULT,
    );
    server.cli(&[
        "HSET",
        &keys.account,
        "plan",
        "none",
        "seq",
        "3",
        "tot",
        "0",
    ]);
    let second = "second-layout";
    let second_keys = quota_sidecar::store::keys::AccountKeys::new(
        second,
        quota_sidecar::store::keys::Shards::DEFAULT,
    );
    server.cli(&[
        "HSET",
        &second_keys.account,
        "v",
        "2",
        "plan",
        "none",
        "h:g1",
        "1|c|standard|1|4|4||1|1|1",
    ]);
    let before = harness::corruption::snapshot(&[server.port()]).await;
    for result in [
        s.balance(a, NOW_MS).await.err(),
        s.reserve(&image(a, "g"), NOW_MS).await.err(),
        s.balance(second, NOW_MS).await.err(),
        s.release(second, "g1", ReleaseReason::Failed, NOW_MS)
            .await
            .err(),
    ] {
        match result {
            Some(StoreError::Internal(m)) => assert!(m.contains("layout"), "{m}"),
            other => panic!("expected INTERNAL, got {other:?}"),
        }
    }
    assert_eq!(
        harness::corruption::snapshot(&[server.port()]).await,
        before
    );
}

/// A broken account is skipped by the sweeper (logged and counted); the other accounts of
/// its shard still expire.
#[tokio::test]
async fn the_sweeper_skips_a_broken_account() {
    use quota_sidecar::store::keys::{AccountKeys, Shards};
    let server = harness::RedisServer::start();
    let s = store(&server).await;
    let broken = "sweep-broken";
    let other = (0..)
        .map(|i| format!("sweep-ok-{i}"))
        .find(|id| Shards::DEFAULT.of(id) == Shards::DEFAULT.of(broken))
        .unwrap();
    for a in [broken, other.as_str()] {
        let grant = GrantCmd {
            account_id: a.into(),
            grant_id: "pack".into(),
            units: 100,
            source: CreditSource::Purchased,
            expires_at_ms: None,
        };
        s.grant_credits(&grant, NOW_MS).await.unwrap();
    }
    // The broken account's hold is due first, so it is swept first.
    s.reserve(&image(broken, "g"), NOW_MS).await.unwrap();
    s.reserve(&image(&other, "g"), NOW_MS + 10).await.unwrap();
    let keys = AccountKeys::new(broken, quota_sidecar::store::keys::Shards::DEFAULT);
    harness::corruption::set_counter_where_it_lives(
        &[server.port()],
        &keys.account,
        "held",
        "oops",
    )
    .await;
    let later = NOW_MS + 3_600_000;
    let expired = s
        .expire_due(Shards::DEFAULT.of(broken), later, 100)
        .await
        .unwrap();
    assert_eq!(expired, 1, "the healthy account's hold expired");
    let b = s.balance(&other, later).await.unwrap();
    assert_eq!((b.open_holds, b.credits_available), (0, 100));
    assert!(matches!(
        s.balance(broken, later).await,
        Err(StoreError::Internal(_))
    ));
}

/// Commands each script runs inside Redis (`INFO commandstats` counts them), per operation:
/// `CONFIG RESETSTAT`, one call, then everything but the `FCALL` itself.
async fn commands_inside(
    server: &harness::RedisServer,
    op: impl std::future::Future<Output = ()>,
) -> BTreeMap<String, u64> {
    assert_eq!(server.cli(&["CONFIG", "RESETSTAT"]), "OK");
    op.await;
    let stats = server.cli(&["INFO", "commandstats"]);
    let mut counts = BTreeMap::new();
    for line in stats.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let (name, fields) = rest.split_once(':').unwrap();
        let calls: u64 = fields
            .split(',')
            .find_map(|f| f.strip_prefix("calls="))
            .unwrap()
            .parse()
            .unwrap();
        if !matches!(
            name,
            "fcall" | "fcall_ro" | "evalsha" | "eval" | "config|resetstat" | "info"
        ) {
            counts.insert(name.to_string(), calls);
        }
    }
    counts
}

/// The targets for the common case (allowance pays, nothing due, no rollover): Reserve,
/// Settle and Release run at most 6 commands inside their script, GetBalance and Quote at most
/// 2; still
/// one `FCALL` per call (see `every_operation_is_one_fcall`).
#[tokio::test]
async fn commands_inside_scripts_meet_the_targets() {
    let server = harness::RedisServer::start();
    let s = store(&server).await;
    let a = "lean-1";
    let plan = SetPlanCmd {
        request_id: "start".into(),
        account_id: a.into(),
        plan: "hollywood".into(),
        cycle_anchor_ms: None,
    };
    s.set_plan(&plan, NOW_MS).await.unwrap();
    let grant = GrantCmd {
        account_id: a.into(),
        grant_id: "pack".into(),
        units: 1000,
        source: CreditSource::Purchased,
        expires_at_ms: None,
    };
    s.grant_credits(&grant, NOW_MS).await.unwrap();
    let total = |c: &BTreeMap<String, u64>| c.values().sum::<u64>();
    let mut report = Vec::new();
    let mut check = |what: &str, counts: BTreeMap<String, u64>, most: u64| {
        report.push(format!("{what}: {} {counts:?}", total(&counts)));
        assert!(total(&counts) <= most, "{what}: {counts:?}");
    };
    let at = NOW_MS + 1_000;
    check(
        "reserve",
        commands_inside(&server, async {
            s.reserve(&image(a, "g1"), at).await.unwrap();
        })
        .await,
        6,
    );
    check(
        "settle",
        commands_inside(&server, async {
            s.settle(a, "g1", None, at).await.unwrap();
        })
        .await,
        6,
    );
    s.reserve(&image(a, "g2"), at).await.unwrap();
    check(
        "release",
        commands_inside(&server, async {
            s.release(a, "g2", ReleaseReason::Failed, at).await.unwrap();
        })
        .await,
        6,
    );
    check(
        "balance",
        commands_inside(&server, async {
            s.balance(a, at).await.unwrap();
        })
        .await,
        2,
    );
    check(
        "quote",
        commands_inside(&server, async {
            let q = QuoteCmd {
                account_id: a.into(),
                kind: Kind::Video,
                model: "cinema".into(),
                quantity: 5,
            };
            s.quote(&q, at).await.unwrap();
        })
        .await,
        2,
    );
    check(
        "settle replay",
        commands_inside(&server, async {
            s.settle(a, "g1", None, at).await.unwrap();
        })
        .await,
        2,
    );
    // Beyond the targets, for the record: the credit path reads and writes the grants too.
    let mut costly = reserve_cmd(a, "v1", Kind::Video, "cinema", 20);
    costly.ttl_seconds = 60;
    for i in 0..6 {
        let g = format!("burn-{i}");
        s.reserve(&reserve_cmd(a, &g, Kind::Video, "cinema", 20), at)
            .await
            .unwrap();
        s.settle(a, &g, None, at).await.unwrap();
    }
    let credit_reserve = commands_inside(&server, async {
        s.reserve(&costly, at).await.unwrap();
    })
    .await;
    report.push(format!(
        "reserve drawing credits: {} {credit_reserve:?}",
        total(&credit_reserve)
    ));
    let credit_settle = commands_inside(&server, async {
        s.settle(a, "v1", None, at).await.unwrap();
    })
    .await;
    report.push(format!(
        "settle of a credit hold: {} {credit_settle:?}",
        total(&credit_settle)
    ));
    for line in report {
        println!("{line}");
    }
}

/// The largest event the API lets through, as the retention cap multiplies it (the sizing in
/// docs/operations.md): 128-character account, generation and grant ids, and 4,096 bytes of
/// labels (the bound) made of `"`, which the event's JSON escapes to twice its size.
#[tokio::test]
async fn a_worst_case_event_has_a_known_size() {
    use quota_sidecar::store::keys::shard_prefix;
    let server = harness::RedisServer::start();
    let s = store(&server).await;
    let account = "a".repeat(128);
    s.grant_credits(
        &GrantCmd {
            account_id: account.clone(),
            grant_id: "p".repeat(128),
            units: 1_000_000,
            source: CreditSource::Purchased,
            expires_at_ms: None,
        },
        NOW_MS,
    )
    .await
    .unwrap();
    let labels: BTreeMap<String, String> = (0..16)
        .map(|i| (format!("k{i:03}"), "\"".repeat(252)))
        .collect();
    assert_eq!(
        labels.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
        quota_sidecar::api::validate::MAX_LABELS_BYTES
    );
    let stream = format!("{}events", shard_prefix(s.shards().of(&account)));
    let usage = || -> u64 {
        let out = server.cli(&["MEMORY", "USAGE", &stream, "SAMPLES", "0"]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("MEMORY USAGE: {out}"))
    };
    let before = usage();
    // A hold.reserved and a hold.released per generation, both with the labels.
    let rounds = 100;
    for i in 0..rounds {
        let generation = format!("{i:03}{}", "g".repeat(125));
        let mut c = reserve_cmd(&account, &generation, Kind::CharacterImage, "standard", 1);
        c.labels = labels.clone();
        s.reserve(&c, NOW_MS).await.unwrap();
        s.release(&account, &generation, ReleaseReason::Failed, NOW_MS)
            .await
            .unwrap();
    }
    let per_event = (usage() - before) / (2 * rounds);
    println!("worst-case event: {per_event} B");
    assert!(
        (8_000..=12_000).contains(&per_event),
        "a worst-case event takes {per_event} B; update the sizing in docs/operations.md"
    );
}
