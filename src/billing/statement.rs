//! What an account used and owes for a cycle: the subscription price of the plan the cycle
//! started with, prorated upgrade charges, usage by kind and model split by allowance and
//! credits, refunds (the parts of the charge they refund, and what went back to the allowance
//! or became a refund grant), and credits remaining per grant. A statement of an account with
//! events billing has not received says which ([`Statement::missing_seq`]): its sums may be
//! short of what the ledger charged.

use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio_postgres::Client;

use super::record::NO_CYCLE;
use super::sequence::{self, Gap};
use super::BillingError;
use crate::api::event_json::rfc3339_ms;
use crate::ledger::Catalog;
use crate::text_table::table;

/// One upgrade of the cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeLine {
    pub occurred_at: OffsetDateTime,
    pub previous_plan: String,
    pub plan: String,
    pub charge_cents: i64,
}

/// Usage of one kind and model in the cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageLine {
    pub kind: String,
    pub model: String,
    pub allowance_units: i64,
    pub credit_units: i64,
    pub settled_count: i64,
    pub refunded_allowance_units: i64,
    pub refunded_credit_units: i64,
    /// Of the units refunded: back to the cycle's allowance, and as credits of refund grants.
    pub refund_allowance_restored_units: i64,
    pub refund_credit_grant_units: i64,
    pub refund_count: i64,
}

impl UsageLine {
    /// Allowance charged net of refunds.
    pub fn net_allowance_units(&self) -> i64 {
        self.allowance_units - self.refunded_allowance_units
    }

    /// Credits charged net of refunds.
    pub fn net_credit_units(&self) -> i64 {
        self.credit_units - self.refunded_credit_units
    }
}

/// Credit movements of one grant, over its whole life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantLine {
    pub grant_id: String,
    pub source: String,
    pub expires_at: Option<OffsetDateTime>,
    pub granted_units: i64,
    pub drawn_units: i64,
    pub returned_units: i64,
    pub expired_units: i64,
    pub revoked_units: i64,
    pub lost_units: i64,
    /// granted - drawn - expired - revoked - lost (units still held by open holds included).
    pub remaining_units: i64,
}

/// An account's statement for one cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub account_id: String,
    /// [`NO_CYCLE`] for usage without a plan.
    pub cycle_start: OffsetDateTime,
    /// The plan the cycle started with (its price is the subscription's), and the plan now.
    pub starting_plan: String,
    pub current_plan: String,
    pub subscription_price_cents: i64,
    pub upgrades: Vec<UpgradeLine>,
    pub upgrade_charges_cents: i64,
    pub usage: Vec<UsageLine>,
    pub grants: Vec<GrantLine>,
    /// The account's sequence numbers not received (in any cycle: a missing event's cycle is
    /// not known), oldest first. Empty when billing has every event of the account up to the
    /// newest it received.
    pub missing_seq: Vec<Gap>,
}

impl Statement {
    /// Subscription price plus upgrade charges.
    pub fn total_cents(&self) -> i64 {
        self.subscription_price_cents + self.upgrade_charges_cents
    }

    /// Whether every event of the account has been received (no sequence gap).
    pub fn is_complete(&self) -> bool {
        self.missing_seq.is_empty()
    }

