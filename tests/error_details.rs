//! Every error the real binary answers carries `google.rpc.Status` details a program can read
//! (API.md "Third version"): `ErrorInfo` of domain `quota.v1` with a stable reason and the
//! numbers as metadata, `BadRequest` naming a bad field, `QuotaFailure` for missing funds and
//! `RetryInfo` when the store is unavailable. One case per reason, on the memory store, and the
//! store's own failures (INTERNAL, STORE_UNAVAILABLE) on a private Redis.

mod harness;

use std::collections::HashMap;

use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::{ErrorDetails, StatusExt};

use harness::sidecar::{channel, wait_serving, Sidecar};
use harness::RedisServer;
use quota_sidecar::ledger::MAX_LIVE_GRANTS;
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};

const TOKEN: &str = "error-details-admin-token";

fn authed<T>(message: T) -> Request<T> {
    harness::bearer(TOKEN, message)
}

struct Clients {
    quota: QuotaClient<Channel>,
    admin: QuotaAdminClient<Channel>,
}

async fn clients(sidecar: &Sidecar) -> Clients {
    wait_serving(sidecar.worker).await;
    Clients {
        quota: QuotaClient::new(channel(sidecar.worker).await),
        admin: QuotaAdminClient::new(channel(sidecar.admin()).await),
    }
}

fn image(account: &str, generation: &str, model: &str, quantity: u32) -> pb::ReserveRequest {
    pb::ReserveRequest {
        account_id: account.into(),
        generation_id: generation.into(),
        kind: pb::GenerationKind::CharacterImage as i32,
        model: model.into(),
        quantity,
        ttl_seconds: 0,
        labels: Default::default(),
    }
}

fn grant(account: &str, grant_id: &str, units: u64) -> Request<pb::GrantCreditsRequest> {
    authed(pb::GrantCreditsRequest {
        account_id: account.into(),
        grant_id: grant_id.into(),
        units,
        source: pb::CreditSource::Purchased as i32,
        expires_at: None,
    })
}

fn settle(account: &str, generation: &str, actual: Option<u32>) -> pb::SettleRequest {
    pb::SettleRequest {
        account_id: account.into(),
        generation_id: generation.into(),
        actual_quantity: actual,
    }
}

fn refund(
    account: &str,
    generation: &str,
    refund_id: &str,
    units: u64,
) -> Request<pb::RefundRequest> {
    authed(pb::RefundRequest {
        account_id: account.into(),
        generation_id: generation.into(),
        refund_id: refund_id.into(),
        units,
        reason: "test".into(),
    })
}

/// The refusal of `result`, checked to have `code` and an `ErrorInfo` of `reason` in the
/// service's domain; returns the status's details.
fn refused<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    code: Code,
    reason: &str,
) -> (Status, ErrorDetails) {
    let status = result.expect_err(&format!("expected {reason}"));
    assert_eq!(status.code(), code, "{status:?}");
    let details = status
        .check_error_details()
        .unwrap_or_else(|e| panic!("undecodable details on {status:?}: {e}"));
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo on {status:?}"));
    assert_eq!(info.domain, "quota.v1", "{status:?}");
    assert_eq!(info.reason, reason, "{status:?}");
    (status, details)
}

fn metadata(details: &ErrorDetails) -> &HashMap<String, String> {
    &details.error_info().unwrap().metadata
}

