//! Store views to wire messages, and wire enums to ledger enums.

use prost_types::Timestamp;

use crate::events::UsageEvent;
use crate::ledger::{Catalog, CreditSource, Kind};
use crate::pb;
use crate::store::{self, HoldState, PlanChange, ReleaseReason};

/// Milliseconds since the epoch as a protobuf timestamp.
pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1_000),
        // rem_euclid keeps nanos in 0..1e9 for times before 1970 too.
        nanos: (ms.rem_euclid(1_000) * 1_000_000) as i32,
    }
}

/// A wire kind; `None` for `UNSPECIFIED`.
pub fn kind_from_pb(kind: pb::GenerationKind) -> Option<Kind> {
    match kind {
        pb::GenerationKind::Unspecified => None,
        pb::GenerationKind::CharacterImage => Some(Kind::CharacterImage),
        pb::GenerationKind::LocationImage => Some(Kind::LocationImage),
        pb::GenerationKind::FirstFrame => Some(Kind::FirstFrame),
        pb::GenerationKind::Video => Some(Kind::Video),
    }
}

/// A ledger kind on the wire.
pub fn kind_to_pb(kind: Kind) -> pb::GenerationKind {
    match kind {
        Kind::CharacterImage => pb::GenerationKind::CharacterImage,
        Kind::LocationImage => pb::GenerationKind::LocationImage,
        Kind::FirstFrame => pb::GenerationKind::FirstFrame,
        Kind::Video => pb::GenerationKind::Video,
    }
}

/// A wire release reason; `None` for `UNSPECIFIED`.
pub fn release_reason_from_pb(reason: pb::ReleaseReason) -> Option<ReleaseReason> {
    match reason {
        pb::ReleaseReason::Unspecified => None,
        pb::ReleaseReason::Failed => Some(ReleaseReason::Failed),
        pb::ReleaseReason::ContentFiltered => Some(ReleaseReason::ContentFiltered),
        pb::ReleaseReason::SystemError => Some(ReleaseReason::SystemError),
        pb::ReleaseReason::Cancelled => Some(ReleaseReason::Cancelled),
    }
}

/// A wire credit source; `None` for `UNSPECIFIED`.
pub fn credit_source_from_pb(source: pb::CreditSource) -> Option<CreditSource> {
    match source {
        pb::CreditSource::Unspecified => None,
        pb::CreditSource::Promotional => Some(CreditSource::Promotional),
        pb::CreditSource::Purchased => Some(CreditSource::Purchased),
    }
}

/// A ledger credit source on the wire.
pub fn credit_source_to_pb(source: CreditSource) -> pb::CreditSource {
    match source {
        CreditSource::Promotional => pb::CreditSource::Promotional,
        CreditSource::Purchased => pb::CreditSource::Purchased,
    }
}

/// A hold state on the wire.
pub fn hold_state_to_pb(state: HoldState) -> pb::HoldState {
    match state {
        HoldState::Held => pb::HoldState::Held,
        HoldState::Settled => pb::HoldState::Settled,
        HoldState::Released => pb::HoldState::Released,
        HoldState::Expired => pb::HoldState::Expired,
    }
}

/// A plan change on the wire.
pub fn plan_change_to_pb(change: PlanChange) -> pb::PlanChange {
    match change {
        PlanChange::Started => pb::PlanChange::Started,
        PlanChange::Upgraded => pb::PlanChange::Upgraded,
        PlanChange::DowngradeScheduled => pb::PlanChange::DowngradeScheduled,
        PlanChange::ScheduledChangeCancelled => pb::PlanChange::ScheduledChangeCancelled,
        PlanChange::Unchanged => pb::PlanChange::Unchanged,
    }
}

/// A balance on the wire; no plan means no cycle times and an empty `scheduled_plan`.
pub fn balance(b: store::Balance) -> pb::Balance {
    pb::Balance {
        account_id: b.account_id,
        plan: b.plan,
        scheduled_plan: b.scheduled_plan.unwrap_or_default(),
        cycle_start: b.cycle_start_ms.map(timestamp),
        cycle_end: b.cycle_end_ms.map(timestamp),
        allowance_total: b.allowance_total,
        allowance_used: b.allowance_used,
        allowance_held: b.allowance_held,
        allowance_available: b.allowance_available,
        credits_available: b.credits_available,
        credits_held: b.credits_held,
        open_holds: b.open_holds,
    }
}

/// Units drawn from one grant, on the wire.
pub fn grant_draw(d: crate::ledger::GrantDraw) -> pb::GrantDraw {
    pb::GrantDraw {
        grant_id: d.grant_id,
        units: d.units,
    }
}

