//! The memory store's [`EventLog`]: each call runs on its [`super::log::MemoryLog`] under the
//! store's lock.

use async_trait::async_trait;

use super::MemoryStore;
use crate::events::{AckId, CapTrim, EventLog, GroupInfo, Loss, Retention, UsageEvent};
use crate::store::{Fleet, StoreResult};

#[async_trait]
impl EventLog for MemoryStore {
    async fn read(
        &self,
        group: &str,
        consumer: &str,
        max: usize,
        resume: bool,
        claim_idle_ms: u64,
        now_ms: i64,
    ) -> StoreResult<Vec<UsageEvent>> {
        Ok(self.with_log(|log| log.read(group, consumer, max, resume, claim_idle_ms, now_ms)))
    }

    async fn ack(&self, group: &str, ack_ids: &[String]) -> StoreResult<u32> {
        let ids = ack_ids
            .iter()
            .map(|id| AckId::parse_in(id, self.shards()))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(self.with_log(|log| log.ack(group, &ids)))
    }

    async fn abandon(&self, group: &str, consumer: &str) -> StoreResult<()> {
        self.with_log(|log| log.abandon(group, consumer));
        Ok(())
    }

    async fn trim(&self, retention: Retention, now_ms: i64) -> StoreResult<u64> {
        Ok(self.with_log(|log| log.trim(retention, now_ms)))
    }

    async fn pending(&self, group: &str) -> StoreResult<u64> {
        Ok(self.with_log(|log| log.pending(group)))
    }

    async fn enforce_cap(&self, max_retained_per_shard: u64) -> StoreResult<CapTrim> {
        Ok(self.with_log(|log| log.enforce_cap(max_retained_per_shard)))
    }

    async fn take_losses(&self, group: &str) -> StoreResult<Vec<Loss>> {
        Ok(self.with_log(|log| log.take_losses(group)))
    }

    async fn delete_group(&self, group: &str) -> StoreResult<bool> {
        Ok(self.with_log(|log| log.delete_group(group)))
    }

    async fn groups(&self, now_ms: i64) -> StoreResult<Vec<GroupInfo>> {
        Ok(self.with_log(|log| log.groups(now_ms)))
    }
}
