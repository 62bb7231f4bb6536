//! The conformance suite: every case runs on the memory store and on the Redis store (a private
//! `redis-server`), with the same inputs and the same expected numbers. It is what keeps the Lua
//! scripts and their Rust twin identical.

mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;

use quota_sidecar::events::{self, EventLog, UsageEvent};
use quota_sidecar::ledger::account::refund_grant_id;
use quota_sidecar::ledger::{
    Catalog, CreditSource, GrantDraw, Kind, SharedCatalog, MAX_LIVE_GRANTS, RETENTION_SECONDS,
};
use quota_sidecar::store::keys::Shards;
use quota_sidecar::store::memory::{MemoryStore, FORGOTTEN_PER_CALL};
use quota_sidecar::store::redis::RedisStore;
use quota_sidecar::store::*;
use time::macros::datetime;
use time::OffsetDateTime;

const S: i64 = 1000;
const MIN: i64 = 60 * S;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Thursday 2026-01-15 00:00 UTC: the default "now" of a case.
fn t0() -> i64 {
    ms(datetime!(2026-01-15 00:00 UTC))
}

/// The store under test; keeps the Redis server alive as long as the store.
struct Subject {
    store: Arc<dyn Store>,
    /// The same store's event log.
    log: Arc<dyn EventLog>,
    /// The store's catalog in force: a case may reload it.
    catalog: SharedCatalog,
    /// Keeps the Redis server or cluster alive as long as the store.
    _redis: Option<Box<dyn std::any::Any>>,
}

impl std::ops::Deref for Subject {
    type Target = dyn Store;
    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

impl Subject {
    /// Fields of `account`'s hash on a Redis store (`HLEN`); `None` on the memory store.
    fn account_fields(&self, account: &str) -> Option<u64> {
        let key =
            quota_sidecar::store::keys::AccountKeys::new(account, self.store.shards()).account;
        let redis = self._redis.as_ref()?;
        let nodes: Vec<&harness::RedisServer> =
            if let Some(server) = redis.downcast_ref::<harness::RedisServer>() {
                vec![server]
            } else {
                let cluster = redis.downcast_ref::<harness::cluster::RedisCluster>()?;
                cluster.nodes.iter().collect()
            };
        // On a Cluster only the key's own node answers a number (the others answer MOVED).
        nodes
            .iter()
            .find_map(|n| n.cli(&["HLEN", &key]).parse().ok())
    }

    /// Every event the store has written so far, in (account, sequence) order.
    async fn events(&self) -> Vec<UsageEvent> {
        // A new group reads from the oldest retained event.
        let group = format!("check-{}", fastrand::u64(..));
        let mut all = self
            .log
            .read(&group, "c", 100_000, false, 0, t0())
            .await
            .expect("read events");
        all.sort_by(|x, y| (&x.account_id, x.sequence).cmp(&(&y.account_id, y.sequence)));
        all
    }
}

fn memory() -> Subject {
    let catalog = SharedCatalog::new(Catalog::builtin());
    let store = Arc::new(MemoryStore::new(catalog.clone()));
    Subject {
        store: store.clone(),
        log: store,
        catalog,
        _redis: None,
    }
}

fn memory_of_256_shards() -> Subject {
    let catalog = SharedCatalog::new(Catalog::builtin());
    let store = Arc::new(MemoryStore::new(catalog.clone()).with_shards(Shards::new(256).unwrap()));
    Subject {
        store: store.clone(),
        log: store,
        catalog,
        _redis: None,
    }
}

async fn redis() -> Subject {
    let server = harness::RedisServer::start();
    let catalog = SharedCatalog::new(Catalog::builtin());
    let store = RedisStore::connect(
        &server.url(),
        catalog.clone(),
        std::time::Duration::from_secs(2),
    )
    .await
    .expect("connect");
    let store = Arc::new(store);
    Subject {
        store: store.clone(),
        log: store,
        catalog,
        _redis: Some(Box::new(server)),
    }
}

/// A three-master Redis Cluster: the accounts of a case land on different nodes.
async fn cluster() -> Subject {
    cluster_of(Shards::DEFAULT).await
}

/// [`cluster`] on a deployment of many more shards than primaries.
async fn cluster_of_256_shards() -> Subject {
    cluster_of(Shards::new(256).unwrap()).await
}

async fn cluster_of(shards: Shards) -> Subject {
    let cluster = harness::cluster::RedisCluster::start();
    let catalog = SharedCatalog::new(Catalog::builtin());
    let store = RedisStore::connect(
        &cluster.url(),
        catalog.clone(),
        std::time::Duration::from_secs(2),
    )
    .await
    .expect("connect")
    .with_shards(shards);
    let store = Arc::new(store);
    Subject {
        store: store.clone(),
        log: store,
        catalog,
        _redis: Some(Box::new(cluster)),
    }
}

fn cmd(account: &str, generation: &str, kind: Kind, model: &str, quantity: u32) -> ReserveCmd {
    ReserveCmd {
        account_id: account.into(),
        generation_id: generation.into(),
        kind,
        model: model.into(),
        quantity,
        ttl_seconds: 300,
        labels: BTreeMap::new(),
    }
}

fn image(account: &str, generation: &str) -> ReserveCmd {
    cmd(account, generation, Kind::CharacterImage, "standard", 1)
}

fn video(account: &str, generation: &str, model: &str, seconds: u32) -> ReserveCmd {
    cmd(account, generation, Kind::Video, model, seconds)
}

async fn set_plan(s: &Subject, account: &str, request: &str, plan: &str, now_ms: i64) -> PlanSet {
    s.set_plan(
        &SetPlanCmd {
            request_id: request.into(),
            account_id: account.into(),
            plan: plan.into(),
            cycle_anchor_ms: None,
        },
        now_ms,
    )
    .await
    .expect("set plan")
}

async fn start_plan_at(
    s: &Subject,
    account: &str,
    plan: &str,
    anchor_ms: i64,
    now_ms: i64,
) -> PlanSet {
    s.set_plan(
        &SetPlanCmd {
            request_id: format!("start-{account}"),
            account_id: account.into(),
            plan: plan.into(),
            cycle_anchor_ms: Some(anchor_ms),
        },
        now_ms,
    )
    .await
    .expect("start plan")
}

async fn grant(
    s: &Subject,
    account: &str,
    id: &str,
    units: u64,
    source: CreditSource,
    expires_at_ms: Option<i64>,
    now_ms: i64,
) -> Granted {
    s.grant_credits(
        &GrantCmd {
            account_id: account.into(),
            grant_id: id.into(),
            units,
            source,
            expires_at_ms,
        },
        now_ms,
    )
    .await
    .expect("grant")
}

/// The built-in catalog as a reload would leave it without plan `independent` and model `pro`.
fn catalog_without_independent_and_pro() -> Catalog {
    let text = include_str!("../deploy/catalog.toml");
    let mut kept = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with('[') {
            skipping = line == "[plans.independent]" || line == "[models.pro]";
        }
        if !skipping {
            kept.push_str(&line.replace("\"pro\", ", ""));
            kept.push('\n');
        }
    }
    let catalog = Catalog::from_toml_str(&kept).expect("catalog without independent");
    assert!(catalog.plan("independent").is_none() && !catalog.has_model("pro"));
    catalog
}

fn draws(list: &[(&str, u64)]) -> Vec<GrantDraw> {
    list.iter()
        .map(|(id, units)| GrantDraw {
            grant_id: (*id).into(),
            units: *units,
        })
        .collect()
}

/// Puts `account` on Hollywood and spends 4,800 of its 5,000 units (six 20 s cinema videos).
async fn hollywood_with_200_left(s: &Subject, account: &str, now_ms: i64) {
    set_plan(s, account, "start", "hollywood", now_ms).await;
    for i in 0..6 {
        let generation = format!("burn-{i}");
        s.reserve(&video(account, &generation, "cinema", 20), now_ms)
            .await
            .unwrap();
        s.settle(account, &generation, None, now_ms).await.unwrap();
    }
    let b = s.balance(account, now_ms).await.unwrap();
    assert_eq!((b.allowance_used, b.allowance_available), (4800, 200));
}

/// Six 20 s cinema videos held on `account` (`busy-0`..`busy-5`): 4,800 units of a Hollywood
/// allowance.
async fn hold_six_cinema_videos(s: &Subject, account: &str, now_ms: i64) {
    for i in 0..6 {
        let generation = format!("busy-{i}");
        s.reserve(&video(account, &generation, "cinema", 20), now_ms)
            .await
            .unwrap();
    }
}

/// Releases what [`hold_six_cinema_videos`] held.
async fn release_six_cinema_videos(s: &Subject, account: &str, now_ms: i64) {
    for i in 0..6 {
        let generation = format!("busy-{i}");
        s.release(account, &generation, ReleaseReason::Failed, now_ms)
            .await
            .unwrap();
    }
}

mod cases {
    use super::*;

    pub async fn allowance_then_credits(s: Subject) {
        let now = t0();
        hollywood_with_200_left(&s, "acct", now).await;
        grant(&s, "acct", "pack", 1000, CreditSource::Purchased, None, now).await;
        let r = s
            .reserve(&video("acct", "g1", "cinema", 20), now)
            .await
            .unwrap();
        assert!(!r.replayed);
        assert_eq!(r.hold.cost_units, 800);
        assert_eq!((r.hold.from_allowance, r.hold.from_credits), (200, 600));
        assert_eq!(r.hold.grants, draws(&[("pack", 600)]));
        assert_eq!(r.hold.state, HoldState::Held);
        assert_eq!(r.hold.expires_at_ms, now + 300 * S);
        let b = r.balance;
        assert_eq!(
            (
                b.allowance_total,
                b.allowance_used,
                b.allowance_held,
                b.allowance_available
            ),
            (5000, 4800, 200, 0)
        );
        assert_eq!(
            (b.credits_available, b.credits_held, b.open_holds),
            (400, 600, 1)
        );
        let settled = s.settle("acct", "g1", None, now).await.unwrap();
        assert_eq!((settled.charged_units, settled.returned_units), (800, 0));
        let b = settled.balance;
        assert_eq!(
            (
                b.allowance_used,
                b.allowance_held,
                b.credits_available,
                b.credits_held
            ),
            (5000, 0, 400, 0)
        );
    }

    pub async fn burn_order_across_three_grants(s: Subject) {
        let now = t0();
        let a = "acct";
        grant(&s, a, "bought", 100, CreditSource::Purchased, None, now).await;
        grant(
            &s,
            a,
            "promo-late",
            10,
            CreditSource::Promotional,
            None,
            now + 1,
        )
        .await;
        grant(&s, a, "promo", 50, CreditSource::Promotional, None, now).await;
        grant(
            &s,
            a,
            "expiring",
            30,
            CreditSource::Purchased,
            Some(now + 10 * DAY),
            now,
        )
        .await;
        let at = now + 2;
        // Earliest expiry first, then promotional before purchased, then the oldest.
        let view = s.account(a, at).await.unwrap();
        let order: Vec<_> = view.grants.iter().map(|g| g.grant_id.as_str()).collect();
        assert_eq!(order, ["expiring", "promo", "promo-late", "bought"]);
        // 50 units span the first two grants.
        let r = s.reserve(&video(a, "g1", "standard", 5), at).await.unwrap();
        assert_eq!(r.hold.grants, draws(&[("expiring", 30), ("promo", 20)]));
        assert_eq!((r.hold.from_allowance, r.hold.from_credits), (0, 50));
        assert_eq!(
            (r.balance.credits_available, r.balance.credits_held),
            (140, 50)
        );
        s.settle(a, "g1", None, at).await.unwrap();
        let view = s.account(a, at).await.unwrap();
        let left: Vec<_> = view
            .grants
            .iter()
            .map(|g| (g.grant_id.as_str(), g.units_remaining, g.units_held))
            .collect();
        // The exhausted grant is dropped.
        assert_eq!(
            left,
            [("promo", 30, 0), ("promo-late", 10, 0), ("bought", 100, 0)]
        );
        // The next 50 take the rest of promo, then promo-late, then bought.
        let r = s.reserve(&video(a, "g2", "standard", 5), at).await.unwrap();
        assert_eq!(
            r.hold.grants,
            draws(&[("promo", 30), ("promo-late", 10), ("bought", 10)])
        );
    }

