//! The event-log trimmer: drops history every consumer group has acked once it is past the
//! retention, and, past the hard cap, the oldest events whether acked or not. One sidecar of a
//! fleet does each pass (the trim lease): two capping one stream at once would both record
//! and count the same dropped events.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{EventLog, Retention};
use crate::clock::Clock;
use crate::store::fleet::FleetTask;
use crate::store::lease::run_fleet_task;
use crate::store::Store;
use crate::telemetry::metrics::EVENTS_DROPPED_UNACKED;

/// Trims fully acked history beyond `retention` every `interval` until `stop` turns true,
/// in the passes whose trim lease `store` gives this sidecar.
pub async fn run_trimmer(
    log: Arc<dyn EventLog>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    retention: Retention,
    interval: Duration,
    stop: watch::Receiver<bool>,
) {
    run_fleet_task(FleetTask::Trim, store, clock, interval, stop, |now_ms| {
        let log = log.clone();
        async move { trim_pass(log.as_ref(), retention, now_ms).await }
    })
    .await
}

/// One pass: the hard cap first, then the retention.
async fn trim_pass(log: &dyn EventLog, retention: Retention, now_ms: i64) {
    match log.enforce_cap(retention.max_retained_per_shard).await {
        Ok(cap) if cap.dropped_unacked > 0 => {
            metrics::counter!(EVENTS_DROPPED_UNACKED).increment(cap.dropped_unacked);
            let mut groups: Vec<&str> = cap.losses.iter().map(|l| l.group.as_str()).collect();
            groups.sort_unstable();
            groups.dedup();
            tracing::error!(
                dropped_unacked = cap.dropped_unacked,
                groups = groups.join(","),
                max_retained_per_shard = retention.max_retained_per_shard,
                "event log over its hard cap: dropped events consumer groups had not acked; \
                 their next Subscribe answers DATA_LOSS"
            );
        }
        Ok(cap) if cap.dropped > 0 => tracing::debug!(dropped = cap.dropped, "capped events"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "event cap failed; retrying next pass"),
    }
    match log.trim(retention, now_ms).await {
        Ok(0) => {}
        Ok(dropped) => tracing::debug!(dropped, "trimmed acked events"),
        Err(e) => tracing::warn!(error = %e, "event trim failed; retrying next pass"),
    }
}
