//! The Redis event log: one stream per shard (`q:{s<n>}:events`), read through Redis consumer
//! groups. Each command names one shard's stream, so it works on Redis Cluster, and none
//! blocks: the connection is shared with the ledger's scripts, so readers poll instead.

use std::collections::HashSet;

use ::redis::streams::{StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamReadReply};
use ::redis::Value;
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};

use super::RedisStore;
use crate::events::{
    is_ephemeral, AckId, CapTrim, EventLog, GroupInfo, Loss, Retention, UsageEvent,
};
use crate::store::keys::shard_prefix;
use crate::store::{Fleet, StoreError, StoreResult};

/// Idle time given to an abandoned consumer's events: longer than any claim threshold, so the
/// next reader of the group claims them at once.
const ABANDONED_IDLE_MS: u64 = 365 * 86_400_000;
/// Most pending entries looked at when abandoning a consumer, per shard and call.
const ABANDON_BATCH: usize = 10_000;

fn stream_key(shard: u32) -> String {
    crate::store::keys::shard_events(&shard_prefix(shard))
}

/// Per shard, a hash: group → what the retention cap dropped before it read it
/// (`<first id> <last id> <count>`), until the group is told.
fn losses_key(shard: u32) -> String {
    crate::store::keys::shard_event_losses(&shard_prefix(shard))
}

fn is_nogroup(e: &StoreError) -> bool {
    matches!(e, StoreError::Internal(m) if m.contains("NOGROUP"))
}

/// `ms-seq` as numbers, for ordering stream ids.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn to_event(shard: u32, entry: &StreamId) -> StoreResult<UsageEvent> {
    let fields: Vec<(String, String)> = entry
        .map
        .iter()
        .map(|(k, v)| {
            let v = ::redis::from_redis_value_ref::<String>(v)
                .map_err(|e| StoreError::Internal(format!("event field `{k}`: {e}")))?;
            Ok((k.clone(), v))
        })
        .collect::<StoreResult<_>>()?;
    UsageEvent::from_fields(
        AckId::format(shard, &entry.id),
        fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .map_err(StoreError::Internal)
}

/// A recorded loss: `<first ack id> <last ack id> <count>`.
fn parse_loss(group: &str, shard: u32, text: &str) -> Option<Loss> {
    let mut parts = text.split(' ');
    let (first, last, count) = (parts.next()?, parts.next()?, parts.next()?);
    Some(Loss {
        group: group.to_string(),
        shard,
        first_ack_id: first.to_string(),
        last_ack_id: last.to_string(),
        count: count.parse().ok()?,
    })
}

/// Reads and clears a group's loss record on a shard in one step (see the script).
static TAKE_LOSS: std::sync::LazyLock<::redis::Script> =
    std::sync::LazyLock::new(|| ::redis::Script::new(include_str!("scripts/take_loss.lua")));
/// Adds a cap batch to a group's loss record on a shard in one step (see the script).
static RECORD_LOSS: std::sync::LazyLock<::redis::Script> =
    std::sync::LazyLock::new(|| ::redis::Script::new(include_str!("scripts/record_loss.lua")));

/// Which reads a shard needs for a group (see [`RedisStore::shard_work`]).
#[derive(Debug, Clone, Copy)]
struct ShardWork {
    /// Entries given and not acked: resume this consumer's, claim others' idle ones.
    pending: bool,
    /// Entries not given yet.
    new: bool,
}

/// The outcome of a background walk over the shards that goes on past failing ones: their
/// failures logged once; an error only when nothing was done at all.
fn walk_outcome(what: &str, failures: Vec<StoreError>, done_any: bool) -> StoreResult<()> {
    let failed_shards = failures.len();
    match failures.into_iter().next() {
        Some(first) if !done_any => Err(first),
        Some(first) => {
            tracing::warn!(
                failed_shards,
                error = %first,
                "{what} failed on some shards; the others are done, those wait for the next pass"
            );
            Ok(())
        }
        None => Ok(()),
    }
}

/// Per-shard commands one walk over the shards keeps in flight: they share the connection's
/// pipeline, so a deployment of thousands of shards is walked in a few hundred round trips.
const SHARD_CALLS_AT_ONCE: usize = 32;

/// Most entries one trim pass drops from a shard for the size bound: finding the cut means
/// reading the entries to drop, so a large backlog goes in bounded steps, a pass a minute.
const SIZE_TRIM_BATCH: u64 = 10_000;

