//! The consumer loop: subscribe to `UsageEvents` as a durable group, gather a batch, write it
//! in one transaction, and ack it only after the commit.
//!
//! Nothing is acked that is not committed, so a crash at any point leaves the uncommitted
//! events pending in the sidecar, which delivers them again; the writer counts a redelivered
//! event once. When the sidecar or the database goes away the loop keeps the batch it has,
//! waits (backoff with jitter, so that replicas do not retry in step) and tries again. What
//! no retry can cure (a wrong role, password or database, a role without privileges, an
//! admin token the sidecar refuses) ends the loop with the error.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::Streaming;

use super::db::PgSettings;
use super::health::{Health, RETRIES};
use super::writer::{BatchOutcome, Writer};
use super::BillingError;
use crate::api::events::MAX_ACK_IDS;
use crate::client;
use crate::pb::{self, usage_events_client::UsageEventsClient};

/// The consumer group `quota-billing run` reads by default. Other readers must not ack in it:
/// an event acked there is one billing never receives (`quotactl events tail --ack` refuses
/// it without `--force`).
pub const DEFAULT_GROUP: &str = "billing";

/// Longest a Subscribe or an Ack may take before the consumer treats the sidecar as gone.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How the consumer runs.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Admin listener of the sidecar (`host:port`, `http://` or `https://`).
    pub admin_target: String,
    /// TLS of an `https://` target.
    pub tls: Option<ClientTlsConfig>,
    /// Admin bearer token.
    pub token: String,
    /// Consumer group; durable in the sidecar, so events wait for it while it is down.
    pub group: String,
    /// Name within the group. Keep it stable across restarts: a restarted consumer gets its own
    /// unacked events back first.
    pub consumer: String,
    pub postgres: PgSettings,
    /// Most events in one transaction.
    pub batch_max_events: usize,
    /// How long a batch waits for more events once it has one.
    pub batch_wait: Duration,
    /// First wait after a failure; doubled up to `backoff_max` while failures go on.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl ConsumerSettings {
    /// Defaults for everything but the addresses and the token.
    pub fn new(admin_target: String, token: String, postgres: PgSettings) -> ConsumerSettings {
        ConsumerSettings {
            admin_target,
            tls: None,
            token,
            group: DEFAULT_GROUP.into(),
            consumer: "quota-billing".into(),
            postgres,
            batch_max_events: 500,
            batch_wait: Duration::from_millis(100),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// An open subscription.
struct Subscription {
    client: UsageEventsClient<Channel>,
    events: Streaming<pb::UsageEvent>,
}

/// Why an attempt failed: retried after a backoff, or (permanent) the end of the loop.
struct Failure {
    message: String,
    permanent: Option<BillingError>,
}

impl Failure {
    fn transient(message: String) -> Failure {
        Failure {
            message,
            permanent: None,
        }
    }

    /// `e` in the context `what`: permanent when no retry can cure it.
    fn from_billing(what: &str, e: BillingError) -> Failure {
        let message = format!("{what}: {e}");
        if e.is_permanent() {
            Failure {
                message: message.clone(),
                permanent: Some(e),
            }
        } else {
            Failure::transient(message)
        }
    }

    /// A refusal by the sidecar: a token it does not take is permanent.
    fn from_status(what: String, status: &tonic::Status) -> Failure {
        let message = format!("{what}: {}: {}", status.code(), status.message());
        match status.code() {
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => Failure {
                message: message.clone(),
                permanent: Some(BillingError::SidecarRefused(message)),
            },
            _ => Failure::transient(message),
        }
    }
}

/// A wait of between half and all of `backoff`, at random: replicas that failed together do
/// not come back together.
fn jittered(backoff: Duration) -> Duration {
    let half = backoff / 2;
    half + half.mul_f64(fastrand::f64())
}

/// Logs what a committed batch found about sequence gaps.
fn log_sequence_changes(outcome: &BatchOutcome) {
    for a in &outcome.sequence_changes {
        for gap in &a.change.opened {
            tracing::warn!(
                account_id = %a.account_id,
                first_seq = gap.first_seq,
                last_seq = gap.last_seq,
                missing_events = gap.events(),
                "events of the account were not received: statements report it until they arrive"
            );
        }
        if a.change.filled > 0 {
            tracing::info!(
                account_id = %a.account_id,
                filled = a.change.filled,
                closed_gaps = a.change.closed,
                open_gaps = a.open.len(),
                "missing events of the account arrived"
            );
        }
    }
}

/// Runs until `stop` turns true: then the batch in hand is committed and acked (when the
/// database and the sidecar answer), and it returns. Transient errors are retried; one that
/// no retry can cure (see [`BillingError::is_permanent`], and the sidecar refusing the token)
/// is returned at once.
pub async fn run(
    settings: ConsumerSettings,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BillingError> {
    let mut writer: Option<Writer> = None;
    let mut subscription: Option<Subscription> = None;
    // Read from the sidecar and not committed yet.
    let mut batch: Vec<pb::UsageEvent> = Vec::new();
    let mut backoff = settings.backoff_initial;
    let mut stopping = false;
    'events: loop {
        stopping |= *stop.borrow();
        if stopping && batch.is_empty() {
            return Ok(());
        }
        let failure = 'attempt: {
            // The database first: nothing is read that could not be written.
            if writer.as_ref().is_none_or(Writer::is_closed) {
                health.set_database_up(false);
                match Writer::connect(&settings.postgres).await {
                    Ok(w) => writer = Some(w),
                    Err(e) => break 'attempt Failure::from_billing("cannot use PostgreSQL", e),
                }
                health.set_database_up(true);
                tracing::info!("connected to PostgreSQL");
            }
            let w = writer.as_mut().expect("connected above");
            if !batch.is_empty() {
                let outcome = match w.write_batch(&batch).await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        writer = None;
                        health.set_database_up(false);
                        let what = format!("writing a batch of {}", batch.len());
                        break 'attempt Failure::from_billing(&what, e);
                    }
                };
                health.committed(&outcome);
                log_sequence_changes(&outcome);
                tracing::debug!(?outcome, "batch committed");
                let ack_ids: Vec<String> = batch.drain(..).map(|e| e.ack_id).collect();
                if let Err(e) = ack(&settings, subscription.as_mut(), ack_ids).await {
                    // Committed: a redelivery is harmless. Subscribe again.
                    subscription = None;
                    health.set_stream_up(false);
                    break 'attempt e;
                }
                backoff = settings.backoff_initial;
                continue 'events;
            }
            if stopping {
                return Ok(());
            }
            if subscription.is_none() {
                match subscribe(&settings).await {
                    Ok(s) => subscription = Some(s),
                    Err(e) => break 'attempt e,
                }
                health.set_stream_up(true);
                tracing::info!(group = %settings.group, "subscribed to usage events");
            }
            let s = subscription.as_mut().expect("subscribed above");
            match gather(&settings, s, &mut batch, &mut stop).await {
                Gathered::Batch => {}
                Gathered::Stopping => stopping = true,
                Gathered::StreamEnded(why) => {
                    subscription = None;
                    health.set_stream_up(false);
                    // Events already gathered are still written and acked.
                    if batch.is_empty() {
                        break 'attempt why;
                    }
                }
            }
            continue 'events;
        };
        if let Some(e) = failure.permanent {
            tracing::error!("{}; no retry can cure this, stopping", failure.message);
            if !batch.is_empty() {
                tracing::warn!(
                    events = batch.len(),
                    "stopping with an uncommitted batch; the sidecar delivers it again"
                );
            }
            return Err(e);
        }
        metrics::counter!(RETRIES).increment(1);
        let wait = jittered(backoff);
        tracing::warn!(retry_in_ms = wait.as_millis() as u64, "{}", failure.message);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // While stopping, one more attempt at the batch in hand, then out.
            _ = stop.wait_for(|s| *s), if !stopping => {}
        }
        if stopping {
            if !batch.is_empty() {
                tracing::warn!(
                    events = batch.len(),
                    "stopping with an uncommitted batch; the sidecar delivers it again"
                );
            }
            return Ok(());
        }
        backoff = (backoff * 2).min(settings.backoff_max);
    }
}

