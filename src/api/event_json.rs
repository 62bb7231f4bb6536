//! A usage event as one JSON object with every field, empty ones included, so that scripts and
//! billing see one shape for every type. Times are RFC 3339 with milliseconds.

use prost_types::Timestamp;
use serde_json::{json, Value};

use crate::pb;

/// The event's kind as its short name (`video`, `character_image`, ...); empty when unset.
pub fn kind_name(e: &pb::UsageEvent) -> String {
    match pb::GenerationKind::try_from(e.kind) {
        Ok(pb::GenerationKind::Unspecified) => String::new(),
        Ok(kind) => kind
            .as_str_name()
            .trim_start_matches("GENERATION_KIND_")
            .to_lowercase(),
        Err(unknown) => format!("unknown_{}", unknown.0),
    }
}

/// `at` as a UTC time; `None` when unset or out of range.
pub fn timestamp_time(at: Option<&Timestamp>) -> Option<time::OffsetDateTime> {
    let at = at?;
    let nanos = i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// `at` in RFC 3339 with milliseconds (`2026-01-15T00:00:00.000Z`).
pub fn rfc3339_ms(at: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

fn time_json(at: Option<&Timestamp>) -> Value {
    timestamp_time(at)
        .map(|t| Value::String(rfc3339_ms(t)))
        .unwrap_or(Value::Null)
}

/// Every field of `e`.
pub fn usage_event_json(e: &pb::UsageEvent) -> Value {
    json!({
        "id": e.id,
        "type": e.r#type,
        "account_id": e.account_id,
        "time": time_json(e.time.as_ref()),
        "sequence": e.sequence,
        "ack_id": e.ack_id,
        "generation_id": e.generation_id,
        "kind": kind_name(e),
        "model": e.model,
        "quantity": e.quantity,
        "units": e.units,
        "from_allowance": e.from_allowance,
        "from_credits": e.from_credits,
        "grants": e.grants.iter().map(|d| json!({"grant_id": d.grant_id, "units": d.units})).collect::<Vec<_>>(),
        "units_lost": e.units_lost,
        "reason": e.reason,
        "plan": e.plan,
        "previous_plan": e.previous_plan,
        "cycle_start": time_json(e.cycle_start.as_ref()),
        "allowance_added": e.allowance_added,
        "prorated_charge_cents": e.prorated_charge_cents,
        "grant_id": e.grant_id,
        "source": e.source,
        "expires_at": time_json(e.expires_at.as_ref()),
        "effective_at": time_json(e.effective_at.as_ref()),
        "threshold_percent": e.threshold_percent,
        "refund_id": e.refund_id,
        "labels": e.labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_with_millisecond_times() {
        let e = pb::UsageEvent {
            id: "a/g@1:settled".into(),
            r#type: "hold.settled".into(),
            kind: pb::GenerationKind::CharacterImage as i32,
            time: Some(Timestamp {
                seconds: 1_768_435_200,
                nanos: 5_000_000,
            }),
            ..Default::default()
        };
        let j = usage_event_json(&e);
        assert_eq!(j["kind"], "character_image");
        assert_eq!(j["time"], "2026-01-15T00:00:00.005Z");
        assert_eq!(j["cycle_start"], Value::Null);
        assert_eq!(j["units_lost"], 0);
        assert_eq!(kind_name(&pb::UsageEvent::default()), "");
    }
}
