//! An event checked and mapped to the typed columns of `usage_events`, or the reason it cannot
//! be taken in (it then goes to the dead-letter table).

use serde_json::Value;
use time::OffsetDateTime;

use crate::api::event_json::{kind_name, timestamp_time, usage_event_json};
use crate::events;
use crate::pb;

/// The second-version types, as the ledger names them: `hold.refunded` (a settled
/// generation's charge given back, negative usage), `credits.expired` (units a grant lost unspent
/// when it expired), `usage.threshold` (informational).
pub use crate::events::{CREDITS_EXPIRED, HOLD_REFUNDED};

/// The cycle under which an account without a plan (no cycle) is kept.
pub const NO_CYCLE: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

/// One grant's share of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantUnits {
    pub grant_id: String,
    pub units: i64,
}

/// An event ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub event_id: String,
    pub event_type: String,
    pub account_id: String,
    pub occurred_at: OffsetDateTime,
    pub sequence: i64,
    pub generation_id: String,
    /// Short name (`video`, ...); empty when the type has none.
    pub kind: String,
    pub model: String,
    pub quantity: i64,
    pub units: i64,
    pub from_allowance_units: i64,
    pub from_credits_units: i64,
    pub units_lost: i64,
    /// hold.refunded: units that went back to the current cycle's allowance (plan.*,
    /// cycle.renewed: allowance added).
    pub allowance_added_units: i64,
    /// usage.threshold: the percent of the cycle's allowance reached.
    pub threshold_percent: i32,
    pub grants: Vec<GrantUnits>,
    pub grant_id: String,
    pub source: String,
    pub expires_at: Option<OffsetDateTime>,
    pub refund_id: String,
    pub plan: String,
    pub previous_plan: String,
    pub cycle_start: Option<OffsetDateTime>,
    pub prorated_charge_cents: i64,
    /// The whole event, as received.
    pub event: Value,
}

impl EventRecord {
    /// The cycle usage is counted under: the event's, or [`NO_CYCLE`].
    pub fn usage_cycle(&self) -> OffsetDateTime {
        self.cycle_start.unwrap_or(NO_CYCLE)
    }

    /// hold.refunded: the units that became credits of the refund's new grant (what did not
    /// go back to the allowance).
    pub fn refund_credit_units(&self) -> i64 {
        self.units - self.allowance_added_units
    }
}

/// Units as a database integer; amounts beyond `i64` are not real usage.
fn amount(field: &str, value: u64) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| format!("{field} {value} is out of range"))
}

