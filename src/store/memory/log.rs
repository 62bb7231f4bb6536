//! The memory store's event log: the same shape as the Redis streams (one log per shard, ack
//! ids `<shard>/<n>-0`) and the same consumer-group rules, so the two behave alike.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::events::{is_ephemeral, AckId, CapTrim, GroupInfo, Loss, Retention, UsageEvent};
use crate::store::keys::Shards;

/// Per-shard logs and the groups reading them.
#[derive(Debug)]
pub(super) struct MemoryLog {
    shards: Vec<ShardLog>,
    groups: HashMap<String, Group>,
    /// Per group: what the retention cap dropped before it read it, until it is told.
    losses: HashMap<String, Vec<Loss>>,
}

#[derive(Debug, Default, Clone)]
struct ShardLog {
    /// Entry numbers start at 1; `trimmed` of them were dropped from the front.
    trimmed: u64,
    entries: VecDeque<UsageEvent>,
}

impl ShardLog {
    fn get(&self, n: u64) -> Option<&UsageEvent> {
        self.entries
            .get(usize::try_from(n.checked_sub(self.trimmed + 1)?).ok()?)
    }

    fn last(&self) -> u64 {
        self.trimmed + self.entries.len() as u64
    }
}

#[derive(Debug)]
struct Group {
    /// Per shard: the next entry number to deliver.
    next: Vec<u64>,
    /// (shard, entry number) → owner and when it was delivered (`None`: abandoned).
    pending: BTreeMap<(u32, u64), (String, Option<i64>)>,
}

impl MemoryLog {
    pub(super) fn new(shards: Shards) -> MemoryLog {
        MemoryLog {
            shards: vec![ShardLog::default(); shards.count() as usize],
            groups: HashMap::new(),
            losses: HashMap::new(),
        }
    }

    /// Appends an event to its shard's log and gives it its ack id.
    pub(super) fn append(&mut self, shard: u32, mut event: UsageEvent) {
        let log = &mut self.shards[shard as usize];
        event.ack_id = AckId::format(shard, &format!("{}-0", log.last() + 1));
        log.entries.push_back(event);
    }

    /// Every retained event, shard 0 first.
    pub(super) fn all(&self) -> Vec<UsageEvent> {
        self.shards
            .iter()
            .flat_map(|s| s.entries.iter().cloned())
            .collect()
    }

    fn group(&mut self, name: &str) -> &mut Group {
        let shards = &self.shards;
        self.groups
            .entry(name.to_string())
            .or_insert_with(|| Group {
                next: shards.iter().map(|s| s.trimmed + 1).collect(),
                pending: BTreeMap::new(),
            })
    }

    pub(super) fn read(
        &mut self,
        group: &str,
        consumer: &str,
        max: usize,
        resume: bool,
        claim_idle_ms: u64,
        now_ms: i64,
    ) -> Vec<UsageEvent> {
        if max == 0 {
            return Vec::new();
        }
        self.group(group);
        let g = self.groups.get_mut(group).expect("created above");
        let mut out: Vec<(u32, u64)> = Vec::new();
        for shard in 0..self.shards.len() as u32 {
            let room = |out: &Vec<(u32, u64)>| max.saturating_sub(out.len());
            let in_shard = g.pending.range((shard, 0)..(shard + 1, 0));
            let mut take: Vec<(u32, u64)> = Vec::new();
            if resume {
                take.extend(
                    in_shard
                        .clone()
                        .filter(|(_, (owner, _))| owner == consumer)
                        .map(|(k, _)| *k)
                        .take(room(&out)),
                );
            }
            let claimable = in_shard
                .filter(|(k, (owner, at))| {
                    let idle = at.is_none_or(|at| now_ms - at >= claim_idle_ms as i64);
                    idle && !(resume && owner == consumer) && !take.contains(k)
                })
                .map(|(k, _)| *k)
                .take(room(&out).saturating_sub(take.len()))
                .collect::<Vec<_>>();
            take.extend(claimable);
            let log = &self.shards[shard as usize];
            while take.len() < room(&out) && g.next[shard as usize] <= log.last() {
                take.push((shard, g.next[shard as usize]));
                g.next[shard as usize] += 1;
            }
            for key in take {
                g.pending.insert(key, (consumer.to_string(), Some(now_ms)));
                out.push(key);
            }
        }
        out.into_iter()
            .filter_map(|(shard, n)| self.shards[shard as usize].get(n).cloned())
            .collect()
    }

    pub(super) fn ack(&mut self, group: &str, ids: &[AckId]) -> u32 {
        let Some(g) = self.groups.get_mut(group) else {
            return 0;
        };
        let mut acked = 0;
        for id in ids {
            let n = id
                .entry_id
                .split_once('-')
                .and_then(|(n, _)| n.parse().ok());
            if let Some(n) = n {
                if g.pending.remove(&(id.shard, n)).is_some() {
                    acked += 1;
                }
            }
        }
        acked
    }

