//! The expiry sweeper's calls: `lua/expire_due.lua`, once per account with entries to move or
//! due holds.

use serde::Deserialize;

use crate::store::keys::AccountKeys;
use crate::store::redis::library::Function;
use crate::store::redis::reply::num;
use crate::store::redis::RedisStore;
use crate::store::sweeper::{due_accounts, SWEEP_ENTRIES_PER_ACCOUNT};
use crate::store::{StoreError, StoreResult};

/// `ok {expired} | moved {expired: 0}`
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    /// The account's due holds expired (and its lazy work done).
    Ok {
        #[serde(deserialize_with = "num")]
        expired: u32,
    },
    /// Only entries of holds another call found expired were moved; nothing else changed.
    Moved,
}

impl RedisStore {
    pub(super) async fn fcall_expire_due(
        &self,
        shard: u32,
        now_ms: i64,
        max_accounts: usize,
    ) -> StoreResult<u32> {
        self.shards_ready().await?;
        if !self.shards.contains(shard) {
            return Ok(0);
        }
        let index = crate::store::keys::shard_expiry(&crate::store::keys::shard_prefix(shard));
        let window = max_accounts.saturating_mul(SWEEP_ENTRIES_PER_ACCOUNT);
        // Holds other calls found expired wait in the index below every expiry (MOVE_SCORE):
        // moved to their own keys first. They are no account's due work (the memory store has
        // no such entries), so they neither count nor take the window's places.
        let mut cmd = ::redis::cmd("ZRANGEBYSCORE");
        cmd.arg(&index).arg("-inf").arg("(0").arg("LIMIT").arg(0);
        cmd.arg(window);
        let mut conn = self.conn.clone();
        let waiting: Vec<String> = self.bounded(cmd.query_async(&mut conn)).await?;
        for (account, members) in due_accounts(waiting, usize::MAX) {
            match self.sweep_account(&account, &members, "move", now_ms).await {
                Ok(_) => {}
                Err(e @ StoreError::Unavailable(_)) => return Err(e),
                Err(e) => crate::store::sweeper::skipped(&account, &e),
            }
        }
        // The window both stores read: the first entries due by now, earliest first.
        let mut cmd = ::redis::cmd("ZRANGEBYSCORE");
        cmd.arg(&index).arg(0).arg(now_ms).arg("LIMIT").arg(0);
        cmd.arg(window);
        let due: Vec<String> = self.bounded(cmd.query_async(&mut conn)).await?;
        let mut expired = 0;
        for (account, members) in due_accounts(due, max_accounts) {
            match self
                .sweep_account(&account, &members, "expire", now_ms)
                .await
            {
                Ok(n) => expired += n,
                Err(e @ StoreError::Unavailable(_)) => return Err(e),
                // One broken account must not stop the expiry of every other one.
                Err(e) => crate::store::sweeper::skipped(&account, &e),
            }
        }
        Ok(expired)
    }

    /// One ExpireDue call for `account`'s index `members` in `mode` (`move`: holds another
    /// call found expired, moved to their keys; `expire`: due holds): the holds it expired.
    async fn sweep_account(
        &self,
        account: &str,
        members: &[String],
        mode: &str,
        now_ms: i64,
    ) -> StoreResult<u32> {
        let keys = AccountKeys::new(account, self.shards);
        // Each entry's finished-hold key, declared: the expiry is written there.
        let finished: Vec<String> = members
            .iter()
            .map(|member| {
                let generation = member.get(account.len() + 1..).unwrap_or_default();
                keys.finished_hold(account, generation)
            })
            .collect();
        let Some((first, more)) = finished.split_first() else {
            return Ok(0);
        };
        let reply = self
            .run(Function::ExpireDue, &keys, account, first, now_ms, |call| {
                for key in more {
                    call.key(key);
                }
                call.arg(mode).arg(members);
            })
            .await?;
        match reply {
            Reply::Ok { expired } => Ok(expired),
            Reply::Moved => Ok(0),
        }
    }
}
