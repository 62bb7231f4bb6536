//! `quota.v1.UsageEvents` through a real in-process server, on the memory store and on Redis:
//! every change type arrives with its fields, unacked events move to another consumer of the
//! group when theirs goes away, acked ones never come back, the in-flight cap holds, the
//! sweeper expires holds nobody touches (once, with two sidecars sweeping one Redis), and the
//! edge checks the token and its input. Last, `quotactl events tail` against the real binary.

mod harness;

use harness::in_process::{authed, channel, InProcess, TOKEN};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use prost_types::Timestamp;
use tonic::transport::Channel;
use tonic::{Code, Request, Streaming};

use quota_sidecar::api::events::{EventStreamSettings, READ_BATCH};
use quota_sidecar::clock::ManualClock;
use quota_sidecar::events::EventLog;
use quota_sidecar::ledger::Catalog;
use quota_sidecar::pb::{
    self, quota_admin_client::QuotaAdminClient, usage_events_client::UsageEventsClient,
};
use quota_sidecar::server::ServerSettings;
use quota_sidecar::store::memory::MemoryStore;
use quota_sidecar::store::redis::RedisStore;
use quota_sidecar::store::Store;

const S: i64 = 1_000;
const DAY: i64 = 86_400 * S;
/// 2026-04-01T00:00:00Z: April has 30 days, so the first cycle ends at `T0 + 30 * DAY`.
const T0: i64 = 1_775_001_600_000;
/// Longest wait for one expected event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stream must stay silent to count as "nothing more": many poll intervals.
const QUIET: Duration = Duration::from_millis(400);
/// Poll and sweep quickly so that the tests wait little.
const POLL: Duration = Duration::from_millis(20);

fn settings(max_in_flight: usize) -> ServerSettings {
    ServerSettings {
        sweep_interval: Duration::from_millis(25),
        events: EventStreamSettings {
            poll_interval: POLL,
            // Far beyond any wait here: a hand-over seen in a test is the disconnect's doing.
            claim_idle_ms: 60_000,
            max_in_flight,
        },
        ..ServerSettings::default()
    }
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    Redis,
}

/// A store for one test, and the Redis it lives in (stopped with it).
struct Backing {
    store: Arc<dyn Store>,
    events: Arc<dyn EventLog>,
    redis: Option<harness::RedisServer>,
}

impl Backing {
    /// The in-process server over this backing, with an in-flight cap of `max_in_flight`.
    async fn serve(&self, clock: &ManualClock, max_in_flight: usize) -> Running {
        Running::start(
            self.store.clone(),
            self.events.clone(),
            clock,
            settings(max_in_flight),
        )
        .await
    }

    async fn new(backend: Backend) -> Backing {
        match backend {
            Backend::Memory => {
                let m = Arc::new(MemoryStore::new(Arc::new(Catalog::builtin())));
                Backing {
                    store: m.clone(),
                    events: m,
                    redis: None,
                }
            }
            Backend::Redis => {
                let redis = harness::RedisServer::start();
                let (store, events) = redis_store(&redis.url()).await;
                Backing {
                    store,
                    events,
                    redis: Some(redis),
                }
            }
        }
    }
}

async fn redis_store(url: &str) -> (Arc<dyn Store>, Arc<dyn EventLog>) {
    let r = Arc::new(
        RedisStore::connect(url, Arc::new(Catalog::builtin()), Duration::from_secs(2))
            .await
            .unwrap(),
    );
    (r.clone(), r)
}

/// The in-process server (see the harness), plus opening a Subscribe stream.
struct Running(InProcess);

impl std::ops::Deref for Running {
    type Target = InProcess;
    fn deref(&self) -> &InProcess {
        &self.0
    }
}

impl Running {
    async fn start(
        store: Arc<dyn Store>,
        events: Arc<dyn EventLog>,
        clock: &ManualClock,
        settings: ServerSettings,
    ) -> Running {
        Running(InProcess::start_with(store, events, Arc::new(clock.clone()), settings).await)
    }

    async fn subscribe(&self, group: &str, consumer: &str) -> Sub {
        let mut client = self.events();
        let stream = client
            .subscribe(authed(pb::SubscribeRequest {
                group: group.into(),
                consumer: consumer.into(),
                ephemeral: false,
            }))
            .await
            .expect("subscribe")
            .into_inner();
        Sub {
            client,
            stream,
            group: group.into(),
        }
    }

    /// Graceful stop; returns how long it took.
    async fn stop(self) -> Duration {
        self.0.stop().await
    }
}

/// One open Subscribe stream.
struct Sub {
    client: UsageEventsClient<Channel>,
    stream: Streaming<pb::UsageEvent>,
    group: String,
}

impl Sub {
    /// The next event, within [`EVENT_TIMEOUT`].
    async fn next(&mut self) -> pb::UsageEvent {
        tokio::time::timeout(EVENT_TIMEOUT, self.stream.message())
            .await
            .expect("an event in time")
            .expect("the stream is healthy")
            .expect("the stream is open")
    }

