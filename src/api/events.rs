//! `quota.v1.UsageEvents`: streams usage events to billing and analytics consumers through
//! the store's consumer groups and takes their acknowledgements. Served on the admin listener
//! behind the bearer token.
//!
//! Flow control is per stream, so it lives here: a subscription holds at most
//! `max_in_flight` delivered, unacked events and reads nothing more until acks arrive or its
//! oldest deliveries age past the claim threshold (from then on the log may hand them out
//! again, so they no longer count against this stream).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::field::Empty;
use tracing::Instrument;

use super::{convert, status, validate};
use crate::clock::Clock;
use crate::config::{
    DEFAULT_EVENTS_CLAIM_IDLE_MS, DEFAULT_EVENTS_MAX_IN_FLIGHT, DEFAULT_EVENTS_POLL_MS,
};
use crate::events::{AckId, EventLog, Loss, UsageEvent, EPHEMERAL_PREFIX};
use crate::pb;

/// Most ack ids one `Ack` may carry: one call stays a few small store commands, and a consumer
/// that acks as it goes never needs more than the default in-flight cap.
pub const MAX_ACK_IDS: usize = 1_000;

/// Most events one poll reads from the store, so that one read stays far below the Redis
/// call deadline even when a consumer has a large backlog.
pub const READ_BATCH: usize = 256;

/// Events read from the store and not yet written to the client. Small, because they are
/// already delivered as far as the log is concerned.
const STREAM_BUFFER: usize = 32;

/// How event streams behave; the sidecar takes them from its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventStreamSettings {
    /// How long an idle stream waits before asking the store again.
    pub poll_interval: Duration,
    /// Unacked events idle this long may go to another consumer of the group.
    pub claim_idle_ms: u64,
    /// Most delivered, unacked events per stream.
    pub max_in_flight: usize,
}

impl Default for EventStreamSettings {
    fn default() -> Self {
        EventStreamSettings {
            poll_interval: Duration::from_millis(DEFAULT_EVENTS_POLL_MS),
            claim_idle_ms: DEFAULT_EVENTS_CLAIM_IDLE_MS,
            max_in_flight: DEFAULT_EVENTS_MAX_IN_FLIGHT as usize,
        }
    }
}

/// Subscribe and Ack over an event log.
#[derive(Clone)]
pub struct EventsService {
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    settings: EventStreamSettings,
    in_flight: Arc<InFlight>,
    stop: watch::Receiver<bool>,
}

impl EventsService {
    /// A service over `log`. Open streams end (UNAVAILABLE, so consumers reconnect elsewhere)
    /// once `stop` turns true, so that they never hold up a graceful shutdown.
    pub fn new(
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
        settings: EventStreamSettings,
        stop: watch::Receiver<bool>,
    ) -> Self {
        EventsService {
            log,
            clock,
            settings,
            in_flight: Arc::default(),
            stop,
        }
    }
}

#[tonic::async_trait]
impl pb::usage_events_server::UsageEvents for EventsService {
    type SubscribeStream = ReceiverStream<Result<pb::UsageEvent, Status>>;

    #[tracing::instrument(name = "Subscribe", skip_all, fields(group = Empty, consumer = Empty))]
    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let mut req = request.into_inner();
        if req.ephemeral {
            if !req.group.is_empty() {
                return Err(validate::invalid(
                    "group",
                    "must be empty for an ephemeral subscription, which gets a group of its own",
                ));
            }
            req.group = ephemeral_group_name()?;
            if req.consumer.is_empty() {
                req.consumer = "ephemeral".into();
            }
        }
        validate::id("group", &req.group)?;
        validate::id("consumer", &req.consumer)?;
        if !req.ephemeral {
            let losses = self.log.take_losses(&req.group).await?;
            if !losses.is_empty() {
                let total: u64 = losses.iter().map(|l| l.count).sum();
                return Err(status::with_reason(
                    tonic::Code::DataLoss,
                    loss_message(&req.group, &losses),
                    status::reason::EVENTS_LOST,
                    [
                        ("group", req.group.clone()),
                        ("lost_events", total.to_string()),
                    ],
                ));
            }
        }
        let span = tracing::Span::current();
        span.record("group", req.group.as_str());
        span.record("consumer", req.consumer.as_str());
        let subscription = Subscription {
            registration: self.in_flight.open(&req.group),
            log: self.log.clone(),
            clock: self.clock.clone(),
            settings: self.settings,
            group: req.group,
            consumer: req.consumer,
            ephemeral: req.ephemeral,
        };
        // The consumer's own unacked events first, in case it is reconnecting after a crash
        // (any beyond one batch come back once idle). Read before answering, so that a store
        // that is down fails the call itself.
        let first_max = subscription.settings.max_in_flight.min(READ_BATCH);
        let first = subscription.read(first_max, true).await?;
        tracing::info!(first = first.len(), "subscribed");
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let stop = self.stop.clone();
        tokio::spawn(
            subscription
                .run(first, first_max, tx, stop)
                .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    #[tracing::instrument(name = "Ack", skip_all, fields(group = Empty, count = Empty))]
    async fn ack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
        let req = request.into_inner();
        validate::id("group", &req.group)?;
        ack_ids(&req.ack_ids)?;
        let span = tracing::Span::current();
        span.record("group", req.group.as_str());
        span.record("count", req.ack_ids.len());
        let acked = self.log.ack(&req.group, &req.ack_ids).await?;
        self.in_flight.acked(&req.group, &req.ack_ids);
        tracing::debug!(acked, "acked");
        Ok(Response::new(pb::AckResponse { acked }))
    }

