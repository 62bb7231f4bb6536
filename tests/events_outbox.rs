//! The outbox: every change writes one event in the same atomic step, replays write none, and
//! the memory store's log is identical to the Redis streams.

mod harness;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use quota_sidecar::events::UsageEvent;
use quota_sidecar::ledger::{Catalog, CreditSource, Kind};
use quota_sidecar::store::memory::MemoryStore;
use quota_sidecar::store::redis::RedisStore;
use quota_sidecar::store::*;

const S: i64 = 1000;
const DAY: i64 = 86_400 * S;
/// 2026-04-01 00:00 UTC.
const APR1: i64 = 1_775_001_600_000;

fn reserve(account: &str, generation: &str, kind: Kind, model: &str, quantity: u32) -> ReserveCmd {
    ReserveCmd {
        account_id: account.into(),
        generation_id: generation.into(),
        kind,
        model: model.into(),
        quantity,
        ttl_seconds: 60,
        labels: BTreeMap::from([("job".to_string(), format!("job-{generation}"))]),
    }
}

fn plan(account: &str, request: &str, plan: &str) -> SetPlanCmd {
    SetPlanCmd {
        request_id: request.into(),
        account_id: account.into(),
        plan: plan.into(),
        cycle_anchor_ms: None,
    }
}

fn grant(account: &str, id: &str, units: u64, expires_at_ms: Option<i64>) -> GrantCmd {
    GrantCmd {
        account_id: account.into(),
        grant_id: id.into(),
        units,
        source: CreditSource::Promotional,
        expires_at_ms,
    }
}

/// A day in the life of two accounts, touching every event type, with replays mixed in.
async fn script(s: &dyn Store) {
    let a = "studio-1";
    let b = "indie:2";
    s.set_plan(&plan(a, "p1", "independent"), APR1)
        .await
        .unwrap();
    s.set_plan(&plan(a, "p1", "independent"), APR1)
        .await
        .unwrap(); // replay
    s.grant_credits(&grant(a, "welcome", 100, Some(APR1 + 40 * DAY)), APR1)
        .await
        .unwrap();
    s.grant_credits(&grant(a, "welcome", 100, Some(APR1 + 40 * DAY)), APR1)
        .await
        .unwrap(); // replay
    s.grant_credits(&grant(b, "pack", 500, None), APR1)
        .await
        .unwrap();
    s.reserve(&reserve(a, "v1", Kind::Video, "pro", 10), APR1)
        .await
        .unwrap();
    s.reserve(&reserve(a, "v1", Kind::Video, "pro", 10), APR1)
        .await
        .unwrap(); // replay
    s.extend(a, "v1", 300, APR1 + 30 * S).await.unwrap();
    s.extend(a, "v1", 10, APR1 + 31 * S).await.unwrap(); // shortens nothing: no event
    s.settle(a, "v1", Some(7), APR1 + 60 * S).await.unwrap();
    s.settle(a, "v1", None, APR1 + 61 * S).await.unwrap(); // replay
    s.reserve(&reserve(a, "i1", Kind::CharacterImage, "standard", 2), APR1)
        .await
        .unwrap();
    s.release(a, "i1", ReleaseReason::ContentFiltered, APR1 + S)
        .await
        .unwrap();
    s.release(a, "i1", ReleaseReason::ContentFiltered, APR1 + S)
        .await
        .unwrap(); // replay
    s.reserve(&reserve(b, "f1", Kind::FirstFrame, "standard", 1), APR1)
        .await
        .unwrap();
    // Expires on the next touch (the reserve of f2 reclaims it).
    s.reserve(
        &reserve(b, "f2", Kind::FirstFrame, "standard", 1),
        APR1 + 120 * S,
    )
    .await
    .unwrap();
    s.revoke_credits(b, "pack", APR1 + 121 * S).await.unwrap();
    s.revoke_credits(b, "pack", APR1 + 122 * S).await.unwrap(); // nothing left: no event
    s.set_plan(&plan(a, "p2", "hollywood"), APR1 + 12 * DAY)
        .await
        .unwrap();
    s.set_plan(&plan(a, "p3", "microbudget"), APR1 + 13 * DAY)
        .await
        .unwrap();
    s.set_plan(&plan(a, "p4", "hollywood"), APR1 + 14 * DAY)
        .await
        .unwrap(); // cancels p3
    s.set_plan(&plan(a, "p5", "none"), APR1 + 15 * DAY)
        .await
        .unwrap();
    s.set_plan(&plan(a, "p6", "hollywood"), APR1 + 16 * DAY)
        .await
        .unwrap(); // cancels
    s.set_plan(&plan(a, "p7", "independent"), APR1 + 17 * DAY)
        .await
        .unwrap();
    s.set_plan(&plan(a, "p7", "independent"), APR1 + 18 * DAY)
        .await
        .unwrap(); // replay
                   // May: the downgrade applies and a cycle renews.
    s.balance(a, APR1 + 31 * DAY).await.unwrap();
}

