//! The event log through consumer groups, and the expiry sweeper, on both stores.

mod harness;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use quota_sidecar::events::{EventLog, Retention, UsageEvent};
use quota_sidecar::ledger::{Catalog, CreditSource, Kind};
use quota_sidecar::store::keys::Shards;
use quota_sidecar::store::memory::MemoryStore;
use quota_sidecar::store::redis::RedisStore;
use quota_sidecar::store::*;

const NOW_MS: i64 = 1_780_000_000_000;

struct Subject {
    store: Arc<dyn Store>,
    log: Arc<dyn EventLog>,
    _redis: Option<harness::RedisServer>,
}

fn memory() -> Subject {
    let m = Arc::new(MemoryStore::new(Arc::new(Catalog::builtin())));
    Subject {
        store: m.clone(),
        log: m,
        _redis: None,
    }
}

async fn redis() -> Subject {
    let server = harness::RedisServer::start();
    let r = Arc::new(
        RedisStore::connect(
            &server.url(),
            Arc::new(Catalog::builtin()),
            Duration::from_secs(2),
        )
        .await
        .unwrap(),
    );
    Subject {
        store: r.clone(),
        log: r,
        _redis: Some(server),
    }
}

async fn fund(s: &Subject, account: &str) {
    s.store
        .grant_credits(
            &GrantCmd {
                account_id: account.into(),
                grant_id: "pack".into(),
                units: 10_000,
                source: CreditSource::Purchased,
                expires_at_ms: None,
            },
            NOW_MS,
        )
        .await
        .unwrap();
}

async fn reserve(s: &Subject, account: &str, generation: &str, ttl_seconds: u32) {
    let cmd = ReserveCmd {
        account_id: account.into(),
        generation_id: generation.into(),
        kind: Kind::FirstFrame,
        model: "standard".into(),
        quantity: 1,
        ttl_seconds,
        labels: BTreeMap::new(),
    };
    s.store.reserve(&cmd, NOW_MS).await.unwrap();
}