    #[tracing::instrument(name = "ListGroups", skip_all)]
    async fn list_groups(
        &self,
        _request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let groups = self.log.groups(self.clock.now_ms()).await?;
        Ok(Response::new(pb::ListGroupsResponse {
            groups: groups
                .into_iter()
                .map(|g| pb::ConsumerGroup {
                    name: g.name,
                    pending: g.pending,
                    oldest_unacked_ack_id: g.oldest_unacked_ack_id.unwrap_or_default(),
                    oldest_unacked_age_ms: g.oldest_unacked_age_ms,
                    lag: g.lag,
                })
                .collect(),
        }))
    }

    #[tracing::instrument(name = "DeleteGroup", skip_all, fields(group = Empty))]
    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        let req = request.into_inner();
        validate::id("group", &req.group)?;
        tracing::Span::current().record("group", req.group.as_str());
        let deleted = self.log.delete_group(&req.group).await?;
        tracing::info!(deleted, "group deleted");
        Ok(Response::new(pb::DeleteGroupResponse { deleted }))
    }
}

/// A fresh ephemeral group name: [`EPHEMERAL_PREFIX`] and 64 random bits.
fn ephemeral_group_name() -> Result<String, Status> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| {
            tracing::error!("no randomness for an ephemeral group name");
            status::with_reason(
                tonic::Code::Internal,
                status::INTERNAL_MESSAGE,
                status::reason::INTERNAL,
                [],
            )
        })?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{EPHEMERAL_PREFIX}{hex}"))
}

/// The DATA_LOSS message: how many events the group missed and, per shard, the ack ids of the
/// first and last.
fn loss_message(group: &str, losses: &[Loss]) -> String {
    let total: u64 = losses.iter().map(|l| l.count).sum();
    let ranges: Vec<String> = losses
        .iter()
        .map(|l| format!("{} to {}", l.first_ack_id, l.last_ack_id))
        .collect();
    format!(
        "group `{group}` missed {total} events the retention cap dropped before it acked them \
         (--events-max-retained-per-shard): {}; subscribe again to read on from the oldest kept",
        ranges.join(", ")
    )
}

/// Ack ids: at least one, at most [`MAX_ACK_IDS`], each as Subscribe gave it. The message
/// names the position of a bad id rather than echoing client bytes.
fn ack_ids(ids: &[String]) -> Result<(), Status> {
    if ids.is_empty() {
        return Err(validate::invalid("ack_ids", "must not be empty"));
    }
    if ids.len() > MAX_ACK_IDS {
        return Err(validate::invalid(
            "ack_ids",
            format!("at most {MAX_ACK_IDS} per call"),
        ));
    }
    match ids.iter().position(|id| AckId::parse(id).is_err()) {
        Some(i) => Err(validate::invalid(
            "ack_ids",
            format!("entry {i} is not an ack id from Subscribe"),
        )),
        None => Ok(()),
    }
}

/// Why a stream's loop ended.
enum End {
    /// The client went away.
    Disconnected,
    /// The server is shutting down.
    Stopping,
    /// The store failed; the stream ends with this status.
    Failed(Status),
}

/// One open stream: a consumer of a group.
struct Subscription {
    registration: Registration,
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    settings: EventStreamSettings,
    group: String,
    consumer: String,
    /// The group is this stream's own: events are acked as they are read (the client does
    /// not know the group's name) and the group is removed when the stream ends.
    ephemeral: bool,
}

