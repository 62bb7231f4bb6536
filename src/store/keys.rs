//! Redis key layout. Every key of an account carries one hash tag, `{s<shard>}`, so each
//! script touches one slot and runs unchanged on Redis Cluster.
//!
//! Ids are `[A-Za-z0-9._:-]` (see `ledger::is_valid_id`): they cannot contain `{`, `}` (which
//! would change the hash tag) or `/`, which separates an account id from a generation id.

/// How many shards a deployment spreads its accounts over. Each shard has its own hash tag,
/// event stream and hold-expiry index: more shards let a Redis Cluster spread the load over
/// more primaries, fewer keep the per-shard background work (sweeps, event polls) small. A
/// deployment setting recorded in Redis on first start ([`SHARD_COUNT_RECORD`]): changing it
/// later would move every account to another key, so a sidecar started with another count
/// refuses to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shards(u32);

impl Shards {
    /// 16 spreads accounts over the slots of a small cluster while keeping per-shard
    /// background work cheap; the first version's fixed count, so its keys stay where they are.
    pub const DEFAULT: Shards = Shards(16);
    /// A Redis Cluster has 16,384 slots: more shards than slots cannot spread any further.
    pub const MAX: u32 = 16_384;

    /// `count` shards, 1 to [`Shards::MAX`].
    pub fn new(count: u32) -> Result<Shards, String> {
        if (1..=Shards::MAX).contains(&count) {
            Ok(Shards(count))
        } else {
            Err(format!(
                "the shard count must be 1 to {}, not {count}",
                Shards::MAX
            ))
        }
    }

    /// How many shards there are.
    pub fn count(self) -> u32 {
        self.0
    }

    /// Every shard number, `0..count`.
    pub fn all(self) -> std::ops::Range<u32> {
        0..self.0
    }

    /// Whether `shard` is one of these shards.
    pub fn contains(self, shard: u32) -> bool {
        shard < self.0
    }

    /// Stable shard of an account: FNV-1a (32-bit) of the id, modulo the count.
    pub fn of(self, account_id: &str) -> u32 {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in account_id.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        hash % self.0
    }
}

impl Default for Shards {
    fn default() -> Shards {
        Shards::DEFAULT
    }
}

impl std::fmt::Display for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a Redis deployment records its shard count (its own hash tag, one slot on a
/// Cluster): written by the first sidecar to start, checked by every later one.
pub const SHARD_COUNT_RECORD: &str = "q:{config}:shards";

/// Prefix shared by every key of a shard, hash tag included: `q:{s7}:`.
pub fn shard_prefix(shard: u32) -> String {
    format!("q:{{s{shard}}}:")
}

/// The keys one call on an account may touch. Every script declares all of them in `KEYS`
/// (they share the account's hash tag, so one slot), which keeps it correct on a Redis Cluster
/// while a slot migrates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountKeys {
    /// `q:{s7}:`.
    pub prefix: String,
    /// Hash: plan, cycle, allowance and credit counters, and one field per open hold.
    pub account: String,
    /// Hash: grant id → grant record, or a dropped grant's tombstone.
    pub grants: String,
    /// Sorted set of the shard: `<account>/<generation>` scored by expiry, for the sweeper.
    pub shard_expiry: String,
    /// Stream of the shard: the usage events.
    pub events: String,
}

impl AccountKeys {
    /// Keys of `account_id` in a deployment of `shards` shards.
    pub fn new(account_id: &str, shards: Shards) -> AccountKeys {
        let prefix = shard_prefix(shards.of(account_id));
        AccountKeys {
            account: format!("{prefix}a:{account_id}"),
            grants: format!("{prefix}g:{account_id}"),
            shard_expiry: shard_expiry(&prefix),
            events: shard_events(&prefix),
            prefix,
        }
    }

    /// String key of a settled or released hold: `q:{s7}:f:<account>/<generation>`.
    pub fn finished_hold(&self, account_id: &str, generation_id: &str) -> String {
        format!("{}f:{account_id}/{generation_id}", self.prefix)
    }

    /// String key of a refund's record: `q:{s7}:u:<account>/<refund>`.
    pub fn refund(&self, account_id: &str, refund_id: &str) -> String {
        format!("{}u:{account_id}/{refund_id}", self.prefix)
    }

    /// String key of a SetPlan request: `q:{s7}:r:<account>/<request>`.
    pub fn plan_request(&self, account_id: &str, request_id: &str) -> String {
        format!("{}r:{account_id}/{request_id}", self.prefix)
    }
}

/// Where the shard whose prefix is `prefix` records the unacked events the retention cap
/// dropped, per group, until the group is told.
pub fn shard_event_losses(prefix: &str) -> String {
    format!("{prefix}events:losses")
}

/// The expiry index of the shard whose prefix is `prefix`.
pub fn shard_expiry(prefix: &str) -> String {
    format!("{prefix}expiry")
}

/// The event stream of the shard whose prefix is `prefix`.
pub fn shard_events(prefix: &str) -> String {
    format!("{prefix}events")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        // Pinned: a change here would strand every stored account.
        let shards = Shards::DEFAULT;
        assert_eq!(shards.of(""), 0x811c_9dc5 % 16);
        assert_eq!(shards.of("acct-1"), shards.of("acct-1"));
        let mut seen = [0u32; 16];
        for i in 0..1600 {
            seen[shards.of(&format!("account-{i}")) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        // Any count spreads: 256 shards, 25,600 accounts.
        let many = Shards::new(256).unwrap();
        let mut seen = vec![0u32; 256];
        for i in 0..25_600 {
            seen[many.of(&format!("account-{i}")) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn shard_counts_are_bounded() {
        assert!(Shards::new(0).is_err());
        assert!(Shards::new(Shards::MAX + 1).is_err());
        assert_eq!(Shards::new(1).unwrap().of("anything"), 0);
        assert_eq!(Shards::new(Shards::MAX).unwrap().count(), 16_384);
        assert!(Shards::new(32).unwrap().contains(31));
        assert!(!Shards::new(32).unwrap().contains(32));
    }

    #[test]
    fn every_key_carries_the_tag() {
        let k = AccountKeys::new("a:b", Shards::DEFAULT);
        let tag = format!("{{s{}}}", Shards::DEFAULT.of("a:b"));
        for key in [
            &k.account,
            &k.grants,
            &k.shard_expiry,
            &k.events,
            &k.finished_hold("a:b", "g"),
            &k.plan_request("a:b", "r"),
        ] {
            assert!(key.contains(&tag), "{key}");
        }
        // ':' may appear in ids, '/' may not: these two holds cannot collide.
        assert_ne!(
            AccountKeys::new("a", Shards::DEFAULT).finished_hold("a", "b:c"),
            AccountKeys::new("a:b", Shards::DEFAULT).finished_hold("a:b", "c")
        );
    }
}