/// A hold on the wire.
pub fn hold(h: store::Hold) -> pb::Hold {
    pb::Hold {
        account_id: h.account_id,
        generation_id: h.generation_id,
        kind: kind_to_pb(h.kind) as i32,
        model: h.model,
        quantity: h.quantity,
        cost_units: h.cost_units,
        from_allowance: h.from_allowance,
        from_credits: h.from_credits,
        grants: h.grants.into_iter().map(grant_draw).collect(),
        state: hold_state_to_pb(h.state) as i32,
        expires_at: Some(timestamp(h.expires_at_ms)),
        created_at: Some(timestamp(h.created_at_ms)),
        charged_units: h.charged_units,
    }
}

/// A grant on the wire; no expiry stays unset.
pub fn grant(g: store::Grant) -> pb::Grant {
    pb::Grant {
        grant_id: g.grant_id,
        source: credit_source_to_pb(g.source) as i32,
        units_granted: g.units_granted,
        units_remaining: g.units_remaining,
        units_held: g.units_held,
        expires_at: g.expires_at_ms.map(timestamp),
        created_at: Some(timestamp(g.created_at_ms)),
    }
}

/// An account on the wire.
pub fn account(a: store::AccountView) -> pb::Account {
    pb::Account {
        balance: Some(balance(a.balance)),
        grants: a.grants.into_iter().map(grant).collect(),
        holds: a.holds.into_iter().map(hold).collect(),
        lifetime_charged_allowance_units: a.lifetime_charged.allowance_units,
        lifetime_charged_credit_units: a.lifetime_charged.credit_units,
    }
}

/// A Quote's answer on the wire: the denial as its reason and the message Reserve would give.
pub fn quote(q: crate::store::Quoted) -> pb::QuoteResponse {
    use crate::ledger::DenialReason as Reason;
    use crate::store::LedgerError;
    let denial = match &q.denial {
        None => pb::DenialReason::Unspecified,
        Some(LedgerError::Denied(d)) => match d.reason {
            Reason::Model { .. } => pb::DenialReason::ModelNotInPlan,
            Reason::VideoSeconds { .. } => pb::DenialReason::VideoTooLong,
            Reason::ConcurrentHolds { .. } => pb::DenialReason::TooManyHolds,
        },
        Some(_) => pb::DenialReason::InsufficientFunds,
    };
    pb::QuoteResponse {
        cost_units: q.cost_units,
        from_allowance: q.from_allowance,
        from_credits: q.from_credits,
        allowed: q.denial.is_none(),
        denial: denial as i32,
        denial_message: q.denial.map(|e| e.to_string()).unwrap_or_default(),
        balance: Some(balance(q.balance)),
    }
}

/// A usage event on the wire; fields that do not apply to its type stay empty or unset.
pub fn usage_event(e: UsageEvent) -> pb::UsageEvent {
    pb::UsageEvent {
        id: e.id,
        r#type: e.event_type,
        account_id: e.account_id,
        time: Some(timestamp(e.time_ms)),
        sequence: e.sequence,
        ack_id: e.ack_id,
        generation_id: e.generation_id,
        kind: e
            .kind
            .map_or(pb::GenerationKind::Unspecified, kind_to_pb)
            .into(),
        model: e.model,
        quantity: e.quantity,
        units: e.units,
        from_allowance: e.from_allowance,
        from_credits: e.from_credits,
        grants: e.grants.into_iter().map(grant_draw).collect(),
        reason: e.reason,
        plan: e.plan,
        previous_plan: e.previous_plan,
        cycle_start: e.cycle_start_ms.map(timestamp),
        allowance_added: e.allowance_added,
        prorated_charge_cents: e.prorated_charge_cents,
        grant_id: e.grant_id,
        labels: e.labels.into_iter().collect(),
        source: e.source,
        expires_at: e.expires_at_ms.map(timestamp),
        effective_at: e.effective_at_ms.map(timestamp),
        units_lost: e.units_lost,
        threshold_percent: e.threshold_percent,
        refund_id: e.refund_id,
    }
}