/// Checks `e` and maps it; the error is the dead-letter reason.
pub fn parse(e: &pb::UsageEvent) -> Result<EventRecord, String> {
    if e.id.is_empty() {
        return Err("no event id".into());
    }
    if e.r#type.is_empty() {
        return Err("no event type".into());
    }
    if e.account_id.is_empty() {
        return Err("no account id".into());
    }
    let occurred_at = timestamp_time(e.time.as_ref()).ok_or("no time, or a time out of range")?;
    let grants = e
        .grants
        .iter()
        .map(|d| {
            Ok(GrantUnits {
                grant_id: d.grant_id.clone(),
                units: amount("grant draw", d.units)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let record = EventRecord {
        event_id: e.id.clone(),
        event_type: e.r#type.clone(),
        account_id: e.account_id.clone(),
        occurred_at,
        sequence: amount("sequence", e.sequence)?,
        generation_id: e.generation_id.clone(),
        kind: kind_name(e),
        model: e.model.clone(),
        quantity: i64::from(e.quantity),
        units: amount("units", e.units)?,
        from_allowance_units: amount("from_allowance", e.from_allowance)?,
        from_credits_units: amount("from_credits", e.from_credits)?,
        units_lost: amount("units_lost", e.units_lost)?,
        allowance_added_units: amount("allowance_added", e.allowance_added)?,
        threshold_percent: i32::try_from(e.threshold_percent)
            .map_err(|_| format!("threshold_percent {} is out of range", e.threshold_percent))?,
        grants,
        grant_id: e.grant_id.clone(),
        source: e.source.clone(),
        expires_at: timestamp_time(e.expires_at.as_ref()),
        refund_id: e.refund_id.clone(),
        plan: e.plan.clone(),
        previous_plan: e.previous_plan.clone(),
        cycle_start: timestamp_time(e.cycle_start.as_ref()),
        prorated_charge_cents: amount("prorated_charge_cents", e.prorated_charge_cents)?,
        event: usage_event_json(e),
    };
    check(&record)?;
    Ok(record)
}

/// The type-specific rules whose violation would corrupt the aggregates.
fn check(r: &EventRecord) -> Result<(), String> {
    let t = r.event_type.as_str();
    let drawn: i64 = r.grants.iter().map(|g| g.units).sum();
    let split = || {
        if r.from_allowance_units + r.from_credits_units != r.units {
            return Err(format!(
                "{t}: from_allowance {} + from_credits {} is not units {}",
                r.from_allowance_units, r.from_credits_units, r.units
            ));
        }
        Ok(())
    };
    let usage = || {
        if r.kind.is_empty() || r.kind.starts_with("unknown_") {
            return Err(format!("{t} without a known kind"));
        }
        if r.generation_id.is_empty() {
            return Err(format!("{t} without a generation id"));
        }
        Ok(())
    };
    match t {
        events::HOLD_SETTLED => {
            usage()?;
            split()?;
            if drawn != r.from_credits_units {
                return Err(format!(
                    "{t}: grant draws add up to {drawn}, from_credits is {}",
                    r.from_credits_units
                ));
            }
        }
        HOLD_REFUNDED => {
            usage()?;
            // The parts of the original charge being refunded.
            split()?;
            if r.refund_id.is_empty() {
                return Err(format!("{t} without a refund id"));
            }
            if r.allowance_added_units > r.from_allowance_units {
                return Err(format!(
                    "{t}: allowance_added {} above from_allowance {}",
                    r.allowance_added_units, r.from_allowance_units
                ));
            }
            // The rest went to one new grant, named in grant_id and as the one draw.
            let to_credits = r.refund_credit_units();
            if to_credits > 0 && r.grant_id.is_empty() {
                return Err(format!(
                    "{t}: {to_credits} units as credits without a grant id"
                ));
            }
            if drawn != to_credits || r.grants.iter().any(|g| g.grant_id != r.grant_id) {
                return Err(format!(
                    "{t}: the refund grant `{}` should be the one draw of units - \
                     allowance_added = {to_credits}, the draws add up to {drawn}",
                    r.grant_id
                ));
            }
        }
        events::HOLD_RELEASED | events::HOLD_EXPIRED => {
            // What went back, and what could not: never more than the hold's cost.
            if drawn != r.from_credits_units {
                return Err(format!(
                    "{t}: grant returns add up to {drawn}, from_credits is {}",
                    r.from_credits_units
                ));
            }
            let accounted = r.from_allowance_units + r.from_credits_units + r.units_lost;
            if accounted > r.units {
                return Err(format!(
                    "{t}: from_allowance {} + from_credits {} + units_lost {} is above units {}",
                    r.from_allowance_units, r.from_credits_units, r.units_lost, r.units
                ));
            }
        }
        events::CREDITS_GRANTED | events::CREDITS_REVOKED | CREDITS_EXPIRED
            if r.grant_id.is_empty() =>
        {
            return Err(format!("{t} without a grant id"));
        }
        events::PLAN_UPGRADED => {
            if r.cycle_start.is_none() {
                return Err(format!("{t} without a cycle start"));
            }
            if r.plan.is_empty() {
                return Err(format!("{t} without a plan"));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Timestamp;

    fn settled() -> pb::UsageEvent {
        pb::UsageEvent {
            id: "a/g@1:settled".into(),
            r#type: events::HOLD_SETTLED.into(),
            account_id: "a".into(),
            time: Some(Timestamp {
                seconds: 1_768_435_200,
                nanos: 0,
            }),
            sequence: 3,
            generation_id: "g".into(),
            kind: pb::GenerationKind::Video as i32,
            model: "pro".into(),
            units: 60,
            from_allowance: 40,
            from_credits: 20,
            grants: vec![pb::GrantDraw {
                grant_id: "promo".into(),
                units: 20,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_settled_event_maps_to_its_columns() {
        let r = parse(&settled()).unwrap();
        assert_eq!(r.kind, "video");
        assert_eq!((r.from_allowance_units, r.from_credits_units), (40, 20));
        assert_eq!(r.usage_cycle(), NO_CYCLE);
        assert_eq!(r.event["model"], "pro");
    }

    #[test]
    fn broken_events_say_why() {
        let mut e = settled();
        e.from_credits = 10;
        assert!(parse(&e).unwrap_err().contains("is not units 60"));
        let mut e = settled();
        e.kind = 0;
        assert_eq!(parse(&e).unwrap_err(), "hold.settled without a known kind");
        let mut e = settled();
        e.grants.clear();
        assert!(parse(&e).unwrap_err().contains("grant draws add up to 0"));
        let mut e = settled();
        e.time = None;
        assert!(parse(&e).unwrap_err().starts_with("no time"));
        let mut e = settled();
        e.units = u64::MAX;
        assert!(parse(&e).unwrap_err().contains("out of range"));
        let e = pb::UsageEvent {
            id: "a/p@1:upgraded".into(),
            r#type: events::PLAN_UPGRADED.into(),
            account_id: "a".into(),
            time: settled().time,
            plan: "hollywood".into(),
            ..Default::default()
        };
        assert_eq!(
            parse(&e).unwrap_err(),
            "plan.upgraded without a cycle start"
        );
    }

    /// 50 of a 60-unit charge (40 allowance, 20 credits) refunded after its cycle ended: the
    /// allowance part first, nothing back to the allowance, all 50 as a refund grant.
    fn refunded() -> pb::UsageEvent {
        pb::UsageEvent {
            id: "a/g@1:refunded:r1".into(),
            r#type: HOLD_REFUNDED.into(),
            units: 50,
            from_allowance: 40,
            from_credits: 10,
            allowance_added: 0,
            grant_id: "refund:g:r1".into(),
            grants: vec![pb::GrantDraw {
                grant_id: "refund:g:r1".into(),
                units: 50,
            }],
            refund_id: "r1".into(),
            ..settled()
        }
    }

    #[test]
    fn a_refund_names_its_grant_for_what_did_not_go_back_to_the_allowance() {
        let r = parse(&refunded()).unwrap();
        assert_eq!(r.refund_credit_units(), 50);
        // In the current cycle the allowance part went back: only 10 as credits.
        let mut e = refunded();
        e.allowance_added = 40;
        e.grants[0].units = 10;
        assert_eq!(parse(&e).unwrap().refund_credit_units(), 10);
        // All back to the allowance: no grant.
        let e = pb::UsageEvent {
            units: 30,
            from_allowance: 30,
            from_credits: 0,
            allowance_added: 30,
            grant_id: String::new(),
            grants: vec![],
            ..refunded()
        };
        assert_eq!(parse(&e).unwrap().refund_credit_units(), 0);

        let mut e = refunded();
        e.grants[0].units = 10; // from_credits, not units - allowance_added
        assert!(parse(&e)
            .unwrap_err()
            .contains("units - allowance_added = 50"));
        let mut e = refunded();
        e.allowance_added = 41;
        assert!(parse(&e).unwrap_err().contains("above from_allowance"));
        let mut e = refunded();
        e.grant_id.clear();
        assert!(parse(&e).unwrap_err().contains("without a grant id"));
        let mut e = refunded();
        e.refund_id.clear();
        assert!(parse(&e).unwrap_err().contains("without a refund id"));
    }

    #[test]
    fn a_release_gives_back_at_most_its_cost() {
        let e = pb::UsageEvent {
            id: "a/g@1:released".into(),
            r#type: events::HOLD_RELEASED.into(),
            units: 60,
            from_allowance: 0, // another cycle's allowance does not go back
            from_credits: 20,
            units_lost: 30,
            ..settled()
        };
        assert!(parse(&e).is_ok());
        let e = pb::UsageEvent {
            units_lost: 41,
            ..e
        };
        assert!(parse(&e).unwrap_err().contains("is above units 60"));
    }

    #[test]
    fn unknown_types_are_kept_not_refused() {
        let mut e = settled();
        e.r#type = "something.new".into();
        e.kind = 0;
        assert!(parse(&e).is_ok());
    }
}
