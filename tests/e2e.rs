//! End to end against the real binary: listeners on free ports, health, reflection, the admin
//! token, a reserve/settle round trip with the default memory store, and a clean exit on
//! SIGTERM.

mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_reflection::pb::v1 as reflection;
use tonic_reflection::pb::v1alpha as reflection_alpha;

use harness::sidecar::{channel, health_status, wait_serving, Sidecar};
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};

const TOKEN: &str = "e2e-admin-token";

/// Services listed by reflection v1.
async fn list_services(ch: Channel) -> Vec<String> {
    let request = reflection::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            reflection::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = reflection::server_reflection_client::ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection call")
        .into_inner();
    let answer = answers.message().await.unwrap().expect("one answer");
    match answer.message_response {
        Some(reflection::server_reflection_response::MessageResponse::ListServicesResponse(
            list,
        )) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

/// Services listed by reflection v1alpha (older grpcurl versions use it).
async fn list_services_v1alpha(ch: Channel) -> Vec<String> {
    use reflection_alpha::server_reflection_request::MessageRequest;
    use reflection_alpha::server_reflection_response::MessageResponse;
    let request = reflection_alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection_alpha::server_reflection_client::ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection call")
        .into_inner();
    match answers.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

fn authed<T>(message: T) -> Request<T> {
    harness::bearer(TOKEN, message)
}

fn assert_lists(listed: &[String], expected: &[&str], absent: &[&str]) {
    for name in expected {
        assert!(listed.iter().any(|l| l == name), "{name} not in {listed:?}");
    }
    for name in absent {
        assert!(!listed.iter().any(|l| l == name), "{name} in {listed:?}");
    }
}

#[tokio::test]
async fn binary_serves_health_reflection_admin_and_quota_then_exits_cleanly() {
    let mut sidecar = Sidecar::start("memory", Some(TOKEN));
    wait_serving(sidecar.worker).await;
    let worker = channel(sidecar.worker).await;
    let admin = channel(sidecar.admin()).await;

    // Health: `""` and `quota.v1.Quota` on both listeners (API.md), and each listener's own
    // services.
    for (ch, services) in [
        (&worker, &["", "quota.v1.Quota"][..]),
        (
            &admin,
            &[
                "",
                "quota.v1.Quota",
                "quota.v1.QuotaAdmin",
                "quota.v1.UsageEvents",
            ][..],
        ),
    ] {
        for service in services.iter().copied() {
            assert_eq!(
                health_status(ch.clone(), service).await,
                ServingStatus::Serving as i32,
                "service {service:?}"
            );
        }
    }

    // Reflection: each listener lists what it serves, and only that.
    let common = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ];
    let worker_listed = list_services(worker.clone()).await;
    assert_lists(&worker_listed, &common, &[]);
    assert_lists(
        &worker_listed,
        &["quota.v1.Quota"],
        &["quota.v1.QuotaAdmin", "quota.v1.UsageEvents"],
    );
    let admin_listed = list_services(admin.clone()).await;
    assert_lists(&admin_listed, &common, &[]);
    assert_lists(
        &admin_listed,
        &["quota.v1.QuotaAdmin", "quota.v1.UsageEvents"],
        &["quota.v1.Quota"],
    );
    let mut all = worker_listed.clone();
    all.extend(admin_listed);
    assert_lists(
        &all,
        &[
            "quota.v1.Quota",
            "quota.v1.QuotaAdmin",
            "quota.v1.UsageEvents",
            "grpc.health.v1.Health",
        ],
        &[],
    );
    assert_lists(
        &list_services_v1alpha(worker.clone()).await,
        &["quota.v1.Quota", "grpc.health.v1.Health"],
        &[],
    );

    let mut quota = QuotaClient::new(worker.clone());
    let mut admin_client = QuotaAdminClient::new(admin.clone());
    let account = "acct-e2e";

    // The admin API: no token, no call.
    let status = admin_client
        .set_plan(pb::SetPlanRequest {
            request_id: "plan-e2e".into(),
            account_id: account.into(),
            plan: "microbudget".into(),
            cycle_anchor: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // Not on the worker listener either, token or not.
    let status = QuotaAdminClient::new(worker.clone())
        .get_account(authed(pb::GetAccountRequest {
            account_id: account.into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    // Usage events are served on the admin listener and check their input.
    let status = pb::usage_events_client::UsageEventsClient::new(admin.clone())
        .ack(authed(pb::AckRequest {
            group: "billing".into(),
            ack_ids: vec![],
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("ack_ids: "), "{status:?}");

    // A plan and credits, then one generation reserved and settled for less.
    let set = admin_client
        .set_plan(authed(pb::SetPlanRequest {
            request_id: "plan-e2e".into(),
            account_id: account.into(),
            plan: "microbudget".into(),
            cycle_anchor: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.change, pb::PlanChange::Started as i32);
    let balance = set.balance.unwrap();
    assert_eq!(
        (balance.plan.as_str(), balance.allowance_total),
        ("microbudget", 1_000)
    );
    assert!(balance.cycle_start.is_some() && balance.cycle_end.is_some());

    let granted = admin_client
        .grant_credits(authed(pb::GrantCreditsRequest {
            account_id: account.into(),
            grant_id: "promo-e2e".into(),
            units: 50,
            source: pb::CreditSource::Promotional as i32,
            expires_at: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(granted.grant.unwrap().units_remaining, 50);
    assert_eq!(granted.balance.unwrap().credits_available, 50);

    let reserve = pb::ReserveRequest {
        account_id: account.into(),
        generation_id: "gen-e2e-1".into(),
        kind: pb::GenerationKind::CharacterImage as i32,
        model: String::new(),
        quantity: 2,
        ttl_seconds: 0,
        labels: [("project".to_string(), "e2e".to_string())].into(),
    };
    let reserved = quota.reserve(reserve.clone()).await.unwrap().into_inner();
    let hold = reserved.hold.unwrap();
    // character_image on standard: 4 units an image, from the allowance first.
    assert_eq!(
        (hold.cost_units, hold.from_allowance, hold.from_credits),
        (8, 8, 0)
    );
    assert_eq!(hold.model, "standard");
    assert_eq!(hold.state, pb::HoldState::Held as i32);
    let ttl_s = hold.expires_at.unwrap().seconds - hold.created_at.unwrap().seconds;
    assert_eq!(ttl_s, 300, "default hold TTL");
    assert!(!reserved.replayed);
    let balance = reserved.balance.unwrap();
    assert_eq!(
        (
            balance.allowance_held,
            balance.allowance_available,
            balance.open_holds
        ),
        (8, 992, 1)
    );
    let replay = quota.reserve(reserve).await.unwrap().into_inner();
    assert!(replay.replayed);

    // The plan decides features: `pro` is not in microbudget.
    let status = quota
        .reserve(pb::ReserveRequest {
            account_id: account.into(),
            generation_id: "gen-e2e-pro".into(),
            kind: pb::GenerationKind::CharacterImage as i32,
            model: "pro".into(),
            quantity: 1,
            ttl_seconds: 0,
            labels: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("independent"), "{status:?}");

    let settled = quota
        .settle(pb::SettleRequest {
            account_id: account.into(),
            generation_id: "gen-e2e-1".into(),
            actual_quantity: Some(1),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((settled.charged_units, settled.returned_units), (4, 4));
    assert_eq!(settled.hold.unwrap().state, pb::HoldState::Settled as i32);

    let status = quota
        .release(pb::ReleaseRequest {
            account_id: account.into(),
            generation_id: "gen-e2e-1".into(),
            reason: pb::ReleaseReason::Failed as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let status = quota
        .release(pb::ReleaseRequest {
            account_id: account.into(),
            generation_id: "gen-e2e-unknown".into(),
            reason: pb::ReleaseReason::Failed as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    let balance = quota
        .get_balance(pb::GetBalanceRequest {
            account_id: account.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(balance.plan, "microbudget");
    assert_eq!(balance.scheduled_plan, "");
    assert_eq!(
        (
            balance.allowance_total,
            balance.allowance_used,
            balance.allowance_held,
            balance.allowance_available
        ),
        (1_000, 4, 0, 996)
    );
    assert_eq!((balance.credits_available, balance.credits_held), (50, 0));
    assert_eq!(balance.open_holds, 0);

    drop((quota, admin_client, worker, admin));
    let started = Instant::now();
    let status = sidecar.terminate().await;
    // Well below the drain timeout: nothing was in flight.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn bad_startup_flags_fail_with_one_line() {
    let cases: [(&[&str], &str); 2] = [
        (
            &["--store", "rediss+cluster://a:7000,b:7001"],
            "not supported yet",
        ),
        (&["--catalog", "/nonexistent/catalog.toml"], "--catalog"),
    ];
    for (args, expected) in cases {
        // A flag that is wrongly accepted makes the binary serve: fail, do not hang.
        let out = harness::process::output_within(
            Command::new(env!("CARGO_BIN_EXE_quota-sidecar"))
                .args(args)
                .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
                .env_remove("QUOTA_ADMIN_TOKEN"),
            Duration::from_secs(10),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(expected), "{stderr}");
    }
}
