//! Redis key layout. Every key of an account carries one hash tag, `{s<shard>}`, so each
//! script touches one slot and runs unchanged on Redis Cluster.
//!
//! Ids are `[A-Za-z0-9._:-]` (see `ledger::is_valid_id`): they cannot contain `{`, `}` (which
//! would change the hash tag) or `/`, which separates an account id from a generation id.

/// Number of shards. Each shard has its own event stream and hold-expiry index; 16 spreads
/// accounts over the slots of a small cluster while keeping per-shard background work cheap.
/// Fixed forever: changing it moves every account to another key.
pub const SHARD_COUNT: u32 = 16;

/// Stable shard of an account: FNV-1a (32-bit) of the id, modulo [`SHARD_COUNT`].
pub fn shard_of(account_id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in account_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % SHARD_COUNT
}

/// Prefix shared by every key of a shard, hash tag included: `q:{s7}:`.
pub fn shard_prefix(shard: u32) -> String {
    format!("q:{{s{shard}}}:")
}

/// The keys of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountKeys {
    /// `q:{s7}:`: scripts build per-hold keys from it.
    pub prefix: String,
    /// Hash: plan, cycle and allowance counters.
    pub account: String,
    /// Hash: grant id → grant record.
    pub grants: String,
    /// Sorted set: open generation ids scored by expiry.
    pub open_holds: String,
    /// Sorted set of the shard: `<account>/<generation>` scored by expiry, for the sweeper.
    pub shard_expiry: String,
}

impl AccountKeys {
    /// Keys of `account_id`.
    pub fn new(account_id: &str) -> AccountKeys {
        let prefix = shard_prefix(shard_of(account_id));
        AccountKeys {
            account: format!("{prefix}a:{account_id}"),
            grants: format!("{prefix}g:{account_id}"),
            open_holds: format!("{prefix}o:{account_id}"),
            shard_expiry: format!("{prefix}expiry"),
            prefix,
        }
    }

    /// String key of one hold: `q:{s7}:h:<account>/<generation>`.
    pub fn hold(&self, account_id: &str, generation_id: &str) -> String {
        format!("{}h:{account_id}/{generation_id}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        // Pinned: a change here would strand every stored account.
        assert_eq!(shard_of(""), 0x811c_9dc5 % SHARD_COUNT);
        assert_eq!(shard_of("acct-1"), shard_of("acct-1"));
        let mut seen = [0u32; SHARD_COUNT as usize];
        for i in 0..1600 {
            seen[shard_of(&format!("account-{i}")) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn every_key_carries_the_tag() {
        let k = AccountKeys::new("a:b");
        let tag = format!("{{s{}}}", shard_of("a:b"));
        for key in [
            &k.account,
            &k.grants,
            &k.open_holds,
            &k.shard_expiry,
            &k.hold("a:b", "g"),
        ] {
            assert!(key.contains(&tag), "{key}");
        }
        // ':' may appear in ids, '/' may not: these two holds cannot collide.
        assert_ne!(
            AccountKeys::new("a").hold("a", "b:c"),
            AccountKeys::new("a:b").hold("a:b", "c")
        );
    }
}
