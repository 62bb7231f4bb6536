//! Which funds pay for a generation: the cycle's allowance first, then credit grants in burn
//! order; and, when a job is settled for less than it held, which part goes back.

use std::cmp::Ordering;

/// Where a credit grant came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CreditSource {
    /// Sign-up bonus, campaigns: burned before purchased credits.
    Promotional,
    /// Bought packs.
    Purchased,
}

impl CreditSource {
    /// The stable id used in the store and events.
    pub fn as_str(self) -> &'static str {
        match self {
            CreditSource::Promotional => "promotional",
            CreditSource::Purchased => "purchased",
        }
    }

    /// Parses the stable id back.
    pub fn parse(s: &str) -> Option<CreditSource> {
        match s {
            "promotional" => Some(CreditSource::Promotional),
            "purchased" => Some(CreditSource::Purchased),
            _ => None,
        }
    }
}

/// Units a hold drew from one grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantDraw {
    pub grant_id: String,
    pub units: u64,
}

/// What decides the order in which grants are spent.
#[derive(Debug, Clone, Copy)]
pub struct BurnKey<'a> {
    pub expires_at_ms: Option<i64>,
    pub source: CreditSource,
    pub created_at_ms: i64,
    pub grant_id: &'a str,
}

/// Burn order: earliest expiry first (no expiry last), then promotional before purchased, then
/// the oldest grant, then grant id.
pub fn burn_order(a: &BurnKey<'_>, b: &BurnKey<'_>) -> Ordering {
    let expiry = |k: &BurnKey<'_>| k.expires_at_ms.unwrap_or(i64::MAX);
    expiry(a)
        .cmp(&expiry(b))
        .then(a.source.cmp(&b.source))
        .then(a.created_at_ms.cmp(&b.created_at_ms))
        .then(a.grant_id.cmp(b.grant_id))
}

/// How a cost is paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub from_allowance: u64,
    /// Grants drawn from, in burn order.
    pub draws: Vec<GrantDraw>,
}

impl Allocation {
    /// Units drawn from credits.
    pub fn from_credits(&self) -> u64 {
        self.draws.iter().map(|d| d.units).sum()
    }
}

/// Funds do not cover a cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    pub needed: u64,
    pub available: u64,
}

/// Pays `cost_units` from the allowance first, then from `spendable` grants (id and spendable
/// units, already in burn order and without expired grants).
pub fn allocate(
    cost_units: u64,
    allowance_available: u64,
    spendable: &[(&str, u64)],
) -> Result<Allocation, Shortfall> {
    let credits: u64 = spendable.iter().map(|(_, units)| units).sum();
    let available = allowance_available + credits;
    if cost_units > available {
        return Err(Shortfall {
            needed: cost_units,
            available,
        });
    }
    let from_allowance = cost_units.min(allowance_available);
    let mut rest = cost_units - from_allowance;
    let mut draws = Vec::new();
    for (grant_id, units) in spendable {
        if rest == 0 {
            break;
        }
        let take = rest.min(*units);
        if take > 0 {
            draws.push(GrantDraw {
                grant_id: (*grant_id).to_string(),
                units: take,
            });
            rest -= take;
        }
    }
    Ok(Allocation {
        from_allowance,
        draws,
    })
}

/// A hold's funds cut in two at settle time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleSplit {
    /// Charged: the allowance first (what the hold drew, then allowance free at the charge),
    /// then the draws in burn order.
    pub charged: Allocation,
    /// Given back: what the hold drew and the charge does not take.
    pub returned: Allocation,
}

