//! The gRPC edge rejects bad input with INVALID_ARGUMENT naming the field, before the store is
//! called: the account's balance, holds and events stay exactly as they were.

use std::sync::Arc;

use prost_types::Timestamp;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

mod harness;

use harness::in_process::{authed, InProcess};
use quota_sidecar::clock::ManualClock;
use quota_sidecar::ledger::Catalog;
use quota_sidecar::pb::{self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient};
use quota_sidecar::store::memory::MemoryStore;

/// 2026-11-01T00:00:00Z.
const NOW_MS: i64 = 1_793_491_200_000;
const ACCOUNT: &str = "acct-validation";

/// The server over a memory store, with clients for both listeners.
struct Running {
    store: Arc<MemoryStore>,
    server: InProcess,
    worker_channel: Channel,
    quota: QuotaClient<Channel>,
    admin: QuotaAdminClient<Channel>,
}

impl Running {
    async fn start() -> Running {
        let store = Arc::new(MemoryStore::new(Arc::new(Catalog::builtin())));
        let server = InProcess::start(
            store.clone(),
            store.clone(),
            Arc::new(ManualClock::new(NOW_MS)),
        )
        .await;
        Running {
            store,
            worker_channel: server.worker.clone(),
            quota: server.quota(),
            admin: server.admin(),
            server,
        }
    }

    async fn stop(self) {
        self.server.stop().await;
    }

