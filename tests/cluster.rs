//! The Redis store on a real three-master Redis Cluster: accounts spread over the nodes, every
//! call stays in one slot, the Functions library comes back on a node that lost it, and the event
//! readers work shard by shard. (The whole conformance suite also runs on a cluster.)

mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use quota_sidecar::events::{EventLog, HOLD_RESERVED};
use quota_sidecar::ledger::{Catalog, CreditSource, Kind};
use quota_sidecar::store::redis::RedisStore;
use quota_sidecar::store::*;

/// 2026-06-01 00:00 UTC.
const NOW_MS: i64 = 1_780_272_000_000;
const ACCOUNTS: usize = 48;

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

#[tokio::test]
async fn accounts_spread_over_the_nodes_and_the_library_survives_a_flush() {
    let cluster = harness::cluster::RedisCluster::start();
    let s = RedisStore::connect(
        &cluster.url(),
        Arc::new(Catalog::builtin()),
        Duration::from_secs(2),
    )
    .await
    .expect("connect");
    for i in 0..ACCOUNTS {
        let a = format!("studio-{i}");
        let grant = GrantCmd {
            account_id: a.clone(),
            grant_id: "pack".into(),
            units: 100,
            source: CreditSource::Purchased,
            expires_at_ms: None,
        };
        s.grant_credits(&grant, NOW_MS).await.unwrap();
        s.reserve(&image(&a, "g1"), NOW_MS).await.unwrap();
    }
    let per_node = cluster.keys_per_node();
    println!("keys per node: {per_node:?}");
    assert!(
        per_node.iter().all(|&keys| keys > 0),
        "every node holds accounts: {per_node:?}"
    );

    // A node that lost its functions (restarted without persistence, or new) answers
    // "Function not found" → the library is loaded (on every primary) → the call runs,
    // invisibly to the caller.
    let library = s.library().name().to_string();
    assert_eq!(cluster.nodes[1].cli(&["FUNCTION", "FLUSH"]), "OK");
    assert!(!cluster.nodes[1]
        .cli(&["FUNCTION", "LIST"])
        .contains(&library));
    for i in 0..ACCOUNTS / 2 {
        let a = format!("studio-{i}");
        let settled = s.settle(&a, "g1", None, NOW_MS + 1_000).await.unwrap();
        assert_eq!(settled.charged_units, 4);
    }
    for node in &cluster.nodes {
        assert!(node.cli(&["FUNCTION", "LIST"]).contains(&library));
        assert_eq!(node.cli(&["FUNCTION", "FLUSH"]), "OK");
    }
    for i in ACCOUNTS / 2..ACCOUNTS {
        let a = format!("studio-{i}");
        let settled = s.settle(&a, "g1", None, NOW_MS + 1_000).await.unwrap();
        assert_eq!(settled.charged_units, 4);
    }

    // A consumer group reads every shard's stream, wherever its slot lives.
    let events = s
        .read("billing", "c1", 10_000, true, 60_000, NOW_MS)
        .await
        .unwrap();
    let reserved = events
        .iter()
        .filter(|e| e.event_type == HOLD_RESERVED)
        .count();
    assert_eq!(reserved, ACCOUNTS);
    assert_eq!(events.len(), ACCOUNTS * 3, "granted, reserved, settled");
    let ids: Vec<String> = events.iter().map(|e| e.ack_id.clone()).collect();
    assert_eq!(s.ack("billing", &ids).await.unwrap() as usize, ids.len());
    assert_eq!(s.pending("billing").await.unwrap(), 0);
}

#[tokio::test]
async fn the_binary_serves_from_a_cluster() {
    let cluster = harness::cluster::RedisCluster::start();
    let sidecar = harness::sidecar::Sidecar::start(&cluster.url(), None);
    harness::sidecar::wait_serving(sidecar.worker).await;
    let mut client = quota_sidecar::pb::quota_client::QuotaClient::new(
        harness::sidecar::channel(sidecar.worker).await,
    );
    // No plan and no credits: the script ran on the account's node and said so.
    let err = client
        .reserve(quota_sidecar::pb::ReserveRequest {
            account_id: "studio-1".into(),
            generation_id: "g1".into(),
            kind: quota_sidecar::pb::GenerationKind::CharacterImage as i32,
            model: "standard".into(),
            quantity: 1,
            ttl_seconds: 0,
            labels: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    let balance = client
        .get_balance(quota_sidecar::pb::GetBalanceRequest {
            account_id: "studio-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(balance.plan, "none");
}

#[tokio::test]
async fn a_broken_invariant_leaves_every_key_as_it_was() {
    let cluster = harness::cluster::RedisCluster::start();
    let s = RedisStore::connect(
        &cluster.url(),
        Arc::new(Catalog::builtin()),
        Duration::from_secs(2),
    )
    .await
    .expect("connect");
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port()).collect();
    harness::corruption::broken_invariants_write_nothing(&s, &ports, NOW_MS).await;
}
