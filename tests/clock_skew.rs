//! One clock for the fleet: two sidecars on one Redis, one of them on a machine whose clock
//! runs 10 minutes ahead. Both run the ledger on the store's clock, so the skewed one expires
//! nothing early (its sweeper runs every 50 ms) and dates what it writes by Redis's time. A
//! third sidecar on its own skewed clock (`--clock local`) shows what the test guards against.

mod harness;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::transport::Channel;
use tonic::Request;

use harness::sidecar::{channel, Sidecar};
use harness::RedisServer;
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};

const TOKEN: &str = "clock-skew-token";
const SKEW_MS: i64 = 10 * 60 * 1000;

fn authed<T>(message: T) -> Request<T> {
    harness::bearer(TOKEN, message)
}

fn reserve(account: &str, generation: &str, ttl_seconds: u32) -> pb::ReserveRequest {
    pb::ReserveRequest {
        account_id: account.into(),
        generation_id: generation.into(),
        kind: pb::GenerationKind::CharacterImage as i32,
        model: "standard".into(),
        quantity: 1,
        ttl_seconds,
        labels: Default::default(),
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

async fn quota(sidecar: &Sidecar) -> QuotaClient<Channel> {
    QuotaClient::new(channel(sidecar.worker).await)
}

/// Retries while the sidecar has not read the store's clock yet (UNAVAILABLE, at start).
async fn reserve_when_ready(
    client: &mut QuotaClient<Channel>,
    request: pb::ReserveRequest,
) -> pb::ReserveResponse {
    for _ in 0..100 {
        match client.reserve(request.clone()).await {
            Ok(r) => return r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(s) => panic!("reserve: {s:?}"),
        }
    }
    panic!("the sidecar never read the store's clock");
}

#[tokio::test]
async fn a_sidecar_whose_clock_is_ahead_expires_nothing_early() {
    let redis = RedisServer::start();
    let store = redis.url();
    let skew = SKEW_MS.to_string();
    let fast_sweep = ["--sweep-interval-ms", "50"];
    let honest = Sidecar::start_with(&store, Some(TOKEN), &fast_sweep, &[]);
    let skewed = Sidecar::start_with(
        &store,
        Some(TOKEN),
        &["--sweep-interval-ms", "50", "--clock-skew-ms", &skew],
        &[],
    );
    let a = "studio-1";
    QuotaAdminClient::new(channel(honest.admin()).await)
        .set_plan(authed(pb::SetPlanRequest {
            request_id: "start".into(),
            account_id: a.into(),
            plan: "hollywood".into(),
            cycle_anchor: None,
        }))
        .await
        .expect("set plan");

    // A 60 s hold made through the honest sidecar outlives a sweep by the skewed one.
    let mut q_honest = quota(&honest).await;
    let mut q_skewed = quota(&skewed).await;
    reserve_when_ready(&mut q_honest, reserve(a, "g1", 60)).await;
    // Through the skewed sidecar: dated by the store's clock, not 10 minutes ahead.
    let before = wall_ms();
    let other = reserve_when_ready(&mut q_skewed, reserve(a, "g2", 60)).await;
    let created = ms(other.hold.as_ref().unwrap().created_at.as_ref().unwrap());
    assert!(
        (created - before).abs() < 5_000,
        "the skewed sidecar dated a hold {} ms away from the store's time",
        created - before
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let b = q_skewed
        .get_balance(pb::GetBalanceRequest {
            account_id: a.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.open_holds, 2, "a hold expired early: {b:?}");
    for generation in ["g1", "g2"] {
        let settled = q_honest
            .settle(pb::SettleRequest {
                account_id: a.into(),
                generation_id: generation.into(),
                actual_quantity: None,
            })
            .await
            .expect("settle a hold the skewed sidecar saw")
            .into_inner();
        assert_eq!(settled.charged_units, 4);
    }
    // The control: the same skew on a sidecar that trusts its own clock expires the honest
    // sidecar's hold at once.
    let local = Sidecar::start_with(
        &store,
        Some(TOKEN),
        &["--clock", "local", "--clock-skew-ms", &skew],
        &[],
    );
    reserve_when_ready(&mut q_honest, reserve(a, "g3", 60)).await;
    let b = quota(&local)
        .await
        .get_balance(pb::GetBalanceRequest {
            account_id: a.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.open_holds, 0, "the control should have expired the hold");
    let settle = q_honest
        .settle(pb::SettleRequest {
            account_id: a.into(),
            generation_id: "g3".into(),
            actual_quantity: None,
        })
        .await
        .unwrap_err();
    assert_eq!(settle.code(), tonic::Code::FailedPrecondition, "{settle:?}");
}