/// The catalog on the wire: every plan (`none` included, cheapest first), one price per kind
/// and model, the usage thresholds and the content version.
pub fn catalog(c: &Catalog) -> pb::Catalog {
    pb::Catalog {
        version: c.version().to_string(),
        plans: c
            .plans()
            .iter()
            .map(|p| pb::Plan {
                id: p.id.clone(),
                price_cents: p.price_cents,
                allowance_units: p.allowance_units,
                models: p.models.clone(),
                max_open_holds: p.max_concurrent_holds,
                max_video_seconds: p.max_video_seconds,
            })
            .collect(),
        prices: c
            .prices()
            .into_iter()
            .map(|p| pb::Price {
                kind: kind_to_pb(p.kind) as i32,
                model: p.model,
                units_per_item: p.units_per_item,
            })
            .collect(),
        alert_thresholds_percent: c.alert_thresholds_percent().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_from_ms() {
        assert_eq!(
            timestamp(1_700_000_000_123),
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_000_000
            }
        );
        assert_eq!(
            timestamp(-1),
            Timestamp {
                seconds: -1,
                nanos: 999_000_000
            }
        );
    }

    #[test]
    fn enums_round_trip() {
        for k in Kind::ALL {
            assert_eq!(kind_from_pb(kind_to_pb(k)), Some(k));
        }
        for s in [CreditSource::Promotional, CreditSource::Purchased] {
            assert_eq!(credit_source_from_pb(credit_source_to_pb(s)), Some(s));
        }
        assert_eq!(kind_from_pb(pb::GenerationKind::Unspecified), None);
    }

    #[test]
    fn empty_balance_leaves_times_unset() {
        let b = balance(store::Balance {
            account_id: "a".into(),
            plan: "none".into(),
            scheduled_plan: None,
            cycle_start_ms: None,
            cycle_end_ms: None,
            allowance_total: 0,
            allowance_used: 0,
            allowance_held: 0,
            allowance_available: 0,
            credits_available: 5,
            credits_held: 0,
            open_holds: 0,
        });
        assert_eq!(b.scheduled_plan, "");
        assert_eq!(b.cycle_start, None);
        assert_eq!(b.credits_available, 5);
    }

    #[test]
    fn usage_events() {
        let e = settled_event();
        let wire = usage_event(e);
        assert_eq!(wire.r#type, "hold.settled");
        assert_eq!(wire.kind, pb::GenerationKind::Video as i32);
        assert_eq!(wire.time, Some(timestamp(1_700_000_000_123)));
        assert_eq!(wire.grants.len(), 1);
        assert_eq!(wire.labels["job"], "j1");
        assert_eq!(wire.cycle_start, None);
        assert_eq!(wire.expires_at, Some(timestamp(1_700_000_060_000)));
        assert_eq!(wire.effective_at, None);
        // No kind (e.g. credits.granted) stays UNSPECIFIED.
        let granted = usage_event(UsageEvent {
            event_type: "credits.granted".into(),
            ..UsageEvent::default()
        });
        assert_eq!(granted.kind, pb::GenerationKind::Unspecified as i32);
    }

    fn settled_event() -> UsageEvent {
        UsageEvent {
            id: "a/g:settled".into(),
            event_type: "hold.settled".into(),
            account_id: "a".into(),
            time_ms: 1_700_000_000_123,
            sequence: 3,
            ack_id: "1/1-0".into(),
            generation_id: "g".into(),
            kind: Some(Kind::Video),
            model: "pro".into(),
            quantity: 2,
            units: 40,
            from_allowance: 30,
            from_credits: 10,
            grants: vec![crate::ledger::GrantDraw {
                grant_id: "promo".into(),
                units: 10,
            }],
            expires_at_ms: Some(1_700_000_060_000),
            labels: [("job".to_string(), "j1".to_string())].into(),
            ..UsageEvent::default()
        }
    }

    #[test]
    fn catalog_lists_every_plan_price_and_threshold() {
        let c = catalog(&Catalog::builtin());
        assert_eq!(c.version, Catalog::builtin().version());
        let plans: Vec<(&str, u64, u64, usize, u32, u32)> = c
            .plans
            .iter()
            .map(|p| {
                (
                    p.id.as_str(),
                    p.price_cents,
                    p.allowance_units,
                    p.models.len(),
                    p.max_open_holds,
                    p.max_video_seconds,
                )
            })
            .collect();
        assert_eq!(
            plans,
            vec![
                ("none", 0, 0, 1, 1, 5),
                ("microbudget", 1000, 1000, 1, 2, 5),
                ("independent", 2500, 2500, 2, 4, 10),
                ("hollywood", 5000, 5000, 3, 8, 20),
            ]
        );
        assert_eq!(c.prices.len(), 4 * 3);
        let video_pro = c
            .prices
            .iter()
            .find(|p| p.kind == pb::GenerationKind::Video as i32 && p.model == "pro")
            .expect("a video price on pro");
        assert_eq!(video_pro.units_per_item, 20);
        let first_frame_cinema = c
            .prices
            .iter()
            .find(|p| p.kind == pb::GenerationKind::FirstFrame as i32 && p.model == "cinema")
            .expect("a first-frame price on cinema");
        assert_eq!(first_frame_cinema.units_per_item, 8);
        assert_eq!(c.alert_thresholds_percent, vec![80, 100]);
    }
}
