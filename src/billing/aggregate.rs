//! What each event type adds to the aggregates. Called once per event, in the transaction that
//! inserted it, and only when the insert took (a redelivered event never gets here).

use std::collections::{HashMap, HashSet};

use tokio_postgres::Transaction;

use super::prepared::Prepared;
use super::record::{EventRecord, GrantUnits, CREDITS_EXPIRED, HOLD_REFUNDED};
use crate::events;

/// Grant row that takes lost units no grant can be named for (the hold's reserve event is
/// not in the database).
pub const UNATTRIBUTED_GRANT: &str = "(unattributed)";

const ADD_USAGE: &str = "INSERT INTO cycle_usage AS u (account_id, cycle_start, kind, model, \
     allowance_units, credit_units, settled_count) VALUES ($1, $2, $3, $4, $5, $6, 1) \
     ON CONFLICT (account_id, cycle_start, kind, model) DO UPDATE SET \
     allowance_units = u.allowance_units + EXCLUDED.allowance_units, \
     credit_units = u.credit_units + EXCLUDED.credit_units, \
     settled_count = u.settled_count + 1";

/// A refund under the refunded hold's cycle: the parts of the original charge it refunds
/// (`$5`, `$6`), and where they went: back to the allowance (`$7`) or to the refund's grant
/// (`$8`).
const ADD_REFUND: &str = "INSERT INTO cycle_usage AS u (account_id, cycle_start, kind, model, \
     refunded_allowance_units, refunded_credit_units, refund_allowance_restored_units, \
     refund_credit_grant_units, refund_count) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1) \
     ON CONFLICT (account_id, cycle_start, kind, model) DO UPDATE SET \
     refunded_allowance_units = u.refunded_allowance_units + EXCLUDED.refunded_allowance_units, \
     refunded_credit_units = u.refunded_credit_units + EXCLUDED.refunded_credit_units, \
     refund_allowance_restored_units = \
     u.refund_allowance_restored_units + EXCLUDED.refund_allowance_restored_units, \
     refund_credit_grant_units = u.refund_credit_grant_units + EXCLUDED.refund_credit_grant_units, \
     refund_count = u.refund_count + 1";

/// One statement per grant column; `$3` is added to the column, `$4`/`$5` fill source and
/// expiry when known.
fn add_to_grant(column: &str) -> String {
    format!(
        "INSERT INTO credit_grants AS g (account_id, grant_id, {column}, source, expires_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (account_id, grant_id) DO UPDATE SET {column} = g.{column} + EXCLUDED.{column}, \
         source = CASE WHEN EXCLUDED.source = '' THEN g.source ELSE EXCLUDED.source END, \
         expires_at = COALESCE(EXCLUDED.expires_at, g.expires_at)"
    )
}

const CYCLE_STARTED: &str = "INSERT INTO account_cycles \
     (account_id, cycle_start, starting_plan, current_plan, current_plan_sequence) \
     VALUES ($1, $2, $3, $3, $4) ON CONFLICT (account_id, cycle_start) DO NOTHING";

const UPGRADED: &str = "INSERT INTO account_cycles AS c \
     (account_id, cycle_start, starting_plan, current_plan, current_plan_sequence) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, cycle_start) DO UPDATE SET \
     current_plan = EXCLUDED.current_plan, current_plan_sequence = EXCLUDED.current_plan_sequence \
     WHERE c.current_plan_sequence < EXCLUDED.current_plan_sequence";

const UPGRADE_CHARGE: &str = "INSERT INTO upgrade_charges \
     (event_id, account_id, cycle_start, previous_plan, plan, charge_cents, occurred_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

const RESERVED_DRAWS: &str = "SELECT event->'grants' FROM usage_events WHERE event_id = $1";

/// Of the grants `$2`, those that could not take units back at `$3`: expired or revoked.
const UNSPENDABLE_GRANTS: &str = "SELECT grant_id FROM credit_grants \
     WHERE account_id = $1 AND grant_id = ANY($2) AND expires_at <= $3 \
     UNION SELECT grant_id FROM usage_events WHERE account_id = $1 \
     AND event_type = 'credits.revoked' AND grant_id = ANY($2) AND occurred_at <= $3";

