//! The business rules as pure functions: catalog, costs, plan features, allocation of a cost
//! to allowance and credits, proration and billing-cycle math. Both stores call these; the Redis
//! scripts are their twin and the conformance suite keeps the two identical.

pub mod account;
pub mod allocation;
pub mod catalog;
pub mod cycle;
pub mod error;
pub mod event;
pub mod features;
pub mod hold_state;
pub mod kind;
pub mod model;
pub mod prepare;
pub mod proration;
pub mod shared_catalog;

pub use allocation::{CreditSource, GrantDraw};
pub use catalog::{Catalog, PlanSpec, Price};
pub use features::{Denial, DenialReason};
pub use kind::Kind;
pub use shared_catalog::SharedCatalog;

/// Longest id (account, generation, grant, request) accepted.
pub const MAX_ID_LEN: usize = 128;
/// Hold time to live when a Reserve asks for none.
pub const DEFAULT_HOLD_TTL_SECONDS: u32 = 300;
/// Longest time to live one Reserve or Extend may ask for.
pub const MAX_HOLD_TTL_SECONDS: u32 = 3_600;
/// Longest a hold may live in total, Extends included: the longest video job we run.
pub const MAX_HOLD_LIFETIME_SECONDS: u32 = 6 * 3_600;
/// How long a settled, released or expired hold (and an idempotency record) is remembered,
/// so that retries stay idempotent.
pub const RETENTION_SECONDS: u32 = 7 * 86_400;
/// Largest single grant. With [`MAX_LIVE_GRANTS`] it keeps credit sums below 2^53, where the
/// Lua doubles of the Redis scripts stop being exact.
pub const MAX_GRANT_UNITS: u64 = 1_000_000_000_000;
/// Live grants one account may have; every script that spends credits walks them.
pub const MAX_LIVE_GRANTS: usize = 1_000;

/// Whether `id` is 1–128 characters of `[A-Za-z0-9._:-]`. The charset keeps ids safe inside
/// Redis keys: no `{`/`}` (hash tags) and no `/` (the key separator).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(is_valid_id("acct-1.a_b:c"));
        assert!(is_valid_id(&"x".repeat(128)));
        for bad in ["", "a b", "a{b}", "a/b", "a\nb", "é", &"x".repeat(129)] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }
}