fn ids(events: &[UsageEvent]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

mod cases {
    use super::*;

    pub async fn sweeper_expires_untouched_accounts_once(s: Subject) {
        let accounts: Vec<String> = (0..40).map(|i| format!("idle-{i}")).collect();
        for a in &accounts {
            fund(&s, a).await;
            reserve(&s, a, "g", 60).await;
        }
        let later = NOW_MS + 61_000;
        // Two sweepers race over every shard.
        let sweep = |store: Arc<dyn Store>| async move {
            let mut expired = 0;
            for shard in Shards::DEFAULT.all() {
                expired += store.expire_due(shard, later, 100).await.unwrap();
            }
            expired
        };
        let (a, b) = tokio::join!(sweep(s.store.clone()), sweep(s.store.clone()));
        assert_eq!(a + b, 40, "each hold expires exactly once");
        let events = s
            .log
            .read("audit", "c1", 10_000, false, 60_000, later)
            .await
            .unwrap();
        let expired: Vec<_> = events
            .iter()
            .filter(|e| e.event_type == "hold.expired")
            .collect();
        assert_eq!(expired.len(), 40);
        let distinct: HashSet<_> = expired.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(distinct.len(), 40);
        for a in &accounts {
            let b = s.store.balance(a, later).await.unwrap();
            assert_eq!(
                (b.open_holds, b.credits_held, b.credits_available),
                (0, 0, 10_000)
            );
        }
        // Nothing left to do.
        for shard in Shards::DEFAULT.all() {
            assert_eq!(s.store.expire_due(shard, later, 100).await.unwrap(), 0);
        }
    }

    pub async fn acked_events_never_come_back(s: Subject) {
        fund(&s, "a").await;
        let plan = SetPlanCmd {
            request_id: "r".into(),
            account_id: "a".into(),
            plan: "hollywood".into(),
            cycle_anchor_ms: None,
        };
        s.store.set_plan(&plan, NOW_MS).await.unwrap();
        for i in 0..5 {
            reserve(&s, "a", &format!("g{i}"), 300).await;
        }
        let first = s
            .log
            .read("billing", "c1", 100, true, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(first.len(), 7);
        assert_eq!(first[0].event_type, "credits.granted");
        assert_eq!(first[1].event_type, "plan.changed");
        let seqs: Vec<u64> = first.iter().map(|e| e.sequence).collect();
        assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
        let acks: Vec<String> = first.iter().map(|e| e.ack_id.clone()).collect();
        assert_eq!(s.log.pending("billing").await.unwrap(), 7);
        assert_eq!(s.log.ack("billing", &acks).await.unwrap(), 7);
        assert_eq!(s.log.ack("billing", &acks).await.unwrap(), 0);
        assert_eq!(s.log.pending("billing").await.unwrap(), 0);
        // Reconnecting (resume) and other consumers see nothing again.
        assert!(s
            .log
            .read("billing", "c1", 100, true, 0, NOW_MS)
            .await
            .unwrap()
            .is_empty());
        assert!(s
            .log
            .read("billing", "c2", 100, true, 0, NOW_MS)
            .await
            .unwrap()
            .is_empty());
        // New events arrive once.
        reserve(&s, "a", "g9", 300).await;
        let next = s
            .log
            .read("billing", "c2", 100, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(ids(&next), [format!("a/hold/g9@{NOW_MS}:reserved")]);
        let bad = s
            .log
            .ack("billing", &["not-an-id".to_string()])
            .await
            .unwrap_err();
        assert!(
            matches!(
                bad,
                StoreError::Ledger(LedgerError::InvalidArgument {
                    field: "ack_ids",
                    ..
                })
            ),
            "{bad:?}"
        );
    }

    pub async fn unacked_events_go_to_another_consumer(s: Subject) {
        for a in ["a", "b", "c"] {
            fund(&s, a).await;
        }
        let got = s
            .log
            .read("billing", "worker-1", 100, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(got.len(), 3);
        // worker-1 acks one and goes away.
        s.log
            .ack("billing", &[got[0].ack_id.clone()])
            .await
            .unwrap();
        // While worker-1 is alive and not idle, nobody else gets its events.
        let none = s
            .log
            .read("billing", "worker-2", 100, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert!(none.is_empty(), "{:?}", ids(&none));
        s.log.abandon("billing", "worker-1").await.unwrap();
        let taken = s
            .log
            .read("billing", "worker-2", 100, false, 60_000, NOW_MS)
            .await
            .unwrap();
        let mut expected = ids(&got[1..]);
        expected.sort();
        let mut taken_ids = ids(&taken);
        taken_ids.sort();
        assert_eq!(taken_ids, expected);
        let acks: Vec<String> = taken.iter().map(|e| e.ack_id.clone()).collect();
        assert_eq!(s.log.ack("billing", &acks).await.unwrap(), 2);
        assert_eq!(s.log.pending("billing").await.unwrap(), 0);
    }

    pub async fn a_reconnecting_consumer_gets_its_pending_first(s: Subject) {
        fund(&s, "a").await;
        let got = s
            .log
            .read("billing", "c1", 100, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        // Not resumed: nothing new.
        assert!(s
            .log
            .read("billing", "c1", 100, false, 60_000, NOW_MS)
            .await
            .unwrap()
            .is_empty());
        let again = s
            .log
            .read("billing", "c1", 100, true, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(ids(&again), ids(&got));
    }

    pub async fn a_late_group_sees_everything(s: Subject) {
        for i in 0..20 {
            fund(&s, &format!("acct-{i}")).await;
        }
        let early = s
            .log
            .read("billing", "c", 1000, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(early.len(), 20);
        let acks: Vec<String> = early.iter().map(|e| e.ack_id.clone()).collect();
        s.log.ack("billing", &acks).await.unwrap();
        let late = s
            .log
            .read("analytics", "c", 1000, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(late.len(), 20);
        // Delivered in log order per shard, spread over the shards of the accounts.
        let shards: HashSet<u32> = late
            .iter()
            .map(|e| Shards::DEFAULT.of(&e.account_id))
            .collect();
        assert!(shards.len() > 5, "{shards:?}");
    }

    pub async fn trimming_keeps_what_a_group_needs(s: Subject) {
        for i in 0..10 {
            fund(&s, &format!("acct-{i}")).await;
        }
        // "slow" has been given one event; "billing" reads all and acks all but one.
        let slow_first = s
            .log
            .read("slow", "c", 1, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(slow_first.len(), 1);
        let got = s
            .log
            .read("billing", "c", 1000, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(got.len(), 10);
        let acks: Vec<String> = got[1..].iter().map(|e| e.ack_id.clone()).collect();
        s.log.ack("billing", &acks).await.unwrap();
        let far_future = NOW_MS + 365 * 86_400_000;
        // Each event is still needed by one group or the other.
        assert_eq!(
            s.log.trim(Retention::by_age(0), far_future).await.unwrap(),
            0
        );
        s.log.abandon("billing", "c").await.unwrap();
        let again = s
            .log
            .read("billing", "c2", 1000, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(ids(&again), ids(&got[..1]));
        s.log
            .ack("billing", &[again[0].ack_id.clone()])
            .await
            .unwrap();
        let slow_rest = s
            .log
            .read("slow", "c", 1000, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(slow_rest.len(), 9);
        let acks: Vec<String> = slow_first
            .iter()
            .chain(&slow_rest)
            .map(|e| e.ack_id.clone())
            .collect();
        s.log.ack("slow", &acks).await.unwrap();
        // Only now is the history fully acked, and old enough to go.
        assert_eq!(
            s.log
                .trim(Retention::by_age(365 * 86_400_000 * 2), far_future)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            s.log.trim(Retention::by_age(0), far_future).await.unwrap(),
            10
        );
        // A group created now starts at the oldest retained event: nothing.
        let late = s
            .log
            .read("late", "c", 1000, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert!(late.is_empty());
    }

    pub async fn trimming_by_size_keeps_the_newest_acked(s: Subject) {
        // Twelve events on one account, so in one shard's log.
        let a = "busy";
        for i in 0..12 {
            s.store
                .grant_credits(
                    &GrantCmd {
                        account_id: a.into(),
                        grant_id: format!("pack-{i}"),
                        units: 1,
                        source: CreditSource::Purchased,
                        expires_at_ms: None,
                    },
                    NOW_MS,
                )
                .await
                .unwrap();
        }
        let at_most_five = Retention {
            keep_ms: 365 * 86_400_000,
            max_events_per_shard: 5,
            max_retained_per_shard: u64::MAX,
        };
        let billing = s
            .log
            .read("billing", "c", 100, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(billing.len(), 12);
        // "audit" has read the first event and not acked it: the size bound never drops it.
        let audit = s
            .log
            .read("audit", "c", 1, false, 60_000, NOW_MS)
            .await
            .unwrap();
        let acks: Vec<String> = billing.iter().map(|e| e.ack_id.clone()).collect();
        s.log.ack("billing", &acks).await.unwrap();
        assert_eq!(s.log.trim(at_most_five, NOW_MS).await.unwrap(), 0);
        let rest = s
            .log
            .read("audit", "c", 100, false, 60_000, NOW_MS)
            .await
            .unwrap();
        let acks: Vec<String> = audit
            .iter()
            .chain(&rest)
            .map(|e| e.ack_id.clone())
            .collect();
        s.log.ack("audit", &acks).await.unwrap();
        // Fully acked now: the oldest seven go, the newest five stay.
        assert_eq!(s.log.trim(at_most_five, NOW_MS).await.unwrap(), 7);
        assert_eq!(s.log.trim(at_most_five, NOW_MS).await.unwrap(), 0);
        let late = s
            .log
            .read("late", "c", 100, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(ids(&late), ids(&billing[7..]));
    }

    /// Twelve events on one account, so in one shard's log.
    async fn twelve_events(s: &Subject, account: &str) {
        for i in 0..12 {
            s.store
                .grant_credits(
                    &GrantCmd {
                        account_id: account.into(),
                        grant_id: format!("pack-{i}"),
                        units: 1,
                        source: CreditSource::Purchased,
                        expires_at_ms: None,
                    },
                    NOW_MS,
                )
                .await
                .unwrap();
        }
    }

    pub async fn the_hard_cap_drops_unacked_events_and_tells_each_group_once(s: Subject) {
        let a = "flood";
        twelve_events(&s, a).await;
        // "stuck" read three and acked none; "reader" acked all; an ephemeral group lags too.
        let stuck = s
            .log
            .read("stuck", "c", 3, false, 60_000, NOW_MS)
            .await
            .unwrap();
        let all = s
            .log
            .read("reader", "c", 100, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(all.len(), 12);
        let acks: Vec<String> = all.iter().map(|e| e.ack_id.clone()).collect();
        s.log.ack("reader", &acks).await.unwrap();
        s.log
            .read("ephemeral:t1", "c", 1, false, 60_000, NOW_MS)
            .await
            .unwrap();
        let cap = s.log.enforce_cap(4).await.unwrap();
        assert_eq!((cap.dropped, cap.dropped_unacked), (8, 8), "{cap:?}");
        let stuck_loss = cap.losses.iter().find(|l| l.group == "stuck").unwrap();
        assert_eq!(stuck_loss.count, 8);
        assert_eq!(stuck_loss.first_ack_id, stuck[0].ack_id);
        assert_eq!(stuck_loss.last_ack_id, all[7].ack_id);
        assert!(cap.losses.iter().all(|l| l.group != "reader"));
        assert!(cap
            .losses
            .iter()
            .all(|l| !l.group.starts_with("ephemeral:")));
        // Within the cap now.
        assert_eq!(s.log.enforce_cap(4).await.unwrap().dropped, 0);

        let told = s.log.take_losses("stuck").await.unwrap();
        assert_eq!(told.len(), 1);
        assert_eq!(
            (
                told[0].first_ack_id.as_str(),
                told[0].last_ack_id.as_str(),
                told[0].count
            ),
            (all[0].ack_id.as_str(), all[7].ack_id.as_str(), 8)
        );
        assert!(s.log.take_losses("stuck").await.unwrap().is_empty(), "once");
        // It reads on from what is kept.
        let rest = s
            .log
            .read("stuck", "c", 100, true, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(ids(&rest), ids(&all[8..]));
    }

    pub async fn ephemeral_groups_never_hold_back_trimming_and_are_deleted(s: Subject) {
        let a = "tail";
        twelve_events(&s, a).await;
        let group = "ephemeral:abc";
        let seen = s
            .log
            .read(group, "c", 2, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(seen.len(), 2);
        // Nothing acked by anyone, but the only group is ephemeral: everything old goes.
        let far_future = NOW_MS + 365 * 86_400_000 * 10;
        assert_eq!(
            s.log.trim(Retention::by_age(0), far_future).await.unwrap(),
            12
        );
        assert!(s.log.delete_group(group).await.unwrap());
        assert!(!s.log.delete_group(group).await.unwrap());
        assert_eq!(s.log.pending(group).await.unwrap(), 0);
    }

    /// Thirteen events over two shards: twelve on `lag-a`, one on an account of another shard.
    async fn events_on_two_shards(s: &Subject) {
        twelve_events(s, "lag-a").await;
        let other = (0..)
            .map(|i| format!("lag-b{i}"))
            .find(|b| Shards::DEFAULT.of(b) != Shards::DEFAULT.of("lag-a"))
            .unwrap();
        fund(s, &other).await;
    }

    pub async fn groups_report_pending_oldest_unacked_and_lag(s: Subject) {
        events_on_two_shards(&s).await;
        let billing = s
            .log
            .read("billing", "c", 5, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(billing.len(), 5);
        let acks: Vec<String> = billing[..2].iter().map(|e| e.ack_id.clone()).collect();
        assert_eq!(s.log.ack("billing", &acks).await.unwrap(), 2);
        let all = s
            .log
            .read("analytics", "c", 100, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(all.len(), 13);
        let acks: Vec<String> = all.iter().map(|e| e.ack_id.clone()).collect();
        s.log.ack("analytics", &acks).await.unwrap();

        let groups = s.log.groups(NOW_MS + 5_000).await.unwrap();
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["analytics", "billing"]);
        let (analytics, billing_info) = (&groups[0], &groups[1]);
        assert_eq!(
            (
                analytics.pending,
                analytics.lag,
                &analytics.oldest_unacked_ack_id
            ),
            (0, 0, &None)
        );
        assert_eq!(analytics.oldest_unacked_age_ms, 0);
        assert_eq!((billing_info.pending, billing_info.lag), (3, 8));
        assert_eq!(
            billing_info.oldest_unacked_ack_id.as_deref(),
            Some(billing[2].ack_id.as_str())
        );
        // The memory log measures age with the time passed in; Redis with its own clock,
        // which stamped the ids a moment ago.
        let age = billing_info.oldest_unacked_age_ms;
        assert!(
            age == 5_000 || (age < 60_000 && s._redis.is_some()),
            "{age}"
        );
    }

    pub async fn a_deleted_group_is_gone_everywhere_and_no_longer_holds_back_trimming(s: Subject) {
        // Nothing yet, not even a stream: nothing to delete, and no error.
        assert!(!s.log.delete_group("stale").await.unwrap());
        assert!(s.log.groups(NOW_MS).await.unwrap().is_empty());
        events_on_two_shards(&s).await;
        let read = s
            .log
            .read("stale", "c", 3, false, 60_000, NOW_MS)
            .await
            .unwrap();
        assert_eq!(read.len(), 3);
        let far_future = NOW_MS + 365 * 86_400_000 * 10;
        // The stale group needs everything from its first unacked event on.
        assert_eq!(
            s.log.trim(Retention::by_age(0), far_future).await.unwrap(),
            0
        );
        assert!(s.log.delete_group("stale").await.unwrap());
        assert!(s.log.groups(NOW_MS).await.unwrap().is_empty());
        assert_eq!(
            s.log.trim(Retention::by_age(0), far_future).await.unwrap(),
            13
        );
        assert!(!s.log.delete_group("stale").await.unwrap());
    }
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod memory_store {
            $(#[tokio::test] async fn $case() { super::cases::$case(super::memory()).await; })*
        }
        mod redis_store {
            $(#[tokio::test] async fn $case() { super::cases::$case(super::redis().await).await; })*
        }
    };
}

both!(
    sweeper_expires_untouched_accounts_once,
    acked_events_never_come_back,
    unacked_events_go_to_another_consumer,
    a_reconnecting_consumer_gets_its_pending_first,
    a_late_group_sees_everything,
    trimming_keeps_what_a_group_needs,
    trimming_by_size_keeps_the_newest_acked,
    the_hard_cap_drops_unacked_events_and_tells_each_group_once,
    ephemeral_groups_never_hold_back_trimming_and_are_deleted,
    groups_report_pending_oldest_unacked_and_lag,
    a_deleted_group_is_gone_everywhere_and_no_longer_holds_back_trimming,
);

/// The hard cap's default is sized from what an event costs Redis: `used_memory` before and
/// after 2,000 reserves and 2,000 settles (4,000 stream entries with labels) on one Redis.
/// Sixteen shards at the default cap must fit in half of a 1 GB Redis.
#[tokio::test]
async fn an_event_s_memory_fits_the_default_cap() {
    use quota_sidecar::config::DEFAULT_EVENTS_MAX_RETAINED_PER_SHARD;
    let s = redis().await;
    let server = s._redis.as_ref().unwrap();
    let used = || -> u64 {
        let info = server.cli(&["INFO", "memory"]);
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("used_memory")
    };
    let accounts: Vec<String> = (0..64).map(|i| format!("acct-{i}")).collect();
    for a in &accounts {
        fund(&s, a).await;
    }
    let before = used();
    let mut events = 0u64;
    for i in 0..2_000 {
        let a = &accounts[i % accounts.len()];
        let generation = format!("gen-{i:06}");
        let cmd = ReserveCmd {
            account_id: a.clone(),
            generation_id: generation.clone(),
            kind: Kind::FirstFrame,
            model: "standard".into(),
            quantity: 1,
            ttl_seconds: 300,
            labels: BTreeMap::from([("job".to_string(), format!("job-{i:06}"))]),
        };
        s.store.reserve(&cmd, NOW_MS).await.unwrap();
        s.store.settle(a, &generation, None, NOW_MS).await.unwrap();
        events += 2;
    }
    // Holds are kept too (7 days); count only the streams.
    let streams: u64 = Shards::DEFAULT
        .all()
        .map(|shard| {
            server
                .cli(&[
                    "MEMORY",
                    "USAGE",
                    &format!("q:{{s{shard}}}:events"),
                    "SAMPLES",
                    "0",
                ])
                .parse::<u64>()
                .unwrap_or(0)
        })
        .sum();
    let per_event = streams / events;
    let total_delta = used() - before;
    let budget = 16 * DEFAULT_EVENTS_MAX_RETAINED_PER_SHARD * per_event;
    println!(
        "{events} events: streams {streams} B ({per_event} B/event); used_memory +{total_delta} B \
         with holds; default cap {DEFAULT_EVENTS_MAX_RETAINED_PER_SHARD}/shard x 16 = {} MB",
        budget / 1_000_000
    );
    assert!(per_event > 50, "{per_event} B/event is implausibly small");
    assert!(
        budget <= 512 * 1024 * 1024,
        "the default cap needs {budget} B for events alone"
    );
}

/// The loss record's two scripts, run as the Redis log runs them: recording a cap batch again
/// (a pass stopped between recording and trimming, run again) adds nothing, a later batch
/// widens the range and adds its count, and taking the record returns it and clears it in one
/// step, so it is told once.
#[test]
fn a_loss_record_counts_each_batch_once_and_is_taken_whole() {
    let redis = harness::RedisServer::start();
    let record = include_str!("../src/store/redis/scripts/record_loss.lua");
    let take = include_str!("../src/store/redis/scripts/take_loss.lua");
    let key = "q:{s3}:events:losses";
    let run = |script: &str, args: &[&str]| {
        let mut all = vec!["EVAL", script, "1", key];
        all.extend_from_slice(args);
        redis.cli(&all)
    };
    assert_eq!(run(record, &["billing", "3/100-0", "3/100-9", "10"]), "1");
    assert_eq!(run(record, &["billing", "3/100-0", "3/100-9", "10"]), "0");
    assert_eq!(run(record, &["billing", "3/100-0", "3/100-4", "5"]), "0");
    assert_eq!(run(record, &["billing", "3/100-10", "3/250-1", "7"]), "1");
    assert_eq!(run(record, &["analytics", "3/250-0", "3/250-1", "2"]), "1");
    assert_eq!(
        redis.cli(&["HGET", key, "billing"]),
        "3/100-0 3/250-1 17",
        "one range per group and shard"
    );
    // Positions compare as numbers, not text: 99 comes before 100.
    assert_eq!(run(record, &["late", "3/100-0", "3/100-1", "2"]), "1");
    assert_eq!(run(record, &["late", "3/99-0", "3/99-5", "6"]), "0");
    assert_eq!(run(take, &["billing"]), "3/100-0 3/250-1 17");
    assert_eq!(run(take, &["billing"]), "");
    assert_eq!(redis.cli(&["HGET", key, "analytics"]), "3/250-0 3/250-1 2");
}