impl RedisStore {
    /// Runs `call` for every shard, [`SHARD_CALLS_AT_ONCE`] at a time; results in shard order,
    /// and the first error ends the walk.
    async fn each_shard<T, F, Fut>(&self, call: F) -> StoreResult<Vec<T>>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = StoreResult<T>>,
    {
        futures::stream::iter(self.shards().all())
            .map(call)
            .buffered(SHARD_CALLS_AT_ONCE)
            .try_collect()
            .await
    }

    /// Like [`RedisStore::each_shard`] for background passes, which go on past a failing
    /// shard: the successes, with the failures logged once as `what`; an error only when
    /// every shard failed.
    async fn each_shard_settled<T, F, Fut>(&self, what: &str, call: F) -> StoreResult<Vec<T>>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = StoreResult<T>>,
    {
        let results: Vec<StoreResult<T>> = futures::stream::iter(self.shards().all())
            .map(call)
            .buffered(SHARD_CALLS_AT_ONCE)
            .collect()
            .await;
        let mut done = Vec::with_capacity(results.len());
        let mut failures = Vec::new();
        for result in results {
            match result {
                Ok(v) => done.push(v),
                Err(e) => failures.push(e),
            }
        }
        walk_outcome(what, failures, !done.is_empty())?;
        Ok(done)
    }

    /// Drops what every group has acked on `shard` and is past the retention; see
    /// [`EventLog::trim`]. `server_ms` is Redis's clock, which stamped the ids.
    async fn trim_shard(
        &self,
        shard: u32,
        retention: Retention,
        server_ms: u64,
    ) -> StoreResult<u64> {
        let key = stream_key(shard);
        let Some(groups) = self.stream_groups(&key).await? else {
            return Ok(0);
        };
        // The first entry some group still needs: its oldest unacked one, or the one after
        // what it was last given.
        let mut keep_from: Option<(u64, u64)> = None;
        for g in groups.groups.iter().filter(|g| !is_ephemeral(&g.name)) {
            let needed = self.group_needs(&key, g).await?;
            keep_from = Some(keep_from.map_or(needed, |k| k.min(needed)));
        }
        let age_cut = (server_ms.saturating_sub(retention.keep_ms.max(0) as u64), 0);
        let cut = match self.size_cut(&key, retention.max_events_per_shard).await? {
            Some(size_cut) => age_cut.max(size_cut),
            None => age_cut,
        };
        let min_id = keep_from.map_or(cut, |k| k.min(cut));
        let mut cmd = ::redis::cmd("XTRIM");
        cmd.arg(&key)
            .arg("MINID")
            .arg(format!("{}-{}", min_id.0, min_id.1));
        self.query::<u64>(&cmd).await
    }

    /// The consumer groups of stream `key` (`XINFO GROUPS`); `None` when there is no stream.
    async fn stream_groups(&self, key: &str) -> StoreResult<Option<StreamInfoGroupsReply>> {
        let mut info = ::redis::cmd("XINFO");
        info.arg("GROUPS").arg(key);
        match self.query(&info).await {
            Err(StoreError::Internal(m)) if m.contains("no such key") => Ok(None),
            other => other.map(Some),
        }
    }

    /// What `group` may have to read on `shard`: entries it was given and has not acked (to
    /// resume or claim), entries it has not been given, both when there is no group there yet.
    /// One `XINFO GROUPS`, so an idle poll reads nothing and claims nothing.
    async fn shard_work(&self, shard: u32, group: &str) -> StoreResult<ShardWork> {
        let everything = ShardWork {
            pending: true,
            new: true,
        };
        // No stream: reading recreates it with the group, as before any event.
        let Some(groups) = self.stream_groups(&stream_key(shard)).await? else {
            return Ok(everything);
        };
        Ok(match groups.groups.iter().find(|g| g.name == group) {
            Some(g) => ShardWork {
                pending: g.pending > 0,
                // Redis cannot always tell the lag (after deletions): then read.
                new: g.lag != Some(0),
            },
            None => everything,
        })
    }

