//! The expiry sweeper: expires due holds of accounts nobody touches again, so `hold.expired`
//! is written for them too.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use futures::StreamExt;

use super::fleet::FleetTask;
use super::lease::run_fleet_task;
use super::Store;
use super::StoreError;
use crate::clock::Clock;
use crate::telemetry::metrics::{SWEEPER_EXPIRED, SWEEPER_SKIPPED};

/// Logs and counts an account the sweeper could not expire (a broken invariant: the account
/// refuses every change until repaired), so the pass goes on with the others.
pub fn skipped(account_id: &str, error: &StoreError) {
    metrics::counter!(SWEEPER_SKIPPED).increment(1);
    tracing::error!(account_id, %error, "expiry sweeper skipped an account it cannot change");
}

/// Due accounts one sweeper pass handles per shard; the rest wait for the next pass, so a
/// backlog never turns one pass into a long burst of scripts.
pub const SWEEP_ACCOUNTS_PER_SHARD: usize = 100;

/// Entries of a shard's expiry index one sweep reads per wanted account: several due holds may
/// share an account.
pub const SWEEP_ENTRIES_PER_ACCOUNT: usize = 4;

/// The first `max_accounts` distinct accounts of `entries` (expiry-index members
/// `<account>/<generation>`, earliest due first), each with its entries: what one sweep of a
/// shard takes, the same for both stores.
pub fn due_accounts(
    entries: impl IntoIterator<Item = String>,
    max_accounts: usize,
) -> Vec<(String, Vec<String>)> {
    let mut by_account: Vec<(String, Vec<String>)> = Vec::new();
    for member in entries {
        let Some((account, _)) = member.split_once('/') else {
            continue;
        };
        match by_account.iter().position(|(a, _)| a == account) {
            Some(i) => by_account[i].1.push(member),
            None if by_account.len() < max_accounts => {
                by_account.push((account.to_string(), vec![member]))
            }
            None => {}
        }
    }
    by_account
}

/// Shards one pass sweeps at once: their index reads share the connection's pipeline, so a
/// deployment of thousands of shards still finishes a pass within the interval, while a pass
/// never has more than this many calls in flight beside the ledger's own.
pub const SWEEP_SHARDS_AT_ONCE: usize = 16;

/// Runs `store.expire_due` over every shard each `interval` until `stop` turns true. Every
/// sidecar of a fleet runs a sweeper, but one pass per interval does the work: the sidecar that
/// holds the store's sweep lease (the others skip the pass, one small script each), so index
/// reads and scripts do not grow with the fleet. A sidecar that dies holding the lease loses
/// it within the interval. Were two to sweep at once, the scripts decide, and a hold expires
/// once.
pub async fn run_sweeper(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    stop: watch::Receiver<bool>,
) {
    let sweeping = store.clone();
    run_fleet_task(FleetTask::Sweep, store, clock, interval, stop, |now_ms| {
        let store = sweeping.clone();
        async move { sweep_pass(store.as_ref(), now_ms).await }
    })
    .await
}

/// One pass over every shard, [`SWEEP_SHARDS_AT_ONCE`] at a time.
async fn sweep_pass(store: &dyn Store, now_ms: i64) {
    futures::stream::iter(store.shards().all())
        .map(|shard| async move {
            let swept = store
                .expire_due(shard, now_ms, SWEEP_ACCOUNTS_PER_SHARD)
                .await;
            (shard, swept)
        })
        .buffer_unordered(SWEEP_SHARDS_AT_ONCE)
        .for_each(|(shard, swept)| async move {
            match swept {
                Ok(0) => {}
                Ok(expired) => {
                    metrics::counter!(SWEEPER_EXPIRED).increment(u64::from(expired));
                    tracing::debug!(shard, expired, "sweeper expired holds");
                }
                Err(e) => {
                    tracing::warn!(shard, error = %e, "expiry sweep of a shard failed; retrying next pass");
                }
            }
        })
        .await;
}