/// Splits a hold's funds when `charge_units` (≤ the hold) is charged, anew at the moment of
/// the charge (DESIGN.md §9: credits only after the allowance, also at the charge): first what
/// the hold drew from the allowance, then up to `allowance_free_units` (allowance free now in
/// the hold's own cycle, 0 in another), and credits only for the rest, in burn order from what
/// the hold drew. Credits the charge does not take go back (or are lost, when their grant
/// expired or was revoked while held: the caller decides which).
pub fn split_charge(
    charge_units: u64,
    held: &Allocation,
    allowance_free_units: u64,
) -> SettleSplit {
    let from_held_allowance = charge_units.min(held.from_allowance);
    let mut rest = charge_units - from_held_allowance;
    let from_free_allowance = rest.min(allowance_free_units);
    rest -= from_free_allowance;
    let mut charged = Vec::new();
    let mut returned = Vec::new();
    for draw in &held.draws {
        let take = rest.min(draw.units);
        rest -= take;
        if take > 0 {
            charged.push(GrantDraw {
                grant_id: draw.grant_id.clone(),
                units: take,
            });
        }
        if draw.units > take {
            returned.push(GrantDraw {
                grant_id: draw.grant_id.clone(),
                units: draw.units - take,
            });
        }
    }
    assert_eq!(rest, 0, "charge {charge_units} exceeds the hold");
    SettleSplit {
        charged: Allocation {
            from_allowance: from_held_allowance + from_free_allowance,
            draws: charged,
        },
        returned: Allocation {
            from_allowance: held.from_allowance - from_held_allowance,
            draws: returned,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(id: &str, units: u64) -> GrantDraw {
        GrantDraw {
            grant_id: id.into(),
            units,
        }
    }

    #[test]
    fn burn_order_is_expiry_source_age_id() {
        let mut keys = [
            BurnKey {
                expires_at_ms: None,
                source: CreditSource::Promotional,
                created_at_ms: 1,
                grant_id: "no-expiry",
            },
            BurnKey {
                expires_at_ms: Some(50),
                source: CreditSource::Purchased,
                created_at_ms: 1,
                grant_id: "late-bought",
            },
            BurnKey {
                expires_at_ms: Some(50),
                source: CreditSource::Promotional,
                created_at_ms: 9,
                grant_id: "late-promo-new",
            },
            BurnKey {
                expires_at_ms: Some(50),
                source: CreditSource::Promotional,
                created_at_ms: 2,
                grant_id: "late-promo-b",
            },
            BurnKey {
                expires_at_ms: Some(50),
                source: CreditSource::Promotional,
                created_at_ms: 2,
                grant_id: "late-promo-a",
            },
            BurnKey {
                expires_at_ms: Some(10),
                source: CreditSource::Purchased,
                created_at_ms: 5,
                grant_id: "early",
            },
        ];
        keys.sort_by(burn_order);
        let ids: Vec<_> = keys.iter().map(|k| k.grant_id).collect();
        assert_eq!(
            ids,
            [
                "early",
                "late-promo-a",
                "late-promo-b",
                "late-promo-new",
                "late-bought",
                "no-expiry"
            ]
        );
    }

    #[test]
    fn allowance_first_then_grants_in_order() {
        let a = allocate(30, 10, &[("g1", 5), ("g2", 10), ("g3", 100)]).unwrap();
        assert_eq!(a.from_allowance, 10);
        assert_eq!(a.draws, vec![draw("g1", 5), draw("g2", 10), draw("g3", 5)]);
        assert_eq!(a.from_credits(), 20);
        let a = allocate(4, 10, &[("g1", 5)]).unwrap();
        assert_eq!((a.from_allowance, a.draws.len()), (4, 0));
        // Empty grants are skipped, not drawn with zero units.
        let a = allocate(3, 0, &[("empty", 0), ("g", 5)]).unwrap();
        assert_eq!(a.draws, vec![draw("g", 3)]);
    }

    #[test]
    fn shortfall_reports_needed_and_available() {
        assert_eq!(
            allocate(30, 10, &[("g1", 5)]),
            Err(Shortfall {
                needed: 30,
                available: 15
            })
        );
        assert!(allocate(15, 10, &[("g1", 5)]).is_ok());
    }

    #[test]
    fn partial_settle_returns_credits_first() {
        let held = Allocation {
            from_allowance: 10,
            draws: vec![draw("g1", 5), draw("g2", 5)],
        };
        let s = split_charge(12, &held, 0);
        assert_eq!(s.charged.from_allowance, 10);
        assert_eq!(s.charged.draws, vec![draw("g1", 2)]);
        assert_eq!(s.returned.from_allowance, 0);
        assert_eq!(s.returned.draws, vec![draw("g1", 3), draw("g2", 5)]);
        let s = split_charge(4, &held, 0);
        assert_eq!(
            (s.charged.from_allowance, s.returned.from_allowance),
            (4, 6)
        );
        assert_eq!(s.returned.from_credits(), 10);
        let s = split_charge(20, &held, 0);
        assert_eq!(
            s.returned,
            Allocation {
                from_allowance: 0,
                draws: vec![]
            }
        );
        let s = split_charge(0, &held, 0);
        assert_eq!(s.returned, held);
    }

    #[test]
    fn free_allowance_pays_before_the_credits_the_hold_drew() {
        // The case: 200 from the allowance + 200 credits held, 4,800 free at settle.
        let held = Allocation {
            from_allowance: 200,
            draws: vec![draw("bought", 200)],
        };
        let s = split_charge(400, &held, 4_800);
        assert_eq!(s.charged.from_allowance, 400);
        assert!(s.charged.draws.is_empty());
        assert_eq!(s.returned.draws, vec![draw("bought", 200)]);
        assert_eq!(s.returned.from_allowance, 0);
        // Less free than needed: the rest from credits, in burn order.
        let held = Allocation {
            from_allowance: 10,
            draws: vec![draw("g1", 5), draw("g2", 5)],
        };
        let s = split_charge(20, &held, 3);
        assert_eq!(s.charged.from_allowance, 13);
        assert_eq!(s.charged.draws, vec![draw("g1", 5), draw("g2", 2)]);
        assert_eq!(s.returned.draws, vec![draw("g2", 3)]);
        // A charge within what the hold drew from the allowance takes nothing free.
        let s = split_charge(8, &held, 100);
        assert_eq!(
            (s.charged.from_allowance, s.returned.from_allowance),
            (8, 2)
        );
    }
}
