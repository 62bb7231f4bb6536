//! Fleet leases: background work that must be done once per deployment, not once per sidecar
//! (expiring due holds, trimming and capping the event log), is done each pass by the sidecar
//! that takes the task's lease: a Redis string with an expiry, set only if absent. The others
//! skip the pass with one small script, so the work does not grow with the fleet; a pass that
//! runs long extends its lease, and a sidecar that dies holding one loses it when it expires.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::error::StoreResult;
use super::fleet::{Fleet, FleetTask};
use crate::clock::Clock;

/// How long a fleet task waits for the store's clock to be read (just after start) before
/// trying again, when its interval is longer.
const CLOCK_WAIT: Duration = Duration::from_secs(1);

/// This process's name as a lease owner: its pid and start time, unique in a fleet.
pub fn lease_owner() -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{:x}", std::process::id(), started.as_nanos())
}

/// How long a pass's lease lasts when passes start every `interval`: a little shorter than the
/// interval, so the lease is free when the next pass starts.
pub fn lease_ms(interval: Duration) -> u64 {
    ((interval.as_millis() as u64).saturating_mul(9) / 10).max(1)
}

/// Runs `work` when `owner` holds `task`'s lease (taking it when free), and extends the lease
/// every third of `lease_ms` while `work` runs, so that a pass longer than its lease (many
/// shards, a slow network) is not joined by another sidecar's. `None` when another sidecar
/// holds it.
pub async fn run_leased<S: Fleet + ?Sized, T>(
    store: &S,
    task: FleetTask,
    owner: &str,
    lease_ms: u64,
    work: impl Future<Output = T>,
) -> StoreResult<Option<T>> {
    if !store.lease(task, owner, lease_ms).await? {
        return Ok(None);
    }
    // Renewals start every third of the lease, each given at most a third, so two successful
    // ones are never more than two thirds apart, however slow the store is.
    let third = Duration::from_millis((lease_ms / 3).max(1));
    let renew = async {
        let mut tick = tokio::time::interval(third);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // The first tick is now: the lease was just taken.
        loop {
            tick.tick().await;
            match tokio::time::timeout(third, store.lease(task, owner, lease_ms)).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    tracing::warn!(?task, "another sidecar took a fleet lease during a pass")
                }
                Ok(Err(e)) => {
                    tracing::debug!(?task, error = %e, "cannot extend a fleet lease now")
                }
                Err(_) => tracing::debug!(?task, "extending a fleet lease took too long"),
            }
        }
    };
    tokio::select! {
        out = work => Ok(Some(out)),
        _ = renew => unreachable!("the renewal loop never ends"),
    }
}

/// Runs `pass` (given the store's time) every `interval` until `stop` turns true, in the
/// passes whose lease of `task` this sidecar holds. Without the store's time there is no pass
/// (a guess could expire holds or drop events early): it waits for it.
pub async fn run_fleet_task<S, F, Fut>(
    task: FleetTask,
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    mut pass: F,
) where
    S: Fleet + ?Sized,
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = ()>,
{
    let owner = lease_owner();
    let lease_ms = lease_ms(interval);
    loop {
        let Some(now_ms) = clock.ledger_now_ms() else {
            tokio::select! {
                _ = tokio::time::sleep(CLOCK_WAIT.min(interval).max(Duration::from_millis(1))) => continue,
                _ = stop.changed() => return,
            }
        };
        let leased = run_leased(store.as_ref(), task, &owner, lease_ms, pass(now_ms));
        // A pass waits on the store, which may be stuck: shutdown does not wait for it (each
        // step of a pass is atomic on its own, so stopping between them is safe).
        tokio::select! {
            done = leased => {
                if let Err(e) = done {
                    tracing::warn!(?task, error = %e, "cannot take a fleet lease; retrying next pass");
                }
            }
            _ = stop.changed() => return,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_end_before_the_next_pass() {
        assert_eq!(lease_ms(Duration::from_secs(1)), 900);
        assert_eq!(lease_ms(Duration::from_millis(0)), 1);
        assert_ne!(FleetTask::Sweep.lease_key(), FleetTask::Trim.lease_key());
    }
}
