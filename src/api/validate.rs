//! Request validation at the gRPC edge. Every check runs before the store is called, so a bad
//! request changes nothing. Errors are `INVALID_ARGUMENT` whose message starts with the wire
//! name of the field, e.g. `quantity: images are 1-16`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;

use prost_types::Timestamp;
use tonic::Status;

use super::convert;
use crate::ledger::catalog::{
    DEFAULT_MODEL, MAX_IMAGES_PER_GENERATION, MAX_VIDEO_SECONDS, NO_PLAN,
};
use crate::ledger::{
    is_valid_id, CreditSource, Kind, DEFAULT_HOLD_TTL_SECONDS, MAX_GRANT_UNITS,
    MAX_HOLD_TTL_SECONDS, MAX_ID_LEN,
};
use crate::pb;
use crate::store::{
    BatchItem, GrantCmd, QuoteCmd, RefundCmd, ReleaseReason, ReserveBatchCmd, ReserveCmd,
    SetPlanCmd,
};

/// Most labels one Reserve may carry; they are copied into every event of the hold.
pub const MAX_LABELS: usize = 32;
/// Most generations one ReserveBatch holds: a storyboard's shots, within what one script call
/// should do while it has Redis to itself.
pub const MAX_BATCH_ITEMS: usize = 64;
/// Longest refund reason (free text for support and billing).
pub const MAX_REFUND_REASON_CHARS: usize = 256;
/// Longest label key, in characters.
pub const MAX_LABEL_KEY_CHARS: usize = 64;
/// Longest label value, in characters.
pub const MAX_LABEL_VALUE_CHARS: usize = 256;
/// Most bytes of a hold's labels in all: keys and values, UTF-8. Labels are copied into every
/// event of the hold (reserved, extended, settled or released or expired), and the retention
/// cap counts events, not bytes: without this bound 32 labels of 4-byte characters make one
/// event ~46 KB, and the cap would bound Redis memory in events only. With it every event has
/// a known worst-case size (see the README's sizing).
pub const MAX_LABELS_BYTES: usize = 4096;
/// Refund grants are named `refund:<digest>` (see `ledger::account::refund_grant_id`): no
/// GrantCredits may take such a name, or a later refund would find its grant taken.
pub const RESERVED_GRANT_PREFIX: &str = "refund:";

/// Earliest accepted timestamp, 2000-01-01T00:00:00Z: anything older is a client bug (often
/// an unset clock or seconds sent as milliseconds the other way round).
pub const MIN_TIMESTAMP_SECONDS: i64 = 946_684_800;
/// Latest accepted timestamp, 9999-12-31T23:59:59Z, the end of RFC 3339's range.
pub const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// `INVALID_ARGUMENT` naming `field`, in the message and as a `BadRequest` violation.
pub fn invalid(field: &str, message: impl Display) -> Status {
    let message = message.to_string();
    tracing::debug!(field, %message, "invalid request");
    super::status::invalid_argument(field, &message)
}

/// An account, generation, grant or request id: 1-128 characters of `[A-Za-z0-9._:-]`.
pub fn id(field: &str, value: &str) -> Result<(), Status> {
    if is_valid_id(value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be 1-{MAX_ID_LEN} characters of [A-Za-z0-9._:-]"),
        ))
    }
}

/// A generation kind: set and known.
pub fn kind(value: i32) -> Result<Kind, Status> {
    match pb::GenerationKind::try_from(value) {
        Ok(pb::GenerationKind::Unspecified) => Err(invalid("kind", "must be set")),
        Ok(known) => Ok(convert::kind_from_pb(known).expect("only UNSPECIFIED has no kind")),
        Err(_) => Err(invalid("kind", format!("unknown value {value}"))),
    }
}

