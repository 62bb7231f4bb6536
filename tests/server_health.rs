//! Health follows the store: NOT_SERVING while it does not answer, SERVING again once it does
//! (fail closed, recover by itself).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use quota_sidecar::clock::SystemClock;
use quota_sidecar::ledger::Catalog;
use quota_sidecar::server::{Server, ServerParts, HEALTH_PROBE_INTERVAL};
use quota_sidecar::store::memory::MemoryStore;
use quota_sidecar::store::*;

/// A memory store whose ping can be switched off, like a Redis that went away.
struct SwitchableStore {
    inner: MemoryStore,
    up: AtomicBool,
}

#[async_trait]
impl Store for SwitchableStore {
    async fn reserve(&self, cmd: &ReserveCmd, now_ms: i64) -> StoreResult<Reserved> {
        self.inner.reserve(cmd, now_ms).await
    }
    async fn settle(
        &self,
        account_id: &str,
        generation_id: &str,
        actual_quantity: Option<u32>,
        now_ms: i64,
    ) -> StoreResult<Settled> {
        self.inner
            .settle(account_id, generation_id, actual_quantity, now_ms)
            .await
    }
    async fn release(
        &self,
        account_id: &str,
        generation_id: &str,
        reason: ReleaseReason,
        now_ms: i64,
    ) -> StoreResult<Released> {
        self.inner
            .release(account_id, generation_id, reason, now_ms)
            .await
    }
    async fn extend(
        &self,
        account_id: &str,
        generation_id: &str,
        ttl_seconds: u32,
        now_ms: i64,
    ) -> StoreResult<Hold> {
        self.inner
            .extend(account_id, generation_id, ttl_seconds, now_ms)
            .await
    }
    async fn balance(&self, account_id: &str, now_ms: i64) -> StoreResult<Balance> {
        self.inner.balance(account_id, now_ms).await
    }
    async fn account(&self, account_id: &str, now_ms: i64) -> StoreResult<AccountView> {
        self.inner.account(account_id, now_ms).await
    }
    async fn set_plan(&self, cmd: &SetPlanCmd, now_ms: i64) -> StoreResult<PlanSet> {
        self.inner.set_plan(cmd, now_ms).await
    }
    async fn grant_credits(&self, cmd: &GrantCmd, now_ms: i64) -> StoreResult<Granted> {
        self.inner.grant_credits(cmd, now_ms).await
    }
    async fn revoke_credits(
        &self,
        account_id: &str,
        grant_id: &str,
        now_ms: i64,
    ) -> StoreResult<Revoked> {
        self.inner
            .revoke_credits(account_id, grant_id, now_ms)
            .await
    }
    async fn expire_due(&self, shard: u32, now_ms: i64, max_accounts: usize) -> StoreResult<u32> {
        self.inner.expire_due(shard, now_ms, max_accounts).await
    }
    async fn quote(&self, cmd: &QuoteCmd, now_ms: i64) -> StoreResult<Quoted> {
        self.inner.quote(cmd, now_ms).await
    }
    async fn reserve_batch(
        &self,
        cmd: &ReserveBatchCmd,
        now_ms: i64,
    ) -> StoreResult<ReservedBatch> {
        self.inner.reserve_batch(cmd, now_ms).await
    }
    async fn refund(&self, cmd: &RefundCmd, now_ms: i64) -> StoreResult<Refunded> {
        self.inner.refund(cmd, now_ms).await
    }
}

#[async_trait]
impl Fleet for SwitchableStore {
    fn shards(&self) -> quota_sidecar::store::keys::Shards {
        self.inner.shards()
    }
    async fn ping(&self) -> StoreResult<()> {
        if self.up.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StoreError::Unavailable("switched off".into()))
        }
    }
    async fn lease(
        &self,
        task: quota_sidecar::store::FleetTask,
        owner: &str,
        ttl_ms: u64,
    ) -> StoreResult<bool> {
        self.inner.lease(task, owner, ttl_ms).await
    }
    async fn time_ms(&self) -> StoreResult<i64> {
        self.inner.time_ms().await
    }
}

async fn status(health: &mut HealthClient<Channel>, service: &str) -> i32 {
    health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// Waits (a few probe intervals at most) until both services report `expected`.
async fn wait_for(health: &mut HealthClient<Channel>, expected: ServingStatus) {
    let deadline = Instant::now() + HEALTH_PROBE_INTERVAL * 5;
    loop {
        let root = status(health, "").await;
        let quota = status(health, "quota.v1.Quota").await;
        if root == expected as i32 && quota == expected as i32 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health is ({root}, {quota}), expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn health_turns_not_serving_while_the_store_is_down_and_recovers() {
    let catalog = Arc::new(Catalog::builtin());
    let store = Arc::new(SwitchableStore {
        inner: MemoryStore::new(catalog.clone()),
        up: AtomicBool::new(true),
    });
    let parts = ServerParts {
        store: store.clone(),
        // Events are not under test here.
        events: Arc::new(MemoryStore::new(catalog.clone())),
        clock: Arc::new(SystemClock),
        catalog: catalog.into(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::new(parts, listener);
    let addr = server.worker_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);

    wait_for(&mut health, ServingStatus::Serving).await;
    store.up.store(false, Ordering::SeqCst);
    wait_for(&mut health, ServingStatus::NotServing).await;
    store.up.store(true, Ordering::SeqCst);
    wait_for(&mut health, ServingStatus::Serving).await;

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("server stops in time")
        .expect("server task")
        .expect("server ends without error");
}
