//! Background upkeep: the expiry sweeper (so `hold.expired` is emitted even for accounts
//! nobody touches again) and the event-log trimmer.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{EventLog, Retention};
use crate::clock::Clock;
use crate::store::keys::SHARD_COUNT;
use crate::store::Store;
use crate::telemetry::metrics::SWEEPER_EXPIRED;

/// Due accounts one sweeper pass handles per shard; the rest wait for the next pass, so a
/// backlog never turns one pass into a long burst of scripts.
pub const SWEEP_ACCOUNTS_PER_SHARD: usize = 100;

/// Runs `store.expire_due` over every shard each `interval` until `stop` turns true. Many
/// sidecars may sweep the same store: the scripts decide, and a hold expires once.
pub async fn run_sweeper(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        for shard in 0..SHARD_COUNT {
            match store
                .expire_due(shard, clock.now_ms(), SWEEP_ACCOUNTS_PER_SHARD)
                .await
            {
                Ok(0) => {}
                Ok(expired) => {
                    metrics::counter!(SWEEPER_EXPIRED).increment(u64::from(expired));
                    tracing::debug!(shard, expired, "sweeper expired holds");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "expiry sweeper pass failed; retrying next pass");
                    break;
                }
            }
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

/// Trims fully acked history beyond `retention` every `interval` until `stop` turns true.
pub async fn run_trimmer(
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    retention: Retention,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match log.trim(retention, clock.now_ms()).await {
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
