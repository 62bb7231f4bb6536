//! Proration of an upgrade over what is left of the billing cycle.

/// `floor(delta * remaining_s / cycle_s)`, in whole seconds as DESIGN.md §2 states. Used for both
/// the allowance added and the cents charged by an upgrade. Zero when the cycle is over.
pub fn prorate(delta: u64, remaining_ms: i64, cycle_ms: i64) -> u64 {
    let remaining_s = remaining_ms.max(0) / 1000;
    let cycle_s = cycle_ms / 1000;
    if cycle_s <= 0 {
        return 0;
    }
    let remaining_s = remaining_s.min(cycle_s);
    (u128::from(delta) * remaining_s as u128 / cycle_s as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 86_400_000;

    #[test]
    fn independent_to_hollywood_with_18_of_30_days_left() {
        assert_eq!(prorate(5000 - 2500, 18 * DAY_MS, 30 * DAY_MS), 1500);
        assert_eq!(prorate(5000 - 2500, 18 * DAY_MS, 30 * DAY_MS), 1500);
    }

    #[test]
    fn floors_and_bounds() {
        assert_eq!(prorate(1000, 1, 30 * DAY_MS), 0);
        assert_eq!(prorate(1000, 30 * DAY_MS, 30 * DAY_MS), 1000);
        assert_eq!(prorate(1000, -5, 30 * DAY_MS), 0);
        assert_eq!(prorate(1000, 31 * DAY_MS, 30 * DAY_MS), 1000);
        // 1000 * 1 / 3 = 333.33..
        assert_eq!(prorate(1000, 10 * DAY_MS, 30 * DAY_MS), 333);
        assert_eq!(prorate(7, 999, 30 * DAY_MS), 0);
    }
}
