//! The real binary on `redis+sentinel://`: the primary is SIGKILLed, Sentinel promotes the
//! replica, and the sidecar follows by itself: UNAVAILABLE only for the failover window, then
//! it serves with the data intact (a hold reserved before the failover settles after it).

mod harness;

use std::time::{Duration, Instant};

use tonic::{Code, Request};

use harness::sentinel::SentinelSetup;
use harness::sidecar::{channel, wait_serving, Sidecar};
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};

const TOKEN: &str = "sentinel-admin-token";
/// Longest the sidecar may answer UNAVAILABLE after the primary dies: Sentinel's detection
/// (500 ms), its election and promotion, and the sidecar's next lookup, with slack for a
/// loaded machine.
const MAX_FAILOVER_WINDOW: Duration = Duration::from_secs(15);

fn authed<T>(message: T) -> Request<T> {
    harness::bearer(TOKEN, message)
}

fn image(account: &str, generation: &str) -> pb::ReserveRequest {
    pb::ReserveRequest {
        account_id: account.into(),
        generation_id: generation.into(),
        kind: pb::GenerationKind::CharacterImage as i32,
        model: "standard".into(),
        quantity: 1,
        ttl_seconds: 600,
        labels: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_follows_a_sentinel_failover_with_its_data() {
    let mut setup = SentinelSetup::start();
    let old_primary = setup.primary.port();
    let sidecar = Sidecar::start(&setup.url(), Some(TOKEN));
    wait_serving(sidecar.worker).await;
    let account = "acct-failover";
    QuotaAdminClient::new(channel(sidecar.admin()).await)
        .set_plan(authed(pb::SetPlanRequest {
            request_id: "plan-1".into(),
            account_id: account.into(),
            plan: "microbudget".into(),
            cycle_anchor: None,
        }))
        .await
        .expect("set plan");
    let mut quota = QuotaClient::new(channel(sidecar.worker).await);
    quota
        .reserve(image(account, "before"))
        .await
        .expect("reserve before the failover");
    // The hold must be on the replica before the primary dies.
    let acked = setup.primary.cli(&["WAIT", "1", "2000"]);
    assert_eq!(
        acked,
        "1",
        "WAIT: {acked}; {}",
        setup.primary.cli(&["INFO", "replication"])
    );

    setup.primary.stop(); // SIGKILL
    let killed_at = Instant::now();
    let (mut first_unavailable, mut unavailable_calls, mut attempt) = (None, 0, 0);
    let back_after = loop {
        attempt += 1;
        match quota
            .reserve(image(account, &format!("during-{attempt}")))
            .await
        {
            Ok(_) => break killed_at.elapsed(),
            Err(status) if status.code() == Code::Unavailable => {
                first_unavailable.get_or_insert(status.message().to_string());
                unavailable_calls += 1;
            }
            Err(status) => panic!("unexpected {status:?}"),
        }
        assert!(
            killed_at.elapsed() < MAX_FAILOVER_WINDOW,
            "still UNAVAILABLE {MAX_FAILOVER_WINDOW:?} after the primary died: {first_unavailable:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        unavailable_calls > 0,
        "no call failed: the primary was not the one in use"
    );
    assert_eq!(
        setup.named_primary_port(),
        Some(setup.replica.port()),
        "Sentinel promoted the replica"
    );
    assert_ne!(setup.replica.port(), old_primary);

    // The hold reserved before the failover is on the new primary and settles there.
    let settled = quota
        .settle(pb::SettleRequest {
            account_id: account.into(),
            generation_id: "before".into(),
            actual_quantity: None,
        })
        .await
        .expect("settle the hold reserved before the failover")
        .into_inner();
    assert!(!settled.replayed);
    assert_eq!(settled.hold.unwrap().state, pb::HoldState::Settled as i32);
    println!(
        "failover window: UNAVAILABLE for {back_after:?} after SIGKILL of the primary \
         ({unavailable_calls} calls refused, first: {})",
        first_unavailable.unwrap_or_default()
    );
}
