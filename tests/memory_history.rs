//! The memory store's cost does not grow with an account's past: finished holds leave the
//! account's live state for its past, where replays still find them until retention forgets
//! them, and an account with a long past answers every call as an account without one.

use std::collections::BTreeMap;
use std::sync::Arc;

use quota_sidecar::ledger::{Catalog, CreditSource, Kind, RETENTION_SECONDS};
use quota_sidecar::store::memory::MemoryStore;
use quota_sidecar::store::sweeper::SWEEP_ACCOUNTS_PER_SHARD;
use quota_sidecar::store::*;

const S: i64 = 1000;
/// 2026-01-15 00:00 UTC.
const T0: i64 = 1_768_435_200_000;
/// Open holds the plan below allows at once.
const HOLDS_AT_ONCE: usize = 8;
/// Holds of the account with a past that the sweeper expires, and that it releases.
const EXPIRED: usize = 500;
const RELEASED: usize = 500;

fn image(account: &str, generation: &str, ttl_seconds: u32) -> ReserveCmd {
    ReserveCmd {
        account_id: account.into(),
        generation_id: generation.into(),
        kind: Kind::CharacterImage,
        model: "standard".into(),
        quantity: 1,
        ttl_seconds,
        labels: BTreeMap::from([("job".to_string(), format!("job-{generation}"))]),
    }
}

async fn open_account(store: &MemoryStore, account: &str, now_ms: i64) {
    store
        .set_plan(
            &SetPlanCmd {
                request_id: "plan-1".into(),
                account_id: account.into(),
                plan: "hollywood".into(),
                cycle_anchor_ms: None,
            },
            now_ms,
        )
        .await
        .unwrap();
    store
        .grant_credits(
            &GrantCmd {
                account_id: account.into(),
                grant_id: "credits".into(),
                units: 1_000_000,
                source: CreditSource::Purchased,
                expires_at_ms: None,
            },
            now_ms,
        )
        .await
        .unwrap();
}

/// `b` with `a`'s account id, so two accounts' answers compare.
fn as_account<T: std::fmt::Debug>(value: &T, from: &str, to: &str) -> String {
    format!("{value:?}").replace(&format!("\"{from}\""), &format!("\"{to}\""))
}