    /// The first entry `group` still needs on stream `key`: its oldest unacked one, or the one
    /// after what it was last given.
    async fn group_needs(
        &self,
        key: &str,
        group: &::redis::streams::StreamInfoGroup,
    ) -> StoreResult<(u64, u64)> {
        let needed = if group.pending > 0 {
            let mut cmd = ::redis::cmd("XPENDING");
            cmd.arg(key).arg(&group.name).arg("-").arg("+").arg(1);
            let rows: Value = self.query(&cmd).await?;
            let first = match rows {
                Value::Array(mut rows) if !rows.is_empty() => match rows.swap_remove(0) {
                    Value::Array(mut cols) if !cols.is_empty() => {
                        ::redis::from_redis_value::<String>(cols.swap_remove(0)).ok()
                    }
                    _ => None,
                },
                _ => None,
            };
            first.as_deref().and_then(parse_id)
        } else {
            parse_id(&group.last_delivered_id).map(|(ms, seq)| (ms, seq + 1))
        };
        needed.ok_or_else(|| {
            StoreError::Internal(format!("group `{}`: unreadable position", group.name))
        })
    }

    /// Drops entries of `shard` beyond `max` in bounded batches; see [`EventLog::enforce_cap`].
    async fn cap_shard(&self, shard: u32, max: u64, out: &mut CapTrim) -> StoreResult<()> {
        let key = stream_key(shard);
        loop {
            let len: u64 = self.query(::redis::cmd("XLEN").arg(&key)).await?;
            if len <= max {
                return Ok(());
            }
            let mut range = ::redis::cmd("XRANGE");
            range
                .arg(&key)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg((len - max).min(SIZE_TRIM_BATCH));
            let ids: Vec<(u64, u64)> = self
                .query::<::redis::streams::StreamRangeReply>(&range)
                .await?
                .ids
                .iter()
                .filter_map(|e| parse_id(&e.id))
                .collect();
            let Some(&(last_ms, last_seq)) = ids.last() else {
                return Ok(());
            };
            let Some(groups) = self.stream_groups(&key).await? else {
                return Ok(());
            };
            let mut oldest_needed: Option<(u64, u64)> = None;
            for g in groups.groups.iter().filter(|g| !is_ephemeral(&g.name)) {
                let needed = self.group_needs(&key, g).await?;
                oldest_needed = Some(oldest_needed.map_or(needed, |o| o.min(needed)));
                let lost: Vec<&(u64, u64)> = ids.iter().filter(|id| **id >= needed).collect();
                if let (Some(first), Some(last)) = (lost.first(), lost.last()) {
                    let loss = Loss {
                        group: g.name.clone(),
                        shard,
                        first_ack_id: AckId::format(shard, &format!("{}-{}", first.0, first.1)),
                        last_ack_id: AckId::format(shard, &format!("{}-{}", last.0, last.1)),
                        count: lost.len() as u64,
                    };
                    self.record_loss(&loss).await?;
                    out.losses.push(loss);
                }
            }
            if let Some(oldest) = oldest_needed {
                out.dropped_unacked += ids.iter().filter(|id| **id >= oldest).count() as u64;
            }
            let mut trim = ::redis::cmd("XTRIM");
            trim.arg(&key)
                .arg("MINID")
                .arg(format!("{last_ms}-{}", last_seq + 1));
            out.dropped += self.query::<u64>(&trim).await?;
        }
    }

    /// Adds `loss` to its group's record on its shard, one range per shard, in one step (see
    /// `record_loss.lua`).
    async fn record_loss(&self, loss: &Loss) -> StoreResult<()> {
        self.shards_ready().await?;
        let mut conn = self.connection();
        self.bounded(
            RECORD_LOSS
                .key(losses_key(loss.shard))
                .arg(&loss.group)
                .arg(&loss.first_ack_id)
                .arg(&loss.last_ack_id)
                .arg(loss.count)
                .invoke_async::<u64>(&mut conn),
        )
        .await
        .map(drop)
    }

    /// The first id to keep for the size bound (`max` entries per shard), or `None` when the
    /// stream is within it.
    async fn size_cut(&self, key: &str, max: u64) -> StoreResult<Option<(u64, u64)>> {
        let len: u64 = self.query(::redis::cmd("XLEN").arg(key)).await?;
        if len <= max {
            return Ok(None);
        }
        let excess = (len - max).min(SIZE_TRIM_BATCH);
        let mut cmd = ::redis::cmd("XRANGE");
        cmd.arg(key).arg("-").arg("+").arg("COUNT").arg(excess);
        let entries: ::redis::streams::StreamRangeReply = self.query(&cmd).await?;
        Ok(entries
            .ids
            .last()
            .and_then(|last| parse_id(&last.id))
            .map(|(ms, seq)| (ms, seq + 1)))
    }
    /// The oldest unacked entry id of `group` on stream `key` (`XPENDING` summary).
    async fn oldest_pending(&self, key: &str, group: &str) -> StoreResult<Option<String>> {
        let mut cmd = ::redis::cmd("XPENDING");
        cmd.arg(key).arg(group);
        let summary: Value = self.query(&cmd).await?;
        Ok(match summary {
            Value::Array(parts) if parts.len() >= 2 => {
                ::redis::from_redis_value::<Option<String>>(parts[1].clone()).unwrap_or(None)
            }
            _ => None,
        })
    }

