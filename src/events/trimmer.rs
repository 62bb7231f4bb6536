//! The event-log trimmer: drops history every consumer group has acked once it is past the
//! retention.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{EventLog, Retention};
use crate::clock::Clock;

/// Trims fully acked history beyond `retention` every `interval` until `stop` turns true.
pub async fn run_trimmer(
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    retention: Retention,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let Some(now_ms) = clock.ledger_now_ms() else {
            tokio::time::sleep(interval).await;
            continue;
        };
        match log.trim(retention, now_ms).await {
            Ok(0) => {}
            Ok(dropped) => tracing::debug!(dropped, "trimmed acked events"),
            Err(e) => tracing::warn!(error = %e, "event trim failed; retrying next pass"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}