    pub(super) fn abandon(&mut self, group: &str, consumer: &str) {
        if let Some(g) = self.groups.get_mut(group) {
            for (owner, at) in g.pending.values_mut() {
                if owner == consumer {
                    *at = None;
                }
            }
        }
    }

    pub(super) fn enforce_cap(&mut self, max_retained: u64) -> CapTrim {
        let mut out = CapTrim::default();
        for (shard, log) in self.shards.iter_mut().enumerate() {
            let shard_u32 = shard as u32;
            while log.entries.len() as u64 > max_retained {
                log.entries.pop_front();
                log.trimmed += 1;
                let n = log.trimmed;
                let ack_id = AckId::format(shard_u32, &format!("{n}-0"));
                out.dropped += 1;
                let mut needed = false;
                for (name, g) in self.groups.iter_mut() {
                    let was_pending = g.pending.remove(&(shard_u32, n)).is_some();
                    let undelivered = g.next[shard] <= n;
                    if undelivered {
                        g.next[shard] = n + 1;
                    }
                    if (was_pending || undelivered) && !is_ephemeral(name) {
                        needed = true;
                        let loss = Loss {
                            group: name.clone(),
                            shard: shard_u32,
                            first_ack_id: ack_id.clone(),
                            last_ack_id: ack_id.clone(),
                            count: 1,
                        };
                        record_loss(&mut out.losses, loss);
                    }
                }
                if needed {
                    out.dropped_unacked += 1;
                }
            }
        }
        for loss in &out.losses {
            record_loss(
                self.losses.entry(loss.group.clone()).or_default(),
                loss.clone(),
            );
        }
        out
    }

    pub(super) fn trim(&mut self, retention: Retention, now_ms: i64) -> u64 {
        let mut dropped = 0;
        for (shard, log) in self.shards.iter_mut().enumerate() {
            // Nothing a durable group still needs: below every such group's next entry and
            // oldest pending.
            let safe = self
                .groups
                .iter()
                .filter(|(name, _)| !is_ephemeral(name))
                .map(|(_, g)| g)
                .map(|g| {
                    let oldest_pending = g
                        .pending
                        .range((shard as u32, 0)..(shard as u32 + 1, 0))
                        .next()
                        .map(|((_, n), _)| *n);
                    oldest_pending.unwrap_or(u64::MAX).min(g.next[shard])
                })
                .min()
                .unwrap_or(u64::MAX);
            while let Some(front) = log.entries.front() {
                let too_old = front.time_ms <= now_ms - retention.keep_ms;
                let too_many = log.entries.len() as u64 > retention.max_events_per_shard;
                if log.trimmed + 1 >= safe || !(too_old || too_many) {
                    break;
                }
                log.entries.pop_front();
                log.trimmed += 1;
                dropped += 1;
            }
        }
        dropped
    }
}

impl MemoryLog {
    /// Events delivered to `group` and not acked yet.
    pub(super) fn pending(&self, group: &str) -> u64 {
        self.groups.get(group).map_or(0, |g| g.pending.len() as u64)
    }

    /// What the cap dropped before `group` read it, shard by shard; the record is cleared.
    pub(super) fn take_losses(&mut self, group: &str) -> Vec<Loss> {
        let mut losses = self.losses.remove(group).unwrap_or_default();
        losses.sort_by_key(|l| l.shard);
        losses
    }

    /// Removes `group` (its position, its pending events, its losses); whether it existed.
    pub(super) fn delete_group(&mut self, group: &str) -> bool {
        self.losses.remove(group);
        self.groups.remove(group).is_some()
    }

    pub(super) fn groups(&self, now_ms: i64) -> Vec<GroupInfo> {
        let mut out: Vec<GroupInfo> = self
            .groups
            .iter()
            .map(|(name, g)| {
                let mut info = GroupInfo {
                    name: name.clone(),
                    pending: g.pending.len() as u64,
                    ..GroupInfo::default()
                };
                for (shard, log) in self.shards.iter().enumerate() {
                    info.lag += (log.last() + 1).saturating_sub(g.next[shard]);
                    let oldest = g
                        .pending
                        .range((shard as u32, 0)..(shard as u32 + 1, 0))
                        .find_map(|((_, n), _)| log.get(*n));
                    if let Some(e) = oldest {
                        info.note_unacked(e.ack_id.clone(), e.time_ms, now_ms);
                    }
                }
                info
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Adds `loss` (later than what `record` holds) to `record`, one range per group and shard.
fn record_loss(record: &mut Vec<Loss>, loss: Loss) {
    match record
        .iter_mut()
        .find(|l| l.group == loss.group && l.shard == loss.shard)
    {
        Some(l) => {
            l.last_ack_id = loss.last_ack_id;
            l.count += loss.count;
        }
        None => record.push(loss),
    }
}