impl Subscription {
    async fn read(&self, max: usize, resume: bool) -> Result<Vec<UsageEvent>, Status> {
        let events = self
            .log
            .read(
                &self.group,
                &self.consumer,
                max,
                resume,
                self.settings.claim_idle_ms,
                self.clock.now_ms(),
            )
            .await?;
        if self.ephemeral && !events.is_empty() {
            let ids: Vec<String> = events.iter().map(|e| e.ack_id.clone()).collect();
            self.log.ack(&self.group, &ids).await?;
        }
        Ok(events)
    }

    /// Streams until the client leaves, the server stops or the store fails; then hands the
    /// consumer's unacked events to the rest of the group at once.
    async fn run(
        self,
        first: Vec<UsageEvent>,
        first_max: usize,
        tx: mpsc::Sender<Result<pb::UsageEvent, Status>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let end = self.pump(first, first_max, &tx, &mut stop).await;
        if self.ephemeral {
            match self.log.delete_group(&self.group).await {
                Ok(_) => tracing::debug!("ephemeral group removed"),
                Err(e) => tracing::warn!(
                    error = %e,
                    "could not remove the ephemeral group; it never holds back trimming, and \
                     `quotactl events groups delete` removes it"
                ),
            }
        } else if let Err(e) = self.log.abandon(&self.group, &self.consumer).await {
            tracing::warn!(
                error = %e,
                "could not hand unacked events over; other consumers get them after the claim idle time"
            );
        }
        let last = match end {
            End::Disconnected => {
                tracing::info!("subscriber disconnected");
                None
            }
            End::Stopping => Some(status::with_reason(
                tonic::Code::Unavailable,
                "the sidecar is shutting down; subscribe again",
                status::reason::SHUTTING_DOWN,
                [],
            )),
            End::Failed(status) => Some(status),
        };
        // Best effort: a client that stopped reading does not hold up shutdown.
        if let Some(status) = last {
            let _ = tx.try_send(Err(status));
        }
    }

    /// Delivers `first` (read with `max = first_max`), then polls for more.
    async fn pump(
        &self,
        first: Vec<UsageEvent>,
        first_max: usize,
        tx: &mpsc::Sender<Result<pb::UsageEvent, Status>>,
        stop: &mut watch::Receiver<bool>,
    ) -> End {
        let (mut batch, mut requested) = (first, first_max);
        loop {
            // A full batch means there may be more: read again without waiting.
            let more_waiting = !batch.is_empty() && batch.len() >= requested;
            for event in batch.drain(..) {
                if !self.ephemeral {
                    self.registration
                        .delivered(&event.ack_id, self.clock.now_ms());
                }
                tokio::select! {
                    sent = tx.send(Ok(convert::usage_event(event))) => {
                        if sent.is_err() {
                            return End::Disconnected;
                        }
                    }
                    _ = stop.wait_for(|stopping| *stopping) => return End::Stopping,
                }
            }
            if !more_waiting {
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = tx.closed() => return End::Disconnected,
                    _ = stop.wait_for(|stopping| *stopping) => return End::Stopping,
                }
            }
            if *stop.borrow() {
                return End::Stopping;
            }
            if tx.is_closed() {
                return End::Disconnected;
            }
            let in_flight = self
                .registration
                .in_flight(self.clock.now_ms(), self.settings.claim_idle_ms);
            requested = self
                .settings
                .max_in_flight
                .saturating_sub(in_flight)
                .min(READ_BATCH);
            if requested == 0 {
                continue;
            }
            batch = match self.read(requested, false).await {
                Ok(events) => events,
                Err(status) => return End::Failed(status),
            };
        }
    }
}

/// Delivered, unacked events of every open stream of this process, so that `Ack` frees room
/// in the stream that delivered them. Acks sent to another sidecar sharing the store do not
/// reach it; those events stop counting once they age past the claim threshold.
#[derive(Default)]
struct InFlight {
    inner: Mutex<InFlightInner>,
}

#[derive(Default)]
struct InFlightInner {
    next_stream: u64,
    /// Stream → (its group, ack id → when it was delivered, ms).
    streams: HashMap<u64, (String, HashMap<String, i64>)>,
    /// (group, ack id) → the stream that delivered it last.
    owners: HashMap<(String, String), u64>,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, InFlightInner> {
        self.inner.lock().expect("in-flight registry lock poisoned")
    }