/// Applies `r` to the aggregates.
pub async fn apply(
    tx: &Transaction<'_>,
    prepared: &mut Prepared,
    r: &EventRecord,
) -> Result<(), tokio_postgres::Error> {
    let cycle = r.usage_cycle();
    match r.event_type.as_str() {
        events::HOLD_SETTLED => {
            let s = prepared.get(tx, ADD_USAGE).await?;
            tx.execute(
                &s,
                &[
                    &r.account_id,
                    &cycle,
                    &r.kind,
                    &r.model,
                    &r.from_allowance_units,
                    &r.from_credits_units,
                ],
            )
            .await?;
            add_per_grant(tx, prepared, r, "drawn_units", &r.grants).await?;
            // A settle for less whose remainder could not all go back.
            if r.units_lost > 0 {
                let lost = lost_per_grant(tx, prepared, r).await?;
                add_per_grant(tx, prepared, r, "lost_units", &lost).await?;
            }
        }
        HOLD_REFUNDED => {
            let s = prepared.get(tx, ADD_REFUND).await?;
            tx.execute(
                &s,
                &[
                    &r.account_id,
                    &cycle,
                    &r.kind,
                    &r.model,
                    &r.from_allowance_units,
                    &r.from_credits_units,
                    &r.allowance_added_units,
                    &r.refund_credit_units(),
                ],
            )
            .await?;
            // What did not go back to the allowance is a new promotional grant without expiry
            // (no credits.granted event for it).
            let refund_grant = [GrantUnits {
                grant_id: r.grant_id.clone(),
                units: r.refund_credit_units(),
            }];
            add_grant_column(
                tx,
                prepared,
                r,
                "granted_units",
                &refund_grant,
                "promotional",
                None,
            )
            .await?;
        }
        events::HOLD_RELEASED | events::HOLD_EXPIRED => {
            add_per_grant(tx, prepared, r, "returned_units", &r.grants).await?;
            if r.units_lost > 0 {
                let lost = lost_per_grant(tx, prepared, r).await?;
                add_per_grant(tx, prepared, r, "lost_units", &lost).await?;
            }
        }
        events::CREDITS_GRANTED => {
            add_one(tx, prepared, r, "granted_units").await?;
        }
        events::CREDITS_REVOKED => {
            add_one(tx, prepared, r, "revoked_units").await?;
        }
        CREDITS_EXPIRED => {
            add_one(tx, prepared, r, "expired_units").await?;
        }
        events::PLAN_UPGRADED => {
            let s = prepared.get(tx, UPGRADED).await?;
            tx.execute(
                &s,
                &[
                    &r.account_id,
                    &cycle,
                    &r.previous_plan,
                    &r.plan,
                    &r.sequence,
                ],
            )
            .await?;
            let s = prepared.get(tx, UPGRADE_CHARGE).await?;
            tx.execute(
                &s,
                &[
                    &r.event_id,
                    &r.account_id,
                    &cycle,
                    &r.previous_plan,
                    &r.plan,
                    &r.prorated_charge_cents,
                    &r.occurred_at,
                ],
            )
            .await?;
        }
        events::PLAN_CHANGED | events::CYCLE_RENEWED => {
            // A plan started, or a new cycle began (with a scheduled change applied).
            if let Some(start) = r.cycle_start {
                let s = prepared.get(tx, CYCLE_STARTED).await?;
                tx.execute(&s, &[&r.account_id, &start, &r.plan, &r.sequence])
                    .await?;
            }
        }
        // Reserved, extended, downgrade scheduled, thresholds, and types newer than this
        // reader: kept in usage_events, no aggregate to move.
        _ => {}
    }
    Ok(())
}