/// A model id; empty means the default model. Whether the catalog has it is the ledger's
/// check (`INVALID_ARGUMENT` naming `model` too), made after a replay is answered: a retried
/// Reserve gets its first answer even after a reload removed the model.
pub fn model(value: &str) -> Result<String, Status> {
    if value.is_empty() {
        return Ok(DEFAULT_MODEL.to_string());
    }
    // Checked so that an error never echoes arbitrary client bytes.
    id("model", value)?;
    Ok(value.to_string())
}

/// Images are 1-16; video seconds at least 1 and at most the longest video any plan may
/// allow (the plan's own maximum is a feature check of the store: `PERMISSION_DENIED`).
pub fn quantity(kind: Kind, value: u32) -> Result<u32, Status> {
    if kind.is_video() {
        if value == 0 {
            Err(invalid("quantity", "video seconds must be at least 1"))
        } else if value > MAX_VIDEO_SECONDS {
            Err(invalid(
                "quantity",
                format!("video seconds are at most {MAX_VIDEO_SECONDS}"),
            ))
        } else {
            Ok(value)
        }
    } else if (1..=MAX_IMAGES_PER_GENERATION).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            "quantity",
            format!("images are 1-{MAX_IMAGES_PER_GENERATION}"),
        ))
    }
}

/// A hold's time to live: 0 means the default, at most [`MAX_HOLD_TTL_SECONDS`].
pub fn ttl_seconds(value: u32) -> Result<u32, Status> {
    match value {
        0 => Ok(DEFAULT_HOLD_TTL_SECONDS),
        v if v > MAX_HOLD_TTL_SECONDS => Err(invalid(
            "ttl_seconds",
            format!("at most {MAX_HOLD_TTL_SECONDS}"),
        )),
        v => Ok(v),
    }
}

/// Caller labels: bounded in number and size, no control characters (they end up in logs and
/// events). Sorted, so equal label sets compare equal.
pub fn labels(value: HashMap<String, String>) -> Result<BTreeMap<String, String>, Status> {
    let key_ok = |k: &str| {
        let chars = k.chars().count();
        (1..=MAX_LABEL_KEY_CHARS).contains(&chars) && !k.chars().any(char::is_control)
    };
    let value_ok =
        |v: &str| v.chars().count() <= MAX_LABEL_VALUE_CHARS && !v.chars().any(char::is_control);
    if value.len() > MAX_LABELS || !value.iter().all(|(k, v)| key_ok(k) && value_ok(v)) {
        return Err(invalid(
            "labels",
            format!(
                "at most {MAX_LABELS} labels; keys 1-{MAX_LABEL_KEY_CHARS} and values up to \
                 {MAX_LABEL_VALUE_CHARS} characters, without control characters"
            ),
        ));
    }
    let bytes = label_bytes(&value);
    if bytes > MAX_LABELS_BYTES {
        return Err(invalid(
            "labels",
            format!(
                "at most {MAX_LABELS_BYTES} bytes in all (keys and values, UTF-8), not {bytes}"
            ),
        ));
    }
    Ok(value.into_iter().collect())
}

