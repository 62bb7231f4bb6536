//! The consumer-group gauges: `quota_events_pending{group}` (unacked events) for the groups
//! that read through this process, and `quota_events_group_lag{group}` and
//! `quota_events_group_oldest_unacked_seconds{group}` for every durable group in the store,
//! so that a group whose reader is gone (and that holds back trimming) shows on any sidecar.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::instrumented::{SubscribedGroups, MAX_SAMPLED_GROUPS};
use super::{is_ephemeral, EventLog, GroupInfo};
use crate::clock::Clock;
use crate::telemetry::metrics::{EVENTS_GROUP_LAG, EVENTS_GROUP_OLDEST_UNACKED, EVENTS_PENDING};

/// How often the gauges are sampled: a few times per usual Prometheus scrape interval, at one
/// walk over the shards.
pub const PENDING_SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// Samples the pending count of every group in `groups`, and the lag and oldest unacked age
/// of the store's durable groups, each `interval` until `stop` turns true. A failed sample
/// leaves the last values.
pub async fn run_pending_gauge(
    log: Arc<dyn EventLog>,
    groups: Arc<SubscribedGroups>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut lag_sampled = BTreeSet::new();
    loop {
        let sample = async {
            // One walk over the shards gives every group's pending count, lag and age.
            match log.groups(clock.now_ms()).await {
                Ok(all) => {
                    for group in groups.list() {
                        let pending = all
                            .iter()
                            .find(|g| g.name == group)
                            .map_or(0, |g| g.pending);
                        metrics::gauge!(EVENTS_PENDING, "group" => group).set(pending as f64);
                    }
                    sample_lag(all, &mut lag_sampled);
                }
                Err(e) => tracing::debug!(error = %e, "cannot sample consumer groups"),
            }
        };
        // A sample waits on the store, which may be stuck: shutdown does not wait for it.
        tokio::select! {
            _ = sample => {}
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

/// Sets the lag gauges of the store's durable groups (ephemeral ones have random names and
/// hold nothing back), at most [`MAX_SAMPLED_GROUPS`] of them in name order. A group sampled
/// before and gone now is set to 0, so that a deleted group does not keep an alert firing.
fn sample_lag(all: Vec<GroupInfo>, sampled: &mut BTreeSet<String>) {
    let mut seen = BTreeSet::new();
    for g in all
        .into_iter()
        .filter(|g| !is_ephemeral(&g.name))
        .take(MAX_SAMPLED_GROUPS)
    {
        metrics::gauge!(EVENTS_GROUP_LAG, "group" => g.name.clone()).set(g.lag as f64);
        metrics::gauge!(EVENTS_GROUP_OLDEST_UNACKED, "group" => g.name.clone())
            .set(g.oldest_unacked_age_ms as f64 / 1_000.0);
        seen.insert(g.name);
    }
    for gone in sampled.difference(&seen) {
        metrics::gauge!(EVENTS_GROUP_LAG, "group" => gone.clone()).set(0.0);
        metrics::gauge!(EVENTS_GROUP_OLDEST_UNACKED, "group" => gone.clone()).set(0.0);
    }
    *sampled = seen;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::events::instrumented::InstrumentedEventLog;
    use crate::ledger::{Catalog, CreditSource};
    use crate::store::memory::MemoryStore;
    use crate::store::{GrantCmd, Store};

    #[tokio::test]
    async fn samples_pending_lag_and_oldest_unacked() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let rendered = recorder.handle();
        // Thread-local: the test runtime runs every task on this thread.
        let _local = metrics::set_default_local_recorder(&recorder);

        let store = Arc::new(MemoryStore::new(Arc::new(Catalog::builtin())));
        let now_ms = 1_768_435_200_000;
        store
            .grant_credits(
                &GrantCmd {
                    account_id: "acct-1".into(),
                    grant_id: "promo".into(),
                    units: 100,
                    source: CreditSource::Promotional,
                    expires_at_ms: None,
                },
                now_ms,
            )
            .await
            .unwrap();
        // A group that read and acked through another process: no pending sample here, but
        // its lag.
        let audited = store
            .read("audit", "a1", 1, false, 30_000, now_ms)
            .await
            .unwrap();
        store
            .ack("audit", &[audited[0].ack_id.clone()])
            .await
            .unwrap();
        let (log, groups) = InstrumentedEventLog::wrap(store.clone());
        let read = log
            .read("billing", "c1", 10, false, 30_000, now_ms)
            .await
            .unwrap();
        assert_eq!(read.len(), 1, "{read:?}");
        // An ephemeral group is never a label.
        log.read("ephemeral:x", "c", 1, false, 30_000, now_ms)
            .await
            .unwrap();
        store
            .grant_credits(
                &GrantCmd {
                    account_id: "acct-1".into(),
                    grant_id: "promo-2".into(),
                    units: 100,
                    source: CreditSource::Promotional,
                    expires_at_ms: None,
                },
                now_ms,
            )
            .await
            .unwrap();

        let (stop_tx, stop) = watch::channel(false);
        let sampler = tokio::spawn(run_pending_gauge(
            log,
            groups,
            Arc::new(ManualClock::new(now_ms + 90_000)),
            Duration::from_secs(3600),
            stop,
        ));
        tokio::task::yield_now().await;
        stop_tx.send(true).unwrap();
        sampler.await.unwrap();
        let text = rendered.render();
        for line in [
            "quota_events_pending{group=\"billing\"} 1",
            "quota_events_group_lag{group=\"billing\"} 1",
            "quota_events_group_oldest_unacked_seconds{group=\"billing\"} 90",
            "quota_events_group_lag{group=\"audit\"} 1",
            "quota_events_group_oldest_unacked_seconds{group=\"audit\"} 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(
            !text.contains("quota_events_pending{group=\"audit\"}"),
            "{text}"
        );
        assert!(!text.contains("group_lag{group=\"ephemeral"), "{text}");
    }
}