    pub async fn replays_are_idempotent(s: Subject) {
        let now = t0();
        let a = "acct";
        set_plan(&s, a, "r1", "hollywood", now).await;
        let first = s.reserve(&image(a, "g1"), now).await.unwrap();
        let again = s.reserve(&image(a, "g1"), now + 5 * S).await.unwrap();
        assert!(again.replayed);
        assert_eq!(again.hold, first.hold);
        assert_eq!(again.balance.allowance_held, 4);
        let settled = s.settle(a, "g1", Some(1), now).await.unwrap();
        assert!(!settled.replayed);
        // A retried Settle returns the first result, whatever it asks.
        let retried = s.settle(a, "g1", None, now + S).await.unwrap();
        assert!(retried.replayed);
        assert_eq!((retried.charged_units, retried.returned_units), (4, 0));
        assert_eq!(retried.hold, settled.hold);
        assert_eq!(retried.balance.allowance_used, 4);
        // Reserve after settle returns the settled hold.
        let after = s.reserve(&image(a, "g1"), now + 2 * S).await.unwrap();
        assert!(after.replayed);
        assert_eq!(after.hold.state, HoldState::Settled);
        assert_eq!(after.balance.allowance_used, 4);

        s.reserve(&image(a, "g2"), now).await.unwrap();
        let released = s
            .release(a, "g2", ReleaseReason::Failed, now)
            .await
            .unwrap();
        assert!(!released.replayed);
        assert_eq!(released.returned_units, 4);
        let again = s
            .release(a, "g2", ReleaseReason::Cancelled, now + S)
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(again.returned_units, 4);
        assert_eq!(again.hold.state, HoldState::Released);
        let b = s.balance(a, now + 3 * S).await.unwrap();
        assert_eq!(
            (b.allowance_used, b.allowance_held, b.open_holds),
            (4, 0, 0)
        );
    }