    /// Reads the statement of `account_id` for the cycle starting at `cycle_start` (default:
    /// the account's latest cycle), pricing plans from `catalog`.
    pub async fn load(
        client: &Client,
        catalog: &Catalog,
        account_id: &str,
        cycle_start: Option<OffsetDateTime>,
    ) -> Result<Statement, BillingError> {
        let cycle_start = match cycle_start {
            Some(c) => c,
            None => {
                let row = client
                    .query_one(
                        "SELECT max(c) FROM (SELECT cycle_start AS c FROM account_cycles \
                         WHERE account_id = $1 UNION ALL SELECT cycle_start FROM cycle_usage \
                         WHERE account_id = $1) cycles",
                        &[&account_id],
                    )
                    .await?;
                row.get::<_, Option<OffsetDateTime>>(0).ok_or_else(|| {
                    BillingError::Statement(format!("no usage recorded for account `{account_id}`"))
                })?
            }
        };
        let plans = client
            .query_opt(
                "SELECT starting_plan, current_plan FROM account_cycles \
                 WHERE account_id = $1 AND cycle_start = $2",
                &[&account_id, &cycle_start],
            )
            .await?;
        let (starting_plan, current_plan) = match plans {
            Some(row) => (row.get(0), row.get(1)),
            None if cycle_start == NO_CYCLE => ("none".to_string(), "none".to_string()),
            // The cycle's start was not received (retention, or a consumer started later).
            None => (String::new(), String::new()),
        };
        let subscription_price_cents = catalog
            .plan(&starting_plan)
            .map_or(0, |p| p.price_cents as i64);
        let upgrades: Vec<UpgradeLine> = client
            .query(
                "SELECT occurred_at, previous_plan, plan, charge_cents FROM upgrade_charges \
                 WHERE account_id = $1 AND cycle_start = $2 ORDER BY occurred_at, event_id",
                &[&account_id, &cycle_start],
            )
            .await?
            .iter()
            .map(|r| UpgradeLine {
                occurred_at: r.get(0),
                previous_plan: r.get(1),
                plan: r.get(2),
                charge_cents: r.get(3),
            })
            .collect();
        let usage = client
            .query(
                "SELECT kind, model, allowance_units, credit_units, settled_count, \
                 refunded_allowance_units, refunded_credit_units, refund_count, \
                 refund_allowance_restored_units, refund_credit_grant_units FROM cycle_usage \
                 WHERE account_id = $1 AND cycle_start = $2 ORDER BY kind, model",
                &[&account_id, &cycle_start],
            )
            .await?
            .iter()
            .map(|r| UsageLine {
                kind: r.get(0),
                model: r.get(1),
                allowance_units: r.get(2),
                credit_units: r.get(3),
                settled_count: r.get(4),
                refunded_allowance_units: r.get(5),
                refunded_credit_units: r.get(6),
                refund_count: r.get(7),
                refund_allowance_restored_units: r.get(8),
                refund_credit_grant_units: r.get(9),
            })
            .collect();
        let grants = client
            .query(
                "SELECT grant_id, source, expires_at, granted_units, drawn_units, returned_units, \
                 expired_units, revoked_units, lost_units FROM credit_grants \
                 WHERE account_id = $1 ORDER BY grant_id",
                &[&account_id],
            )
            .await?
            .iter()
            .map(|r| {
                let (granted, drawn, expired, revoked, lost): (i64, i64, i64, i64, i64) =
                    (r.get(3), r.get(4), r.get(6), r.get(7), r.get(8));
                GrantLine {
                    grant_id: r.get(0),
                    source: r.get(1),
                    expires_at: r.get(2),
                    granted_units: granted,
                    drawn_units: drawn,
                    returned_units: r.get(5),
                    expired_units: expired,
                    revoked_units: revoked,
                    lost_units: lost,
                    remaining_units: (granted - drawn - expired - revoked - lost).max(0),
                }
            })
            .collect();
        let missing_seq = sequence::missing(client, account_id).await?;
        Ok(Statement {
            account_id: account_id.to_string(),
            cycle_start,
            starting_plan,
            current_plan,
            subscription_price_cents,
            upgrade_charges_cents: upgrades.iter().map(|u| u.charge_cents).sum(),
            upgrades,
            usage,
            grants,
            missing_seq,
        })
    }

