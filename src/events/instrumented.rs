//! An [`EventLog`] that observes the log it wraps: a span, latency and failures per call (as
//! store calls, with `events_*` operation names), and the consumer groups that read through
//! this process, whose pending counts [`super::pending_gauge`] samples. Only a subscription's
//! first read (`resume`) is traced with its call; the polls after it get DEBUG spans.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tracing::field::Empty;

use super::{CapTrim, EventLog, GroupInfo, Loss, Retention, UsageEvent};
use crate::store::instrumented::{observe, store_span};
use crate::store::StoreResult;

/// Most consumer groups whose pending count is sampled. Each is one label value and one store
/// call per sample; deployments have a handful (billing, analytics), and a client inventing
/// group names must not grow either without bound.
pub const MAX_SAMPLED_GROUPS: usize = 32;

/// Consumer groups that have read through this process, up to [`MAX_SAMPLED_GROUPS`].
#[derive(Debug, Default)]
pub struct SubscribedGroups {
    groups: Mutex<BTreeSet<String>>,
}

impl SubscribedGroups {
    /// Remembers `group`, unless the set is full. Ephemeral groups are not kept: each lives
    /// for one stream, and would leave a stale gauge and take a slot for good.
    pub fn note(&self, group: &str) {
        if super::is_ephemeral(group) {
            return;
        }
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if groups.len() < MAX_SAMPLED_GROUPS && !groups.contains(group) {
            groups.insert(group.to_string());
        }
    }

    /// The groups, in name order.
    pub fn list(&self) -> Vec<String> {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.iter().cloned().collect()
    }
}

/// Observes every call to the event log it wraps.
pub struct InstrumentedEventLog {
    inner: Arc<dyn EventLog>,
    groups: Arc<SubscribedGroups>,
}

impl InstrumentedEventLog {
    /// `inner`, observed, and the groups that will have read through it.
    pub fn wrap(inner: Arc<dyn EventLog>) -> (Arc<dyn EventLog>, Arc<SubscribedGroups>) {
        let groups = Arc::new(SubscribedGroups::default());
        let log = InstrumentedEventLog {
            inner,
            groups: groups.clone(),
        };
        (Arc::new(log), groups)
    }
}

#[async_trait]
impl EventLog for InstrumentedEventLog {
    async fn read(
        &self,
        group: &str,
        consumer: &str,
        max: usize,
        resume: bool,
        claim_idle_ms: u64,
        now_ms: i64,
    ) -> StoreResult<Vec<UsageEvent>> {
        let call = self
            .inner
            .read(group, consumer, max, resume, claim_idle_ms, now_ms);
        // Polls of an open subscription are background work: an idle stream polls several
        // times a second, which must not add a span a poll to the subscriber's trace.
        let span = if resume {
            store_span!("events_read")
        } else {
            tracing::debug_span!("store.events_read", otel.status_code = Empty)
        };
        let result = observe("events_read", span, call).await;
        if result.is_ok() {
            self.groups.note(group);
        }
        result
    }

    async fn ack(&self, group: &str, ack_ids: &[String]) -> StoreResult<u32> {
        let call = self.inner.ack(group, ack_ids);
        observe("events_ack", store_span!("events_ack"), call).await
    }

    async fn abandon(&self, group: &str, consumer: &str) -> StoreResult<()> {
        let call = self.inner.abandon(group, consumer);
        observe("events_abandon", store_span!("events_abandon"), call).await
    }

    async fn trim(&self, retention: Retention, now_ms: i64) -> StoreResult<u64> {
        let call = self.inner.trim(retention, now_ms);
        observe("events_trim", store_span!("events_trim"), call).await
    }

    async fn pending(&self, group: &str) -> StoreResult<u64> {
        let call = self.inner.pending(group);
        observe("events_pending", store_span!("events_pending"), call).await
    }

    async fn enforce_cap(&self, max_retained_per_shard: u64) -> StoreResult<CapTrim> {
        let call = self.inner.enforce_cap(max_retained_per_shard);
        observe("events_cap", store_span!("events_cap"), call).await
    }

    async fn take_losses(&self, group: &str) -> StoreResult<Vec<Loss>> {
        let call = self.inner.take_losses(group);
        observe("events_losses", store_span!("events_losses"), call).await
    }

    async fn delete_group(&self, group: &str) -> StoreResult<bool> {
        let call = self.inner.delete_group(group);
        observe(
            "events_delete_group",
            store_span!("events_delete_group"),
            call,
        )
        .await
    }

    async fn groups(&self, now_ms: i64) -> StoreResult<Vec<GroupInfo>> {
        let call = self.inner.groups(now_ms);
        observe("events_groups", store_span!("events_groups"), call).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_bounded() {
        let groups = SubscribedGroups::default();
        groups.note("billing");
        groups.note("billing");
        groups.note("analytics");
        // Ephemeral groups (one per `quotactl events tail`) take no slot.
        for i in 0..2 * MAX_SAMPLED_GROUPS {
            groups.note(&format!("{}{i}", crate::events::EPHEMERAL_PREFIX));
        }
        assert_eq!(groups.list(), ["analytics", "billing"]);
        for i in 0..2 * MAX_SAMPLED_GROUPS {
            groups.note(&format!("g{i}"));
        }
        assert_eq!(groups.list().len(), MAX_SAMPLED_GROUPS);
    }
}