    /// Exactly `n` events (each within [`EVENT_TIMEOUT`]), not acked.
    async fn take(&mut self, n: usize) -> Vec<pb::UsageEvent> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.next().await);
        }
        events
    }

    /// Events of exactly these types, in this order, then acks them.
    async fn expect(&mut self, types: &[&str]) -> Vec<pb::UsageEvent> {
        let events = self.take(types.len()).await;
        let got: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
        assert_eq!(got, types);
        assert_eq!(self.ack(&events).await, events.len() as u32);
        events
    }

    async fn ack(&mut self, events: &[pb::UsageEvent]) -> u32 {
        self.client
            .ack(authed(pb::AckRequest {
                group: self.group.clone(),
                ack_ids: events.iter().map(|e| e.ack_id.clone()).collect(),
            }))
            .await
            .expect("ack")
            .into_inner()
            .acked
    }

    /// Asserts that nothing arrives for [`QUIET`].
    async fn quiet(&mut self) {
        if let Ok(next) = tokio::time::timeout(QUIET, self.stream.message()).await {
            panic!("expected no event, got {next:?}");
        }
    }
}

fn ts(ms: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: ms.div_euclid(1_000),
        nanos: (ms.rem_euclid(1_000) * 1_000_000) as i32,
    })
}

fn set_plan(account: &str, request_id: &str, plan: &str) -> pb::SetPlanRequest {
    pb::SetPlanRequest {
        request_id: request_id.into(),
        account_id: account.into(),
        plan: plan.into(),
        cycle_anchor: None,
    }
}

fn grant(
    account: &str,
    grant_id: &str,
    units: u64,
    expires_at_ms: Option<i64>,
) -> pb::GrantCreditsRequest {
    pb::GrantCreditsRequest {
        account_id: account.into(),
        grant_id: grant_id.into(),
        units,
        source: pb::CreditSource::Promotional as i32,
        expires_at: expires_at_ms.and_then(ts),
    }
}

fn reserve(
    account: &str,
    generation: &str,
    kind: pb::GenerationKind,
    model: &str,
    quantity: u32,
    ttl_seconds: u32,
) -> pb::ReserveRequest {
    pb::ReserveRequest {
        account_id: account.into(),
        generation_id: generation.into(),
        kind: kind as i32,
        model: model.into(),
        quantity,
        ttl_seconds,
        labels: HashMap::from([("job".to_string(), format!("job-{generation}"))]),
    }
}

/// Grants 100 units to each account, one `credits.granted` event each.
async fn grant_to(server: &Running, accounts: &[String]) {
    let mut admin = server.admin();
    for a in accounts {
        admin
            .grant_credits(authed(grant(a, "pack", 100, None)))
            .await
            .unwrap();
    }
}

