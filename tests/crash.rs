//! The sidecar killed with SIGKILL in the middle of load on Redis loses no event and invents
//! none: after a restart, workers retry what they could not confirm, and the ledger, the event
//! streams and what the workers were told all agree.

mod harness;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quota_sidecar::clock::{Clock, SystemClock};
use quota_sidecar::events::{self, UsageEvent};
use quota_sidecar::ledger::Catalog;
use quota_sidecar::pb;
use quota_sidecar::store::redis::RedisStore;
use quota_sidecar::store::Store;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request};

use harness::sidecar::Sidecar;

const TOKEN: &str = "crash-test-token";
const ACCOUNTS: usize = 12;
const WORKERS: usize = 12;
/// Load before the kill: long enough for a few thousand calls to be in flight and done.
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(1500);

fn admin<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {TOKEN}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

fn account(i: usize) -> String {
    format!("crash-{i}")
}

/// What one worker was told, per generation: `None` while unknown (the call failed).
#[derive(Default)]
struct Told {
    /// Generation ids whose Reserve was confirmed.
    reserved: HashSet<(String, String)>,
    /// Confirmed Settle: charged units.
    settled: HashMap<(String, String), u64>,
    released: HashSet<(String, String)>,
    /// Calls that failed with a transport error or UNAVAILABLE: outcome unknown.
    unknown: Vec<(String, String, &'static str)>,
    /// Every generation id a worker ever sent.
    sent: HashSet<(String, String)>,
}

/// One worker: reserve, then settle (or release one in four), until the sidecar goes away.
async fn worker(channel: Channel, id: usize, told: Arc<Mutex<Told>>) {
    let mut client = pb::quota_client::QuotaClient::new(channel);
    for n in 0.. {
        let a = account((id + n) % ACCOUNTS);
        let g = format!("w{id}-{n}");
        told.lock().unwrap().sent.insert((a.clone(), g.clone()));
        let reserve = client
            .reserve(pb::ReserveRequest {
                account_id: a.clone(),
                generation_id: g.clone(),
                kind: pb::GenerationKind::CharacterImage as i32,
                model: "standard".into(),
                quantity: 1,
                ttl_seconds: 600,
                labels: Default::default(),
            })
            .await;
        match reserve {
            Ok(_) => {
                told.lock().unwrap().reserved.insert((a.clone(), g.clone()));
            }
            Err(status) if status.code() == Code::ResourceExhausted => continue,
            Err(_) => {
                told.lock().unwrap().unknown.push((a, g, "reserve"));
                return;
            }
        }
        if n % 4 == 3 {
            match client
                .release(pb::ReleaseRequest {
                    account_id: a.clone(),
                    generation_id: g.clone(),
                    reason: pb::ReleaseReason::Failed as i32,
                })
                .await
            {
                Ok(_) => {
                    told.lock().unwrap().released.insert((a, g));
                }
                Err(_) => {
                    told.lock().unwrap().unknown.push((a, g, "release"));
                    return;
                }
            }
        } else {
            match client
                .settle(pb::SettleRequest {
                    account_id: a.clone(),
                    generation_id: g.clone(),
                    actual_quantity: None,
                })
                .await
            {
                Ok(r) => {
                    told.lock()
                        .unwrap()
                        .settled
                        .insert((a, g), r.into_inner().charged_units);
                }
                Err(_) => {
                    told.lock().unwrap().unknown.push((a, g, "settle"));
                    return;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_and_invents_no_event() {
    let redis = harness::RedisServer::start();
    let mut first = Sidecar::start(&redis.url(), Some(TOKEN));
    harness::sidecar::wait_serving(first.worker).await;
    let mut admin_client = pb::quota_admin_client::QuotaAdminClient::new(
        harness::sidecar::channel(first.admin()).await,
    );
    for i in 0..ACCOUNTS {
        admin_client
            .grant_credits(admin(pb::GrantCreditsRequest {
                account_id: account(i),
                grant_id: "pack".into(),
                units: 1_000_000,
                source: pb::CreditSource::Purchased as i32,
                expires_at: None,
            }))
            .await
            .expect("grant");
    }

    let told = Arc::new(Mutex::new(Told::default()));
    let channel = harness::sidecar::channel(first.worker).await;
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| tokio::spawn(worker(channel.clone(), id, told.clone())))
        .collect();
    tokio::time::sleep(LOAD_BEFORE_KILL).await;
    first.kill();
    for w in workers {
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("workers stop once the sidecar is gone")
            .unwrap();
    }

    // A new sidecar on the same Redis; workers retry what they could not confirm.
    let second = Sidecar::start(&redis.url(), Some(TOKEN));
    harness::sidecar::wait_serving(second.worker).await;
    let mut second_admin = pb::quota_admin_client::QuotaAdminClient::new(
        harness::sidecar::channel(second.admin()).await,
    );
    let mut client =
        pb::quota_client::QuotaClient::new(harness::sidecar::channel(second.worker).await);
    let mut told = Arc::try_unwrap(told).ok().unwrap().into_inner().unwrap();
    assert!(
        told.reserved.len() > 100,
        "only {} reserves before the kill",
        told.reserved.len()
    );
    let unknown = std::mem::take(&mut told.unknown);
    let retried = unknown.len();
    for (a, g, what) in unknown {
        let key = (a.clone(), g.clone());
        match what {
            // A reserve whose answer was lost: the worker gives the job up.
            "reserve" | "release" => {
                let r = client
                    .release(pb::ReleaseRequest {
                        account_id: a,
                        generation_id: g,
                        reason: pb::ReleaseReason::SystemError as i32,
                    })
                    .await;
                match r {
                    Ok(_) => {
                        told.reserved.insert(key.clone());
                        told.released.insert(key);
                    }
                    // The reserve never reached Redis: nothing to release.
                    Err(status) if status.code() == Code::NotFound && what == "reserve" => {}
                    Err(status) => panic!("retrying {what} of {key:?}: {status:?}"),
                }
            }
            _ => {
                let r = client
                    .settle(pb::SettleRequest {
                        account_id: a,
                        generation_id: g,
                        actual_quantity: None,
                    })
                    .await
                    .unwrap_or_else(|status| panic!("retrying settle of {key:?}: {status:?}"));
                told.settled.insert(key, r.into_inner().charged_units);
            }
        }
    }
    println!(
        "{} reserves confirmed, {} settles, {} releases, {retried} retried after the kill",
        told.reserved.len(),
        told.settled.len(),
        told.released.len()
    );

    // The ledger and the streams, read straight from Redis.
    let store = RedisStore::connect(
        &redis.url(),
        Arc::new(Catalog::builtin()),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let all = harness::events::redis_events(&redis.url()).await;
    let mut ids = HashSet::new();
    for e in &all {
        assert!(ids.insert(e.id.clone()), "event id {} repeats", e.id);
    }
    let mut by_account: BTreeMap<&str, Vec<&UsageEvent>> = BTreeMap::new();
    for e in &all {
        by_account.entry(&e.account_id).or_default().push(e);
    }
    let now_ms = SystemClock.now_ms();
    for i in 0..ACCOUNTS {
        let a = account(i);
        let events = by_account.remove(a.as_str()).unwrap_or_default();
        let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
        assert_eq!(
            sequences,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "{a}: sequences"
        );
        let of = |event_type: &str| -> HashMap<String, &UsageEvent> {
            events
                .iter()
                .filter(|e| e.event_type == event_type)
                .map(|e| (e.generation_id.clone(), *e))
                .collect()
        };
        let reserved = of(events::HOLD_RESERVED);
        let settled = of(events::HOLD_SETTLED);
        let released = of(events::HOLD_RELEASED);
        // Invents none: every hold event is for a generation a worker sent.
        for g in reserved.keys() {
            assert!(
                told.sent.contains(&(a.clone(), g.clone())),
                "{a}/{g} never sent"
            );
        }
        // Loses none: every confirmed answer has its event, with the same numbers.
        for ((acct, g), charged) in &told.settled {
            if *acct == a {
                let e = settled
                    .get(g)
                    .unwrap_or_else(|| panic!("{a}/{g}: no settled event"));
                assert_eq!(e.units, *charged, "{a}/{g}");
            }
        }
        for (acct, g) in &told.reserved {
            if *acct == a {
                assert!(reserved.contains_key(g), "{a}/{g}: no reserved event");
            }
        }
        for (acct, g) in &told.released {
            if *acct == a {
                assert!(released.contains_key(g), "{a}/{g}: no released event");
            }
        }
        // Nothing ended that workers were not told about, and the charges add up.
        assert_eq!(
            settled.len(),
            told.settled.keys().filter(|(acct, _)| *acct == a).count(),
            "{a}: settled events"
        );
        let view = store.account(&a, now_ms).await.unwrap();
        // Billing sees the same totals over the admin API.
        let wire = second_admin
            .get_account(admin(pb::GetAccountRequest {
                account_id: a.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                wire.lifetime_charged_allowance_units,
                wire.lifetime_charged_credit_units
            ),
            (
                view.lifetime_charged.allowance_units,
                view.lifetime_charged.credit_units
            )
        );
        assert!(view.holds.is_empty(), "{a}: open holds {:?}", view.holds);
        let units: u64 = settled.values().map(|e| e.units).sum();
        assert_eq!(
            units,
            view.lifetime_charged.allowance_units + view.lifetime_charged.credit_units,
            "{a}: Σ settled against the ledger"
        );
        assert_eq!(
            view.grants[0].units_remaining,
            1_000_000 - units,
            "{a}: credits left"
        );
    }
}