#[tokio::test]
async fn every_refusal_names_its_reason_and_numbers() {
    let sidecar = Sidecar::start("memory", Some(TOKEN));
    let Clients {
        mut quota,
        mut admin,
    } = clients(&sidecar).await;

    // INVALID_ARGUMENT, with the field in BadRequest and in the metadata.
    let (status, details) = refused(
        quota.reserve(image("acct-a", "g-bad", "standard", 0)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert!(status.message().starts_with("quantity: "), "{status:?}");
    let violations = &details.bad_request().expect("BadRequest").field_violations;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].field, "quantity");
    assert_eq!(metadata(&details)["field"], "quantity");
    // A batch item's field is named with its index.
    let batch = pb::ReserveBatchRequest {
        account_id: "acct-a".into(),
        items: vec![
            pb::ReserveItem {
                generation_id: "b0".into(),
                kind: pb::GenerationKind::FirstFrame as i32,
                model: String::new(),
                quantity: 1,
                labels: Default::default(),
            },
            pb::ReserveItem {
                generation_id: "b1".into(),
                kind: pb::GenerationKind::FirstFrame as i32,
                model: String::new(),
                quantity: 99,
                labels: Default::default(),
            },
        ],
        ttl_seconds: 0,
    };
    let (_, details) = refused(
        quota.reserve_batch(batch).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let violation = &details.bad_request().unwrap().field_violations[0];
    assert_eq!(violation.field, "items[1].quantity");
    assert!(violation.description.contains("1-16"), "{violation:?}");

    // PLAN_DENIED: an account without a plan asks for a model only hollywood has.
    let (_, details) = refused(
        quota
            .reserve(image("acct-none", "g-cinema", "cinema", 1))
            .await,
        Code::PermissionDenied,
        "PLAN_DENIED",
    );
    let m = metadata(&details);
    assert_eq!(m["plan"], "none");
    assert_eq!(m["required_plan"], "hollywood");
    assert_eq!(m["feature"], "model");
    assert_eq!(m["model"], "cinema");

    // INSUFFICIENT_FUNDS: 3 character images of 4 units each, 5 units of credits.
    admin
        .grant_credits(grant("acct-poor", "pack", 5))
        .await
        .unwrap();
    let (_, details) = refused(
        quota
            .reserve(image("acct-poor", "g-poor", "standard", 3))
            .await,
        Code::ResourceExhausted,
        "INSUFFICIENT_FUNDS",
    );
    let m = metadata(&details);
    assert_eq!(m["needed_units"], "12");
    assert_eq!(m["available_units"], "5");
    let failure = details.quota_failure().expect("QuotaFailure");
    assert_eq!(failure.violations.len(), 1);

    // GENERATION_CONFLICT: one generation id, two different requests.
    let rich = "acct-rich";
    admin
        .grant_credits(grant(rich, "pack", 1_000))
        .await
        .unwrap();
    quota
        .reserve(image(rich, "g1", "standard", 1))
        .await
        .unwrap();
    let (_, details) = refused(
        quota.reserve(image(rich, "g1", "standard", 2)).await,
        Code::AlreadyExists,
        "GENERATION_CONFLICT",
    );
    assert_eq!(metadata(&details)["generation_id"], "g1");

    // GRANT_CONFLICT: one grant id, other units.
    let (_, details) = refused(
        admin.grant_credits(grant(rich, "pack", 7)).await,
        Code::AlreadyExists,
        "GRANT_CONFLICT",
    );
    assert_eq!(metadata(&details)["grant_id"], "pack");

    // REQUEST_CONFLICT: one SetPlan request id for two plans.
    let set_plan = |plan: &str| {
        authed(pb::SetPlanRequest {
            request_id: "change-1".into(),
            account_id: "acct-plan".into(),
            plan: plan.into(),
            cycle_anchor: None,
        })
    };
    admin.set_plan(set_plan("microbudget")).await.unwrap();
    let (_, details) = refused(
        admin.set_plan(set_plan("independent")).await,
        Code::AlreadyExists,
        "REQUEST_CONFLICT",
    );
    assert_eq!(metadata(&details)["request_id"], "change-1");

    // HOLD_NOT_FOUND and GRANT_NOT_FOUND.
    let (_, details) = refused(
        quota.settle(settle(rich, "never-reserved", None)).await,
        Code::NotFound,
        "HOLD_NOT_FOUND",
    );
    assert_eq!(metadata(&details)["generation_id"], "never-reserved");
    let (_, details) = refused(
        admin
            .revoke_credits(authed(pb::RevokeCreditsRequest {
                account_id: rich.into(),
                grant_id: "no-such-grant".into(),
            }))
            .await,
        Code::NotFound,
        "GRANT_NOT_FOUND",
    );
    assert_eq!(metadata(&details)["grant_id"], "no-such-grant");

    // SETTLE_ABOVE_HOLD: 2 images charged on a hold of 1.
    let (_, details) = refused(
        quota.settle(settle(rich, "g1", Some(2))).await,
        Code::FailedPrecondition,
        "SETTLE_ABOVE_HOLD",
    );
    let m = metadata(&details);
    assert_eq!(m["actual_quantity"], "2");
    assert_eq!(m["reserved_quantity"], "1");

    // HOLD_STATE: a released hold cannot be extended.
    quota
        .release(pb::ReleaseRequest {
            account_id: rich.into(),
            generation_id: "g1".into(),
            reason: pb::ReleaseReason::Failed as i32,
        })
        .await
        .unwrap();
    let (_, details) = refused(
        quota
            .extend(pb::ExtendRequest {
                account_id: rich.into(),
                generation_id: "g1".into(),
                ttl_seconds: 60,
            })
            .await,
        Code::FailedPrecondition,
        "HOLD_STATE",
    );
    assert_eq!(metadata(&details)["state"], "released");

    // REFUND_ABOVE_CHARGE and REFUND_CONFLICT on a settled image of 4 units.
    quota
        .reserve(image(rich, "g2", "standard", 1))
        .await
        .unwrap();
    quota.settle(settle(rich, "g2", None)).await.unwrap();
    let (_, details) = refused(
        admin.refund(refund(rich, "g2", "rf-1", 100)).await,
        Code::FailedPrecondition,
        "REFUND_ABOVE_CHARGE",
    );
    let m = metadata(&details);
    assert_eq!(m["requested_units"], "100");
    assert_eq!(m["refundable_units"], "4");
    admin.refund(refund(rich, "g2", "rf-2", 1)).await.unwrap();
    let (_, details) = refused(
        admin.refund(refund(rich, "g2", "rf-2", 2)).await,
        Code::AlreadyExists,
        "REFUND_CONFLICT",
    );
    assert_eq!(metadata(&details)["refund_id"], "rf-2");

    // TOO_MANY_GRANTS: one grant past the live-grant bound.
    for i in 0..MAX_LIVE_GRANTS {
        admin
            .grant_credits(grant("acct-grants", &format!("g-{i}"), 1))
            .await
            .unwrap();
    }
    let (_, details) = refused(
        admin
            .grant_credits(grant("acct-grants", "one-more", 1))
            .await,
        Code::ResourceExhausted,
        "TOO_MANY_GRANTS",
    );
    assert_eq!(
        metadata(&details)["max_live_grants"],
        MAX_LIVE_GRANTS.to_string()
    );

    // UNAUTHENTICATED: the admin API without the token.
    refused(
        admin
            .get_account(pb::GetAccountRequest {
                account_id: rich.into(),
            })
            .await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
}

/// A corrupt account answers INTERNAL with a plain message (the detail is logged), and a
/// stopped Redis answers STORE_UNAVAILABLE with RetryInfo.
#[tokio::test]
async fn store_failures_are_internal_or_unavailable() {
    use quota_sidecar::store::keys::{AccountKeys, Shards};
    let mut redis = RedisServer::start();
    let sidecar = Sidecar::start_with(
        &redis.url(),
        Some(TOKEN),
        &["--redis-timeout-ms", "300"],
        &[],
    );
    let Clients {
        mut quota,
        mut admin,
    } = clients(&sidecar).await;
    let broken = "acct-broken";
    admin
        .grant_credits(grant(broken, "pack", 100))
        .await
        .unwrap();
    let keys = AccountKeys::new(broken, Shards::DEFAULT);
    harness::corruption::set_counter_where_it_lives(&[redis.port()], &keys.account, "held", "oops")
        .await;
    let balance = |account: &str| pb::GetBalanceRequest {
        account_id: account.into(),
    };
    let (status, details) = refused(
        quota.get_balance(balance(broken)).await,
        Code::Internal,
        "INTERNAL",
    );
    assert_eq!(
        status.message(),
        "internal error in the sidecar; its log has the detail"
    );
    assert!(details.retry_info().is_none());

    redis.stop();
    let (status, details) = refused(
        quota.get_balance(balance("acct-other")).await,
        Code::Unavailable,
        "STORE_UNAVAILABLE",
    );
    let retry = details.retry_info().expect("RetryInfo");
    assert!(
        retry.retry_delay.is_some_and(|d| !d.is_zero()),
        "{status:?}"
    );
}