    /// Entries of stream `key` after `last_delivered` (for a group whose lag Redis cannot
    /// tell), counted up to [`SIZE_TRIM_BATCH`].
    async fn count_after(&self, key: &str, last_delivered: &str) -> StoreResult<u64> {
        let mut cmd = ::redis::cmd("XRANGE");
        cmd.arg(key)
            .arg(format!("({last_delivered}"))
            .arg("+")
            .arg("COUNT")
            .arg(SIZE_TRIM_BATCH);
        let entries: ::redis::streams::StreamRangeReply = self.query(&cmd).await?;
        Ok(entries.ids.len() as u64)
    }

    async fn query<T: ::redis::FromRedisValue>(&self, cmd: &::redis::Cmd) -> StoreResult<T> {
        self.shards_ready().await?;
        let mut conn = self.connection();
        self.bounded(cmd.query_async::<T>(&mut conn)).await
    }

    /// Creates the group at the oldest retained event (and the stream if it does not exist).
    async fn create_group(&self, shard: u32, group: &str) -> StoreResult<()> {
        let mut cmd = ::redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(stream_key(shard))
            .arg(group)
            .arg("0")
            .arg("MKSTREAM");
        match self.query::<Value>(&cmd).await {
            Err(StoreError::Internal(m)) if m.contains("BUSYGROUP") => Ok(()),
            other => other.map(drop),
        }
    }

    /// A group reads every shard, so it must exist on every shard's stream (a group missing on
    /// a shard would let the trimmer drop events the group has not seen).
    async fn ensure_group(&self, group: &str) -> StoreResult<()> {
        if self.known_groups.lock().expect("lock").contains(group) {
            return Ok(());
        }
        self.each_shard(|shard| self.create_group(shard, group))
            .await?;
        self.known_groups
            .lock()
            .expect("lock")
            .insert(group.to_string());
        Ok(())
    }

    /// Runs a group command, creating the group first when Redis says it does not exist.
    async fn group_query<T: ::redis::FromRedisValue>(
        &self,
        shard: u32,
        group: &str,
        cmd: &::redis::Cmd,
    ) -> StoreResult<T> {
        match self.query(cmd).await {
            Err(e) if is_nogroup(&e) => {
                self.create_group(shard, group).await?;
                self.query(cmd).await
            }
            other => other,
        }
    }

    async fn read_group(
        &self,
        shard: u32,
        group: &str,
        consumer: &str,
        count: usize,
        from: &str,
    ) -> StoreResult<Vec<StreamId>> {
        let mut cmd = ::redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        cmd.arg("STREAMS").arg(stream_key(shard)).arg(from);
        let reply: Option<StreamReadReply> = self.group_query(shard, group, &cmd).await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            // Entries trimmed while pending come back without fields: nothing to deliver.
            .filter(|id| !id.map.is_empty())
            .collect())
    }
}

