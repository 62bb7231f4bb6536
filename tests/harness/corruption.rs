//! Check-then-write, seen from Redis: corrupt one counter of an account so that an operation
//! breaks a ledger invariant, and show that the operation answers INTERNAL and leaves every key
//! byte for byte as it was (`DUMP` of every key on every node, before and after).

use std::collections::BTreeMap;

use quota_sidecar::ledger::{CreditSource, Kind};
use quota_sidecar::store::keys::AccountKeys;
use quota_sidecar::store::*;

/// Every key on the nodes at `ports` with its `DUMP`.
pub async fn snapshot(ports: &[u16]) -> BTreeMap<String, Vec<u8>> {
    let mut all = BTreeMap::new();
    for port in ports {
        let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .unwrap();
        for key in keys {
            let dump: Vec<u8> = ::redis::cmd("DUMP")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            all.insert(key, dump);
        }
    }
    all
}

/// Sets counter `field` of the account state in `key` (the MessagePack value in its field `s`)
/// to `value` (a number, or text when it is not one), on whichever of the nodes holds `key`.
pub async fn set_counter_where_it_lives(ports: &[u16], key: &str, field: &str, value: &str) {
    const SET_COUNTER: &str = "local t = cmsgpack.unpack(redis.call('HGET', KEYS[1], 's')) \
        t[ARGV[1]] = tonumber(ARGV[2]) or ARGV[2] \
        redis.call('HSET', KEYS[1], 's', cmsgpack.pack(t)) return 1";
    let mut conn = node_of(ports, key).await;
    let _: i64 = ::redis::cmd("EVAL")
        .arg(SET_COUNTER)
        .arg(1)
        .arg(key)
        .arg(field)
        .arg(value)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// `HSET key field value` on whichever of the nodes holds `key`.
async fn hset_where_it_lives(ports: &[u16], key: &str, field: &str, value: &str) {
    let mut conn = node_of(ports, key).await;
    let _: () = ::redis::cmd("HSET")
        .arg(key)
        .arg(field)
        .arg(value)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// A connection to the node of `ports` that holds `key`.
async fn node_of(ports: &[u16], key: &str) -> ::redis::aio::MultiplexedConnection {
    for port in ports {
        let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        // A cluster node answers MOVED for a key of another node's slot.
        let exists: Option<bool> = ::redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut conn)
            .await
            .ok();
        if exists == Some(true) {
            return conn;
        }
    }
    panic!("no node holds {key}");
}

fn assert_internal<T: std::fmt::Debug>(what: &str, result: StoreResult<T>) {
    match result {
        Err(StoreError::Internal(message)) => {
            assert!(message.contains("invariant"), "{what}: {message}")
        }
        other => panic!("{what}: expected INTERNAL, got {other:?}"),
    }
}

/// Sets up an account with an allowance hold and a credit hold, corrupts its allowance counter
/// and then a grant, and runs every mutating operation against each corruption.
pub async fn broken_invariants_write_nothing(store: &dyn Store, ports: &[u16], now_ms: i64) {
    let a = "corrupt-1";
    let keys = AccountKeys::new(a, quota_sidecar::store::keys::Shards::DEFAULT);
    store
        .set_plan(
            &SetPlanCmd {
                request_id: "start".into(),
                account_id: a.into(),
                plan: "microbudget".into(),
                cycle_anchor_ms: None,
            },
            now_ms,
        )
        .await
        .unwrap();
    let grant = GrantCmd {
        account_id: a.into(),
        grant_id: "pack".into(),
        units: 500,
        source: CreditSource::Purchased,
        expires_at_ms: None,
    };
    store.grant_credits(&grant, now_ms).await.unwrap();
    let reserve = |generation: &str, quantity: u32| ReserveCmd {
        account_id: a.into(),
        generation_id: generation.into(),
        kind: Kind::Video,
        model: "standard".into(),
        quantity,
        ttl_seconds: 300,
        labels: BTreeMap::new(),
    };
    // 50 units of allowance, then the rest of the allowance and 50 units of credits.
    store.reserve(&reserve("g1", 5), now_ms).await.unwrap();
    store
        .settle(a, "g1", None, now_ms)
        .await
        .expect("a clean settle");
    for i in 0..19 {
        let g = format!("burn-{i}");
        store.reserve(&reserve(&g, 5), now_ms).await.unwrap();
        store.settle(a, &g, None, now_ms).await.unwrap();
    }
    let held = store.reserve(&reserve("held", 5), now_ms).await.unwrap();
    assert_eq!(held.hold.from_credits, 50, "{held:?}");

    // 1. The allowance counter says more is used than the cycle has.
    set_counter_where_it_lives(ports, &keys.account, "used", "999999").await;
    let before = snapshot(ports).await;
    let at = now_ms + 1_000;
    assert_internal("settle", store.settle(a, "held", None, at).await);
    assert_internal(
        "release",
        store.release(a, "held", ReleaseReason::Failed, at).await,
    );
    assert_internal("reserve", store.reserve(&reserve("new", 1), at).await);
    assert_internal(
        "grant",
        store
            .grant_credits(
                &GrantCmd {
                    grant_id: "more".into(),
                    ..grant.clone()
                },
                at,
            )
            .await,
    );
    assert_eq!(
        snapshot(ports).await,
        before,
        "a broken invariant wrote something"
    );
    set_counter_where_it_lives(ports, &keys.account, "used", "1000").await;

    // 2. A grant claims more units than it was granted.
    hset_where_it_lives(ports, &keys.grants, "pack", "L|purchased|500|600|50||0|0").await;
    let before = snapshot(ports).await;
    assert_internal(
        "release",
        store.release(a, "held", ReleaseReason::Failed, at).await,
    );
    assert_internal("settle", store.settle(a, "held", Some(1), at).await);
    assert_eq!(
        snapshot(ports).await,
        before,
        "a broken invariant wrote something"
    );
}