enum Gathered {
    /// `batch` has events.
    Batch,
    /// Asked to stop; `batch` may have events.
    Stopping,
    StreamEnded(Failure),
}

/// Waits for a first event, then takes more until the batch is full or `batch_wait` passed.
async fn gather(
    settings: &ConsumerSettings,
    s: &mut Subscription,
    batch: &mut Vec<pb::UsageEvent>,
    stop: &mut watch::Receiver<bool>,
) -> Gathered {
    let mut deadline: Option<Instant> = None;
    while batch.len() < settings.batch_max_events {
        let wait_more = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = s.events.message() => match next {
                Ok(Some(event)) => {
                    batch.push(event);
                    deadline.get_or_insert_with(|| Instant::now() + settings.batch_wait);
                }
                Ok(None) => return Gathered::StreamEnded(Failure::transient(
                    "usage event stream ended: closed by the sidecar".into(),
                )),
                Err(status) => return Gathered::StreamEnded(Failure::from_status(
                    "usage event stream ended".into(),
                    &status,
                )),
            },
            _ = wait_more => break,
            _ = stop.wait_for(|s| *s) => return Gathered::Stopping,
        }
    }
    Gathered::Batch
}

async fn subscribe(settings: &ConsumerSettings) -> Result<Subscription, Failure> {
    let channel = client::connect(&settings.admin_target, settings.tls.as_ref(), None)
        .await
        .map_err(|e| Failure::from_billing("subscribing", e.into()))?;
    let mut client = UsageEventsClient::new(channel);
    let request = client::with_token(
        pb::SubscribeRequest {
            group: settings.group.clone(),
            consumer: settings.consumer.clone(),
            ephemeral: false,
        },
        &settings.token,
    )
    .map_err(|e| Failure::from_billing("the admin token", e.into()))?;
    let events = tokio::time::timeout(CALL_TIMEOUT, client.subscribe(request))
        .await
        .map_err(|_| {
            Failure::transient(format!("Subscribe to {} timed out", settings.admin_target))
        })?
        .map_err(|status| {
            Failure::from_status(format!("Subscribe to {}", settings.admin_target), &status)
        })?
        .into_inner();
    Ok(Subscription { client, events })
}

/// Acks committed events, at most [`MAX_ACK_IDS`] a call. Without a subscription (it broke
/// while the batch was written) a new connection carries the ack.
async fn ack(
    settings: &ConsumerSettings,
    subscription: Option<&mut Subscription>,
    ack_ids: Vec<String>,
) -> Result<(), Failure> {
    let what = "acking a committed batch";
    let mut fresh;
    let client = match subscription {
        Some(s) => &mut s.client,
        None => {
            let channel = client::connect(&settings.admin_target, settings.tls.as_ref(), None)
                .await
                .map_err(|e| Failure::from_billing(what, e.into()))?;
            fresh = UsageEventsClient::new(channel);
            &mut fresh
        }
    };
    for chunk in ack_ids.chunks(MAX_ACK_IDS) {
        let mut request = client::with_token(
            pb::AckRequest {
                group: settings.group.clone(),
                ack_ids: chunk.to_vec(),
            },
            &settings.token,
        )
        .map_err(|e| Failure::from_billing(what, e.into()))?;
        request.set_timeout(CALL_TIMEOUT);
        client
            .ack(request)
            .await
            .map_err(|status| Failure::from_status(format!("{what}: Ack"), &status))?;
    }
    Ok(())
}