#[async_trait]
impl EventLog for RedisStore {
    async fn read(
        &self,
        group: &str,
        consumer: &str,
        max: usize,
        resume: bool,
        claim_idle_ms: u64,
        now_ms: i64,
    ) -> StoreResult<Vec<UsageEvent>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.ensure_group(group).await?;
        // One cheap look at every shard, many at once; then only the reads there is work for.
        let work = self
            .each_shard(|shard| async move { Ok((shard, self.shard_work(shard, group).await?)) })
            .await?;
        let mut out = Vec::new();
        for (shard, work) in work {
            if out.len() >= max {
                break;
            }
            let mut seen = HashSet::new();
            let mut take = |entries: Vec<StreamId>, out: &mut Vec<UsageEvent>| -> StoreResult<()> {
                for entry in entries {
                    if out.len() < max && seen.insert(entry.id.clone()) {
                        out.push(to_event(shard, &entry)?);
                    }
                }
                Ok(())
            };
            if resume && work.pending {
                let own = self
                    .read_group(shard, group, consumer, max - out.len(), "0")
                    .await?;
                take(own, &mut out)?;
            }
            if work.pending && out.len() < max {
                let mut cmd = ::redis::cmd("XAUTOCLAIM");
                cmd.arg(stream_key(shard))
                    .arg(group)
                    .arg(consumer)
                    .arg(claim_idle_ms);
                cmd.arg("0-0").arg("COUNT").arg(max - out.len());
                let claimed: StreamAutoClaimReply = self.group_query(shard, group, &cmd).await?;
                take(
                    claimed
                        .claimed
                        .into_iter()
                        .filter(|e| !e.map.is_empty())
                        .collect(),
                    &mut out,
                )?;
            }
            if work.new && out.len() < max {
                let new = self
                    .read_group(shard, group, consumer, max - out.len(), ">")
                    .await?;
                take(new, &mut out)?;
            }
        }
        let _ = now_ms; // Redis measures idle time itself.
        Ok(out)
    }

    async fn ack(&self, group: &str, ack_ids: &[String]) -> StoreResult<u32> {
        // Only the shards named: a deployment may have thousands.
        let mut by_shard: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
        for id in ack_ids {
            let id = AckId::parse_in(id, self.shards())?;
            by_shard.entry(id.shard).or_default().push(id.entry_id);
        }
        let mut acked = 0;
        for (shard, ids) in by_shard {
            let mut cmd = ::redis::cmd("XACK");
            cmd.arg(stream_key(shard)).arg(group).arg(&ids);
            acked += self.query::<u32>(&cmd).await?;
        }
        Ok(acked)
    }

    async fn abandon(&self, group: &str, consumer: &str) -> StoreResult<()> {
        self.each_shard(|shard| async move {
            let mut cmd = ::redis::cmd("XPENDING");
            cmd.arg(stream_key(shard)).arg(group).arg("-").arg("+");
            cmd.arg(ABANDON_BATCH).arg(consumer);
            let pending: Value = match self.query(&cmd).await {
                Err(e) if is_nogroup(&e) => return Ok(()),
                other => other?,
            };
            let ids: Vec<String> = match pending {
                Value::Array(rows) => rows
                    .into_iter()
                    .filter_map(|row| match row {
                        Value::Array(mut cols) if !cols.is_empty() => {
                            ::redis::from_redis_value::<String>(cols.swap_remove(0)).ok()
                        }
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            if ids.is_empty() {
                return Ok(());
            }
            // Same owner, but idle for "a year": XAUTOCLAIM of any reader takes them now.
            let mut cmd = ::redis::cmd("XCLAIM");
            cmd.arg(stream_key(shard))
                .arg(group)
                .arg(consumer)
                .arg(0)
                .arg(&ids);
            cmd.arg("IDLE").arg(ABANDONED_IDLE_MS).arg("JUSTID");
            self.query::<Value>(&cmd).await.map(drop)
        })
        .await?;
        Ok(())
    }

    async fn trim(&self, retention: Retention, now_ms: i64) -> StoreResult<u64> {
        let _ = now_ms; // Stream ids carry Redis's own clock; age is measured against it.
                        // Redis's own clock: it stamped the stream ids.
        let server_ms = self.time_ms().await?.max(0) as u64;
        let dropped = self
            .each_shard_settled("event trim", |shard| {
                self.trim_shard(shard, retention, server_ms)
            })
            .await?;
        Ok(dropped.iter().sum())
    }

    async fn enforce_cap(&self, max_retained_per_shard: u64) -> StoreResult<CapTrim> {
        // A shard that fails part way keeps what it already dropped in the totals: those
        // events are gone, and their losses recorded.
        let per_shard: Vec<(CapTrim, Option<StoreError>)> =
            futures::stream::iter(self.shards().all())
                .map(|shard| async move {
                    let mut out = CapTrim::default();
                    let failed = self
                        .cap_shard(shard, max_retained_per_shard, &mut out)
                        .await
                        .err();
                    (out, failed)
                })
                .buffered(SHARD_CALLS_AT_ONCE)
                .collect()
                .await;
        let mut out = CapTrim::default();
        let mut failures = Vec::new();
        for (shard, failed) in per_shard {
            out.dropped += shard.dropped;
            out.dropped_unacked += shard.dropped_unacked;
            out.losses.extend(shard.losses);
            failures.extend(failed);
        }
        let done_any = failures.len() < self.shards().count() as usize || out.dropped > 0;
        walk_outcome("event cap", failures, done_any)?;
        Ok(out)
    }

    async fn take_losses(&self, group: &str) -> StoreResult<Vec<Loss>> {
        // Which shards hold a record for the group: a cheap read of each, many at once.
        let recorded = self
            .each_shard(|shard| async move {
                let mut exists = ::redis::cmd("HEXISTS");
                exists.arg(losses_key(shard)).arg(group);
                Ok(self.query::<bool>(&exists).await?.then_some(shard))
            })
            .await?;
        // Each taken in one step (read and cleared), so what is told is what was removed. A
        // shard that fails keeps its record for the next Subscribe; the ones taken are told.
        let mut losses = Vec::new();
        for shard in recorded.into_iter().flatten() {
            let taken = async {
                self.shards_ready().await?;
                let mut conn = self.connection();
                self.bounded(
                    TAKE_LOSS
                        .key(losses_key(shard))
                        .arg(group)
                        .invoke_async::<Option<String>>(&mut conn),
                )
                .await
            };
            match taken.await {
                Ok(Some(text)) => losses.extend(parse_loss(group, shard, &text)),
                Ok(None) => {}
                Err(e) if losses.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(group, shard, error = %e, "could not take an event loss record; it is told at the next Subscribe");
                    break;
                }
            }
        }
        Ok(losses)
    }

    async fn delete_group(&self, group: &str) -> StoreResult<bool> {
        let existed = self
            .each_shard(|shard| async move {
                let mut destroy = ::redis::cmd("XGROUP");
                destroy.arg("DESTROY").arg(stream_key(shard)).arg(group);
                let existed = match self.query::<u64>(&destroy).await {
                    Ok(n) => n > 0,
                    // No stream on this shard yet: no group either (Redis 7 says the key must
                    // exist; older versions "no such key").
                    Err(StoreError::Internal(m))
                        if m.contains("no such key") || m.contains("requires the key to exist") =>
                    {
                        false
                    }
                    Err(e) => return Err(e),
                };
                let mut del = ::redis::cmd("HDEL");
                del.arg(losses_key(shard)).arg(group);
                self.query::<u64>(&del).await?;
                Ok(existed)
            })
            .await;
        // Forgotten whatever the outcome: a group destroyed on some shards must be created
        // again by this process's next read, not assumed.
        self.known_groups.lock().expect("lock").remove(group);
        Ok(existed?.contains(&true))
    }

    async fn groups(&self, now_ms: i64) -> StoreResult<Vec<GroupInfo>> {
        let _ = now_ms; // Stream ids carry Redis's own clock; age is measured against it.
        let server_ms = self.time_ms().await?;
        // Per shard: (group, pending, lag, oldest unacked entry).
        let per_shard = self
            .each_shard(|shard| async move {
                let key = stream_key(shard);
                let Some(groups) = self.stream_groups(&key).await? else {
                    return Ok(Vec::new());
                };
                let mut rows = Vec::new();
                for g in groups.groups {
                    let lag = match g.lag {
                        Some(lag) => lag as u64,
                        None => self.count_after(&key, &g.last_delivered_id).await?,
                    };
                    let oldest = if g.pending > 0 {
                        self.oldest_pending(&key, &g.name).await?
                    } else {
                        None
                    };
                    rows.push((g.name, g.pending as u64, lag, shard, oldest));
                }
                Ok(rows)
            })
            .await?;
        let mut by_name: std::collections::BTreeMap<String, GroupInfo> = Default::default();
        for (name, pending, lag, shard, oldest) in per_shard.into_iter().flatten() {
            let entry = by_name.entry(name.clone()).or_insert_with(|| GroupInfo {
                name,
                ..GroupInfo::default()
            });
            entry.pending += pending;
            entry.lag += lag;
            if let Some((id, (ms, _))) = oldest.and_then(|id| parse_id(&id).map(|p| (id, p))) {
                entry.note_unacked(AckId::format(shard, &id), ms as i64, server_ms);
            }
        }
        Ok(by_name.into_values().collect())
    }

    async fn pending(&self, group: &str) -> StoreResult<u64> {
        let per_shard = self
            .each_shard(|shard| async move {
                let mut cmd = ::redis::cmd("XPENDING");
                cmd.arg(stream_key(shard)).arg(group);
                let summary: Value = match self.query(&cmd).await {
                    Err(e) if is_nogroup(&e) => return Ok(0),
                    other => other?,
                };
                Ok(match summary {
                    Value::Array(mut parts) if !parts.is_empty() => {
                        ::redis::from_redis_value::<u64>(parts.swap_remove(0)).unwrap_or(0)
                    }
                    _ => 0,
                })
            })
            .await?;
        Ok(per_shard.iter().sum())
    }
}
