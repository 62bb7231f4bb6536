//! The `quota_events_pending{group}` gauge: each consumer group's unacked events, sampled from
//! the log for the groups that read through this process.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::instrumented::SubscribedGroups;
use super::EventLog;
use crate::telemetry::metrics::EVENTS_PENDING;

/// How often the gauge is sampled: a few times per usual Prometheus scrape interval, at one
/// small store call per group.
pub const PENDING_SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// Samples the pending count of every group in `groups` each `interval` until `stop` turns
/// true. A failed sample leaves the group's last value.
pub async fn run_pending_gauge(
    log: Arc<dyn EventLog>,
    groups: Arc<SubscribedGroups>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        for group in groups.list() {
            match log.pending(&group).await {
                Ok(pending) => {
                    metrics::gauge!(EVENTS_PENDING, "group" => group).set(pending as f64)
                }
                Err(e) => tracing::debug!(error = %e, group, "cannot sample pending events"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::instrumented::InstrumentedEventLog;
    use crate::ledger::{Catalog, CreditSource};
    use crate::store::memory::MemoryStore;
    use crate::store::{GrantCmd, Store};

    #[tokio::test]
    async fn samples_groups_that_read() {
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
        let (log, groups) = InstrumentedEventLog::wrap(store);
        let read = log
            .read("billing", "c1", 10, false, 30_000, now_ms)
            .await
            .unwrap();
        assert_eq!(read.len(), 1, "{read:?}");

        let (stop_tx, stop) = watch::channel(false);
        let sampler = tokio::spawn(run_pending_gauge(
            log,
            groups,
            Duration::from_secs(3600),
            stop,
        ));
        tokio::task::yield_now().await;
        stop_tx.send(true).unwrap();
        sampler.await.unwrap();
        let text = rendered.render();
        assert!(
            text.contains("quota_events_pending{group=\"billing\"} 1"),
            "{text}"
        );
    }
}
