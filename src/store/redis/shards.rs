//! The shard-count check: a deployment's shard count is recorded in Redis by the first sidecar
//! that starts on it, and no sidecar set to another count serves it.

use super::reply::anomaly;
use super::RedisStore;
use crate::store::keys::{Shards, SHARD_COUNT_RECORD};
use crate::store::{StoreError, StoreResult};

/// Why [`RedisStore::check_shards`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardCheckError {
    /// The deployment recorded another shard count: this sidecar must not serve it.
    #[error("{0}")]
    Mismatch(String),
    /// Redis could not tell now.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ShardCheckError> for StoreError {
    fn from(e: ShardCheckError) -> StoreError {
        match e {
            ShardCheckError::Mismatch(message) => StoreError::Internal(message),
            ShardCheckError::Store(e) => e,
        }
    }
}

impl RedisStore {
    /// The same store on a deployment of `shards` shards (the default is [`Shards::DEFAULT`]).
    pub fn with_shards(mut self, shards: Shards) -> RedisStore {
        self.shards = shards;
        *self.shards_checked.get_mut() = false;
        self
    }

    /// The shard count recorded in Redis, if a sidecar has started on it yet.
    pub async fn recorded_shards(&self) -> StoreResult<Option<Shards>> {
        let mut conn = self.conn.clone();
        let mut get = ::redis::cmd("GET");
        get.arg(SHARD_COUNT_RECORD);
        let recorded: Option<String> = self.bounded(get.query_async(&mut conn)).await?;
        recorded
            .map(|text| {
                text.parse()
                    .map_err(|_| text.clone())
                    .and_then(Shards::new)
                    .map_err(|_| {
                        anomaly(format!(
                            "`{SHARD_COUNT_RECORD}` holds `{text}`, not a shard count"
                        ))
                    })
            })
            .transpose()
    }

    /// Records this store's shard count in Redis if none is recorded yet, and checks it against
    /// the recorded one: [`ShardCheckError::Mismatch`] naming both when they differ (the sidecar
    /// refuses to serve), a store error when Redis cannot tell now (every call checks again
    /// until it can).
    pub async fn check_shards(&self) -> Result<(), ShardCheckError> {
        let mut conn = self.conn.clone();
        let mut set = ::redis::cmd("SET");
        set.arg(SHARD_COUNT_RECORD)
            .arg(self.shards.count())
            .arg("NX");
        self.bounded(set.query_async::<Option<String>>(&mut conn))
            .await?;
        match self.recorded_shards().await? {
            Some(n) if n == self.shards => {
                self.shards_checked
                    .store(true, std::sync::atomic::Ordering::Release);
                Ok(())
            }
            Some(n) => {
                // Every call checks again, and is refused, from now on.
                self.shards_checked
                    .store(false, std::sync::atomic::Ordering::Release);
                Err(ShardCheckError::Mismatch(format!(
                "this sidecar is set to {} shards (--shards) but this Redis deployment recorded \
                 {n} when it first started (`{SHARD_COUNT_RECORD}`); start every sidecar with \
                 --shards {n}: another count would read and write every account under other keys",
                self.shards
            )))
            }
            // Deleted between the two commands (a flush): the next call records it again.
            None => Err(ShardCheckError::Store(StoreError::Unavailable(format!(
                "`{SHARD_COUNT_RECORD}` vanished while being recorded; retry"
            )))),
        }
    }

    /// Checks the shard count before the first real call (one load after that).
    pub(super) async fn shards_ready(&self) -> StoreResult<()> {
        if self
            .shards_checked
            .load(std::sync::atomic::Ordering::Acquire)
        {
            Ok(())
        } else {
            self.check_shards().await.map_err(StoreError::from)
        }
    }
}
