//! The consumer's health (`/healthz`) and metrics, next to `/metrics` on one HTTP listener.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use time::OffsetDateTime;

use super::writer::BatchOutcome;
use crate::telemetry::metrics_endpoint::HealthCheck;

/// Events inserted into PostgreSQL (first deliveries).
pub const EVENTS_WRITTEN: &str = "quota_billing_events_written_total";
/// Events delivered again and found already written.
pub const EVENTS_DUPLICATE: &str = "quota_billing_events_duplicate_total";
/// Events put in the dead-letter table.
pub const DEAD_LETTERS: &str = "quota_billing_dead_letters_total";
/// Batches committed.
pub const BATCHES: &str = "quota_billing_batches_total";
/// Failed attempts (sidecar or database), each followed by a backoff.
pub const RETRIES: &str = "quota_billing_retries_total";
/// Seconds between the newest event of the last committed batch and its commit.
pub const LAG_SECONDS: &str = "quota_billing_lag_seconds";
/// Unix time of the last commit, in seconds.
pub const LAST_COMMIT_SECONDS: &str = "quota_billing_last_commit_timestamp_seconds";
/// Runs of an account's sequence numbers found missing (events billing has not received).
pub const SEQUENCE_GAPS: &str = "quota_billing_sequence_gaps_total";
/// Of those, the runs whose every event arrived later (a redelivery, a late batch).
pub const SEQUENCE_GAPS_CLOSED: &str = "quota_billing_sequence_gaps_closed_total";

/// Writes the `# HELP` lines.
pub fn describe_metrics() {
    metrics::describe_counter!(EVENTS_WRITTEN, "Usage events written to PostgreSQL");
    metrics::describe_counter!(
        EVENTS_DUPLICATE,
        "Usage events delivered again and already written (not counted twice)"
    );
    metrics::describe_counter!(DEAD_LETTERS, "Usage events put in the dead-letter table");
    metrics::describe_counter!(BATCHES, "Batches committed to PostgreSQL");
    metrics::describe_counter!(
        RETRIES,
        "Failed attempts to reach the sidecar or PostgreSQL"
    );
    metrics::describe_gauge!(
        LAG_SECONDS,
        "Seconds from the newest event of the last batch to its commit"
    );
    metrics::describe_gauge!(
        LAST_COMMIT_SECONDS,
        "Unix time of the last commit, in seconds"
    );
    metrics::describe_counter!(
        SEQUENCE_GAPS,
        "Runs of an account's event sequence found missing"
    );
    metrics::describe_counter!(
        SEQUENCE_GAPS_CLOSED,
        "Runs of missing sequence numbers whose events all arrived later"
    );
    // From the start at zero, so that an alert on an increase sees the first one.
    for counter in [
        EVENTS_WRITTEN,
        EVENTS_DUPLICATE,
        DEAD_LETTERS,
        BATCHES,
        RETRIES,
        SEQUENCE_GAPS,
        SEQUENCE_GAPS_CLOSED,
    ] {
        metrics::counter!(counter).absolute(0);
    }
}

/// What the consumer is connected to, for `/healthz`.
#[derive(Debug, Default)]
pub struct Health {
    stream_up: AtomicBool,
    database_up: AtomicBool,
}

impl Health {
    pub fn set_stream_up(&self, up: bool) {
        self.stream_up.store(up, Ordering::Relaxed);
    }

    pub fn set_database_up(&self, up: bool) {
        self.database_up.store(up, Ordering::Relaxed);
    }

    /// Records a committed batch in the metrics.
    pub fn committed(&self, outcome: &BatchOutcome) {
        let now = OffsetDateTime::now_utc();
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        metrics::counter!(EVENTS_WRITTEN).increment(outcome.written);
        metrics::counter!(EVENTS_DUPLICATE).increment(outcome.duplicates);
        metrics::counter!(DEAD_LETTERS).increment(outcome.dead_letters);
        metrics::counter!(BATCHES).increment(1);
        for a in &outcome.sequence_changes {
            metrics::counter!(SEQUENCE_GAPS).increment(a.change.opened.len() as u64);
            metrics::counter!(SEQUENCE_GAPS_CLOSED).increment(a.change.closed);
        }
        metrics::gauge!(LAST_COMMIT_SECONDS).set(now_ms as f64 / 1000.0);
        if let Some(newest) = outcome.newest_event_at {
            metrics::gauge!(LAG_SECONDS).set((now - newest).as_seconds_f64().max(0.0));
        }
    }

    /// Healthy while subscribed to the sidecar and connected to PostgreSQL.
    pub fn check(&self) -> Result<(), String> {
        match (
            self.stream_up.load(Ordering::Relaxed),
            self.database_up.load(Ordering::Relaxed),
        ) {
            (true, true) => Ok(()),
            (false, true) => Err("not subscribed to the sidecar's usage events".into()),
            (true, false) => Err("not connected to PostgreSQL".into()),
            (false, false) => Err("connected to neither the sidecar nor PostgreSQL".into()),
        }
    }

    /// The check for the HTTP listener.
    pub fn as_check(self: &Arc<Self>) -> HealthCheck {
        let me = self.clone();
        Arc::new(move || me.check())
    }
}