    async fn balance(&mut self) -> pb::Balance {
        self.quota
            .get_balance(pb::GetBalanceRequest {
                account_id: ACCOUNT.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn account(&mut self) -> pb::Account {
        self.admin
            .get_account(authed(pb::GetAccountRequest {
                account_id: ACCOUNT.into(),
            }))
            .await
            .unwrap()
            .into_inner()
    }
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) {
    let status = result.expect_err("should be rejected");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "message {:?} should name {field}",
        status.message()
    );
    // The message is for humans: short, never an echo of a huge field.
    assert!(status.message().len() < 300, "{}", status.message());
}

fn reserve(generation_id: &str) -> pb::ReserveRequest {
    pb::ReserveRequest {
        account_id: ACCOUNT.into(),
        generation_id: generation_id.into(),
        kind: pb::GenerationKind::CharacterImage as i32,
        model: String::new(),
        quantity: 1,
        ttl_seconds: 0,
        labels: Default::default(),
    }
}

#[tokio::test]
async fn invalid_input_names_the_field_and_changes_nothing() {
    let mut s = Running::start().await;

    // An account with a plan, credits and one open hold, so that "nothing changed" means
    // something.
    s.server.seed(ACCOUNT, reserve("gen-open")).await;
    let balance_before = s.balance().await;
    let account_before = s.account().await;
    let events_before = s.store.all_events().len();
    assert_eq!(balance_before.open_holds, 1);
    assert_eq!(balance_before.allowance_held, 4);

    let mut bad = Vec::new();
    let mut r = reserve("gen-bad");
    r.account_id = "acct{1}".into();
    bad.push((r, "account_id"));
    let mut r = reserve("gen-bad");
    r.generation_id = "g".repeat(10_000);
    bad.push((r, "generation_id"));
    let mut r = reserve("gen-bad");
    r.kind = pb::GenerationKind::Unspecified as i32;
    bad.push((r, "kind"));
    let mut r = reserve("gen-bad");
    r.kind = 42;
    bad.push((r, "kind"));
    for quantity in [0, 17] {
        let mut r = reserve("gen-bad");
        r.quantity = quantity;
        bad.push((r, "quantity"));
    }
    let mut r = reserve("gen-bad");
    r.kind = pb::GenerationKind::Video as i32;
    r.quantity = 0;
    bad.push((r, "quantity"));
    let mut r = reserve("gen-bad");
    r.ttl_seconds = 3_601;
    bad.push((r, "ttl_seconds"));
    let mut r = reserve("gen-bad");
    r.model = "ultra".into();
    bad.push((r, "model"));
    let mut r = reserve("gen-bad");
    r.labels = (0..33).map(|i| (format!("k{i}"), "v".into())).collect();
    bad.push((r, "labels"));
    // Each label within its own limits, over 4,096 bytes in all (4-byte UTF-8 values).
    let mut r = reserve("gen-bad");
    r.labels = (0..16)
        .map(|i| (format!("k{i:02}"), "\u{1d11e}".repeat(64)))
        .collect();
    r.labels.insert("k".into(), String::new());
    bad.push((r, "labels"));
    for (request, field) in bad {
        assert_invalid(s.quota.reserve(request).await, field);
    }

    assert_invalid(
        s.quota
            .release(pb::ReleaseRequest {
                account_id: ACCOUNT.into(),
                generation_id: "gen-open".into(),
                reason: pb::ReleaseReason::Unspecified as i32,
            })
            .await,
        "reason",
    );
    assert_invalid(
        s.quota
            .settle(pb::SettleRequest {
                account_id: ACCOUNT.into(),
                generation_id: "gen-open".into(),
                actual_quantity: Some(0),
            })
            .await,
        "actual_quantity",
    );
    assert_invalid(
        s.quota
            .extend(pb::ExtendRequest {
                account_id: ACCOUNT.into(),
                generation_id: "gen-open".into(),
                ttl_seconds: 3_601,
            })
            .await,
        "ttl_seconds",
    );
    assert_invalid(
        s.quota
            .get_balance(pb::GetBalanceRequest {
                account_id: String::new(),
            })
            .await,
        "account_id",
    );
    assert_invalid(
        s.admin
            .set_plan(authed(pb::SetPlanRequest {
                request_id: "plan-2".into(),
                account_id: ACCOUNT.into(),
                plan: "ultra".into(),
                cycle_anchor: None,
            }))
            .await,
        "plan",
    );
    assert_invalid(
        s.admin
            .set_plan(authed(pb::SetPlanRequest {
                request_id: "plan-3".into(),
                account_id: ACCOUNT.into(),
                plan: "hollywood".into(),
                cycle_anchor: Some(Timestamp {
                    seconds: NOW_MS / 1_000 + 60,
                    nanos: 0,
                }),
            }))
            .await,
        "cycle_anchor",
    );
    assert_invalid(
        s.admin
            .grant_credits(authed(pb::GrantCreditsRequest {
                account_id: ACCOUNT.into(),
                grant_id: "grant-2".into(),
                units: 0,
                source: pb::CreditSource::Purchased as i32,
                expires_at: None,
            }))
            .await,
        "units",
    );
    assert_invalid(
        s.admin
            .grant_credits(authed(pb::GrantCreditsRequest {
                account_id: ACCOUNT.into(),
                grant_id: "grant-3".into(),
                units: 10,
                source: pb::CreditSource::Purchased as i32,
                expires_at: Some(Timestamp {
                    seconds: NOW_MS / 1_000 - 1,
                    nanos: 0,
                }),
            }))
            .await,
        "expires_at",
    );
    assert_invalid(
        s.admin
            .grant_credits(authed(pb::GrantCreditsRequest {
                account_id: ACCOUNT.into(),
                grant_id: "grant-4".into(),
                units: 10,
                source: pb::CreditSource::Unspecified as i32,
                expires_at: None,
            }))
            .await,
        "source",
    );

    let heavy: std::collections::HashMap<String, String> = (0..17)
        .map(|i| (format!("k{i:02}"), "v".repeat(240)))
        .collect();
    let item = |generation_id: &str, labels| pb::ReserveItem {
        generation_id: generation_id.into(),
        kind: pb::GenerationKind::CharacterImage as i32,
        model: String::new(),
        quantity: 1,
        labels,
    };
    assert_invalid(
        s.quota
            .reserve_batch(pb::ReserveBatchRequest {
                account_id: ACCOUNT.into(),
                items: vec![item("gen-b1", Default::default()), item("gen-b2", heavy)],
                ttl_seconds: 0,
            })
            .await,
        "items[1].labels",
    );
    // The names of refund grants are reserved.
    assert_invalid(
        s.admin
            .grant_credits(authed(pb::GrantCreditsRequest {
                account_id: ACCOUNT.into(),
                grant_id: "refund:x:r1".into(),
                units: 10,
                source: pb::CreditSource::Promotional as i32,
                expires_at: None,
            }))
            .await,
        "grant_id",
    );

    assert_eq!(s.balance().await, balance_before);
    assert_eq!(s.account().await, account_before);
    assert_eq!(s.store.all_events().len(), events_before);
    // The open hold is untouched and can still be settled.
    let settled = s
        .quota
        .settle(pb::SettleRequest {
            account_id: ACCOUNT.into(),
            generation_id: "gen-open".into(),
            actual_quantity: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(settled.charged_units, 4);
    s.stop().await;
}

#[tokio::test]
async fn admin_needs_the_token_and_the_worker_listener_has_no_admin_api() {
    let mut s = Running::start().await;
    let get = || pb::GetAccountRequest {
        account_id: ACCOUNT.into(),
    };
    let status = s.admin.get_account(get()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let mut wrong = Request::new(get());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer not-the-token".parse().unwrap());
    let status = s.admin.get_account(wrong).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    s.admin.get_account(authed(get())).await.unwrap();

    // The same admin call, token and all, sent to the worker listener.
    let mut admin_on_worker = QuotaAdminClient::new(s.worker_channel.clone());
    let status = admin_on_worker
        .get_account(authed(get()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    let status = admin_on_worker
        .set_plan(authed(pb::SetPlanRequest {
            request_id: "r".into(),
            account_id: ACCOUNT.into(),
            plan: "hollywood".into(),
            cycle_anchor: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(s.balance().await.plan, "none");
    s.stop().await;
}
