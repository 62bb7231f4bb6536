//! The server in the test's own process, on port-0 loopback listeners, over whatever store,
//! event log and clock the test hands it. Aborted when dropped; `stop` shuts it down the way
//! SIGTERM does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Request;

use quota_sidecar::clock::Clock;
use quota_sidecar::config::AdminToken;
use quota_sidecar::events::EventLog;
use quota_sidecar::ledger::Catalog;
use quota_sidecar::pb::{
    self, quota_admin_client::QuotaAdminClient, quota_client::QuotaClient,
    usage_events_client::UsageEventsClient,
};
use quota_sidecar::server::{Server, ServerError, ServerParts, ServerSettings, DRAIN_TIMEOUT};
use quota_sidecar::store::Store;

/// The admin token of every in-process server.
pub const TOKEN: &str = "in-process-test-token";

/// `message` with the admin bearer token.
pub fn authed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {TOKEN}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

/// A running server and channels to both of its listeners.
pub struct InProcess {
    pub worker: Channel,
    pub admin: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl InProcess {
    /// Serves `store` and `events` with the default settings and the built-in catalog.
    pub async fn start(
        store: Arc<dyn Store>,
        events: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
    ) -> InProcess {
        InProcess::start_with(store, events, clock, ServerSettings::default()).await
    }

    /// As [`InProcess::start`], with `settings` (sweep interval, event stream limits).
    pub async fn start_with(
        store: Arc<dyn Store>,
        events: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
        settings: ServerSettings,
    ) -> InProcess {
        let parts = ServerParts {
            store,
            events,
            clock,
            catalog: Catalog::builtin().into(),
        };
        let worker = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::new(parts, worker)
            .with_admin(admin, AdminToken::new(TOKEN).unwrap())
            .with_settings(settings);
        let worker_addr = server.worker_addr().unwrap();
        let admin_addr = server.admin_addr().unwrap().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        InProcess {
            worker: channel(worker_addr).await,
            admin: channel(admin_addr).await,
            stop: Some(stop),
            task,
        }
    }

    pub fn quota(&self) -> QuotaClient<Channel> {
        QuotaClient::new(self.worker.clone())
    }

    pub fn admin(&self) -> QuotaAdminClient<Channel> {
        QuotaAdminClient::new(self.admin.clone())
    }

    pub fn events(&self) -> UsageEventsClient<Channel> {
        UsageEventsClient::new(self.admin.clone())
    }

    /// Puts `account` on Microbudget with 40 promotional credits and opens the hold `open`,
    /// so that "nothing changed" after a refused call means something.
    pub async fn seed(&self, account: &str, open: pb::ReserveRequest) {
        self.admin()
            .set_plan(authed(pb::SetPlanRequest {
                request_id: "plan-1".into(),
                account_id: account.into(),
                plan: "microbudget".into(),
                cycle_anchor: None,
            }))
            .await
            .unwrap();
        self.admin()
            .grant_credits(authed(pb::GrantCreditsRequest {
                account_id: account.into(),
                grant_id: "grant-1".into(),
                units: 40,
                source: pb::CreditSource::Promotional as i32,
                expires_at: None,
            }))
            .await
            .unwrap();
        self.quota().reserve(open).await.unwrap();
    }

    /// Graceful stop (what SIGTERM does); returns how long it took.
    pub async fn stop(mut self) -> Duration {
        let started = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(5), &mut self.task)
            .await
            .expect("server stops in time")
            .expect("server task ends cleanly")
            .expect("server stops without error");
        started.elapsed()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A channel without a call deadline (streams stay open); tests bound their own waits.
pub async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap()
}