    /// The statement as one JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "account_id": self.account_id,
            "complete": self.is_complete(),
            "missing_seq": self.missing_seq.iter()
                .map(|g| [g.first_seq, g.last_seq])
                .collect::<Vec<_>>(),
            "cycle_start": cycle_json(self.cycle_start),
            "starting_plan": self.starting_plan,
            "current_plan": self.current_plan,
            "subscription_price_cents": self.subscription_price_cents,
            "upgrades": self.upgrades.iter().map(|u| json!({
                "time": rfc3339_ms(u.occurred_at),
                "previous_plan": u.previous_plan,
                "plan": u.plan,
                "charge_cents": u.charge_cents,
            })).collect::<Vec<_>>(),
            "upgrade_charges_cents": self.upgrade_charges_cents,
            "total_cents": self.total_cents(),
            "usage": self.usage.iter().map(|u| json!({
                "kind": u.kind,
                "model": u.model,
                "allowance_units": u.allowance_units,
                "credit_units": u.credit_units,
                "settled_count": u.settled_count,
                "refunded_allowance_units": u.refunded_allowance_units,
                "refunded_credit_units": u.refunded_credit_units,
                "refund_count": u.refund_count,
                "refund_allowance_restored_units": u.refund_allowance_restored_units,
                "refund_credit_grant_units": u.refund_credit_grant_units,
                "net_allowance_units": u.net_allowance_units(),
                "net_credit_units": u.net_credit_units(),
            })).collect::<Vec<_>>(),
            "credits": self.grants.iter().map(|g| json!({
                "grant_id": g.grant_id,
                "source": g.source,
                "expires_at": g.expires_at.map(rfc3339_ms),
                "granted_units": g.granted_units,
                "drawn_units": g.drawn_units,
                "returned_units": g.returned_units,
                "expired_units": g.expired_units,
                "revoked_units": g.revoked_units,
                "lost_units": g.lost_units,
                "remaining_units": g.remaining_units,
            })).collect::<Vec<_>>(),
        })
    }

    /// The statement as text tables.
    pub fn to_text(&self) -> String {
        let cycle = cycle_json(self.cycle_start);
        let plan = if self.starting_plan.is_empty() {
            "(cycle start not received)".to_string()
        } else {
            self.starting_plan.clone()
        };
        let mut out = format!(
            "account {}  cycle {}\nplan {plan} (now {})\n\n",
            self.account_id,
            cycle.as_str().unwrap_or("none (no plan)"),
            self.current_plan
        );
        if !self.is_complete() {
            out += &format!(
                "INCOMPLETE: events of this account not received, sequence {}; the sums below \
                 may be short of what the ledger charged\n\n",
                missing_text(&self.missing_seq)
            );
        }
        out += &format!(
            "subscription            {}\n",
            dollars(self.subscription_price_cents)
        );
        for u in &self.upgrades {
            out += &format!(
                "upgrade {} -> {} on {}  {}\n",
                u.previous_plan,
                u.plan,
                rfc3339_ms(u.occurred_at),
                dollars(u.charge_cents)
            );
        }
        out += &format!(
            "total                   {}\n\nusage\n",
            dollars(self.total_cents())
        );
        out += &table(
            &[
                "kind",
                "model",
                "count",
                "allowance",
                "credits",
                "refunds",
                "ref.allow",
                "ref.cred",
                "to allow.",
                "to grant",
                "net allow.",
                "net cred.",
            ],
            self.usage.iter().map(|u| {
                vec![
                    u.kind.clone(),
                    u.model.clone(),
                    u.settled_count.to_string(),
                    u.allowance_units.to_string(),
                    u.credit_units.to_string(),
                    u.refund_count.to_string(),
                    u.refunded_allowance_units.to_string(),
                    u.refunded_credit_units.to_string(),
                    u.refund_allowance_restored_units.to_string(),
                    u.refund_credit_grant_units.to_string(),
                    u.net_allowance_units().to_string(),
                    u.net_credit_units().to_string(),
                ]
            }),
        );
        out += "\ncredits\n";
        out += &table(
            &[
                "grant",
                "source",
                "granted",
                "drawn",
                "expired",
                "revoked",
                "lost",
                "remaining",
            ],
            self.grants.iter().map(|g| {
                vec![
                    g.grant_id.clone(),
                    g.source.clone(),
                    g.granted_units.to_string(),
                    g.drawn_units.to_string(),
                    g.expired_units.to_string(),
                    g.revoked_units.to_string(),
                    g.lost_units.to_string(),
                    g.remaining_units.to_string(),
                ]
            }),
        );
        out
    }
}

fn cycle_json(cycle_start: OffsetDateTime) -> Value {
    if cycle_start == NO_CYCLE {
        Value::Null
    } else {
        Value::String(rfc3339_ms(cycle_start))
    }
}

/// `1-4, 9, 12-13`.
fn missing_text(gaps: &[Gap]) -> String {
    gaps.iter()
        .map(|g| {
            if g.first_seq == g.last_seq {
                g.first_seq.to_string()
            } else {
                format!("{}-{}", g.first_seq, g.last_seq)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `1234` cents → `$12.34`.
pub fn dollars(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}${}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_in_dollars() {
        assert_eq!(dollars(1234), "$12.34");
        assert_eq!(dollars(5), "$0.05");
        assert_eq!(dollars(-250), "-$2.50");
    }

    #[test]
    fn missing_numbers_as_ranges() {
        let gap = |first_seq, last_seq| Gap {
            first_seq,
            last_seq,
        };
        assert_eq!(
            missing_text(&[gap(1, 4), gap(9, 9), gap(12, 13)]),
            "1-4, 9, 12-13"
        );
    }
}