/// credits.granted/revoked/expired: the event's units on its grant, with its source and (when
/// the event names it) expiry.
async fn add_one(
    tx: &Transaction<'_>,
    prepared: &mut Prepared,
    r: &EventRecord,
    column: &'static str,
) -> Result<(), tokio_postgres::Error> {
    let one = [GrantUnits {
        grant_id: r.grant_id.clone(),
        units: r.units,
    }];
    add_grant_column(tx, prepared, r, column, &one, &r.source, r.expires_at).await
}

async fn add_per_grant(
    tx: &Transaction<'_>,
    prepared: &mut Prepared,
    r: &EventRecord,
    column: &'static str,
    grants: &[GrantUnits],
) -> Result<(), tokio_postgres::Error> {
    add_grant_column(tx, prepared, r, column, grants, "", None).await
}

async fn add_grant_column(
    tx: &Transaction<'_>,
    prepared: &mut Prepared,
    r: &EventRecord,
    column: &'static str,
    grants: &[GrantUnits],
    source: &str,
    expires_at: Option<time::OffsetDateTime>,
) -> Result<(), tokio_postgres::Error> {
    // Most events draw on no grant: no statement to build or look up for them.
    if grants.iter().all(|g| g.units == 0) {
        return Ok(());
    }
    let s = prepared.get(tx, &add_to_grant(column)).await?;
    for g in grants.iter().filter(|g| g.units != 0) {
        tx.execute(
            &s,
            &[&r.account_id, &g.grant_id, &g.units, &source, &expires_at],
        )
        .await?;
    }
    Ok(())
}

/// Which grants the lost units of a hold.* event came from. What the hold held on each grant
/// (its reserve event) minus what the event lists for it (given back by a release or expiry,
/// charged by a settle) is what could have been lost there; grants that were expired or revoked
/// by then take the loss first. Units no grant can be named for go to [`UNATTRIBUTED_GRANT`].
async fn lost_per_grant(
    tx: &Transaction<'_>,
    prepared: &mut Prepared,
    r: &EventRecord,
) -> Result<Vec<GrantUnits>, tokio_postgres::Error> {
    let mut held: Vec<(String, i64)> = Vec::new();
    if let Some((stem, _)) = r.event_id.rsplit_once(':') {
        let s = prepared.get(tx, RESERVED_DRAWS).await?;
        let reserved_id = format!("{stem}:reserved");
        if let Some(row) = tx.query_opt(&s, &[&reserved_id]).await? {
            let draws: Option<serde_json::Value> = row.get(0);
            for d in draws
                .as_ref()
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                if let (Some(id), Some(units)) = (d["grant_id"].as_str(), d["units"].as_i64()) {
                    held.push((id.to_string(), units));
                }
            }
        }
    }
    let listed: HashMap<&str, i64> = r
        .grants
        .iter()
        .map(|g| (g.grant_id.as_str(), g.units))
        .collect();
    let mut candidates: Vec<(String, i64)> = held
        .into_iter()
        .map(|(grant_id, units)| {
            let missing = units - listed.get(grant_id.as_str()).copied().unwrap_or(0);
            (grant_id, missing)
        })
        .filter(|(_, missing)| *missing > 0)
        .collect();
    if candidates.len() > 1 {
        let ids: Vec<&str> = candidates.iter().map(|(id, _)| id.as_str()).collect();
        let s = prepared.get(tx, UNSPENDABLE_GRANTS).await?;
        let gone: HashSet<String> = tx
            .query(&s, &[&r.account_id, &ids, &r.occurred_at])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        // Stable: the reserve's order within each group.
        candidates.sort_by_key(|(id, _)| !gone.contains(id));
    }
    let mut left = r.units_lost;
    let mut lost = Vec::new();
    for (grant_id, missing) in candidates {
        let units = missing.min(left);
        if units > 0 {
            left -= units;
            lost.push(GrantUnits { grant_id, units });
        }
    }
    if left > 0 {
        lost.push(GrantUnits {
            grant_id: UNATTRIBUTED_GRANT.into(),
            units: left,
        });
    }
    Ok(lost)
}