/// The size [`MAX_LABELS_BYTES`] bounds: every key and value, in UTF-8 bytes.
pub fn label_bytes(value: &HashMap<String, String>) -> usize {
    value.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// Why a hold is released: set and known.
pub fn release_reason(value: i32) -> Result<ReleaseReason, Status> {
    match pb::ReleaseReason::try_from(value) {
        Ok(pb::ReleaseReason::Unspecified) => Err(invalid("reason", "must be set")),
        Ok(known) => Ok(convert::release_reason_from_pb(known).expect("set above")),
        Err(_) => Err(invalid("reason", format!("unknown value {value}"))),
    }
}

/// What a settled job produced; unset means the reserved quantity. Zero is a release.
pub fn actual_quantity(value: Option<u32>) -> Result<Option<u32>, Status> {
    match value {
        Some(0) => Err(invalid(
            "actual_quantity",
            "must be at least 1; release the hold when the job produced nothing",
        )),
        other => Ok(other),
    }
}

/// Units of one grant.
pub fn grant_units(value: u64) -> Result<u64, Status> {
    if (1..=MAX_GRANT_UNITS).contains(&value) {
        Ok(value)
    } else {
        Err(invalid("units", format!("must be 1-{MAX_GRANT_UNITS}")))
    }
}

/// Where credits come from: set and known.
pub fn credit_source(value: i32) -> Result<CreditSource, Status> {
    match pb::CreditSource::try_from(value) {
        Ok(pb::CreditSource::Unspecified) => Err(invalid("source", "must be set")),
        Ok(known) => Ok(convert::credit_source_from_pb(known).expect("set above")),
        Err(_) => Err(invalid("source", format!("unknown value {value}"))),
    }
}

/// A timestamp in 2000-01-01..=9999-12-31 with valid nanos, as milliseconds since the epoch.
pub fn timestamp_ms(field: &str, value: &Timestamp) -> Result<i64, Status> {
    let in_range = (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&value.seconds)
        && (0..1_000_000_000).contains(&value.nanos);
    if !in_range {
        return Err(invalid(
            field,
            "must be a time between 2000-01-01 and 9999-12-31 UTC",
        ));
    }
    Ok(value.seconds * 1_000 + i64::from(value.nanos) / 1_000_000)
}

/// A grant's expiry: unset (never expires) or strictly after `now_ms`.
pub fn expires_at(value: Option<&Timestamp>, now_ms: i64) -> Result<Option<i64>, Status> {
    let Some(ts) = value else { return Ok(None) };
    let ms = timestamp_ms("expires_at", ts)?;
    if ms <= now_ms {
        return Err(invalid("expires_at", "must be in the future"));
    }
    Ok(Some(ms))
}

/// A plan id (`none` included). Whether the catalog has it is the ledger's check, made after
/// a replay is answered (as for [`model`]).
pub fn plan(value: &str) -> Result<String, Status> {
    if value.is_empty() {
        return Err(invalid(
            "plan",
            format!("must be set (a catalog plan id, or \"{NO_PLAN}\" to cancel)"),
        ));
    }
    id("plan", value)?;
    Ok(value.to_string())
}

/// Start of a first cycle: unset (now) or not after `now_ms`. Strict on purpose: a cycle that
/// starts in the future would have nothing to charge against until then.
pub fn cycle_anchor(value: Option<&Timestamp>, now_ms: i64) -> Result<Option<i64>, Status> {
    let Some(ts) = value else { return Ok(None) };
    let ms = timestamp_ms("cycle_anchor", ts)?;
    if ms > now_ms {
        return Err(invalid("cycle_anchor", "must not be in the future"));
    }
    Ok(Some(ms))
}

/// A Reserve request as a store command.
pub fn reserve_cmd(req: pb::ReserveRequest) -> Result<ReserveCmd, Status> {
    id("account_id", &req.account_id)?;
    id("generation_id", &req.generation_id)?;
    let kind = kind(req.kind)?;
    let model = model(&req.model)?;
    let quantity = quantity(kind, req.quantity)?;
    let ttl_seconds = ttl_seconds(req.ttl_seconds)?;
    let labels = labels(req.labels)?;
    Ok(ReserveCmd {
        account_id: req.account_id,
        generation_id: req.generation_id,
        kind,
        model,
        quantity,
        ttl_seconds,
        labels,
    })
}

/// A Quote request as a store command.
pub fn quote_cmd(req: pb::QuoteRequest) -> Result<QuoteCmd, Status> {
    id("account_id", &req.account_id)?;
    let kind = kind(req.kind)?;
    let model = model(&req.model)?;
    let quantity = quantity(kind, req.quantity)?;
    Ok(QuoteCmd {
        account_id: req.account_id,
        kind,
        model,
        quantity,
    })
}

/// A ReserveBatch request as a store command: 1–64 items with distinct generation ids, each
/// checked as a Reserve is; a bad field is named with its item (`items[3].quantity`).
pub fn reserve_batch_cmd(req: pb::ReserveBatchRequest) -> Result<ReserveBatchCmd, Status> {
    id("account_id", &req.account_id)?;
    if req.items.is_empty() || req.items.len() > MAX_BATCH_ITEMS {
        return Err(invalid(
            "items",
            format!(
                "a batch has 1 to {MAX_BATCH_ITEMS} items, not {}",
                req.items.len()
            ),
        ));
    }
    let ttl_seconds = ttl_seconds(req.ttl_seconds)?;
    let mut seen = std::collections::HashSet::new();
    let mut items = Vec::with_capacity(req.items.len());
    for (i, item) in req.items.into_iter().enumerate() {
        let prefix = format!("items[{i}].");
        let named = |s: Status| super::status::in_item(s, &prefix);
        id("generation_id", &item.generation_id).map_err(named)?;
        if !seen.insert(item.generation_id.clone()) {
            return Err(invalid(
                &format!("items[{i}].generation_id"),
                format!("`{}` appears twice in the batch", item.generation_id),
            ));
        }
        let kind = kind(item.kind).map_err(named)?;
        let model = model(&item.model).map_err(named)?;
        let quantity = quantity(kind, item.quantity).map_err(named)?;
        let labels = labels(item.labels).map_err(named)?;
        items.push(BatchItem {
            generation_id: item.generation_id,
            kind,
            model,
            quantity,
            labels,
        });
    }
    Ok(ReserveBatchCmd {
        account_id: req.account_id,
        items,
        ttl_seconds,
    })
}

/// A Refund request as a store command.
pub fn refund_cmd(req: pb::RefundRequest) -> Result<RefundCmd, Status> {
    id("account_id", &req.account_id)?;
    id("generation_id", &req.generation_id)?;
    id("refund_id", &req.refund_id)?;
    if req.reason.chars().count() > MAX_REFUND_REASON_CHARS
        || req.reason.chars().any(char::is_control)
    {
        return Err(invalid(
            "reason",
            format!("at most {MAX_REFUND_REASON_CHARS} characters, no control characters"),
        ));
    }
    if req.units > MAX_GRANT_UNITS {
        return Err(invalid(
            "units",
            format!("at most {MAX_GRANT_UNITS} (0 refunds all that is left)"),
        ));
    }
    Ok(RefundCmd {
        account_id: req.account_id,
        generation_id: req.generation_id,
        refund_id: req.refund_id,
        units: req.units,
        reason: req.reason,
    })
}

/// A SetPlan request as a store command.
pub fn set_plan_cmd(req: pb::SetPlanRequest, now_ms: i64) -> Result<SetPlanCmd, Status> {
    id("request_id", &req.request_id)?;
    id("account_id", &req.account_id)?;
    let plan = plan(&req.plan)?;
    let cycle_anchor_ms = cycle_anchor(req.cycle_anchor.as_ref(), now_ms)?;
    Ok(SetPlanCmd {
        request_id: req.request_id,
        account_id: req.account_id,
        plan,
        cycle_anchor_ms,
    })
}

/// A GrantCredits request as a store command.
pub fn grant_cmd(req: pb::GrantCreditsRequest, now_ms: i64) -> Result<GrantCmd, Status> {
    id("account_id", &req.account_id)?;
    id("grant_id", &req.grant_id)?;
    if req.grant_id.starts_with(RESERVED_GRANT_PREFIX) {
        return Err(invalid(
            "grant_id",
            format!("`{RESERVED_GRANT_PREFIX}` is reserved for the grants refunds create"),
        ));
    }
    let units = grant_units(req.units)?;
    let source = credit_source(req.source)?;
    let expires_at_ms = expires_at(req.expires_at.as_ref(), now_ms)?;
    Ok(GrantCmd {
        account_id: req.account_id,
        grant_id: req.grant_id,
        units,
        source,
        expires_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    /// Asserts INVALID_ARGUMENT whose message starts with `field: `.
    fn assert_names<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) -> String {
        let status = result.expect_err("should be rejected");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with(&format!("{field}: ")),
            "{:?} should start with {field}",
            status.message()
        );
        status.message().to_string()
    }

    const NOW_MS: i64 = 1_800_000_000_000;

    fn ts(ms: i64) -> Timestamp {
        Timestamp {
            seconds: ms.div_euclid(1_000),
            nanos: (ms.rem_euclid(1_000) * 1_000_000) as i32,
        }
    }

    fn reserve() -> pb::ReserveRequest {
        pb::ReserveRequest {
            account_id: "acct-1".into(),
            generation_id: "gen-1".into(),
            kind: pb::GenerationKind::CharacterImage as i32,
            model: String::new(),
            quantity: 1,
            ttl_seconds: 0,
            labels: HashMap::new(),
        }
    }

    #[test]
    fn ids() {
        assert!(id("account_id", "a.b_c:d-1").is_ok());
        let msg = assert_names(id("account_id", "a{b}"), "account_id");
        assert_eq!(
            msg,
            "account_id: must be 1-128 characters of [A-Za-z0-9._:-]"
        );
        assert_names(id("generation_id", ""), "generation_id");
        assert_names(id("generation_id", &"x".repeat(10_000)), "generation_id");
    }

    #[test]
    fn kinds() {
        assert_eq!(kind(4).unwrap(), Kind::Video);
        assert_eq!(
            assert_names(kind(0), "kind"),
            "kind: must be set".to_string()
        );
        assert_names(kind(99), "kind");
        assert_names(kind(-1), "kind");
    }

    #[test]
    fn models() {
        assert_eq!(model("").unwrap(), "standard");
        assert_eq!(model("pro").unwrap(), "pro");
        // The catalog is the ledger's check, after replays are answered.
        assert_eq!(model("ultra").unwrap(), "ultra");
        // Not an id: rejected without echoing it.
        let msg = assert_names(model("<script>"), "model");
        assert!(!msg.contains("<script>"));
    }

    #[test]
    fn quantities() {
        assert!(quantity(Kind::FirstFrame, 16).is_ok());
        assert!(quantity(Kind::Video, MAX_VIDEO_SECONDS).is_ok());
        for q in [0, 17] {
            assert_eq!(
                assert_names(quantity(Kind::CharacterImage, q), "quantity"),
                "quantity: images are 1-16"
            );
        }
        assert_eq!(
            assert_names(quantity(Kind::Video, 0), "quantity"),
            "quantity: video seconds must be at least 1"
        );
        assert_names(quantity(Kind::Video, MAX_VIDEO_SECONDS + 1), "quantity");
    }

    #[test]
    fn ttls() {
        assert_eq!(ttl_seconds(0).unwrap(), DEFAULT_HOLD_TTL_SECONDS);
        assert_eq!(ttl_seconds(3_600).unwrap(), 3_600);
        assert_eq!(
            assert_names(ttl_seconds(3_601), "ttl_seconds"),
            "ttl_seconds: at most 3600"
        );
    }

    #[test]
    fn label_limits() {
        let ok: HashMap<_, _> = (0..MAX_LABELS)
            .map(|i| (format!("k{i}"), "v".repeat(64)))
            .collect();
        assert_eq!(labels(ok).unwrap().len(), MAX_LABELS);
        let longest = HashMap::from([(
            "k".repeat(MAX_LABEL_KEY_CHARS),
            "v".repeat(MAX_LABEL_VALUE_CHARS),
        )]);
        assert!(labels(longest).is_ok());
        let too_many: HashMap<_, _> = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert_names(labels(too_many), "labels");
        let long_key = HashMap::from([("k".repeat(MAX_LABEL_KEY_CHARS + 1), String::new())]);
        assert_names(labels(long_key), "labels");
        let empty_key = HashMap::from([(String::new(), "v".into())]);
        assert_names(labels(empty_key), "labels");
        let long_value = HashMap::from([("k".into(), "v".repeat(MAX_LABEL_VALUE_CHARS + 1))]);
        assert_names(labels(long_value), "labels");
        let control = HashMap::from([("k".into(), "a\nb".into())]);
        assert_names(labels(control), "labels");
        // Characters, not bytes.
        let wide = HashMap::from([("ключ".into(), "é".repeat(MAX_LABEL_VALUE_CHARS))]);
        assert!(labels(wide).is_ok());
    }

    #[test]
    fn labels_are_bounded_in_bytes_in_all() {
        // 16 labels of 4 + 252 bytes: exactly the bound.
        let at_bound: HashMap<_, _> = (0..16)
            .map(|i| (format!("k{i:03}"), "v".repeat(252)))
            .collect();
        assert_eq!(label_bytes(&at_bound), MAX_LABELS_BYTES);
        assert_eq!(labels(at_bound.clone()).unwrap().len(), 16);
        let mut over = at_bound;
        over.insert("k".into(), String::new());
        let message = assert_names(labels(over), "labels");
        assert!(message.contains("4096 bytes"), "{message}");
        // Bytes, not characters: 32 keys and values within their own limits, 4-byte UTF-8.
        let wide: HashMap<_, _> = (0..MAX_LABELS)
            .map(|i| {
                (
                    format!("{i:02}{}", "𝄞".repeat(62)),
                    "𝄞".repeat(MAX_LABEL_VALUE_CHARS),
                )
            })
            .collect();
        assert_names(labels(wide), "labels");
        // The same bound on a batch item, named as the item's field.
        let item = |labels: HashMap<String, String>| pb::ReserveItem {
            generation_id: "g1".into(),
            kind: pb::GenerationKind::CharacterImage as i32,
            model: String::new(),
            quantity: 1,
            labels,
        };
        let big = HashMap::from([("k".to_string(), "v".repeat(250))]);
        let heavy: HashMap<_, _> = (0..17)
            .map(|i| (format!("k{i}"), "v".repeat(250)))
            .collect();
        let req = pb::ReserveBatchRequest {
            account_id: "a1".into(),
            items: vec![item(big), item(heavy)],
            ttl_seconds: 0,
        };
        let mut req = req;
        req.items[1].generation_id = "g2".into();
        assert_names(reserve_batch_cmd(req), "items[1].labels");
    }

    #[test]
    fn release_reasons() {
        assert_eq!(release_reason(2).unwrap(), ReleaseReason::ContentFiltered);
        assert_eq!(
            assert_names(release_reason(0), "reason"),
            "reason: must be set"
        );
        assert_names(release_reason(5), "reason");
    }

    #[test]
    fn actual_quantities() {
        assert_eq!(actual_quantity(None).unwrap(), None);
        assert_eq!(actual_quantity(Some(3)).unwrap(), Some(3));
        assert_eq!(
            assert_names(actual_quantity(Some(0)), "actual_quantity"),
            "actual_quantity: must be at least 1; release the hold when the job produced nothing"
        );
    }

    #[test]
    fn grants() {
        assert!(grant_units(MAX_GRANT_UNITS).is_ok());
        assert_names(grant_units(0), "units");
        assert_names(grant_units(MAX_GRANT_UNITS + 1), "units");
        assert_eq!(credit_source(1).unwrap(), CreditSource::Promotional);
        assert_eq!(
            assert_names(credit_source(0), "source"),
            "source: must be set"
        );
        assert_names(credit_source(3), "source");
        assert_eq!(expires_at(None, NOW_MS).unwrap(), None);
        assert_eq!(
            expires_at(Some(&ts(NOW_MS + 1)), NOW_MS).unwrap(),
            Some(NOW_MS + 1)
        );
        assert_eq!(
            assert_names(expires_at(Some(&ts(NOW_MS)), NOW_MS), "expires_at"),
            "expires_at: must be in the future"
        );
    }

    #[test]
    fn timestamps() {
        let ms = timestamp_ms(
            "t",
            &Timestamp {
                seconds: 1_700_000_000,
                nanos: 999_999_999,
            },
        )
        .unwrap();
        assert_eq!(ms, 1_700_000_000_999);
        let bad = [
            Timestamp {
                seconds: MIN_TIMESTAMP_SECONDS - 1,
                nanos: 0,
            },
            Timestamp {
                seconds: MAX_TIMESTAMP_SECONDS + 1,
                nanos: 0,
            },
            Timestamp {
                seconds: 1_700_000_000,
                nanos: -1,
            },
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 1_000_000_000,
            },
        ];
        for t in bad {
            assert_names(expires_at(Some(&t), NOW_MS), "expires_at");
            assert_names(cycle_anchor(Some(&t), NOW_MS), "cycle_anchor");
        }
    }

    #[test]
    fn plans() {
        assert_eq!(plan("none").unwrap(), "none");
        assert_eq!(plan("hollywood").unwrap(), "hollywood");
        assert_eq!(plan("x").unwrap(), "x");
        assert_names(plan(""), "plan");
        assert_names(plan("no plan"), "plan");
        assert_eq!(cycle_anchor(None, NOW_MS).unwrap(), None);
        assert_eq!(
            cycle_anchor(Some(&ts(NOW_MS)), NOW_MS).unwrap(),
            Some(NOW_MS)
        );
        assert_eq!(
            assert_names(cycle_anchor(Some(&ts(NOW_MS + 1)), NOW_MS), "cycle_anchor"),
            "cycle_anchor: must not be in the future"
        );
    }

    #[test]
    fn reserve_requests() {
        let cmd = reserve_cmd(reserve()).unwrap();
        assert_eq!(cmd.model, "standard");
        assert_eq!(cmd.ttl_seconds, DEFAULT_HOLD_TTL_SECONDS);
        assert_eq!(cmd.kind, Kind::CharacterImage);
        // The first bad field is the one named.
        let mut req = reserve();
        req.account_id = "bad id".into();
        req.kind = 0;
        assert_names(reserve_cmd(req), "account_id");
        let mut req = reserve();
        req.kind = 0;
        req.quantity = 0;
        assert_names(reserve_cmd(req), "kind");
    }

    #[test]
    fn admin_requests() {
        let req = pb::SetPlanRequest {
            request_id: "r1".into(),
            account_id: "a1".into(),
            plan: "microbudget".into(),
            cycle_anchor: None,
        };
        assert_eq!(
            set_plan_cmd(req.clone(), NOW_MS).unwrap().plan,
            "microbudget"
        );
        let mut bad = req;
        bad.request_id.clear();
        assert_names(set_plan_cmd(bad, NOW_MS), "request_id");
        let grant = pb::GrantCreditsRequest {
            account_id: "a1".into(),
            grant_id: "g1".into(),
            units: 10,
            source: pb::CreditSource::Purchased as i32,
            expires_at: None,
        };
        assert_eq!(grant_cmd(grant.clone(), NOW_MS).unwrap().units, 10);
        let mut bad = grant.clone();
        bad.grant_id = "g/1".into();
        assert_names(grant_cmd(bad, NOW_MS), "grant_id");
        // Refund grants are named `refund:…`: no GrantCredits can take such a name.
        for reserved in ["refund:x:r1", "refund:"] {
            let mut bad = grant.clone();
            bad.grant_id = reserved.into();
            let message = assert_names(grant_cmd(bad, NOW_MS), "grant_id");
            assert!(message.contains("reserved"), "{message}");
        }
        let mut fine = grant;
        fine.grant_id = "refunds:x".into();
        assert!(grant_cmd(fine, NOW_MS).is_ok());
    }
}