fn comparable(mut events: Vec<UsageEvent>) -> Vec<UsageEvent> {
    for e in &mut events {
        e.ack_id.clear();
    }
    events.sort_by(|x, y| (&x.account_id, x.sequence).cmp(&(&y.account_id, y.sequence)));
    events
}

#[tokio::test]
async fn every_change_writes_one_event_and_both_stores_agree() {
    let memory = MemoryStore::new(Arc::new(Catalog::builtin()));
    script(&memory).await;
    let server = harness::RedisServer::start();
    let store = RedisStore::connect(
        &server.url(),
        Arc::new(Catalog::builtin()),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    script(&store).await;

    let from_redis = comparable(harness::events::redis_events(&server.url()).await);
    let from_memory = comparable(memory.all_events());
    for (r, m) in from_redis.iter().zip(&from_memory) {
        assert_eq!(r, m);
    }
    assert_eq!(from_redis.len(), from_memory.len());

    let types: Vec<(&str, &str)> = from_redis
        .iter()
        .map(|e| (e.account_id.as_str(), e.event_type.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("indie:2", "credits.granted"),
            ("indie:2", "hold.reserved"),
            ("indie:2", "hold.expired"),
            ("indie:2", "hold.reserved"),
            ("indie:2", "credits.revoked"),
            ("studio-1", "plan.changed"),
            ("studio-1", "credits.granted"),
            ("studio-1", "hold.reserved"),
            ("studio-1", "hold.extended"),
            ("studio-1", "hold.settled"),
            ("studio-1", "hold.reserved"),
            ("studio-1", "hold.released"),
            ("studio-1", "plan.upgraded"),
            ("studio-1", "plan.downgrade_scheduled"),
            ("studio-1", "plan.changed"),
            ("studio-1", "plan.downgrade_scheduled"),
            ("studio-1", "plan.changed"),
            ("studio-1", "plan.downgrade_scheduled"),
            ("studio-1", "plan.changed"),
            ("studio-1", "cycle.renewed"),
        ]
    );
    // Ids are unique and sequences strictly increase per account, from 1.
    let ids: HashSet<_> = from_redis.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), from_redis.len());
    for account in ["indie:2", "studio-1"] {
        let seqs: Vec<u64> = from_redis
            .iter()
            .filter(|e| e.account_id == account)
            .map(|e| e.sequence)
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    }

    let find = |id: &str| {
        from_redis
            .iter()
            .find(|e| e.id == id)
            .unwrap_or_else(|| panic!("{id}"))
    };
    let settled = find(&format!("studio-1/hold/v1@{APR1}:settled"));
    assert_eq!(
        (
            settled.quantity,
            settled.units,
            settled.from_allowance,
            settled.from_credits
        ),
        (7, 140, 140, 0)
    );
    assert_eq!(
        (settled.kind, settled.model.as_str()),
        (Some(Kind::Video), "pro")
    );
    assert_eq!(settled.labels["job"], "job-v1");
    assert_eq!(settled.cycle_start_ms, Some(APR1));
    let released = find(&format!("studio-1/hold/i1@{APR1}:released"));
    assert_eq!(
        (released.units, released.reason.as_str()),
        (8, "content_filtered")
    );
    let expired = find(&format!("indie:2/hold/f1@{APR1}:expired"));
    assert_eq!(
        (expired.units, expired.from_credits, expired.grants.len()),
        (2, 2, 1)
    );
    let upgraded = find(&format!("studio-1/p2@{}:upgraded", APR1 + 12 * DAY));
    // 18 of 30 days left: +1,500 units and 1,500 cents.
    assert_eq!(
        (upgraded.allowance_added, upgraded.prorated_charge_cents),
        (1500, 1500)
    );
    assert_eq!(
        (upgraded.plan.as_str(), upgraded.previous_plan.as_str()),
        ("hollywood", "independent")
    );
    let revoked = find(&format!("indie:2/grant/pack@{APR1}:revoked"));
    assert_eq!(
        (revoked.units, revoked.source.as_str()),
        (498, "promotional")
    );
    let renewed = find(&format!("studio-1:{}:renewed", APR1 + 30 * DAY));
    assert_eq!(
        (renewed.plan.as_str(), renewed.allowance_added),
        ("independent", 2500)
    );
    let extended = find(&format!(
        "studio-1/hold/v1@{APR1}:extended:{}",
        APR1 + 330 * S
    ));
    assert_eq!(extended.expires_at_ms, Some(APR1 + 330 * S));
}