    /// Registers a new stream of `group`; it is forgotten when the registration drops.
    fn open(self: &Arc<Self>, group: &str) -> Registration {
        let mut inner = self.lock();
        inner.next_stream += 1;
        let stream = inner.next_stream;
        inner
            .streams
            .insert(stream, (group.to_string(), HashMap::new()));
        Registration {
            registry: self.clone(),
            stream,
        }
    }

    fn acked(&self, group: &str, ack_ids: &[String]) {
        let mut inner = self.lock();
        for ack_id in ack_ids {
            if let Some(stream) = inner.owners.remove(&(group.to_string(), ack_id.clone())) {
                if let Some((_, delivered)) = inner.streams.get_mut(&stream) {
                    delivered.remove(ack_id);
                }
            }
        }
    }
}

/// A stream's place in the [`InFlight`] registry.
struct Registration {
    registry: Arc<InFlight>,
    stream: u64,
}

impl Registration {
    fn delivered(&self, ack_id: &str, now_ms: i64) {
        let mut inner = self.registry.lock();
        let Some((group, delivered)) = inner.streams.get_mut(&self.stream) else {
            return;
        };
        delivered.insert(ack_id.to_string(), now_ms);
        let key = (group.clone(), ack_id.to_string());
        // A redelivery (claimed after idling elsewhere) moves the event to this stream.
        if let Some(previous) = inner.owners.insert(key, self.stream) {
            if previous != self.stream {
                if let Some((_, theirs)) = inner.streams.get_mut(&previous) {
                    theirs.remove(ack_id);
                }
            }
        }
    }

    /// Unacked deliveries younger than `claim_idle_ms`; older ones are forgotten, as the log
    /// may give them out again (to this stream too).
    fn in_flight(&self, now_ms: i64, claim_idle_ms: u64) -> usize {
        let mut inner = self.registry.lock();
        let InFlightInner {
            streams, owners, ..
        } = &mut *inner;
        let Some((group, delivered)) = streams.get_mut(&self.stream) else {
            return 0;
        };
        delivered.retain(|ack_id, at_ms| {
            let fresh = now_ms.saturating_sub(*at_ms) < claim_idle_ms as i64;
            if !fresh {
                owners.remove(&(group.clone(), ack_id.clone()));
            }
            fresh
        });
        delivered.len()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        if let Some((group, delivered)) = inner.streams.remove(&self.stream) {
            for ack_id in delivered.into_keys() {
                let key = (group.clone(), ack_id);
                if inner.owners.get(&key) == Some(&self.stream) {
                    inner.owners.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn ack_ids_are_checked() {
        assert!(ack_ids(&["3/1700000000000-0".into()]).is_ok());
        let message = |ids: &[String]| {
            let status = ack_ids(ids).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument);
            status.message().to_string()
        };
        assert_eq!(message(&[]), "ack_ids: must not be empty");
        assert_eq!(
            message(&["1/1-0".into(), "<b>".into()]),
            "ack_ids: entry 1 is not an ack id from Subscribe"
        );
        let too_many = vec!["1/1-0".to_string(); MAX_ACK_IDS + 1];
        assert_eq!(message(&too_many), "ack_ids: at most 1000 per call");
        assert!(ack_ids(&too_many[..MAX_ACK_IDS]).is_ok());
    }

    #[test]
    fn in_flight_counts_until_acked_or_idle() {
        let registry = Arc::new(InFlight::default());
        let a = registry.open("billing");
        let b = registry.open("billing");
        let audit = registry.open("audit");
        a.delivered("1/1-0", 1_000);
        a.delivered("1/2-0", 2_000);
        audit.delivered("1/1-0", 1_000);
        assert_eq!(a.in_flight(2_000, 30_000), 2);
        // Acks count in their own group only.
        registry.acked("billing", &["1/1-0".into()]);
        assert_eq!(a.in_flight(2_000, 30_000), 1);
        assert_eq!(audit.in_flight(2_000, 30_000), 1);
        // Claimed by another stream of the group: it moves there.
        b.delivered("1/2-0", 40_000);
        assert_eq!(
            (a.in_flight(3_000, 30_000), b.in_flight(40_000, 30_000)),
            (0, 1)
        );
        // Idle past the claim threshold: no longer counted.
        assert_eq!(b.in_flight(70_000, 30_000), 0);
        drop(b);
        assert!(registry.lock().owners.keys().all(|(g, _)| g == "audit"));
        drop((a, audit));
        let inner = registry.lock();
        assert!(inner.streams.is_empty() && inner.owners.is_empty());
    }
}