#[tokio::test]
async fn finished_holds_leave_the_live_state_and_replays_still_find_them() {
    let store = MemoryStore::new(Arc::new(Catalog::builtin()));
    let (old, fresh) = ("with-a-past", "without-one");
    open_account(&store, old, T0).await;
    open_account(&store, fresh, T0).await;
    let shard = store.shards().of(old);

    // 500 holds the sweeper expires, eight at a time (the plan's limit of open holds).
    let mut now = T0;
    let mut expired_ids = Vec::new();
    while expired_ids.len() < EXPIRED {
        let batch = HOLDS_AT_ONCE.min(EXPIRED - expired_ids.len());
        for _ in 0..batch {
            let id = format!("expired-{}", expired_ids.len());
            store.reserve(&image(old, &id, 60), now).await.unwrap();
            expired_ids.push(id);
        }
        now += 61 * S;
        let swept = store
            .expire_due(shard, now, SWEEP_ACCOUNTS_PER_SHARD)
            .await
            .unwrap();
        assert_eq!(swept as usize, batch, "the sweeper expires every due hold");
    }
    // 500 holds reserved and released.
    let mut released_ids = Vec::new();
    for i in 0..RELEASED {
        let id = format!("released-{i}");
        store.reserve(&image(old, &id, 300), now).await.unwrap();
        store
            .release(old, &id, ReleaseReason::Cancelled, now)
            .await
            .unwrap();
        released_ids.push(id);
        now += S;
    }
    assert_eq!(
        store.retained_holds(old),
        0,
        "no finished hold in the live state"
    );
    assert_eq!(
        store.remembered_records(old),
        EXPIRED + RELEASED + 1,
        "every finished hold and the plan request are in the account's past"
    );

    // Every call answers as on the account without a past.
    let same = |what: &str, a: String, b: String| assert_eq!(a, b, "{what}");
    let (a, b) = (
        store.balance(old, now).await.unwrap(),
        store.balance(fresh, now).await.unwrap(),
    );
    same("balance", as_account(&a, old, fresh), format!("{b:?}"));
    for (i, end) in ["settle", "release", "extend"].into_iter().enumerate() {
        let id = format!("after-{i}");
        let a = store.reserve(&image(old, &id, 300), now).await.unwrap();
        let b = store.reserve(&image(fresh, &id, 300), now).await.unwrap();
        same("reserve", as_account(&a, old, fresh), format!("{b:?}"));
        let (a, b) = match end {
            "settle" => (
                format!("{:?}", store.settle(old, &id, None, now).await),
                format!("{:?}", store.settle(fresh, &id, None, now).await),
            ),
            "release" => (
                format!(
                    "{:?}",
                    store.release(old, &id, ReleaseReason::Failed, now).await
                ),
                format!(
                    "{:?}",
                    store.release(fresh, &id, ReleaseReason::Failed, now).await
                ),
            ),
            _ => (
                format!("{:?}", store.extend(old, &id, 600, now).await),
                format!("{:?}", store.extend(fresh, &id, 600, now).await),
            ),
        };
        same(end, a.replace(old, fresh), b);
    }
    let (a, b) = (
        store.account(old, now).await.unwrap(),
        store.account(fresh, now).await.unwrap(),
    );
    same("account view", as_account(&a, old, fresh), format!("{b:?}"));
    assert_eq!(a.holds.len(), 1, "the extended hold is the one open hold");
    assert_eq!(store.retained_holds(old), 1, "only the open hold is live");
    for account in [old, fresh] {
        store
            .release(account, "after-2", ReleaseReason::Cancelled, now)
            .await
            .unwrap();
    }
    assert_eq!(store.retained_holds(old), 0);

    // Replays of finished holds are answered within retention.
    let replay_at = now + 6 * 86_400 * S;
    for id in &expired_ids {
        let again = store.reserve(&image(old, id, 60), replay_at).await.unwrap();
        assert!(again.replayed, "{id}");
        assert_eq!(again.hold.state, HoldState::Expired, "{id}");
        let released = store
            .release(old, id, ReleaseReason::Failed, replay_at)
            .await
            .unwrap();
        assert_eq!(released.returned_units, 0, "expiry gave everything back");
        let err = store.settle(old, id, None, replay_at).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Ledger(LedgerError::HoldState {
                    state: HoldState::Expired,
                    ..
                })
            ),
            "{id}: {err:?}"
        );
    }
    for id in &released_ids {
        let released = store
            .release(old, id, ReleaseReason::Failed, replay_at)
            .await
            .unwrap();
        assert!(released.replayed, "{id}");
        assert_eq!(released.hold.state, HoldState::Released);
        let other_terms = ReserveCmd {
            quantity: 2,
            ..image(old, id, 60)
        };
        let err = store.reserve(&other_terms, replay_at).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Ledger(LedgerError::GenerationConflict { .. })
            ),
            "{id}: {err:?}"
        );
    }
    assert_eq!(
        store.retained_holds(old),
        0,
        "replays bring nothing back to life"
    );

    // Past retention they are not answered, even while a record still waits to be dropped
    // (a call forgets only a few, earliest first: the last released hold is still there).
    let late = now + i64::from(RETENTION_SECONDS) * S + 1;
    let last = released_ids.last().unwrap();
    let err = store.settle(old, last, None, late).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Ledger(LedgerError::HoldNotFound { .. })),
        "{err:?}"
    );
    let kept = store.remembered_records(old);
    assert!(kept > EXPIRED, "one call forgot only a few: {kept} kept");
    // The sweep forgets the rest.
    store
        .expire_due(shard, late, SWEEP_ACCOUNTS_PER_SHARD)
        .await
        .unwrap();
    assert_eq!(
        store.remembered_records(old),
        0,
        "retention forgot the past"
    );
    assert_eq!(store.remembered_records(fresh), 0);
    for id in expired_ids.iter().chain(&released_ids) {
        let err = store.settle(old, id, None, late).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Ledger(LedgerError::HoldNotFound { .. })),
            "{id}: {err:?}"
        );
    }
}