    pub async fn same_generation_with_other_terms_conflicts(s: Subject) {
        let now = t0();
        let a = "acct";
        set_plan(&s, a, "r1", "hollywood", now).await;
        s.reserve(&image(a, "g1"), now).await.unwrap();
        for other in [
            cmd(a, "g1", Kind::LocationImage, "standard", 1),
            cmd(a, "g1", Kind::CharacterImage, "pro", 1),
            cmd(a, "g1", Kind::CharacterImage, "standard", 2),
        ] {
            let err = s.reserve(&other, now).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    StoreError::Ledger(LedgerError::GenerationConflict { .. })
                ),
                "{err:?}"
            );
        }
        let b = s.balance(a, now).await.unwrap();
        assert_eq!((b.allowance_held, b.open_holds), (4, 1));
    }

    pub async fn denied_reserve_leaves_no_state(s: Subject) {
        let now = t0();
        let a = "acct";
        let err = s.reserve(&image(a, "g1"), now).await.unwrap_err();
        assert_eq!(
            err,
            StoreError::Ledger(LedgerError::InsufficientFunds {
                needed: 4,
                available: 0
            })
        );
        grant(&s, a, "small", 3, CreditSource::Promotional, None, now).await;
        let err = s.reserve(&image(a, "g1"), now).await.unwrap_err();
        assert_eq!(
            err,
            StoreError::Ledger(LedgerError::InsufficientFunds {
                needed: 4,
                available: 3
            })
        );
        let b = s.balance(a, now).await.unwrap();
        assert_eq!(
            (b.credits_available, b.credits_held, b.open_holds),
            (3, 0, 0)
        );
        assert!(matches!(
            s.settle(a, "g1", None, now).await,
            Err(StoreError::Ledger(LedgerError::HoldNotFound { .. }))
        ));
        // After a top-up the same generation goes through, as a first reservation.
        grant(&s, a, "topup", 10, CreditSource::Purchased, None, now).await;
        let r = s.reserve(&image(a, "g1"), now).await.unwrap();
        assert!(!r.replayed);
        assert_eq!(r.hold.grants, draws(&[("small", 3), ("topup", 1)]));
    }

    pub async fn partial_settle_returns_credits_first(s: Subject) {
        let now = t0();
        let a = "acct";
        hollywood_with_200_left(&s, a, now).await;
        grant(&s, a, "pack", 1000, CreditSource::Purchased, None, now).await;
        let r = s.reserve(&video(a, "g1", "cinema", 20), now).await.unwrap();
        assert_eq!((r.hold.from_allowance, r.hold.from_credits), (200, 600));
        // 5 of 20 seconds: 200 units charged, all from allowance; the credits go back.
        let settled = s.settle(a, "g1", Some(5), now).await.unwrap();
        assert_eq!((settled.charged_units, settled.returned_units), (200, 600));
        assert_eq!(settled.hold.charged_units, 200);
        assert_eq!(settled.hold.state, HoldState::Settled);
        let b = settled.balance;
        assert_eq!((b.allowance_used, b.allowance_held), (5000, 0));
        assert_eq!((b.credits_available, b.credits_held), (1000, 0));

        // Credits only: the charge takes grants in burn order, the rest goes back.
        let c = "credits-only";
        grant(&s, c, "promo", 30, CreditSource::Promotional, None, now).await;
        grant(&s, c, "bought", 100, CreditSource::Purchased, None, now).await;
        s.reserve(&video(c, "v", "standard", 5), now).await.unwrap();
        let settled = s.settle(c, "v", Some(4), now).await.unwrap();
        assert_eq!((settled.charged_units, settled.returned_units), (40, 10));
        let view = s.account(c, now).await.unwrap();
        let left: Vec<_> = view
            .grants
            .iter()
            .map(|g| (g.grant_id.as_str(), g.units_remaining))
            .collect();
        assert_eq!(left, [("bought", 90)]);
    }

    pub async fn settle_preconditions(s: Subject) {
        let now = t0();
        let a = "acct";
        set_plan(&s, a, "r1", "hollywood", now).await;
        s.reserve(&video(a, "g1", "standard", 5), now)
            .await
            .unwrap();
        let err = s.settle(a, "g1", Some(6), now).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Ledger(LedgerError::SettleAboveHold {
                    actual_quantity: 6,
                    reserved_quantity: 5,
                    ..
                })
            ),
            "{err:?}"
        );
        s.release(a, "g1", ReleaseReason::ContentFiltered, now)
            .await
            .unwrap();
        let err = s.settle(a, "g1", None, now).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Ledger(LedgerError::HoldState {
                    state: HoldState::Released,
                    ..
                })
            ),
            "{err:?}"
        );

        let mut short = video(a, "g2", "standard", 5);
        short.ttl_seconds = 60;
        s.reserve(&short, now).await.unwrap();
        let err = s.settle(a, "g2", None, now + 60 * S).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Ledger(LedgerError::HoldState {
                    state: HoldState::Expired,
                    ..
                })
            ),
            "{err:?}"
        );
        // Release after expiry succeeds with nothing to return.
        let released = s
            .release(a, "g2", ReleaseReason::SystemError, now + 61 * S)
            .await
            .unwrap();
        assert_eq!(released.returned_units, 0);
        assert_eq!(released.hold.state, HoldState::Expired);
        assert_eq!(released.balance.allowance_held, 0);

        s.reserve(&image(a, "g3"), now).await.unwrap();
        s.settle(a, "g3", None, now).await.unwrap();
        let err = s
            .release(a, "g3", ReleaseReason::Failed, now)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Ledger(LedgerError::HoldState {
                    state: HoldState::Settled,
                    ..
                })
            ),
            "{err:?}"
        );
        let b = s.balance(a, now + 61 * S).await.unwrap();
        assert_eq!((b.allowance_used, b.allowance_held), (4, 0));
    }

    pub async fn unknown_holds_are_not_found(s: Subject) {
        let now = t0();
        for err in [
            s.settle("acct", "nope", None, now).await.unwrap_err(),
            s.release("acct", "nope", ReleaseReason::Failed, now)
                .await
                .unwrap_err(),
            s.extend("acct", "nope", 60, now).await.unwrap_err(),
        ] {
            assert!(
                matches!(err, StoreError::Ledger(LedgerError::HoldNotFound { .. })),
                "{err:?}"
            );
        }
    }

    pub async fn expiry_and_extend(s: Subject) {
        let now = t0();
        let a = "acct";
        set_plan(&s, a, "r1", "hollywood", now).await;
        let mut c = video(a, "long", "standard", 10);
        c.ttl_seconds = 60;
        s.reserve(&c, now).await.unwrap();
        let h = s.extend(a, "long", 60, now + 50 * S).await.unwrap();
        assert_eq!(h.expires_at_ms, now + 110 * S);
        // Extend never shortens a hold.
        let h = s.extend(a, "long", 10, now + 51 * S).await.unwrap();
        assert_eq!(h.expires_at_ms, now + 110 * S);
        let b = s.balance(a, now + 109 * S).await.unwrap();
        assert_eq!((b.open_holds, b.allowance_held), (1, 100));
        let b = s.balance(a, now + 110 * S).await.unwrap();
        assert_eq!(
            (b.open_holds, b.allowance_held, b.allowance_used),
            (0, 0, 0)
        );
        let err = s.extend(a, "long", 60, now + 111 * S).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Ledger(LedgerError::HoldState {
                    state: HoldState::Expired,
                    ..
                })
            ),
            "{err:?}"
        );

        // A hold lives at most 6 h, however often it is extended.
        let mut c = video(a, "epic", "standard", 20);
        c.ttl_seconds = 3600;
        s.reserve(&c, now).await.unwrap();
        let mut at = now;
        let mut last = 0;
        for _ in 0..8 {
            at += 50 * MIN;
            if at >= now + 6 * HOUR {
                break;
            }
            last = s.extend(a, "epic", 3600, at).await.unwrap().expires_at_ms;
        }
        assert_eq!(last, now + 6 * HOUR);
        let view = s.account(a, now + 6 * HOUR - 1).await.unwrap();
        assert_eq!(view.holds.len(), 1);
        let b = s.balance(a, now + 6 * HOUR).await.unwrap();
        assert_eq!(b.open_holds, 0);
        // A reserve on the account reclaims expired holds first.
        let mut c = video(a, "x", "standard", 5);
        c.ttl_seconds = 1;
        s.reserve(&c, now + 7 * HOUR).await.unwrap();
        let r = s.reserve(&image(a, "y"), now + 7 * HOUR + S).await.unwrap();
        assert_eq!((r.balance.open_holds, r.balance.allowance_held), (1, 4));
    }

    pub async fn plan_gates_refuse_even_with_credits(s: Subject) {
        let now = t0();
        let a = "acct";
        set_plan(&s, a, "r1", "microbudget", now).await;
        grant(&s, a, "rich", 1_000_000, CreditSource::Purchased, None, now).await;
        let denied = |e: StoreError| match e {
            StoreError::Ledger(LedgerError::Denied(d)) => d,
            other => panic!("expected a denial, got {other:?}"),
        };
        let d = denied(
            s.reserve(&video(a, "g1", "cinema", 5), now)
                .await
                .unwrap_err(),
        );
        assert_eq!(
            d.to_string(),
            "model `cinema` needs plan `hollywood`; account is on `microbudget`"
        );
        let d = denied(
            s.reserve(&video(a, "g2", "standard", 6), now)
                .await
                .unwrap_err(),
        );
        assert_eq!(
            (d.code(), d.needs.as_deref()),
            ("video_seconds", Some("independent"))
        );
        s.reserve(&image(a, "g3"), now).await.unwrap();
        s.reserve(&image(a, "g4"), now).await.unwrap();
        let d = denied(s.reserve(&image(a, "g5"), now).await.unwrap_err());
        assert_eq!(
            (d.code(), d.needs.as_deref()),
            ("concurrent_holds", Some("independent"))
        );
        // Denials leave nothing behind.
        let b = s.balance(a, now).await.unwrap();
        assert_eq!((b.open_holds, b.allowance_held, b.credits_held), (2, 8, 0));
        // Without a plan: the `none` row, standard only, one at a time.
        let n = "no-plan";
        grant(&s, n, "rich", 1_000_000, CreditSource::Purchased, None, now).await;
        let d = denied(s.reserve(&video(n, "g1", "pro", 1), now).await.unwrap_err());
        assert_eq!(d.needs.as_deref(), Some("independent"));
        s.reserve(&image(n, "g2"), now).await.unwrap();
        let d = denied(s.reserve(&image(n, "g3"), now).await.unwrap_err());
        assert_eq!(d.code(), "concurrent_holds");
    }

    pub async fn month_end_anchor_rolls_over(s: Subject) {
        let a = "acct";
        let jan31 = ms(datetime!(2026-01-31 10:00 UTC));
        let started = start_plan_at(&s, a, "microbudget", jan31, jan31).await;
        assert_eq!(started.change, PlanChange::Started);
        assert_eq!(started.balance.cycle_start_ms, Some(jan31));
        let feb28 = ms(datetime!(2026-02-28 10:00 UTC));
        let mar31 = ms(datetime!(2026-03-31 10:00 UTC));
        assert_eq!(started.balance.cycle_end_ms, Some(feb28));
        s.reserve(&video(a, "g1", "standard", 5), jan31)
            .await
            .unwrap();
        s.settle(a, "g1", None, jan31).await.unwrap();
        let b = s.balance(a, feb28 - 1).await.unwrap();
        assert_eq!((b.allowance_used, b.cycle_end_ms), (50, Some(feb28)));
        let b = s.balance(a, feb28).await.unwrap();
        assert_eq!(
            (b.cycle_start_ms, b.cycle_end_ms),
            (Some(feb28), Some(mar31))
        );
        assert_eq!(
            (b.allowance_total, b.allowance_used, b.allowance_available),
            (1000, 0, 1000)
        );
        let b = s.balance(a, mar31 + 1).await.unwrap();
        assert_eq!(b.cycle_start_ms, Some(mar31));
        assert_eq!(b.cycle_end_ms, Some(ms(datetime!(2026-04-30 10:00 UTC))));
    }

    pub async fn start_with_past_anchor_and_missed_cycles(s: Subject) {
        let a = "acct";
        // Migrating a subscription that started on Jan 29: the cycle containing now applies.
        let anchor = ms(datetime!(2026-01-29 00:00 UTC));
        let now = ms(datetime!(2026-03-10 12:00 UTC));
        let started = start_plan_at(&s, a, "independent", anchor, now).await;
        let b = &started.balance;
        assert_eq!(b.cycle_start_ms, Some(ms(datetime!(2026-02-28 00:00 UTC))));
        assert_eq!(b.cycle_end_ms, Some(ms(datetime!(2026-03-29 00:00 UTC))));
        assert_eq!(b.allowance_total, 2500);
        s.reserve(&image(a, "g1"), now).await.unwrap();
        s.settle(a, "g1", None, now).await.unwrap();
        // Nobody touches the account for three cycles.
        let later = ms(datetime!(2026-06-30 00:00 UTC));
        let b = s.balance(a, later).await.unwrap();
        assert_eq!(b.cycle_start_ms, Some(ms(datetime!(2026-06-29 00:00 UTC))));
        assert_eq!(b.cycle_end_ms, Some(ms(datetime!(2026-07-29 00:00 UTC))));
        assert_eq!((b.allowance_total, b.allowance_used), (2500, 0));
    }

    pub async fn upgrade_is_prorated(s: Subject) {
        let a = "acct";
        // A 30-day cycle: April.
        let apr1 = ms(datetime!(2026-04-01 00:00 UTC));
        start_plan_at(&s, a, "independent", apr1, apr1).await;
        s.reserve(&video(a, "g1", "pro", 10), apr1).await.unwrap();
        s.settle(a, "g1", None, apr1).await.unwrap();
        // 18 of 30 days left: +1,500 units and 1,500 cents.
        let apr13 = apr1 + 12 * DAY;
        let up = set_plan(&s, a, "up", "hollywood", apr13).await;
        assert_eq!(up.change, PlanChange::Upgraded);
        assert_eq!((up.allowance_added, up.prorated_charge_cents), (1500, 1500));
        assert_eq!(up.effective_at_ms, apr13);
        let b = &up.balance;
        assert_eq!(
            (b.plan.as_str(), b.allowance_total, b.allowance_used),
            ("hollywood", 4000, 200)
        );
        // Features switch at once.
        s.reserve(&video(a, "g2", "cinema", 20), apr13)
            .await
            .unwrap();
        // The next cycle has the full new allowance.
        let b = s
            .balance(a, ms(datetime!(2026-05-01 00:00 UTC)))
            .await
            .unwrap();
        assert_eq!((b.allowance_total, b.allowance_used), (5000, 0));
    }

    pub async fn two_upgrades_add_up(s: Subject) {
        let a = "acct";
        let apr1 = ms(datetime!(2026-04-01 00:00 UTC));
        start_plan_at(&s, a, "microbudget", apr1, apr1).await;
        let first = set_plan(&s, a, "up1", "independent", apr1 + 15 * DAY).await;
        assert_eq!(
            (first.allowance_added, first.prorated_charge_cents),
            (750, 750)
        );
        let second = set_plan(&s, a, "up2", "hollywood", apr1 + 20 * DAY).await;
        // floor(2500 * 10 / 30) = 833
        assert_eq!(
            (second.allowance_added, second.prorated_charge_cents),
            (833, 833)
        );
        assert_eq!(second.balance.allowance_total, 1000 + 750 + 833);
    }

    pub async fn downgrade_waits_for_the_cycle_end(s: Subject) {
        let a = "acct";
        let apr1 = ms(datetime!(2026-04-01 00:00 UTC));
        let may1 = ms(datetime!(2026-05-01 00:00 UTC));
        start_plan_at(&s, a, "hollywood", apr1, apr1).await;
        let down = set_plan(&s, a, "down", "microbudget", apr1 + DAY).await;
        assert_eq!(down.change, PlanChange::DowngradeScheduled);
        assert_eq!(down.effective_at_ms, may1);
        assert_eq!((down.allowance_added, down.prorated_charge_cents), (0, 0));
        let b = &down.balance;
        assert_eq!(
            (
                b.plan.as_str(),
                b.scheduled_plan.as_deref(),
                b.allowance_total
            ),
            ("hollywood", Some("microbudget"), 5000)
        );
        // Until then the account keeps its features.
        s.reserve(&video(a, "g1", "cinema", 20), apr1 + DAY)
            .await
            .unwrap();
        s.settle(a, "g1", None, apr1 + DAY).await.unwrap();
        let b = s.balance(a, may1).await.unwrap();
        assert_eq!(
            (
                b.plan.as_str(),
                b.scheduled_plan,
                b.allowance_total,
                b.allowance_used
            ),
            ("microbudget", None, 1000, 0)
        );
        let err = s
            .reserve(&video(a, "g2", "cinema", 5), may1)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Ledger(LedgerError::Denied(_))),
            "{err:?}"
        );
    }

    pub async fn asking_for_the_current_plan_cancels_a_downgrade(s: Subject) {
        let a = "acct";
        let apr1 = ms(datetime!(2026-04-01 00:00 UTC));
        start_plan_at(&s, a, "independent", apr1, apr1).await;
        assert_eq!(
            set_plan(&s, a, "same", "independent", apr1).await.change,
            PlanChange::Unchanged
        );
        set_plan(&s, a, "down", "microbudget", apr1 + DAY).await;
        let back = set_plan(&s, a, "back", "independent", apr1 + 2 * DAY).await;
        assert_eq!(back.change, PlanChange::ScheduledChangeCancelled);
        assert_eq!(back.balance.scheduled_plan, None);
        // An upgrade also cancels a scheduled downgrade.
        set_plan(&s, a, "down2", "microbudget", apr1 + 3 * DAY).await;
        let up = set_plan(&s, a, "up", "hollywood", apr1 + 4 * DAY).await;
        assert_eq!(
            (up.change, up.balance.scheduled_plan),
            (PlanChange::Upgraded, None)
        );
        let b = s
            .balance(a, ms(datetime!(2026-05-01 00:00 UTC)))
            .await
            .unwrap();
        assert_eq!((b.plan.as_str(), b.allowance_total), ("hollywood", 5000));
    }

    pub async fn cancelled_plan_still_spends_credits(s: Subject) {
        let a = "acct";
        let apr1 = ms(datetime!(2026-04-01 00:00 UTC));
        let may1 = ms(datetime!(2026-05-01 00:00 UTC));
        start_plan_at(&s, a, "microbudget", apr1, apr1).await;
        grant(&s, a, "pack", 100, CreditSource::Purchased, None, apr1).await;
        let cancel = set_plan(&s, a, "cancel", "none", apr1 + DAY).await;
        assert_eq!(
            (cancel.change, cancel.effective_at_ms),
            (PlanChange::DowngradeScheduled, may1)
        );
        let b = s.balance(a, may1).await.unwrap();
        assert_eq!(
            (b.plan.as_str(), b.cycle_start_ms, b.allowance_total),
            ("none", None, 0)
        );
        let r = s.reserve(&image(a, "g1"), may1).await.unwrap();
        assert_eq!((r.hold.from_allowance, r.hold.from_credits), (0, 4));
        // Starting again begins a fresh cycle.
        let again = set_plan(&s, a, "again", "independent", may1 + DAY).await;
        assert_eq!(again.change, PlanChange::Started);
        assert_eq!(again.balance.cycle_start_ms, Some(may1 + DAY));
    }

    pub async fn holds_pin_their_cycle(s: Subject) {
        let a = "acct";
        let apr1 = ms(datetime!(2026-04-01 00:00 UTC));
        let may1 = ms(datetime!(2026-05-01 00:00 UTC));
        start_plan_at(&s, a, "hollywood", apr1, apr1).await;
        grant(&s, a, "pack", 1000, CreditSource::Purchased, None, apr1).await;
        let before = may1 - 10 * S;
        // Spend down to 200 allowance so the held videos draw from both sources.
        for i in 0..6 {
            let g = format!("burn-{i}");
            s.reserve(&video(a, &g, "cinema", 20), apr1).await.unwrap();
            s.settle(a, &g, None, apr1).await.unwrap();
        }
        let mut c = video(a, "settled-late", "cinema", 20);
        c.ttl_seconds = 3600;
        let r = s.reserve(&c, before).await.unwrap();
        assert_eq!((r.hold.from_allowance, r.hold.from_credits), (200, 600));
        // Rollover: the new cycle starts clean.
        let b = s.balance(a, may1).await.unwrap();
        assert_eq!(
            (b.allowance_used, b.allowance_held, b.credits_held),
            (0, 0, 600)
        );
        // Settling charges the old cycle: nothing moves in the new one.
        let settled = s
            .settle(a, "settled-late", Some(10), may1 + S)
            .await
            .unwrap();
        assert_eq!(settled.charged_units, 400);
        let b = settled.balance;
        // 400 charged: 200 from the old allowance, 200 from credits; 400 credits come back.
        assert_eq!(
            (b.allowance_used, b.allowance_held, b.allowance_available),
            (0, 0, 5000)
        );
        assert_eq!((b.credits_available, b.credits_held), (800, 0));

        let mut c = video(a, "released-late", "cinema", 20);
        c.ttl_seconds = 3600;
        let june1 = ms(datetime!(2026-06-01 00:00 UTC));
        for i in 0..6 {
            let g = format!("may-{i}");
            s.reserve(&video(a, &g, "cinema", 20), may1 + S)
                .await
                .unwrap();
            s.settle(a, &g, None, may1 + S).await.unwrap();
        }
        let r = s.reserve(&c, june1 - 10 * S).await.unwrap();
        assert_eq!((r.hold.from_allowance, r.hold.from_credits), (200, 600));
        let released = s
            .release(a, "released-late", ReleaseReason::Failed, june1 + S)
            .await
            .unwrap();
        assert_eq!(released.returned_units, 800);
        let b = released.balance;
        // Credits come back; the old cycle's allowance does not join the new one.
        assert_eq!(
            (b.allowance_total, b.allowance_used, b.allowance_held),
            (5000, 0, 0)
        );
        assert_eq!((b.credits_available, b.credits_held), (800, 0));
    }

    /// A hold pins its cycle by number. Cancel, hold on the last day past the rollover, then
    /// start a plan whose clamped anchor begins the new cycle at the very instant the old one
    /// ended: releasing the old hold gives nothing to the new cycle (it once gave 800 units
    /// back and broke the ledger).
    pub async fn clamped_anchor_cycle_cannot_overspend(s: Subject) {
        let a = "acct";
        let jan31 = ms(datetime!(2026-01-31 00:00 UTC));
        let feb28 = ms(datetime!(2026-02-28 00:00 UTC));
        start_plan_at(&s, a, "hollywood", jan31, jan31).await;
        set_plan(&s, a, "cancel", "none", jan31 + DAY).await;
        let last_hour = feb28 - 30 * MIN;
        let mut old = video(a, "old", "cinema", 20);
        old.ttl_seconds = 3600;
        let r = s.reserve(&old, last_hour).await.unwrap();
        assert_eq!(r.hold.from_allowance, 800);
        let after = feb28 + S;
        let restart = s
            .set_plan(
                &SetPlanCmd {
                    request_id: "again".into(),
                    account_id: a.into(),
                    plan: "hollywood".into(),
                    cycle_anchor_ms: Some(jan31),
                },
                after,
            )
            .await
            .unwrap();
        assert_eq!(restart.change, PlanChange::Started);
        assert_eq!(restart.balance.cycle_start_ms, Some(feb28), "same instant");
        let new = s
            .reserve(&video(a, "new", "cinema", 20), after)
            .await
            .unwrap();
        assert_eq!(new.balance.allowance_available, 4200);
        let released = s
            .release(a, "old", ReleaseReason::Failed, after)
            .await
            .unwrap();
        assert_eq!(released.returned_units, 800);
        let b = released.balance;
        assert_eq!(
            (b.allowance_total, b.allowance_held, b.allowance_available),
            (5000, 800, 4200),
            "nothing went back to the new cycle"
        );
        let events = s.events().await;
        let e = events
            .iter()
            .find(|e| e.event_type == events::HOLD_RELEASED && e.generation_id == "old")
            .unwrap();
        assert_eq!((e.units, e.from_allowance, e.units_lost), (800, 0, 0));
        let done = s
            .release(a, "new", ReleaseReason::Failed, after)
            .await
            .unwrap();
        assert_eq!(done.balance.allowance_available, 5000);
        assert_eq!(done.balance.allowance_held, 0);
    }

    /// Every change of funds is an event: a grant that expires with units left
    /// (`credits.expired`), and what a release or a settle for less could not give back to an
    /// expired grant (`units_lost`).
    pub async fn expired_grants_are_events(s: Subject) {
        let now = t0();
        for (a, settle) in [("rel", false), ("set", true)] {
            grant(
                &s,
                a,
                "short",
                100,
                CreditSource::Promotional,
                Some(now + 100 * S),
                now,
            )
            .await;
            grant(&s, a, "long", 100, CreditSource::Purchased, None, now).await;
            let mut c = video(a, "g", "standard", 5); // 50 units, all from "short"
            c.ttl_seconds = 3600;
            s.reserve(&c, now).await.unwrap();
            let at = now + 200 * S;
            if settle {
                let r = s.settle(a, "g", Some(2), at).await.unwrap();
                // The 30 not charged belong to the expired grant: lost, not returned.
                assert_eq!((r.charged_units, r.returned_units), (20, 0));
            } else {
                s.release(a, "g", ReleaseReason::Failed, at).await.unwrap();
            }
            let b = s.balance(a, at).await.unwrap();
            assert_eq!((b.credits_available, b.credits_held), (100, 0));
        }
        let events = s.events().await;
        let of = |a: &str, t: &str| -> Vec<UsageEvent> {
            events
                .iter()
                .filter(|e| e.account_id == a && e.event_type == t)
                .cloned()
                .collect()
        };
        for a in ["rel", "set"] {
            let expired = of(a, events::CREDITS_EXPIRED);
            assert_eq!(expired.len(), 1, "{a}: {events:?}");
            assert_eq!(
                (expired[0].grant_id.as_str(), expired[0].units),
                ("short", 50)
            );
            assert_eq!(expired[0].expires_at_ms, Some(now + 100 * S));
        }
        let released = &of("rel", events::HOLD_RELEASED)[0];
        assert_eq!(
            (released.units, released.from_credits, released.units_lost),
            (50, 0, 50)
        );
        assert!(released.grants.is_empty(), "nothing went back to a grant");
        let settled = &of("set", events::HOLD_SETTLED)[0];
        assert_eq!(
            (settled.units, settled.from_credits, settled.units_lost),
            (20, 20, 30)
        );
        assert_eq!(settled.grants, draws(&[("short", 20)]));
        // The expiry comes before the hold event that finds the grant gone.
        let rel: Vec<&str> = events
            .iter()
            .filter(|e| e.account_id == "rel")
            .map(|e| e.event_type.as_str())
            .collect();
        assert_eq!(
            rel,
            [
                events::CREDITS_GRANTED,
                events::CREDITS_GRANTED,
                events::HOLD_RESERVED,
                events::CREDITS_EXPIRED,
                events::HOLD_RELEASED
            ]
        );
    }

    /// A refused call writes nothing, not even the lazy work it would have done (a rollover,
    /// an expired hold, an expired grant): no event, no counter.
    pub async fn refused_calls_write_nothing(s: Subject) {
        let now = t0();
        let a = "acct";
        set_plan(&s, a, "start", "microbudget", now).await;
        grant(
            &s,
            a,
            "short",
            10,
            CreditSource::Promotional,
            Some(now + DAY),
            now,
        )
        .await;
        s.reserve(&image(a, "g1"), now).await.unwrap();
        let before = s.events().await;
        let later = now + 40 * DAY; // a rollover, an expired hold and an expired grant are due
        let refused = [
            s.reserve(&video(a, "x", "cinema", 5), later).await.err(),
            s.settle(a, "nope", None, later).await.err(),
            s.release(a, "nope", ReleaseReason::Failed, later)
                .await
                .err(),
            s.extend(a, "nope", 60, later).await.err(),
            s.revoke_credits(a, "nope", later).await.err(),
        ];
        assert!(refused.iter().all(Option::is_some), "{refused:?}");
        assert_eq!(s.events().await, before, "a refused call wrote events");
        // The lazy work happens, once, on the next call that succeeds.
        s.balance(a, later).await.unwrap();
        let after = s.events().await;
        let new: Vec<&str> = after[before.len()..]
            .iter()
            .map(|e| e.event_type.as_str())
            .collect();
        assert_eq!(
            new,
            [
                events::CYCLE_RENEWED,
                events::HOLD_EXPIRED,
                events::CREDITS_EXPIRED
            ]
        );
    }

    fn quote_cmd(account: &str, kind: Kind, model: &str, quantity: u32) -> QuoteCmd {
        QuoteCmd {
            account_id: account.into(),
            kind,
            model: model.into(),
            quantity,
        }
    }

    /// Quote answers what Reserve would, changes nothing, and Reserve then agrees.
    pub async fn quote_answers_what_reserve_would(s: Subject) {
        let now = t0();
        let a = "acct";
        hollywood_with_200_left(&s, a, now).await;
        grant(&s, a, "pack", 1000, CreditSource::Purchased, None, now).await;
        let before_events = s.events().await;
        let before = s.balance(a, now).await.unwrap();
        // Allowed: 200 from the allowance, 600 from credits.
        let q = s
            .quote(&quote_cmd(a, Kind::Video, "cinema", 20), now)
            .await
            .unwrap();
        assert_eq!(
            (q.cost_units, q.from_allowance, q.from_credits),
            (800, 200, 600)
        );
        assert!(q.denial.is_none(), "{q:?}");
        assert_eq!(q.balance, before);
        // Short of funds: the same refusal Reserve gives.
        let short = s
            .quote(&quote_cmd(a, Kind::Video, "cinema", 20 * 2), now)
            .await;
        // 40 s is longer than Hollywood allows: a plan denial comes first.
        let denied = short.unwrap().denial.unwrap();
        assert!(matches!(denied, LedgerError::Denied(_)), "{denied:?}");
        let reserve_err = s
            .reserve(&video(a, "too-long", "cinema", 40), now)
            .await
            .unwrap_err();
        assert_eq!(Some(&denied), reserve_err.refusal());
        assert_eq!(s.events().await, before_events, "Quote wrote an event");
        let r = s.reserve(&video(a, "g1", "cinema", 20), now).await.unwrap();
        assert_eq!((r.hold.from_allowance, r.hold.from_credits), (200, 600));
        let q = s
            .quote(&quote_cmd(a, Kind::Video, "cinema", 20), now)
            .await
            .unwrap();
        let expected = LedgerError::InsufficientFunds {
            needed: 800,
            available: 400,
        };
        assert_eq!(q.denial, Some(expected.clone()));
        assert_eq!((q.from_allowance, q.from_credits), (0, 400));
        let err = s
            .reserve(&video(a, "g2", "cinema", 20), now)
            .await
            .unwrap_err();
        assert_eq!(err.refusal(), Some(&expected));
        // Lazy work Quote sees is not written: a quote after the cycle ended writes nothing.
        let later = now + 40 * DAY;
        let events = s.events().await;
        let q = s
            .quote(&quote_cmd(a, Kind::CharacterImage, "standard", 1), later)
            .await
            .unwrap();
        assert_eq!(q.balance.allowance_used, 0, "the quote sees the new cycle");
        assert_eq!(s.events().await, events, "Quote wrote the rollover");
    }

    fn batch(account: &str, items: &[(&str, Kind, &str, u32)]) -> ReserveBatchCmd {
        ReserveBatchCmd {
            account_id: account.into(),
            items: items
                .iter()
                .map(|(generation, kind, model, quantity)| BatchItem {
                    generation_id: (*generation).into(),
                    kind: *kind,
                    model: (*model).into(),
                    quantity: *quantity,
                    labels: BTreeMap::new(),
                })
                .collect(),
            ttl_seconds: 300,
        }
    }

    /// ReserveBatch holds all or none: a batch that fits exactly, one unit short, over the
    /// plan's cap, a replay, a partial overlap and a conflict.
    pub async fn reserve_batch_is_all_or_none(s: Subject) {
        let now = t0();
        let a = "acct";
        hollywood_with_200_left(&s, a, now).await;
        // 200 units exactly: two 5 s pro videos (100 each).
        let fits = batch(
            a,
            &[("b1", Kind::Video, "pro", 5), ("b2", Kind::Video, "pro", 5)],
        );
        let one_short = batch(
            a,
            &[
                ("c1", Kind::Video, "pro", 5),
                ("c2", Kind::Video, "pro", 5),
                ("c3", Kind::CharacterImage, "standard", 1),
            ],
        );
        let events = s.events().await;
        let err = s.reserve_batch(&one_short, now).await.unwrap_err();
        match &err {
            StoreError::Ledger(LedgerError::BatchItem {
                index,
                generation_id,
                source,
            }) => {
                assert_eq!((*index, generation_id.as_str()), (2, "c3"));
                assert_eq!(
                    **source,
                    LedgerError::InsufficientFunds {
                        needed: 4,
                        available: 0
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.events().await, events, "a refused batch wrote events");
        assert_eq!(s.balance(a, now).await.unwrap().open_holds, 0);
        let held = s.reserve_batch(&fits, now).await.unwrap();
        assert!(!held.replayed);
        assert_eq!(held.holds.len(), 2);
        assert_eq!(
            held.holds
                .iter()
                .map(|h| h.generation_id.as_str())
                .collect::<Vec<_>>(),
            ["b1", "b2"]
        );
        let b = held.balance;
        assert_eq!(
            (b.allowance_available, b.allowance_held, b.open_holds),
            (0, 200, 2)
        );
        let reserved: Vec<UsageEvent> = s
            .events()
            .await
            .into_iter()
            .filter(|e| {
                e.event_type == events::HOLD_RESERVED
                    && ["b1", "b2"].contains(&e.generation_id.as_str())
            })
            .collect();
        assert_eq!(reserved.len(), 2, "one hold.reserved per item");
        // The same batch again: the same holds.
        let again = s.reserve_batch(&fits, now).await.unwrap();
        assert!(again.replayed);
        assert_eq!(again.holds, held.holds);
        // Overlapping another batch: a conflict naming the known id.
        let overlap = batch(
            a,
            &[
                ("b2", Kind::Video, "pro", 5),
                ("new", Kind::CharacterImage, "standard", 1),
            ],
        );
        match s.reserve_batch(&overlap, now).await.unwrap_err() {
            StoreError::Ledger(LedgerError::GenerationConflict { generation_id, .. }) => {
                assert_eq!(generation_id, "b2")
            }
            other => panic!("{other:?}"),
        }
        let other_terms = batch(
            a,
            &[("b1", Kind::Video, "pro", 5), ("b2", Kind::Video, "pro", 6)],
        );
        match s.reserve_batch(&other_terms, now).await.unwrap_err() {
            StoreError::Ledger(LedgerError::GenerationConflict { generation_id, .. }) => {
                assert_eq!(generation_id, "b2")
            }
            other => panic!("{other:?}"),
        }
        // Over the plan's cap (Hollywood: 8 open holds, 2 open already): the 7th item fails.
        grant(&s, a, "pack", 1000, CreditSource::Purchased, None, now).await;
        let many: Vec<String> = (0..7).map(|i| format!("m{i}")).collect();
        let items: Vec<(&str, Kind, &str, u32)> = many
            .iter()
            .map(|g| (g.as_str(), Kind::CharacterImage, "standard", 1))
            .collect();
        match s.reserve_batch(&batch(a, &items), now).await.unwrap_err() {
            StoreError::Ledger(LedgerError::BatchItem { index, source, .. }) => {
                assert_eq!(index, 6);
                assert!(matches!(*source, LedgerError::Denied(_)), "{source:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.balance(a, now).await.unwrap().open_holds, 2);
    }

    fn refund_cmd(account: &str, generation: &str, refund: &str, units: u64) -> RefundCmd {
        RefundCmd {
            account_id: account.into(),
            generation_id: generation.into(),
            refund_id: refund.into(),
            units,
            reason: "defective render".into(),
        }
    }

    /// Refund: partial then whole, idempotent, never more than charged, only settled holds;
    /// the allowance part back to the allowance while the cycle is current, the rest (and
    /// everything of an older cycle) as promotional credits.
    pub async fn refunds_give_back_a_charge(s: Subject) {
        let now = t0();
        let a = "acct";
        hollywood_with_200_left(&s, a, now).await;
        // Late in the cycle (it ends 31 days in), so the next one starts within retention.
        let now = now + 30 * DAY;
        grant(&s, a, "pack", 1000, CreditSource::Purchased, None, now).await;
        s.reserve(&video(a, "g1", "cinema", 20), now).await.unwrap(); // 200 + 600
        s.settle(a, "g1", None, now).await.unwrap();
        let before = s.account(a, now).await.unwrap();
        assert_eq!(before.lifetime_charged.allowance_units, 5000);
        // Not settled: refused, naming the state.
        s.reserve(&image(a, "open"), now).await.unwrap();
        match s
            .refund(&refund_cmd(a, "open", "r0", 0), now)
            .await
            .unwrap_err()
        {
            StoreError::Ledger(LedgerError::HoldState { state, .. }) => {
                assert_eq!(state, HoldState::Held)
            }
            other => panic!("{other:?}"),
        }
        s.release(a, "open", ReleaseReason::Failed, now)
            .await
            .unwrap();
        assert!(matches!(
            s.refund(&refund_cmd(a, "nope", "r0", 0), now).await,
            Err(StoreError::Ledger(LedgerError::HoldNotFound { .. }))
        ));
        // 300 of 800: the 200 charged from the allowance go back to it, 100 as credits.
        let r = s
            .refund(&refund_cmd(a, "g1", "r1", 300), now)
            .await
            .unwrap();
        assert_eq!(
            (r.refunded_units, r.to_allowance, r.to_credits),
            (300, 200, 100)
        );
        assert_eq!(r.grant_id, Some(refund_grant_id("g1", now, "r1")));
        assert_eq!(r.balance.allowance_used, 4800);
        assert_eq!(r.balance.credits_available, 400 + 100);
        let replay = s
            .refund(&refund_cmd(a, "g1", "r1", 300), now)
            .await
            .unwrap();
        assert!(replay.replayed);
        assert_eq!(replay.refunded_units, 300);
        assert!(matches!(
            s.refund(&refund_cmd(a, "g1", "r1", 301), now).await,
            Err(StoreError::Ledger(LedgerError::RefundConflict { .. }))
        ));
        match s
            .refund(&refund_cmd(a, "g1", "r2", 600), now)
            .await
            .unwrap_err()
        {
            StoreError::Ledger(LedgerError::RefundAboveCharge { refundable, .. }) => {
                assert_eq!(refundable, 500)
            }
            other => panic!("{other:?}"),
        }
        // The rest (units 0 = all that is left), in the next cycle: all as credits.
        let later = now + 2 * DAY;
        let r = s
            .refund(&refund_cmd(a, "g1", "r2", 0), later)
            .await
            .unwrap();
        assert_eq!(
            (r.refunded_units, r.to_allowance, r.to_credits),
            (500, 0, 500)
        );
        assert!(matches!(
            s.refund(&refund_cmd(a, "g1", "r3", 0), later).await,
            Err(StoreError::Ledger(LedgerError::RefundAboveCharge {
                refundable: 0,
                ..
            }))
        ));
        let view = s.account(a, later).await.unwrap();
        let c = view.lifetime_charged;
        assert_eq!((c.allowance_units, c.credit_units), (4800, 0));
        let refund_grant = view
            .grants
            .iter()
            .find(|g| g.grant_id == refund_grant_id("g1", now, "r2"))
            .unwrap();
        assert_eq!(
            (
                refund_grant.source,
                refund_grant.units_remaining,
                refund_grant.expires_at_ms
            ),
            (CreditSource::Promotional, 500, None)
        );
        let refunded: Vec<UsageEvent> = s
            .events()
            .await
            .into_iter()
            .filter(|e| e.event_type == events::HOLD_REFUNDED)
            .collect();
        assert_eq!(refunded.len(), 2);
        let e = &refunded[0];
        assert_eq!(
            (e.units, e.from_allowance, e.from_credits, e.allowance_added),
            (300, 200, 100, 200)
        );
        let r1_grant = refund_grant_id("g1", now, "r1");
        assert_eq!(
            (e.refund_id.as_str(), e.grant_id.as_str()),
            ("r1", r1_grant.as_str())
        );
        assert_eq!(e.grants, draws(&[(&r1_grant, 100)]));
        let e = &refunded[1];
        assert_eq!(
            (e.units, e.from_allowance, e.from_credits, e.allowance_added),
            (500, 0, 500, 0)
        );
    }

    /// `usage.threshold` at 80 % and 100 % of the cycle's allowance, once per cycle each:
    /// a refund below and a settle across again does not announce twice.
    pub async fn usage_thresholds_once_per_cycle(s: Subject) {
        let now = t0();
        let a = "acct";
        set_plan(&s, a, "start", "microbudget", now).await; // 1,000 units
        let settle = |g: &'static str, seconds: u32| {
            let s = &s;
            async move {
                s.reserve(&video(a, g, "standard", seconds), now)
                    .await
                    .unwrap();
                s.settle(a, g, None, now).await.unwrap();
            }
        };
        for i in 0..15 {
            let g: &'static str = Box::leak(format!("g{i}").into_boxed_str());
            settle(g, 5).await; // 50 each: 750
        }
        let thresholds = |events: Vec<UsageEvent>| -> Vec<u32> {
            events
                .iter()
                .filter(|e| e.event_type == events::USAGE_THRESHOLD)
                .map(|e| e.threshold_percent)
                .collect()
        };
        assert!(thresholds(s.events().await).is_empty());
        settle("g80", 5).await; // 800: 80 %
        assert_eq!(thresholds(s.events().await), [80]);
        s.refund(&refund_cmd(a, "g80", "back", 0), now)
            .await
            .unwrap(); // 750
        settle("again", 5).await; // 800 again: no second announcement
        assert_eq!(thresholds(s.events().await), [80]);
        settle("g85", 5).await;
        settle("g90", 5).await; // 850, 900
        let e = s.events().await;
        let t = e
            .iter()
            .find(|e| e.event_type == events::USAGE_THRESHOLD)
            .unwrap();
        assert_eq!((t.units, t.plan.as_str()), (800, "microbudget"));
        settle("g950", 5).await;
        s.reserve(&video(a, "last", "standard", 5), now)
            .await
            .unwrap();
        s.settle(a, "last", None, now).await.unwrap(); // 1,000
        assert_eq!(thresholds(s.events().await), [80, 100]);
        // The next cycle announces again.
        let later = now + 40 * DAY;
        for i in 0..16 {
            let g = format!("n{i}");
            s.reserve(&video(a, &g, "standard", 5), later)
                .await
                .unwrap();
            s.settle(a, &g, None, later).await.unwrap();
        }
        assert_eq!(thresholds(s.events().await), [80, 100, 80]);
    }

    /// Ids and reasons may be "0": events carry them as they are (only zero numbers are left
    /// out of a Redis stream entry).
    pub async fn zero_ids_survive_in_events(s: Subject) {
        let now = t0();
        let a = "0";
        set_plan(&s, a, "0", "microbudget", now).await;
        grant(&s, a, "0", 10, CreditSource::Promotional, None, now).await;
        s.reserve(&image(a, "0"), now).await.unwrap();
        s.settle(a, "0", None, now).await.unwrap();
        let refund = RefundCmd {
            account_id: a.into(),
            generation_id: "0".into(),
            refund_id: "0".into(),
            units: 0,
            reason: "0".into(),
        };
        s.refund(&refund, now).await.unwrap();
        let events = s.events().await;
        let of = |t: &str| events.iter().find(|e| e.event_type == t).unwrap().clone();
        assert_eq!(of(events::CREDITS_GRANTED).grant_id, "0");
        assert_eq!(of(events::HOLD_RESERVED).generation_id, "0");
        assert_eq!(of(events::HOLD_SETTLED).generation_id, "0");
        let r = of(events::HOLD_REFUNDED);
        assert_eq!(
            (
                r.generation_id.as_str(),
                r.refund_id.as_str(),
                r.reason.as_str()
            ),
            ("0", "0", "0")
        );
        assert!(events.iter().all(|e| e.account_id == "0"));
    }

    pub async fn grant_expiring_mid_hold(s: Subject) {
        let now = t0();
        let a = "acct";
        grant(
            &s,
            a,
            "short",
            100,
            CreditSource::Promotional,
            Some(now + 100 * S),
            now,
        )
        .await;
        grant(&s, a, "long", 100, CreditSource::Purchased, None, now).await;
        let mut c = video(a, "settled", "standard", 5);
        c.ttl_seconds = 3600;
        s.reserve(&c, now).await.unwrap();
        let mut c2 = c.clone();
        c2.generation_id = "released".into();
        // "none" allows one hold at a time: a second account takes the release path.
        s.settle(a, "settled", None, now + 200 * S).await.unwrap();
        let b = s.balance(a, now + 200 * S).await.unwrap();
        // The expired grant was charged for the hold; its remainder is gone.
        assert_eq!((b.credits_available, b.credits_held), (100, 0));
        let view = s.account(a, now + 200 * S).await.unwrap();
        assert_eq!(view.grants.len(), 1);

        let r = "other";
        grant(
            &s,
            r,
            "short",
            100,
            CreditSource::Promotional,
            Some(now + 100 * S),
            now,
        )
        .await;
        c2.account_id = r.into();
        s.reserve(&c2, now).await.unwrap();
        let released = s
            .release(r, "released", ReleaseReason::Failed, now + 200 * S)
            .await
            .unwrap();
        // What goes back to an expired grant is lost.
        assert_eq!(
            (
                released.balance.credits_available,
                released.balance.credits_held
            ),
            (0, 0)
        );
        let view = s.account(r, now + 200 * S).await.unwrap();
        assert!(view.grants.is_empty());
    }

    pub async fn revoke_with_a_live_hold(s: Subject) {
        let now = t0();
        let a = "acct";
        grant(&s, a, "promo", 100, CreditSource::Promotional, None, now).await;
        s.reserve(&video(a, "g1", "standard", 5), now)
            .await
            .unwrap();
        let revoked = s.revoke_credits(a, "promo", now).await.unwrap();
        assert_eq!(revoked.revoked_units, 50);
        assert_eq!(
            (
                revoked.balance.credits_available,
                revoked.balance.credits_held
            ),
            (0, 50)
        );
        // The held part stays chargeable.
        let settled = s.settle(a, "g1", Some(3), now).await.unwrap();
        assert_eq!(settled.charged_units, 30);
        // ... and what the partial settle gives back to a revoked grant is gone.
        assert_eq!(
            (
                settled.balance.credits_available,
                settled.balance.credits_held
            ),
            (0, 0)
        );
        // A retry answers the first answer.
        assert_eq!(
            s.revoke_credits(a, "promo", now)
                .await
                .unwrap()
                .revoked_units,
            50
        );
        let err = s.revoke_credits(a, "never", now).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Ledger(LedgerError::GrantNotFound { .. })),
            "{err:?}"
        );
    }

    /// A grant and a generation of one account with the same id, created in the same
    /// millisecond and expiring in the same millisecond, write two events with two ids: an
    /// event id says whether it is about a hold or a grant. Every id of the run is unique.
    pub async fn hold_and_grant_event_ids_differ(s: Subject) {
        let now = t0();
        let a = "acct";
        grant(
            &s,
            a,
            "X",
            100,
            CreditSource::Promotional,
            Some(now + 100 * S),
            now,
        )
        .await;
        let mut c = image(a, "X");
        c.ttl_seconds = 100;
        s.reserve(&c, now).await.unwrap();
        // A write after both expired: its lazy work expires the hold, then the grant.
        let later = grant(
            &s,
            a,
            "later",
            1,
            CreditSource::Purchased,
            None,
            now + 200 * S,
        )
        .await;
        assert_eq!(
            (later.balance.open_holds, later.balance.credits_available),
            (0, 1)
        );
        let all = s.events().await;
        let id_of = |t: &str| {
            all.iter()
                .find(|e| e.event_type == t)
                .unwrap_or_else(|| panic!("no {t} in {all:?}"))
                .id
                .clone()
        };
        assert_eq!(
            id_of(events::HOLD_EXPIRED),
            format!("acct/hold/X@{now}:expired")
        );
        assert_eq!(
            id_of(events::CREDITS_EXPIRED),
            format!("acct/grant/X@{now}:expired")
        );
        assert_eq!(
            id_of(events::HOLD_RESERVED),
            format!("acct/hold/X@{now}:reserved")
        );
        assert_eq!(
            id_of(events::CREDITS_GRANTED),
            format!("acct/grant/X@{now}:granted")
        );
        let ids: std::collections::HashSet<&str> = all.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids.len(), all.len(), "two events share an id: {all:?}");
    }

    /// Refund grant ids are a digest of the generation and refund ids: `a:b` + `c` and
    /// `a` + `b:c` name two grants, and the longest ids still make a grant id RevokeCredits
    /// accepts. A grant that already bears the name (the gRPC edge reserves the `refund:`
    /// prefix, the store does not) makes the refund a conflict that changes nothing.
    pub async fn refund_grant_ids_cannot_collide(s: Subject) {
        let now = t0();
        let a = "acct";
        grant(&s, a, "pack", 1000, CreditSource::Purchased, None, now).await;
        let long_gen = "g".repeat(quota_sidecar::ledger::MAX_ID_LEN);
        let long_refund = "r".repeat(quota_sidecar::ledger::MAX_ID_LEN);
        for gen in ["a:b", "a", long_gen.as_str(), "clash"] {
            s.reserve(&image(a, gen), now).await.unwrap();
            s.settle(a, gen, None, now).await.unwrap();
        }
        let first = s.refund(&refund_cmd(a, "a:b", "c", 0), now).await.unwrap();
        let second = s
            .refund(&refund_cmd(a, "a", "b:c", 0), now)
            .await
            .expect("a refund of another generation is another grant");
        let long = s
            .refund(&refund_cmd(a, &long_gen, &long_refund, 0), now)
            .await
            .unwrap();
        let ids: Vec<String> = [&first, &second, &long]
            .iter()
            .map(|r| r.grant_id.clone().expect("refunded as credits"))
            .collect();
        assert_ne!(ids[0], ids[1]);
        for id in &ids {
            assert!(id.starts_with("refund:"), "{id}");
            assert!(quota_sidecar::ledger::is_valid_id(id), "{id}");
        }
        assert_eq!(ids[0], refund_grant_id("a:b", now, "c"));
        let revoked = s.revoke_credits(a, &ids[2], now).await.unwrap();
        assert_eq!(revoked.revoked_units, 4);

        let taken = refund_grant_id("clash", now, "r9");
        grant(&s, a, &taken, 7, CreditSource::Promotional, None, now).await;
        let before = s.account(a, now).await.unwrap();
        let events_before = s.events().await.len();
        let err = s
            .refund(&refund_cmd(a, "clash", "r9", 0), now)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Ledger(LedgerError::RefundConflict { refund_id }) if refund_id == "r9"),
            "{err:?}"
        );
        assert_eq!(s.account(a, now).await.unwrap(), before);
        assert_eq!(s.events().await.len(), events_before);
    }

    /// A generation id reused after retention is another hold: its refund, under the same
    /// refund id, is a new refund with a grant of its own, though the first refund's grant
    /// (or its tombstone) is still there: refund grant names carry the hold's creation time.
    pub async fn a_reused_generation_is_refunded_again(s: Subject) {
        let now = t0();
        let a = "acct";
        grant(&s, a, "pack", 1000, CreditSource::Purchased, None, now).await;
        let mut grants = Vec::new();
        for at in [now, now + 8 * DAY] {
            s.reserve(&image(a, "g"), at).await.unwrap();
            s.settle(a, "g", None, at).await.unwrap();
            let r = s
                .refund(&refund_cmd(a, "g", "r1", 0), at)
                .await
                .expect("a refund of the new hold");
            assert!(!r.replayed);
            assert_eq!((r.refunded_units, r.to_credits), (4, 4));
            grants.push(r.grant_id.expect("credits"));
        }
        assert_ne!(grants[0], grants[1]);
    }

    /// Release after the grant the hold drew from expired: `returned_units` is what went
    /// back (cost − lost), as the event says, on the first answer and on the replay.
    pub async fn release_returns_only_what_went_back(s: Subject) {
        let now = t0();
        let a = "acct";
        grant(
            &s,
            a,
            "short",
            40,
            CreditSource::Promotional,
            Some(now + 100 * S),
            now,
        )
        .await;
        grant(&s, a, "long", 100, CreditSource::Purchased, None, now).await;
        let mut c = video(a, "g1", "standard", 5); // 50: 40 from short, 10 from long
        c.ttl_seconds = 3600;
        let r = s.reserve(&c, now).await.unwrap();
        assert_eq!(r.hold.grants, draws(&[("short", 40), ("long", 10)]));
        let later = now + 200 * S;
        let released = s
            .release(a, "g1", ReleaseReason::Failed, later)
            .await
            .unwrap();
        assert_eq!(released.returned_units, 10);
        assert_eq!(released.balance.credits_available, 100);
        let replay = s
            .release(a, "g1", ReleaseReason::Failed, later + S)
            .await
            .unwrap();
        assert!(replay.replayed);
        assert_eq!(replay.returned_units, 10);
        let e = s
            .events()
            .await
            .into_iter()
            .find(|e| e.event_type == events::HOLD_RELEASED)
            .unwrap();
        assert_eq!((e.units, e.from_credits, e.units_lost), (50, 10, 40));
        // Nothing lost: all of it.
        s.reserve(&image(a, "g2"), later).await.unwrap();
        let released = s
            .release(a, "g2", ReleaseReason::Failed, later)
            .await
            .unwrap();
        assert_eq!(released.returned_units, 4);
    }

    /// A retried RevokeCredits answers what the first took, while the grant is live and
    /// after it was dropped.
    pub async fn retried_revoke_answers_the_first_answer(s: Subject) {
        let now = t0();
        let a = "acct";
        grant(&s, a, "promo", 100, CreditSource::Promotional, None, now).await;
        s.reserve(&video(a, "g1", "standard", 5), now)
            .await
            .unwrap();
        let first = s.revoke_credits(a, "promo", now).await.unwrap();
        assert_eq!(first.revoked_units, 50);
        let again = s.revoke_credits(a, "promo", now + S).await.unwrap();
        assert_eq!(again.revoked_units, 50, "retry while the grant is live");
        assert_eq!(again.balance, first.balance);
        s.settle(a, "g1", None, now + S).await.unwrap();
        assert!(s.account(a, now + S).await.unwrap().grants.is_empty());
        let dropped = s.revoke_credits(a, "promo", now + 2 * S).await.unwrap();
        assert_eq!(
            dropped.revoked_units, 50,
            "retry after the grant was dropped"
        );
        let revoked: Vec<UsageEvent> = s
            .events()
            .await
            .into_iter()
            .filter(|e| e.event_type == events::CREDITS_REVOKED)
            .collect();
        assert_eq!(revoked.len(), 1, "a retry writes nothing");
        // A grant spent to nothing, never revoked: nothing to take.
        grant(
            &s,
            a,
            "exact",
            4,
            CreditSource::Promotional,
            None,
            now + 2 * S,
        )
        .await;
        s.reserve(&image(a, "g2"), now + 2 * S).await.unwrap();
        s.settle(a, "g2", None, now + 2 * S).await.unwrap();
        let spent = s.revoke_credits(a, "exact", now + 3 * S).await.unwrap();
        assert_eq!(spent.revoked_units, 0);
    }

    /// A ReserveBatch that repeats a known generation exactly and adds a new one is refused,
    /// and the message says what differs: the new generation, not two identical specs.
    pub async fn mixed_batch_conflict_says_what_differs(s: Subject) {
        let now = t0();
        let a = "acct";
        set_plan(&s, a, "start", "hollywood", now).await;
        s.reserve(&image(a, "known"), now).await.unwrap();
        let item = |gen: &str| BatchItem {
            generation_id: gen.into(),
            kind: Kind::CharacterImage,
            model: "standard".into(),
            quantity: 1,
            labels: BTreeMap::new(),
        };
        let batch = ReserveBatchCmd {
            account_id: a.into(),
            items: vec![item("known"), item("fresh")],
            ttl_seconds: 300,
        };
        let err = s.reserve_batch(&batch, now).await.unwrap_err();
        match &err {
            StoreError::Ledger(LedgerError::GenerationConflict {
                generation_id,
                existing,
                requested,
            }) => {
                assert_eq!(generation_id, "known");
                assert_ne!(existing, requested, "{err}");
                assert!(requested.contains("`fresh`"), "{err}");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("`fresh`"), "{err}");
        let b = s.balance(a, now).await.unwrap();
        assert_eq!(b.open_holds, 1);
    }

    pub async fn idempotent_admin_calls(s: Subject) {
        let now = t0();
        let a = "acct";
        let first = set_plan(&s, a, "req-1", "microbudget", now).await;
        let again = set_plan(&s, a, "req-1", "microbudget", now + MIN).await;
        assert!(again.replayed && !first.replayed);
        assert_eq!(
            (again.change, again.effective_at_ms, again.allowance_added),
            (first.change, first.effective_at_ms, first.allowance_added)
        );
        let err = s
            .set_plan(
                &SetPlanCmd {
                    request_id: "req-1".into(),
                    account_id: a.into(),
                    plan: "hollywood".into(),
                    cycle_anchor_ms: None,
                },
                now,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Ledger(LedgerError::RequestConflict { .. })),
            "{err:?}"
        );
        assert_eq!(s.balance(a, now).await.unwrap().plan, "microbudget");

        let g = grant(&s, a, "pack-1", 50, CreditSource::Purchased, None, now).await;
        let again = grant(
            &s,
            a,
            "pack-1",
            50,
            CreditSource::Purchased,
            None,
            now + MIN,
        )
        .await;
        assert!(again.replayed && !g.replayed);
        assert_eq!(again.grant, g.grant);
        assert_eq!(again.balance.credits_available, 50);
        let err = s
            .grant_credits(
                &GrantCmd {
                    account_id: a.into(),
                    grant_id: "pack-1".into(),
                    units: 60,
                    source: CreditSource::Purchased,
                    expires_at_ms: None,
                },
                now,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Ledger(LedgerError::GrantConflict { .. })),
            "{err:?}"
        );
        // A grant spent to nothing is still recognised by its id.
        let c = "credits-only";
        grant(&s, c, "exact", 4, CreditSource::Promotional, None, now).await;
        s.reserve(&image(c, "g"), now).await.unwrap();
        s.settle(c, "g", None, now).await.unwrap();
        let replay = grant(
            &s,
            c,
            "exact",
            4,
            CreditSource::Promotional,
            None,
            now + MIN,
        )
        .await;
        assert!(replay.replayed);
        assert_eq!(
            (
                replay.grant.units_remaining,
                replay.balance.credits_available
            ),
            (0, 0)
        );
        let err = s
            .grant_credits(
                &GrantCmd {
                    account_id: a.into(),
                    grant_id: "old".into(),
                    units: 1,
                    source: CreditSource::Purchased,
                    expires_at_ms: Some(now),
                },
                now,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Ledger(LedgerError::InvalidArgument {
                    field: "expires_at",
                    ..
                })
            ),
            "{err:?}"
        );
    }

    pub async fn live_grants_are_bounded(s: Subject) {
        let now = t0();
        let a = "acct";
        for i in 0..MAX_LIVE_GRANTS {
            grant(
                &s,
                a,
                &format!("g{i}"),
                1,
                CreditSource::Purchased,
                None,
                now,
            )
            .await;
        }
        let cmd = |id: &str| GrantCmd {
            account_id: a.into(),
            grant_id: id.into(),
            units: 1,
            source: CreditSource::Purchased,
            expires_at_ms: None,
        };
        let err = s.grant_credits(&cmd("one-more"), now).await.unwrap_err();
        assert_eq!(
            err,
            StoreError::Ledger(LedgerError::TooManyGrants {
                account_id: a.into(),
                limit: MAX_LIVE_GRANTS,
            })
        );
        // A replay is not a new grant.
        assert!(s.grant_credits(&cmd("g7"), now).await.unwrap().replayed);
        // Spent grants leave the account's state, which makes room.
        s.reserve(&image(a, "i1"), now).await.unwrap();
        s.settle(a, "i1", None, now).await.unwrap();
        let view = s.account(a, now).await.unwrap();
        assert_eq!(view.grants.len(), MAX_LIVE_GRANTS - 4);
        assert!(
            !s.grant_credits(&cmd("one-more"), now)
                .await
                .unwrap()
                .replayed
        );
    }

    pub async fn retention_forgets_by_the_callers_clock(s: Subject) {
        let now = t0();
        let kept_ms = i64::from(RETENTION_SECONDS) * S;
        let a = "acct";
        set_plan(&s, a, "r1", "hollywood", now).await;
        s.reserve(&image(a, "g1"), now).await.unwrap();
        s.settle(a, "g1", None, now).await.unwrap();
        // Remembered for the whole retention period, then forgotten: the id is free again and
        // makes a new hold (events tell the two apart by creation time).
        let replay = s.settle(a, "g1", None, now + kept_ms - 1).await.unwrap();
        assert!(replay.replayed);
        let replay = set_plan(&s, a, "r1", "hollywood", now + kept_ms - 1).await;
        assert!(replay.replayed);
        let later = now + kept_ms;
        let err = s.settle(a, "g1", None, later).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Ledger(LedgerError::HoldNotFound { .. })),
            "{err:?}"
        );
        let again = s.reserve(&image(a, "g1"), later).await.unwrap();
        assert!(!again.replayed);
        assert_eq!(
            (again.hold.state, again.hold.created_at_ms),
            (HoldState::Held, later)
        );
        s.release(a, "g1", ReleaseReason::Cancelled, later)
            .await
            .unwrap();

        // A spent grant's tombstone keeps GrantCredits idempotent for the same period.
        let c = "credits";
        grant(&s, c, "pack", 4, CreditSource::Purchased, None, now).await;
        s.reserve(&image(c, "i1"), now).await.unwrap();
        s.settle(c, "i1", None, now).await.unwrap();
        assert!(s.account(c, now).await.unwrap().grants.is_empty());
        let replay = grant(
            &s,
            c,
            "pack",
            4,
            CreditSource::Purchased,
            None,
            now + kept_ms - 1,
        )
        .await;
        assert!(replay.replayed);
        assert_eq!(replay.grant.units_remaining, 0);
        let revoked = s
            .revoke_credits(c, "pack", now + kept_ms - 1)
            .await
            .unwrap();
        assert_eq!(revoked.revoked_units, 0);
        let err = s
            .revoke_credits(c, "pack", now + kept_ms)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Ledger(LedgerError::GrantNotFound { .. })),
            "{err:?}"
        );
        let fresh = grant(
            &s,
            c,
            "pack",
            4,
            CreditSource::Purchased,
            None,
            now + kept_ms,
        )
        .await;
        assert!(!fresh.replayed);
        assert_eq!(fresh.grant.units_remaining, 4);

        // A plan request the same way.
        let anew = set_plan(&s, a, "r1", "hollywood", now + kept_ms).await;
        assert!(!anew.replayed);
        assert_eq!(anew.change, PlanChange::Unchanged);
    }

    pub async fn lifetime_charges_add_up_across_cycles(s: Subject) {
        let now = t0();
        let a = "acct";
        // Anchored so that the cycle ends two minutes from now.
        let anchor = ms(datetime!(2025-12-15 00:02 UTC));
        start_plan_at(&s, a, "microbudget", anchor, now).await;
        grant(&s, a, "pack", 100, CreditSource::Purchased, None, now).await;
        // 990 of the 1,000 allowance units, then a video that takes the last 10 and 40 credits.
        for i in 0..99 {
            let g = format!("v{i}");
            s.reserve(&video(a, &g, "standard", 1), now).await.unwrap();
            s.settle(a, &g, None, now).await.unwrap();
        }
        s.reserve(&video(a, "big", "standard", 5), now)
            .await
            .unwrap();
        // Settled after the cycle rolled over: charged to the old cycle, still counted once.
        let next_cycle = now + 3 * MIN;
        let b = s.balance(a, next_cycle).await.unwrap();
        assert_eq!(b.cycle_start_ms, Some(anchor + 31 * DAY), "rolled over");
        let settled = s.settle(a, "big", Some(4), next_cycle).await.unwrap();
        assert_eq!((settled.charged_units, settled.returned_units), (40, 10));
        s.reserve(&image(a, "img"), next_cycle).await.unwrap();
        s.settle(a, "img", None, next_cycle).await.unwrap();
        s.reserve(&image(a, "gone"), next_cycle).await.unwrap();
        s.release(a, "gone", ReleaseReason::Failed, next_cycle)
            .await
            .unwrap();
        let view = s.account(a, next_cycle).await.unwrap();
        assert_eq!(view.balance.allowance_used, 4);
        assert_eq!(
            view.lifetime_charged,
            ChargedTotals {
                allowance_units: 990 + 10 + 4,
                credit_units: 30,
            }
        );
    }

    pub async fn unknown_account_reads_as_empty(s: Subject) {
        let b = s.balance("nobody", t0()).await.unwrap();
        assert_eq!(b.plan, "none");
        assert_eq!(
            (
                b.allowance_total,
                b.credits_available,
                b.open_holds,
                b.cycle_start_ms
            ),
            (0, 0, 0, None)
        );
        let view = s.account("nobody", t0()).await.unwrap();
        assert!(view.grants.is_empty() && view.holds.is_empty());
    }

    /// A sweep pass takes a shard's accounts earliest due first, whatever their ids.
    pub async fn sweep_takes_the_earliest_due_account_first(s: Subject) {
        let now = t0();
        let early = "acct-9";
        let shard = s.shards().of(early);
        // An id that sorts before `early` and shares its shard ("acct-10" with 16 shards).
        let late = (0..100_000)
            .map(|i| format!("acct-1{i}"))
            .find(|a| s.shards().of(a) == shard)
            .expect("some id shares the shard");
        let late = late.as_str();
        for a in [early, late] {
            set_plan(&s, a, "start", "hollywood", now).await;
        }
        // `late` sorts first by id but is due last; `early` has two due holds.
        let mut r = image(late, "l1");
        r.ttl_seconds = 100;
        s.reserve(&r, now).await.unwrap();
        for g in ["e1", "e2"] {
            let mut r = image(early, g);
            r.ttl_seconds = 50;
            s.reserve(&r, now).await.unwrap();
        }
        let at = now + 200 * S;
        assert_eq!(s.expire_due(shard, at, 1).await.unwrap(), 2, "early first");
        assert_eq!(s.expire_due(shard, at, 1).await.unwrap(), 1);
        assert_eq!(s.expire_due(shard, at, 1).await.unwrap(), 0);
    }

    /// A call costs the same whatever the account did before: after 500 holds expired by the
    /// sweeper and 500 released, the account keeps no trace of them in its own state (on
    /// Redis: no more hash fields than an account that never held anything), and every
    /// finished hold still answers its replays exactly as right after it finished.
    pub async fn a_long_past_changes_no_answer(s: Subject) {
        let (a, fresh) = ("long-past", "no-past");
        let mut now = t0();
        set_plan(&s, a, "start", "hollywood", now).await;
        set_plan(&s, fresh, "start", "hollywood", now).await;
        let shard = s.shards().of(a);
        let mut expired = Vec::new();
        let mut released = Vec::new();
        // Hollywood holds 8 at once: rounds of 8 left to expire, then 8 released.
        for round in 0..63 {
            let mut ids = Vec::new();
            for i in 0..8 {
                let id = format!("x{round}-{i}");
                let mut c = image(a, &id);
                c.ttl_seconds = 30;
                s.reserve(&c, now).await.unwrap();
                ids.push(id);
            }
            now += 31 * S;
            let mut swept = 0;
            while swept < 8 {
                let n = s.expire_due(shard, now, 100).await.unwrap();
                assert!(n > 0, "round {round}: {swept} of 8 expired");
                swept += n;
            }
            for id in ids {
                if expired.len() == 500 {
                    break;
                }
                let answer = s.release(a, &id, ReleaseReason::Failed, now).await.unwrap();
                assert_eq!(answer.hold.state, HoldState::Expired);
                expired.push((id, answer.hold));
            }
            for i in 0..8 {
                if released.len() == 500 {
                    break;
                }
                let id = format!("r{round}-{i}");
                s.reserve(&image(a, &id), now).await.unwrap();
                let answer = s
                    .release(a, &id, ReleaseReason::Cancelled, now)
                    .await
                    .unwrap();
                released.push((id, answer.hold));
            }
        }
        assert_eq!((expired.len(), released.len()), (500, 500));
        let b = s.balance(a, now).await.unwrap();
        assert_eq!(
            (b.open_holds, b.allowance_held, b.allowance_used),
            (0, 0, 0)
        );
        assert_eq!(
            s.balance(fresh, now).await.unwrap().allowance_available,
            5000
        );
        if let Some(fields) = s.account_fields(a) {
            assert_eq!(
                Some(fields),
                s.account_fields(fresh),
                "the account hash grew with its past"
            );
        }
        // Replays answer as before: Release of an expired hold, Release of a released one,
        // Reserve of either, Settle of either refused by its state.
        for (id, hold) in &expired {
            let again = s.release(a, id, ReleaseReason::Failed, now).await.unwrap();
            assert_eq!(&again.hold, hold, "{id}");
            let replay = s.reserve(&image(a, id), now).await.unwrap();
            assert!(replay.replayed);
            assert_eq!(&replay.hold, hold, "{id}");
        }
        for (id, hold) in &released {
            let again = s
                .release(a, id, ReleaseReason::Cancelled, now)
                .await
                .unwrap();
            assert!(again.replayed);
            assert_eq!(&again.hold, hold, "{id}");
            assert!(matches!(
                s.settle(a, id, None, now).await,
                Err(StoreError::Ledger(LedgerError::HoldState { .. }))
            ));
        }
        if let Some(fields) = s.account_fields(a) {
            assert_eq!(
                Some(fields),
                s.account_fields(fresh),
                "replays left fields behind"
            );
        }
    }

    /// DESIGN.md §9: credits only after the allowance, also at the moment of the charge. A
    /// hold that drew credits because other holds had the allowance is charged allowance freed
    /// since, and its undrawn credits go back to their grant.
    pub async fn settle_takes_allowance_freed_since_the_reserve(s: Subject) {
        let now = t0();
        let a = "acct";
        set_plan(&s, a, "start", "hollywood", now).await;
        grant(&s, a, "pack", 1000, CreditSource::Purchased, None, now).await;
        hold_six_cinema_videos(&s, a, now).await;
        let r = s
            .reserve(&video(a, "seventh", "cinema", 10), now)
            .await
            .unwrap();
        assert_eq!((r.hold.from_allowance, r.hold.from_credits), (200, 200));
        release_six_cinema_videos(&s, a, now + S).await;
        let settled = s.settle(a, "seventh", None, now + 2 * S).await.unwrap();
        // The whole charge from the allowance; the 200 credits the hold drew went back.
        assert_eq!((settled.charged_units, settled.returned_units), (400, 200));
        let b = &settled.balance;
        assert_eq!(
            (b.allowance_used, b.allowance_held, b.allowance_available),
            (400, 0, 4600),
            "the whole charge from the allowance"
        );
        assert_eq!((b.credits_available, b.credits_held), (1000, 0));
        let view = s.account(a, now + 2 * S).await.unwrap();
        assert_eq!(
            (
                view.lifetime_charged.allowance_units,
                view.lifetime_charged.credit_units
            ),
            (400, 0)
        );
        let events = s.events().await;
        let e = events
            .iter()
            .find(|e| e.event_type == events::HOLD_SETTLED && e.generation_id == "seventh")
            .expect("hold.settled");
        assert_eq!((e.units, e.from_allowance, e.from_credits), (400, 400, 0));
        assert!(e.grants.is_empty(), "{:?}", e.grants);
        // The replay answers the same.
        let again = s.settle(a, "seventh", None, now + 3 * S).await.unwrap();
        assert!(again.replayed);
        assert_eq!((again.charged_units, again.returned_units), (400, 200));
        // A refund gives the whole charge back to the allowance: it was all allowance.
        let refunded = s
            .refund(
                &RefundCmd {
                    account_id: a.into(),
                    generation_id: "seventh".into(),
                    refund_id: "r1".into(),
                    units: 0,
                    reason: String::new(),
                },
                now + 4 * S,
            )
            .await
            .unwrap();
        assert_eq!(
            (
                refunded.to_allowance,
                refunded.to_credits,
                refunded.grant_id
            ),
            (400, 0, None)
        );
    }

    /// The re-split takes only what is free: the rest of the charge from credits in burn order
    /// from what the hold drew, the undrawn part back to its grant; a refund then gives back
    /// the allowance part as it was charged.
    pub async fn settle_takes_free_allowance_then_credits(s: Subject) {
        let now = t0();
        let a = "acct";
        set_plan(&s, a, "start", "hollywood", now).await;
        grant(&s, a, "early", 100, CreditSource::Promotional, None, now).await;
        grant(&s, a, "pack", 1000, CreditSource::Purchased, None, now).await;
        s.reserve(&video(a, "small", "standard", 5), now)
            .await
            .unwrap();
        hold_six_cinema_videos(&s, a, now).await;
        let big = s
            .reserve(&video(a, "big", "cinema", 10), now)
            .await
            .unwrap();
        assert_eq!((big.hold.from_allowance, big.hold.from_credits), (150, 250));
        assert_eq!(big.hold.grants, draws(&[("early", 100), ("pack", 150)]));
        s.release(a, "small", ReleaseReason::Cancelled, now + S)
            .await
            .unwrap();
        let settled = s.settle(a, "big", None, now + 2 * S).await.unwrap();
        assert_eq!(settled.charged_units, 400);
        let b = &settled.balance;
        assert_eq!(
            (b.allowance_used, b.allowance_held, b.allowance_available),
            (200, 4800, 0)
        );
        // 200 from credits: all of `early` (first in burn order), 100 of `pack`; 50 back.
        assert_eq!((b.credits_available, b.credits_held), (900, 0));
        let events = s.events().await;
        let e = events
            .iter()
            .find(|e| e.event_type == events::HOLD_SETTLED && e.generation_id == "big")
            .expect("hold.settled");
        assert_eq!((e.from_allowance, e.from_credits), (200, 200));
        assert_eq!(e.grants, draws(&[("early", 100), ("pack", 100)]));
        let refunded = s
            .refund(
                &RefundCmd {
                    account_id: a.into(),
                    generation_id: "big".into(),
                    refund_id: "r1".into(),
                    units: 300,
                    reason: String::new(),
                },
                now + 3 * S,
            )
            .await
            .unwrap();
        // The allowance part first (200, as charged), then 100 as credits.
        assert_eq!((refunded.to_allowance, refunded.to_credits), (200, 100));
    }

    /// Credits only after the allowance, also when the credits a hold drew belong to a grant
    /// that expired meanwhile (DESIGN.md §9): allowance free at the charge pays first, and the
    /// expired credits the charge does not take cannot go back: lost, as the event says.
    pub async fn settle_takes_free_allowance_before_expired_credits(s: Subject) {
        let now = t0();
        let a = "acct";
        set_plan(&s, a, "start", "hollywood", now).await;
        let soon = Some(now + 60 * S);
        grant(&s, a, "soon", 1000, CreditSource::Promotional, soon, now).await;
        grant(&s, a, "pack", 1000, CreditSource::Purchased, None, now).await;
        hold_six_cinema_videos(&s, a, now).await;
        let r = s
            .reserve(&video(a, "seventh", "cinema", 10), now)
            .await
            .unwrap();
        assert_eq!(r.hold.grants, draws(&[("soon", 200)]));
        release_six_cinema_videos(&s, a, now + S).await;
        let settled = s.settle(a, "seventh", None, now + 120 * S).await.unwrap();
        assert_eq!((settled.charged_units, settled.returned_units), (400, 0));
        let b = &settled.balance;
        assert_eq!((b.allowance_used, b.allowance_available), (400, 4600));
        assert_eq!(
            b.credits_available, 1000,
            "`soon` expired; `pack` untouched"
        );
        let events = s.events().await;
        let e = events
            .iter()
            .find(|e| e.event_type == events::HOLD_SETTLED && e.generation_id == "seventh")
            .expect("hold.settled");
        assert_eq!(
            (e.from_allowance, e.from_credits, e.units_lost),
            (400, 0, 200)
        );
        assert!(e.grants.is_empty(), "{:?}", e.grants);
    }

    /// A Settle for less answers as returned only what went back: credits of a grant that
    /// expired while held are lost, not returned (first answer and replay alike).
    pub async fn settle_for_less_returns_only_what_went_back(s: Subject) {
        let now = t0();
        let a = "acct";
        grant(
            &s,
            a,
            "soon",
            100,
            CreditSource::Promotional,
            Some(now + 60 * S),
            now,
        )
        .await;
        let r = s
            .reserve(&video(a, "g1", "standard", 5), now)
            .await
            .unwrap();
        assert_eq!(r.hold.grants, draws(&[("soon", 50)]));
        let settled = s.settle(a, "g1", Some(2), now + 120 * S).await.unwrap();
        assert_eq!((settled.charged_units, settled.returned_units), (20, 0));
        let again = s.settle(a, "g1", Some(2), now + 121 * S).await.unwrap();
        assert!(again.replayed);
        assert_eq!((again.charged_units, again.returned_units), (20, 0));
        let events = s.events().await;
        let e = events
            .iter()
            .find(|e| e.event_type == events::HOLD_SETTLED)
            .expect("hold.settled");
        assert_eq!((e.units, e.from_credits, e.units_lost), (20, 20, 30));
    }

    /// DESIGN.md §9: an account keeps the terms it bought. A reload that removes the plan (and
    /// a model) neither turns an upgrade into an overcharge nor stops replays being answered.
    pub async fn a_removed_plan_keeps_its_terms_and_replays_answer(s: Subject) {
        let now = t0();
        let (a, renews, downgrades) = ("acct", "renews", "downgrades");
        set_plan(&s, a, "start", "independent", now).await;
        set_plan(&s, renews, "start", "independent", now).await;
        set_plan(&s, downgrades, "start", "hollywood", now).await;
        let scheduled = set_plan(&s, downgrades, "down", "independent", now).await;
        assert_eq!(scheduled.change, PlanChange::DowngradeScheduled);
        let pro = s.reserve(&video(a, "g-pro", "pro", 5), now).await.unwrap();
        s.catalog.replace(catalog_without_independent_and_pro());

        // Replays are answered before the catalog is consulted.
        let again = s
            .reserve(&video(a, "g-pro", "pro", 5), now + S)
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(again.hold, pro.hold);
        let again = s
            .set_plan(
                &SetPlanCmd {
                    request_id: "start".into(),
                    account_id: a.into(),
                    plan: "independent".into(),
                    cycle_anchor_ms: None,
                },
                now + S,
            )
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(again.change, PlanChange::Started);
        // A different generation on the same id is still a conflict, a new one on the removed
        // model still unknown, with nothing written.
        let conflict = s
            .reserve(&video(a, "g-pro", "standard", 5), now + S)
            .await
            .unwrap_err();
        assert!(
            matches!(
                conflict,
                StoreError::Ledger(LedgerError::GenerationConflict { .. })
            ),
            "{conflict:?}"
        );
        let before = s.account(a, now + S).await.unwrap();
        match s.reserve(&video(a, "g-new", "pro", 5), now + S).await {
            Err(StoreError::Ledger(LedgerError::InvalidArgument { field, message })) => {
                assert_eq!(field, "model");
                assert!(message.contains("unknown model \"pro\""), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let batch = ReserveBatchCmd {
            account_id: a.into(),
            items: vec![BatchItem {
                generation_id: "g-batch".into(),
                kind: Kind::Video,
                model: "pro".into(),
                quantity: 5,
                labels: BTreeMap::new(),
            }],
            ttl_seconds: 300,
        };
        match s.reserve_batch(&batch, now + S).await {
            Err(StoreError::Ledger(LedgerError::BatchItem {
                index: 0, source, ..
            })) => assert!(
                matches!(*source, LedgerError::InvalidArgument { field: "model", .. }),
                "{source:?}"
            ),
            other => panic!("{other:?}"),
        }
        let new_request = SetPlanCmd {
            request_id: "again".into(),
            account_id: a.into(),
            plan: "independent".into(),
            cycle_anchor_ms: None,
        };
        match s.set_plan(&new_request, now + S).await {
            Err(StoreError::Ledger(LedgerError::InvalidArgument { field, message })) => {
                assert_eq!(field, "plan");
                assert!(
                    message.contains("unknown plan \"independent\""),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.account(a, now + S).await.unwrap(), before);

        // The upgrade is prorated from the recorded $25 / 2,500 units, not from `none`.
        let up = set_plan(&s, a, "up", "hollywood", now + S).await;
        assert_eq!(up.change, PlanChange::Upgraded);
        assert!(up.allowance_added <= 2500, "{up:?}");
        assert!(up.prorated_charge_cents <= 2500, "{up:?}");
        assert!(
            up.allowance_added >= 2499 && up.prorated_charge_cents >= 2499,
            "{up:?}"
        );
        assert_eq!(up.balance.allowance_total, 2500 + up.allowance_added);

        // A cycle of a removed plan renews with its recorded allowance; a downgrade scheduled
        // to a plan removed since starts with the terms it was scheduled with.
        let next = now + 32 * DAY;
        let b = s.balance(renews, next).await.unwrap();
        assert_eq!((b.plan.as_str(), b.allowance_total), ("independent", 2500));
        let b = s.balance(downgrades, next).await.unwrap();
        assert_eq!((b.plan.as_str(), b.allowance_total), ("independent", 2500));
    }

    /// A generation id reserved again once its finished hold is past retention names the new
    /// hold, whatever is left of the old one: a store that drops forgotten records a few per
    /// call (the memory store, its forget-time index) may still have the old record when the
    /// id comes back, and it must not hide the open hold from Extend, Settle or Release.
    pub async fn a_reused_generation_is_the_new_hold(s: Subject) {
        let now = t0();
        let kept_ms = i64::from(RETENTION_SECONDS) * S;
        let a = "acct";
        set_plan(&s, a, "start", "hollywood", now).await;
        // Finished holds that retention forgets first: more than one call drops at once.
        for i in 0..2 * FORGOTTEN_PER_CALL {
            let id = format!("earlier-{i}");
            s.reserve(&image(a, &id), now).await.unwrap();
            s.release(a, &id, ReleaseReason::Cancelled, now)
                .await
                .unwrap();
        }
        let finished = now + S;
        for id in ["g1", "g2"] {
            s.reserve(&image(a, id), finished).await.unwrap();
        }
        let first = s.settle(a, "g1", None, finished).await.unwrap();
        s.release(a, "g2", ReleaseReason::Failed, finished)
            .await
            .unwrap();

        // Forgotten at the end of the retention period: both ids make new holds.
        let later = finished + kept_ms;
        for id in ["g1", "g2"] {
            let again = s.reserve(&image(a, id), later).await.unwrap();
            assert!(!again.replayed, "{id}");
            assert_eq!(
                (again.hold.state, again.hold.created_at_ms),
                (HoldState::Held, later),
                "{id}"
            );
        }
        let extended = s.extend(a, "g1", 600, later).await.unwrap();
        assert_eq!(
            (extended.state, extended.expires_at_ms),
            (HoldState::Held, later + 600 * S)
        );
        let settled = s.settle(a, "g1", None, later).await.unwrap();
        assert!(!settled.replayed);
        assert_eq!(
            (settled.hold.state, settled.hold.created_at_ms),
            (HoldState::Settled, later)
        );
        assert_eq!(settled.charged_units, settled.hold.cost_units);
        let released = s
            .release(a, "g2", ReleaseReason::Cancelled, later)
            .await
            .unwrap();
        assert!(!released.replayed);
        assert_eq!(
            (released.hold.state, released.hold.created_at_ms),
            (HoldState::Released, later)
        );
        assert_eq!(released.returned_units, released.hold.cost_units);
        let b = s.balance(a, later).await.unwrap();
        assert_eq!(
            (b.open_holds, b.allowance_held, b.allowance_used),
            (0, 0, first.charged_units + settled.charged_units)
        );
        // The new holds are remembered as such.
        let replay = s.settle(a, "g1", None, later + 1).await.unwrap();
        assert!(replay.replayed);
        assert_eq!(replay.hold, settled.hold);
        let replay = s
            .release(a, "g2", ReleaseReason::Cancelled, later + 1)
            .await
            .unwrap();
        assert!(replay.replayed);
        assert_eq!(replay.hold, released.hold);
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory_store {
            $(
                #[tokio::test]
                async fn $case() {
                    super::cases::$case(super::memory()).await;
                }
            )*
        }
        mod redis_store {
            $(
                #[tokio::test]
                async fn $case() {
                    super::cases::$case(super::redis().await).await;
                }
            )*
        }
        mod cluster_store {
            $(
                #[tokio::test]
                async fn $case() {
                    super::cases::$case(super::cluster().await).await;
                }
            )*
        }
        mod cluster_store_256_shards {
            $(
                #[tokio::test]
                async fn $case() {
                    super::cases::$case(super::cluster_of_256_shards().await).await;
                }
            )*
        }
        mod memory_store_256_shards {
            $(
                #[tokio::test]
                async fn $case() {
                    super::cases::$case(super::memory_of_256_shards()).await;
                }
            )*
        }
    };
}

conformance!(
    allowance_then_credits,
    burn_order_across_three_grants,
    replays_are_idempotent,
    same_generation_with_other_terms_conflicts,
    denied_reserve_leaves_no_state,
    partial_settle_returns_credits_first,
    settle_preconditions,
    unknown_holds_are_not_found,
    expiry_and_extend,
    plan_gates_refuse_even_with_credits,
    month_end_anchor_rolls_over,
    start_with_past_anchor_and_missed_cycles,
    upgrade_is_prorated,
    two_upgrades_add_up,
    downgrade_waits_for_the_cycle_end,
    asking_for_the_current_plan_cancels_a_downgrade,
    cancelled_plan_still_spends_credits,
    holds_pin_their_cycle,
    grant_expiring_mid_hold,
    revoke_with_a_live_hold,
    hold_and_grant_event_ids_differ,
    refund_grant_ids_cannot_collide,
    a_reused_generation_is_refunded_again,
    release_returns_only_what_went_back,
    retried_revoke_answers_the_first_answer,
    mixed_batch_conflict_says_what_differs,
    idempotent_admin_calls,
    unknown_account_reads_as_empty,
    retention_forgets_by_the_callers_clock,
    lifetime_charges_add_up_across_cycles,
    live_grants_are_bounded,
    sweep_takes_the_earliest_due_account_first,
    clamped_anchor_cycle_cannot_overspend,
    expired_grants_are_events,
    refused_calls_write_nothing,
    quote_answers_what_reserve_would,
    reserve_batch_is_all_or_none,
    refunds_give_back_a_charge,
    usage_thresholds_once_per_cycle,
    zero_ids_survive_in_events,
    settle_takes_allowance_freed_since_the_reserve,
    settle_takes_free_allowance_then_credits,
    settle_takes_free_allowance_before_expired_credits,
    settle_for_less_returns_only_what_went_back,
    a_removed_plan_keeps_its_terms_and_replays_answer,
    a_long_past_changes_no_answer,
    a_reused_generation_is_the_new_hold,
);