fn accounts(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn ids(events: &[pb::UsageEvent]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

/// Asserts a deterministic id `<account>/<key>@<created>:<what>` (`key`: `hold/<generation>`,
/// `grant/<grant>` or a plan request id).
fn assert_keyed_id(e: &pb::UsageEvent, key: &str, what: &str) {
    let prefix = format!("{}/{key}@", e.account_id);
    assert!(
        e.id.starts_with(&prefix) && e.id.ends_with(&format!(":{what}")),
        "{} should be {prefix}<created>:{what}",
        e.id
    );
}

mod cases {
    use super::*;

    /// Every change type over Subscribe, with its fields; replays emit nothing.
    pub async fn every_change_type_is_streamed(backend: Backend) {
        let backing = Backing::new(backend).await;
        let clock = ManualClock::new(T0);
        let server = backing.serve(&clock, 1_000).await;
        let (mut quota, mut admin) = (server.quota(), server.admin());
        let mut sub = server.subscribe("billing", "c1").await;
        let a = "studio-1";
        let mut all: Vec<pb::UsageEvent> = Vec::new();

        // Start a plan (replayed once).
        for _ in 0..2 {
            admin
                .set_plan(authed(set_plan(a, "p1", "independent")))
                .await
                .unwrap();
        }
        let e = sub.expect(&["plan.changed"]).await.remove(0);
        assert_keyed_id(&e, "p1", "started");
        assert_eq!(
            (e.plan.as_str(), e.previous_plan.as_str()),
            ("independent", "none")
        );
        assert_eq!(e.cycle_start, ts(T0));
        assert_eq!(e.time, ts(T0));
        all.push(e);

        // Grant promotional credits with an expiry (replayed once).
        for _ in 0..2 {
            admin
                .grant_credits(authed(grant(a, "welcome", 100, Some(T0 + 40 * DAY))))
                .await
                .unwrap();
        }
        let e = sub.expect(&["credits.granted"]).await.remove(0);
        assert_keyed_id(&e, "grant/welcome", "granted");
        assert_eq!(
            (e.grant_id.as_str(), e.units, e.source.as_str()),
            ("welcome", 100, "promotional")
        );
        assert_eq!(e.expires_at, ts(T0 + 40 * DAY));
        all.push(e);

        // Reserve (replayed), extend, settle for less (replayed).
        let video = reserve(a, "v1", pb::GenerationKind::Video, "pro", 10, 60);
        for _ in 0..2 {
            quota.reserve(video.clone()).await.unwrap();
        }
        let e = sub.expect(&["hold.reserved"]).await.remove(0);
        assert_keyed_id(&e, "hold/v1", "reserved");
        assert_eq!(e.generation_id, "v1");
        assert_eq!(e.kind, pb::GenerationKind::Video as i32);
        assert_eq!((e.model.as_str(), e.quantity), ("pro", 10));
        // 20 units a second on pro, from the allowance.
        assert_eq!((e.units, e.from_allowance, e.from_credits), (200, 200, 0));
        assert_eq!(e.labels["job"], "job-v1");
        assert_eq!(e.cycle_start, ts(T0));
        all.push(e);

        clock.advance_ms(30 * S);
        quota
            .extend(pb::ExtendRequest {
                account_id: a.into(),
                generation_id: "v1".into(),
                ttl_seconds: 300,
            })
            .await
            .unwrap();
        let e = sub.expect(&["hold.extended"]).await.remove(0);
        assert_eq!(e.expires_at, ts(T0 + 330 * S));
        assert_eq!((e.generation_id.as_str(), e.quantity), ("v1", 10));
        all.push(e);

        clock.advance_ms(30 * S);
        let settle = pb::SettleRequest {
            account_id: a.into(),
            generation_id: "v1".into(),
            actual_quantity: Some(7),
        };
        for _ in 0..2 {
            quota.settle(settle.clone()).await.unwrap();
        }
        let e = sub.expect(&["hold.settled"]).await.remove(0);
        assert_keyed_id(&e, "hold/v1", "settled");
        assert_eq!(
            (e.quantity, e.units, e.from_allowance, e.from_credits),
            (7, 140, 140, 0)
        );
        assert_eq!(e.labels["job"], "job-v1");
        assert_eq!(e.time, ts(T0 + 60 * S));
        all.push(e);

        // Reserve and release (replayed).
        quota
            .reserve(reserve(
                a,
                "i1",
                pb::GenerationKind::CharacterImage,
                "standard",
                2,
                60,
            ))
            .await
            .unwrap();
        let release = pb::ReleaseRequest {
            account_id: a.into(),
            generation_id: "i1".into(),
            reason: pb::ReleaseReason::ContentFiltered as i32,
        };
        for _ in 0..2 {
            quota.release(release.clone()).await.unwrap();
        }
        let mut events = sub.expect(&["hold.reserved", "hold.released"]).await;
        let e = events.remove(1);
        assert_keyed_id(&e, "hold/i1", "released");
        assert_eq!((e.units, e.reason.as_str()), (8, "content_filtered"));
        assert_eq!(e.kind, pb::GenerationKind::CharacterImage as i32);
        all.extend(events);
        all.push(e);

        // A hold nobody settles: the sweeper expires it without anyone touching the account.
        quota
            .reserve(reserve(
                a,
                "f1",
                pb::GenerationKind::FirstFrame,
                "standard",
                1,
                60,
            ))
            .await
            .unwrap();
        all.extend(sub.expect(&["hold.reserved"]).await);
        clock.advance_ms(61 * S);
        let e = sub.expect(&["hold.expired"]).await.remove(0);
        assert_keyed_id(&e, "hold/f1", "expired");
        assert_eq!((e.generation_id.as_str(), e.units), ("f1", 2));
        assert_eq!(e.time, ts(T0 + 121 * S));
        all.push(e);

        // Upgrade on day 12 (18 of 30 days left), replayed.
        clock.set_ms(T0 + 12 * DAY);
        for _ in 0..2 {
            admin
                .set_plan(authed(set_plan(a, "p2", "hollywood")))
                .await
                .unwrap();
        }
        let e = sub.expect(&["plan.upgraded"]).await.remove(0);
        assert_keyed_id(&e, "p2", "upgraded");
        assert_eq!(
            (e.plan.as_str(), e.previous_plan.as_str()),
            ("hollywood", "independent")
        );
        // floor(2,500 * 18/30) units and floor(2,500 cents * 18/30).
        assert_eq!((e.allowance_added, e.prorated_charge_cents), (1_500, 1_500));
        all.push(e);

        // Downgrade on day 13: scheduled for the cycle's end.
        clock.set_ms(T0 + 13 * DAY);
        admin
            .set_plan(authed(set_plan(a, "p3", "microbudget")))
            .await
            .unwrap();
        let e = sub.expect(&["plan.downgrade_scheduled"]).await.remove(0);
        assert_keyed_id(&e, "p3", "downgrade_scheduled");
        assert_eq!(
            (e.plan.as_str(), e.previous_plan.as_str()),
            ("microbudget", "hollywood")
        );
        assert_eq!(e.effective_at, ts(T0 + 30 * DAY));
        assert_eq!((e.allowance_added, e.prorated_charge_cents), (0, 0));
        all.push(e);

        // Revoke what is left of the grant (a second revoke has nothing left: no event).
        for _ in 0..2 {
            admin
                .revoke_credits(authed(pb::RevokeCreditsRequest {
                    account_id: a.into(),
                    grant_id: "welcome".into(),
                }))
                .await
                .unwrap();
        }
        let e = sub.expect(&["credits.revoked"]).await.remove(0);
        assert_keyed_id(&e, "grant/welcome", "revoked");
        assert_eq!(
            (e.grant_id.as_str(), e.units, e.source.as_str()),
            ("welcome", 100, "promotional")
        );
        all.push(e);

        // May: the first touch applies the downgrade and renews the cycle.
        clock.set_ms(T0 + 31 * DAY);
        quota
            .get_balance(pb::GetBalanceRequest {
                account_id: a.into(),
            })
            .await
            .unwrap();
        let mut events = sub.expect(&["plan.changed", "cycle.renewed"]).await;
        let changed = &events[0];
        assert_eq!(
            (changed.plan.as_str(), changed.previous_plan.as_str()),
            ("microbudget", "hollywood")
        );
        let renewed = &events[1];
        assert_eq!(renewed.id, format!("{a}:{}:renewed", T0 + 30 * DAY));
        assert_eq!(
            (renewed.plan.as_str(), renewed.allowance_added),
            ("microbudget", 1_000)
        );
        assert_eq!(renewed.cycle_start, ts(T0 + 30 * DAY));
        all.append(&mut events);

        // Nothing else was written: the replays, the empty revoke and the reads emitted none.
        sub.quiet().await;
        let seqs: Vec<u64> = all.iter().map(|e| e.sequence).collect();
        assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<_>>());
        let distinct: HashSet<&str> = all.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(distinct.len(), all.len());
        let acks: HashSet<&str> = all.iter().map(|e| e.ack_id.as_str()).collect();
        assert_eq!(acks.len(), all.len());
        for e in &all {
            assert_eq!(e.account_id, a);
            assert!(e.time.is_some());
        }
        // Acked: a reconnecting consumer and a second one of the group get nothing.
        drop(sub);
        server.subscribe("billing", "c1").await.quiet().await;
        server.subscribe("billing", "c2").await.quiet().await;
        server.stop().await;
        drop(backing);
    }

    /// A consumer that leaves without acking: another consumer of its group gets those events
    /// at once. Acked events never come back.
    pub async fn unacked_events_move_and_acked_ones_never_return(backend: Backend) {
        let backing = Backing::new(backend).await;
        let clock = ManualClock::new(T0);
        let server = backing.serve(&clock, 1_000).await;
        let names = accounts("acct", 6);
        grant_to(&server, &names).await;

        let mut c1 = server.subscribe("billing", "c1").await;
        let got = c1.take(6).await;
        assert_eq!(c1.ack(&got[..2]).await, 2);
        c1.quiet().await;
        drop(c1);

        // The other four go to c2, long before they could idle past the claim threshold.
        let started = Instant::now();
        let mut c2 = server.subscribe("billing", "c2").await;
        let moved = c2.take(4).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        let mut expected = ids(&got[2..]);
        let mut moved_ids = ids(&moved);
        expected.sort();
        moved_ids.sort();
        assert_eq!(moved_ids, expected);
        c2.quiet().await;
        assert_eq!(c2.ack(&moved).await, 4);
        // Acking again finds nothing pending.
        assert_eq!(c2.ack(&moved).await, 0);
        drop(c2);

        // Reconnecting, both see nothing again; a new event arrives once.
        let mut c1 = server.subscribe("billing", "c1").await;
        let mut c2 = server.subscribe("billing", "c2").await;
        c1.quiet().await;
        c2.quiet().await;
        grant_to(&server, &["late".to_string()]).await;
        let first = tokio::select! {
            e = c1.next() => e,
            e = c2.next() => e,
        };
        assert_eq!(first.account_id, "late");
        c1.quiet().await;
        c2.quiet().await;
        drop((c1, c2));
        server.stop().await;
        drop(backing);
    }

    /// A group created after the events sees all of them, whatever other groups acked; more
    /// than one read batch of them, so the stream reads again at once until it has them all.
    pub async fn a_new_group_sees_every_retained_event(backend: Backend) {
        let count = READ_BATCH + 44;
        let backing = Backing::new(backend).await;
        let clock = ManualClock::new(T0);
        let server = backing.serve(&clock, 1_000).await;
        let names = accounts("early", count);
        grant_to(&server, &names).await;
        let mut billing = server.subscribe("billing", "b1").await;
        let seen = billing.take(count).await;
        assert_eq!(billing.ack(&seen).await as usize, count);

        let mut audit = server.subscribe("audit", "a1").await;
        let replayed = audit.take(count).await;
        audit.quiet().await;
        let mut a = ids(&seen);
        let mut b = ids(&replayed);
        a.sort();
        b.sort();
        assert_eq!(a, b);
        let accounts_seen: HashSet<String> =
            replayed.iter().map(|e| e.account_id.clone()).collect();
        assert_eq!(accounts_seen, names.iter().cloned().collect());
        assert!(replayed.iter().all(|e| e.sequence == 1));
        drop((billing, audit));
        server.stop().await;
        drop(backing);
    }

    /// A consumer that does not ack gets exactly `cap` events, and more as it acks.
    pub async fn in_flight_cap_holds(backend: Backend) {
        const CAP: usize = 3;
        let backing = Backing::new(backend).await;
        let clock = ManualClock::new(T0);
        let server = backing.serve(&clock, CAP).await;
        grant_to(&server, &accounts("capped", 10)).await;
        let mut sub = server.subscribe("billing", "slow").await;
        let first = sub.take(CAP).await;
        sub.quiet().await;
        // Room for two more.
        assert_eq!(sub.ack(&first[..2]).await, 2);
        let second = sub.take(2).await;
        sub.quiet().await;
        // A second stream of the same group is capped on its own.
        let mut other = server.subscribe("billing", "other").await;
        let third = other.take(CAP).await;
        other.quiet().await;
        drop(other); // hands its three to the group
        assert_eq!(sub.ack(&first[2..]).await, 1);
        assert_eq!(sub.ack(&second).await, 2);
        let mut rest = Vec::new();
        while rest.len() < 5 {
            let batch = sub.take(CAP.min(5 - rest.len())).await;
            assert_eq!(sub.ack(&batch).await as usize, batch.len());
            rest.extend(batch);
        }
        sub.quiet().await;
        let mut all: Vec<String> = [first, second, rest]
            .concat()
            .iter()
            .map(|e| e.id.clone())
            .collect();
        let third_ids: HashSet<String> = ids(&third).into_iter().collect();
        assert!(
            third_ids.iter().all(|id| all.contains(id)),
            "the abandoned three came back"
        );
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 10);
        drop(sub);
        server.stop().await;
        drop(backing);
    }

    /// The sweeper emits `hold.expired` for accounts nobody touches again.
    pub async fn sweeper_expires_untouched_holds(backend: Backend) {
        let backing = Backing::new(backend).await;
        let clock = ManualClock::new(T0);
        let server = backing.serve(&clock, 1_000).await;
        let names = accounts("idle", 5);
        grant_to(&server, &names).await;
        let mut quota = server.quota();
        for a in &names {
            quota
                .reserve(reserve(
                    a,
                    "g",
                    pb::GenerationKind::FirstFrame,
                    "standard",
                    1,
                    60,
                ))
                .await
                .unwrap();
        }
        let mut sub = server.subscribe("billing", "c1").await;
        let before = sub.take(10).await;
        assert_eq!(sub.ack(&before).await, 10);
        sub.quiet().await;
        clock.advance_ms(61 * S);
        let expired = sub.take(5).await;
        assert!(expired.iter().all(|e| e.r#type == "hold.expired"));
        let who: HashSet<String> = expired.iter().map(|e| e.account_id.clone()).collect();
        assert_eq!(who, names.iter().cloned().collect());
        assert_eq!(sub.ack(&expired).await, 5);
        sub.quiet().await;
        drop(sub);
        server.stop().await;
        drop(backing);
    }

    /// No token, no events; bad input names its field.
    pub async fn edge_checks_token_and_input(backend: Backend) {
        let backing = Backing::new(backend).await;
        let clock = ManualClock::new(T0);
        let server = backing.serve(&clock, 1_000).await;
        let mut client = server.events();
        let subscribe = pb::SubscribeRequest {
            group: "billing".into(),
            consumer: "c1".into(),
            ephemeral: false,
        };
        let ack = pb::AckRequest {
            group: "billing".into(),
            ack_ids: vec!["1/1-0".into()],
        };
        let status = client.subscribe(subscribe.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let status = client.ack(ack.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let mut wrong = Request::new(subscribe.clone());
        wrong
            .metadata_mut()
            .insert("authorization", "Bearer not-the-token".parse().unwrap());
        let status = client.subscribe(wrong).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        // Not on the worker listener at all.
        let status = UsageEventsClient::new(server.worker.clone())
            .subscribe(authed(subscribe.clone()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");

        let invalid = |status: tonic::Status, field: &str| {
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert!(
                status.message().starts_with(&format!("{field}: ")),
                "{status:?} should name {field}"
            );
        };
        for group in ["", "bad group", "a/b", &"g".repeat(129)] {
            let req = pb::SubscribeRequest {
                group: group.into(),
                ..subscribe.clone()
            };
            invalid(client.subscribe(authed(req)).await.unwrap_err(), "group");
            let req = pb::AckRequest {
                group: group.into(),
                ..ack.clone()
            };
            invalid(client.ack(authed(req)).await.unwrap_err(), "group");
        }
        let req = pb::SubscribeRequest {
            consumer: "c{1}".into(),
            ..subscribe.clone()
        };
        invalid(client.subscribe(authed(req)).await.unwrap_err(), "consumer");
        for ack_ids in [
            vec![],
            vec!["nope".to_string()],
            vec!["1/1-0".to_string(), "99/1-0".to_string()],
            vec!["1/1-0".to_string(); 1_001],
        ] {
            let req = pb::AckRequest {
                ack_ids,
                ..ack.clone()
            };
            invalid(client.ack(authed(req)).await.unwrap_err(), "ack_ids");
        }
        // A well-formed id that is not pending acks nothing.
        assert_eq!(client.ack(authed(ack)).await.unwrap().into_inner().acked, 0);
        server.stop().await;
        drop(backing);
    }

    /// An open stream ends with UNAVAILABLE on shutdown and does not hold the drain up.
    pub async fn shutdown_ends_open_streams(backend: Backend) {
        let backing = Backing::new(backend).await;
        let clock = ManualClock::new(T0);
        let server = backing.serve(&clock, 1_000).await;
        let mut sub = server.subscribe("billing", "c1").await;
        sub.quiet().await;
        let stopping = tokio::spawn(server.stop());
        let end = tokio::time::timeout(EVENT_TIMEOUT, sub.stream.message())
            .await
            .expect("the stream ends in time");
        let status = end.expect_err("the stream ends with a status");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        let took = stopping.await.unwrap();
        assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
        drop(backing);
    }

    /// Past the hard cap the oldest events go even unacked: the lagging group's next
    /// Subscribe answers DATA_LOSS naming what it missed, once. An ephemeral subscription reads
    /// without holding anything back, and its group is gone when the stream ends.
    pub async fn lost_events_are_data_loss_once_and_ephemeral_groups_vanish(backend: Backend) {
        let backing = Backing::new(backend).await;
        let clock = ManualClock::new(T0);
        let server = backing.serve(&clock, 1_000).await;
        let mut admin = server.admin();
        let a = "flooded";
        for i in 0..12 {
            admin
                .grant_credits(authed(grant(a, &format!("pack-{i}"), 1, None)))
                .await
                .unwrap();
        }
        let mut sub = server.subscribe("billing", "c1").await;
        let first = sub.take(3).await;
        drop(sub);
        let cap = backing.events.enforce_cap(4).await.unwrap();
        assert_eq!((cap.dropped, cap.dropped_unacked), (8, 8), "{cap:?}");

        let mut client = server.events();
        let request = |group: &str, ephemeral: bool| {
            authed(pb::SubscribeRequest {
                group: group.into(),
                consumer: "c1".into(),
                ephemeral,
            })
        };
        let status = client
            .subscribe(request("billing", false))
            .await
            .expect_err("DATA_LOSS");
        assert_eq!(status.code(), Code::DataLoss, "{status:?}");
        assert!(
            status.message().contains("missed 8 events")
                && status.message().contains(&first[0].ack_id),
            "{}",
            status.message()
        );
        // For programs: the reason and the count, in the error details.
        let details = tonic_types::StatusExt::get_error_details(&status);
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.metadata["lost_events"].as_str()),
            ("EVENTS_LOST", "8")
        );
        // Told once: it reads on from what is kept.
        let mut sub = server.subscribe("billing", "c1").await;
        let kept = sub.take(4).await;
        assert_eq!(sub.ack(&kept).await, 4);

        let status = client
            .subscribe(request("billing", true))
            .await
            .expect_err("a named ephemeral group");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let mut tail = client
            .subscribe(request("", true))
            .await
            .expect("ephemeral subscribe")
            .into_inner();
        for _ in 0..4 {
            tokio::time::timeout(EVENT_TIMEOUT, tail.message())
                .await
                .expect("an event in time")
                .unwrap()
                .unwrap();
        }
        drop(tail);
        if let Some(redis) = &backing.redis {
            let shard = quota_sidecar::store::keys::Shards::DEFAULT.of(a);
            let key = format!("{}events", quota_sidecar::store::keys::shard_prefix(shard));
            let deadline = Instant::now() + EVENT_TIMEOUT;
            loop {
                let groups = redis.cli(&["XINFO", "GROUPS", &key]);
                if !groups.contains("ephemeral:") {
                    assert!(groups.contains("billing"), "{groups}");
                    break;
                }
                assert!(Instant::now() < deadline, "ephemeral group left: {groups}");
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// ListGroups and DeleteGroup over gRPC: counts summed over the shards, the token checked,
    /// the group name validated.
    pub async fn groups_are_listed_and_deleted(backend: Backend) {
        let backing = Backing::new(backend).await;
        let clock = ManualClock::new(T0);
        let server = backing.serve(&clock, 1_000).await;
        let names = accounts("grp", 6);
        grant_to(&server, &names).await;
        let mut billing = server.subscribe("billing", "b1").await;
        let got = billing.take(6).await;
        assert_eq!(billing.ack(&got[..2]).await, 2);
        // A group that read one event and went away.
        let idle = backing
            .events
            .read("idle", "i1", 1, false, 60_000, T0)
            .await
            .unwrap();
        assert_eq!(idle.len(), 1);
        clock.advance_ms(7_000);

        let mut client = server.events();
        let status = client
            .list_groups(pb::ListGroupsRequest {})
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let status = client
            .delete_group(pb::DeleteGroupRequest {
                group: "idle".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

        let list = client
            .list_groups(authed(pb::ListGroupsRequest {}))
            .await
            .unwrap()
            .into_inner()
            .groups;
        let names: Vec<&str> = list.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["billing", "idle"]);
        assert_eq!((list[0].pending, list[0].lag), (4, 0), "{:?}", list[0]);
        assert_eq!((list[1].pending, list[1].lag), (1, 5), "{:?}", list[1]);
        assert_eq!(list[1].oldest_unacked_ack_id, idle[0].ack_id);
        assert!(got[2..]
            .iter()
            .any(|e| e.ack_id == list[0].oldest_unacked_ack_id));
        // The memory store measures against the sidecar's clock, Redis against its own.
        let age = list[1].oldest_unacked_age_ms;
        match backend {
            Backend::Memory => assert_eq!(age, 7_000),
            Backend::Redis => assert!(age < 60_000, "{age}"),
        }

        for group in ["", "bad group", &"g".repeat(129)] {
            let status = client
                .delete_group(authed(pb::DeleteGroupRequest {
                    group: group.into(),
                }))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert!(status.message().starts_with("group: "), "{status:?}");
        }
        let delete = |group: &str| {
            authed(pb::DeleteGroupRequest {
                group: group.into(),
            })
        };
        let deleted = client.delete_group(delete("idle")).await.unwrap();
        assert!(deleted.into_inner().deleted);
        let again = client.delete_group(delete("idle")).await.unwrap();
        assert!(!again.into_inner().deleted);
        let list = client
            .list_groups(authed(pb::ListGroupsRequest {}))
            .await
            .unwrap()
            .into_inner()
            .groups;
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].name, "billing");
        drop(billing);
        server.stop().await;
        drop(backing);
    }
}

macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::cases::$case(super::Backend::Memory).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    super::cases::$case(super::Backend::Redis).await;
                }
            )*
        }
    };
}

on_both_stores!(
    every_change_type_is_streamed,
    unacked_events_move_and_acked_ones_never_return,
    a_new_group_sees_every_retained_event,
    in_flight_cap_holds,
    sweeper_expires_untouched_holds,
    edge_checks_token_and_input,
    shutdown_ends_open_streams,
    lost_events_are_data_loss_once_and_ephemeral_groups_vanish,
    groups_are_listed_and_deleted,
);

/// Two sidecars sweeping one Redis: every hold expires once.
#[tokio::test]
async fn two_sidecars_sweeping_one_redis_expire_each_hold_once() {
    let redis = harness::RedisServer::start();
    let clock = ManualClock::new(T0);
    let (store_a, events_a) = redis_store(&redis.url()).await;
    let (store_b, events_b) = redis_store(&redis.url()).await;
    let a = Running::start(store_a, events_a, &clock, settings(1_000)).await;
    let b = Running::start(store_b, events_b, &clock, settings(1_000)).await;
    let names = accounts("shared", 30);
    grant_to(&a, &names).await;
    let mut quota = a.quota();
    for (i, name) in names.iter().enumerate() {
        quota
            .reserve(reserve(
                name,
                &format!("g{i}"),
                pb::GenerationKind::FirstFrame,
                "standard",
                1,
                60,
            ))
            .await
            .unwrap();
    }
    // Read through the other sidecar: one log, whichever sidecar serves it.
    let mut sub = b.subscribe("billing", "c1").await;
    let before = sub.take(60).await;
    assert_eq!(sub.ack(&before).await, 60);
    clock.advance_ms(61 * S);
    let expired = sub.take(30).await;
    assert_eq!(sub.ack(&expired).await, 30);
    // Several more sweeps of both sidecars: nothing expires twice.
    sub.quiet().await;
    let mut per_generation: BTreeMap<String, usize> = BTreeMap::new();
    for e in &expired {
        assert_eq!(e.r#type, "hold.expired");
        *per_generation.entry(e.generation_id.clone()).or_default() += 1;
    }
    assert_eq!(per_generation.len(), 30);
    assert!(
        per_generation.values().all(|n| *n == 1),
        "{per_generation:?}"
    );
    drop(sub);
    a.stop().await;
    b.stop().await;
}

/// When Redis goes away, an open stream ends with UNAVAILABLE.
#[tokio::test]
async fn stream_ends_unavailable_when_redis_goes_away() {
    let mut backing = Backing::new(Backend::Redis).await;
    let clock = ManualClock::new(T0);
    let server = backing.serve(&clock, 1_000).await;
    let mut sub = server.subscribe("billing", "c1").await;
    sub.quiet().await;
    backing.redis.as_mut().unwrap().stop();
    let end = tokio::time::timeout(EVENT_TIMEOUT, sub.stream.message())
        .await
        .expect("the stream ends in time");
    let status = end.expect_err("the stream ends with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // Subscribing now fails at once, too.
    let status = server
        .events()
        .subscribe(authed(pb::SubscribeRequest {
            group: "billing".into(),
            consumer: "c2".into(),
            ephemeral: false,
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    drop(sub);
    server.stop().await;
}

/// `quotactl events tail` against the real binaries: JSON lines, acks, the hand-over of what
/// one run left unacked to the next, the human table, and a clean exit on Ctrl-C.
#[tokio::test]
async fn quotactl_tails_and_acks_events() {
    let sidecar = harness::sidecar::Sidecar::start("memory", Some(TOKEN));
    let admin_addr = sidecar.admin();
    harness::sidecar::wait_serving(sidecar.worker).await;
    let admin = channel(admin_addr).await;
    let names = accounts("tail", 5);
    let mut client = QuotaAdminClient::new(admin.clone());
    for a in &names {
        client
            .grant_credits(authed(grant(a, "pack", 100, None)))
            .await
            .unwrap();
    }

    let target = format!("http://{admin_addr}");
    let tail = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_quotactl"))
            .args(["--admin-target", &target, "events", "tail"])
            .args(args)
            .env("QUOTA_ADMIN_TOKEN", TOKEN)
            .env_remove("QUOTA_ADMIN_TARGET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run quotactl")
    };

    // Three, acked; the two it received but did not print go to the next run.
    let first = Tailing::new(tail(&["--group", "ops", "--max", "3", "--ack", "--json"]));
    let (code, lines) = first.finish(EVENT_TIMEOUT);
    assert_eq!(code, Some(0), "{lines:?}");
    // The group exists now: acking in it again needs --force (it is this test's own).
    let second = Tailing::new(tail(&[
        "--group", "ops", "--max", "2", "--ack", "--force", "--json",
    ]));
    let (code, more) = second.finish(EVENT_TIMEOUT);
    assert_eq!(code, Some(0), "{more:?}");
    let events: Vec<serde_json::Value> = lines
        .iter()
        .chain(&more)
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(events.len(), 5);
    let mut seen: Vec<String> = Vec::new();
    for e in &events {
        assert_eq!(e["type"], "credits.granted");
        assert_eq!(e["sequence"], 1);
        assert_eq!(e["units"], 100);
        assert_eq!(e["source"], "promotional");
        assert_eq!(e["grant_id"], "pack");
        assert!(e["time"].is_string() && e["ack_id"].is_string());
        seen.push(e["account_id"].as_str().unwrap().to_string());
    }
    seen.sort();
    assert_eq!(seen, names);
    // All acked: nothing comes back to the group.
    let mut checker = Sub {
        client: UsageEventsClient::new(admin.clone()),
        stream: UsageEventsClient::new(admin.clone())
            .subscribe(authed(pb::SubscribeRequest {
                group: "ops".into(),
                consumer: "checker".into(),
                ephemeral: false,
            }))
            .await
            .unwrap()
            .into_inner(),
        group: "ops".into(),
    };
    checker.quiet().await;
    drop(checker);

    // The human table, until Ctrl-C.
    let mut human = Tailing::new(tail(&["--group", "people"]));
    let header = human.line(EVENT_TIMEOUT);
    assert!(
        header.starts_with("TIME") && header.contains("DETAILS"),
        "{header}"
    );
    for _ in 0..5 {
        let row = human.line(EVENT_TIMEOUT);
        assert!(
            row.contains("credits.granted") && row.contains("ack="),
            "{row}"
        );
    }
    let status = Command::new("kill")
        .args(["-INT", &human.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, rest) = human.finish(EVENT_TIMEOUT);
    assert_eq!(code, Some(0), "{rest:?}");
    drop(sidecar);
}

/// A running `quotactl` whose stdout is read line by line; killed when dropped.
struct Tailing {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Tailing {
    fn new(mut child: Child) -> Tailing {
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("quotactl: {line}");
            }
        });
        Tailing { child, lines }
    }

    fn line(&mut self, timeout: Duration) -> String {
        self.lines.recv_timeout(timeout).expect("a line in time")
    }

    /// Waits (bounded) for the exit; its code and the lines not read yet.
    fn finish(mut self, timeout: Duration) -> (Option<i32>, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "quotactl did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
            lines.push(line);
        }
        (status.code(), lines)
    }
}

impl Drop for Tailing {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
