//! The one mapping from store errors to gRPC answers: a status code, a message written for
//! people (the error's `Display`), and error details written for programs (`google.rpc.Status`
//! in `grpc-status-details-bin`: an `ErrorInfo` of domain [`DOMAIN`] with a stable reason and
//! the numbers as metadata, plus `BadRequest`, `QuotaFailure` or `RetryInfo` where they apply).
//! Clients switch on the reason, never on the message.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::ledger::DenialReason;
use crate::store::{LedgerError, StoreError};

/// The `ErrorInfo.domain` of every error this service answers.
pub const DOMAIN: &str = "quota.v1";

/// The `RetryInfo` delay of an unavailable store: about one reconnect of the store's
/// connection, so a client comes back once it may have recovered, not in a tight loop.
pub const STORE_RETRY_DELAY: Duration = Duration::from_millis(250);

/// What an internal error answers: its detail may name scripts, keys or lines, which is for
/// the log, not for callers.
pub const INTERNAL_MESSAGE: &str = "internal error in the sidecar; its log has the detail";

/// The stable `ErrorInfo.reason` of each error (API.md "Third version"), plus the few the
/// edges answer without a store error.
pub mod reason {
    pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
    pub const PLAN_DENIED: &str = "PLAN_DENIED";
    pub const INSUFFICIENT_FUNDS: &str = "INSUFFICIENT_FUNDS";
    pub const GENERATION_CONFLICT: &str = "GENERATION_CONFLICT";
    pub const GRANT_CONFLICT: &str = "GRANT_CONFLICT";
    pub const REQUEST_CONFLICT: &str = "REQUEST_CONFLICT";
    pub const REFUND_CONFLICT: &str = "REFUND_CONFLICT";
    pub const HOLD_NOT_FOUND: &str = "HOLD_NOT_FOUND";
    pub const GRANT_NOT_FOUND: &str = "GRANT_NOT_FOUND";
    pub const HOLD_STATE: &str = "HOLD_STATE";
    pub const SETTLE_ABOVE_HOLD: &str = "SETTLE_ABOVE_HOLD";
    pub const REFUND_ABOVE_CHARGE: &str = "REFUND_ABOVE_CHARGE";
    pub const TOO_MANY_GRANTS: &str = "TOO_MANY_GRANTS";
    pub const STORE_UNAVAILABLE: &str = "STORE_UNAVAILABLE";
    pub const INTERNAL: &str = "INTERNAL";
    /// The admin API without the configured bearer token.
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    /// A consumer group missed events the retention cap dropped (`DATA_LOSS` on Subscribe).
    pub const EVENTS_LOST: &str = "EVENTS_LOST";
    /// The sidecar is stopping; the same call to a running one is safe.
    pub const SHUTTING_DOWN: &str = "SHUTTING_DOWN";
}

/// The gRPC code of a store error.
pub fn code(err: &StoreError) -> Code {
    match err {
        StoreError::Ledger(refusal) => refusal_code(refusal),
        StoreError::Unavailable(_) => Code::Unavailable,
        StoreError::Internal(_) => Code::Internal,
    }
}

/// The gRPC code of a ledger's refusal; a batch item's is its own error's.
fn refusal_code(err: &LedgerError) -> Code {
    match err {
        LedgerError::InvalidArgument { .. } => Code::InvalidArgument,
        LedgerError::Denied(_) => Code::PermissionDenied,
        LedgerError::InsufficientFunds { .. } | LedgerError::TooManyGrants { .. } => {
            Code::ResourceExhausted
        }
        LedgerError::GenerationConflict { .. }
        | LedgerError::GrantConflict { .. }
        | LedgerError::RequestConflict { .. } => Code::AlreadyExists,
        LedgerError::HoldNotFound { .. } | LedgerError::GrantNotFound { .. } => Code::NotFound,
        LedgerError::HoldState { .. } | LedgerError::SettleAboveHold { .. } => {
            Code::FailedPrecondition
        }
        LedgerError::RefundAboveCharge { .. } => Code::FailedPrecondition,
        LedgerError::RefundConflict { .. } => Code::AlreadyExists,
        LedgerError::BatchItem { source, .. } => refusal_code(source),
        LedgerError::InvariantBroken(_) => Code::Internal,
    }
}

/// The `ErrorInfo.reason` of a store error; a batch item's is its own error's.
pub fn reason_of(err: &StoreError) -> &'static str {
    match err {
        StoreError::Ledger(refusal) => refusal_reason(refusal),
        StoreError::Unavailable(_) => reason::STORE_UNAVAILABLE,
        StoreError::Internal(_) => reason::INTERNAL,
    }
}

/// The `ErrorInfo.reason` of a ledger's refusal.
fn refusal_reason(err: &LedgerError) -> &'static str {
    match err {
        LedgerError::InvalidArgument { .. } => reason::INVALID_ARGUMENT,
        LedgerError::Denied(_) => reason::PLAN_DENIED,
        LedgerError::InsufficientFunds { .. } => reason::INSUFFICIENT_FUNDS,
        LedgerError::GenerationConflict { .. } => reason::GENERATION_CONFLICT,
        LedgerError::GrantConflict { .. } => reason::GRANT_CONFLICT,
        LedgerError::RequestConflict { .. } => reason::REQUEST_CONFLICT,
        LedgerError::RefundConflict { .. } => reason::REFUND_CONFLICT,
        LedgerError::HoldNotFound { .. } => reason::HOLD_NOT_FOUND,
        LedgerError::GrantNotFound { .. } => reason::GRANT_NOT_FOUND,
        LedgerError::HoldState { .. } => reason::HOLD_STATE,
        LedgerError::SettleAboveHold { .. } => reason::SETTLE_ABOVE_HOLD,
        LedgerError::RefundAboveCharge { .. } => reason::REFUND_ABOVE_CHARGE,
        LedgerError::TooManyGrants { .. } => reason::TOO_MANY_GRANTS,
        LedgerError::BatchItem { source, .. } => refusal_reason(source),
        LedgerError::InvariantBroken(_) => reason::INTERNAL,
    }
}

/// The error details of a store error: `ErrorInfo` with the numbers a program acts on, and
/// the standard detail that fits. A batch item's details are its own error's, with `index`
/// and `generation_id` of the item added and a bad field named as `items[i].field`.
pub fn details(err: &StoreError) -> ErrorDetails {
    let mut metadata = Metadata::new();
    let mut details = ErrorDetails::new();
    fill(err, &mut metadata, &mut details);
    details.set_error_info(reason_of(err), DOMAIN, metadata.0);
    details
}

/// `ErrorInfo.metadata` as it is built: string keys and values, numbers in decimal.
struct Metadata(HashMap<String, String>);

impl Metadata {
    fn new() -> Self {
        Metadata(HashMap::new())
    }

    fn put(&mut self, key: &str, value: impl ToString) {
        self.0.insert(key.to_string(), value.to_string());
    }
}

fn fill(err: &StoreError, metadata: &mut Metadata, details: &mut ErrorDetails) {
    match err {
        StoreError::Ledger(refusal) => fill_refusal(refusal, metadata, details, ""),
        StoreError::Unavailable(_) => {
            details.set_retry_info(Some(STORE_RETRY_DELAY));
        }
        StoreError::Internal(_) => {}
    }
}

/// A refusal's metadata and details; `prefix` names a batch item's fields (`items[2].`).
fn fill_refusal(
    err: &LedgerError,
    metadata: &mut Metadata,
    details: &mut ErrorDetails,
    prefix: &str,
) {
    match err {
        LedgerError::InvalidArgument { field, message } => {
            metadata.put("field", format!("{prefix}{field}"));
            details.add_bad_request_violation(format!("{prefix}{field}"), message.clone());
        }
        LedgerError::Denied(denial) => {
            metadata.put("plan", &denial.plan);
            if let Some(needs) = &denial.needs {
                metadata.put("required_plan", needs);
            }
            metadata.put("feature", denial.code());
            match &denial.reason {
                DenialReason::Model { model } => metadata.put("model", model),
                DenialReason::VideoSeconds {
                    seconds,
                    max_seconds,
                } => {
                    metadata.put("video_seconds", seconds);
                    metadata.put("max_video_seconds", max_seconds);
                }
                DenialReason::ConcurrentHolds {
                    open_holds,
                    max_holds,
                } => {
                    metadata.put("open_holds", open_holds);
                    metadata.put("max_open_holds", max_holds);
                }
            }
        }
        LedgerError::InsufficientFunds { needed, available } => {
            metadata.put("needed_units", needed);
            metadata.put("available_units", available);
            details.add_quota_failure_violation(
                "allowance_and_credits",
                format!("needs {needed} units, {available} available"),
            );
        }
        LedgerError::GenerationConflict {
            generation_id,
            existing,
            requested,
        } => {
            metadata.put("generation_id", generation_id);
            metadata.put("existing", existing);
            metadata.put("requested", requested);
        }
        LedgerError::GrantConflict { grant_id } => metadata.put("grant_id", grant_id),
        LedgerError::RequestConflict { request_id } => metadata.put("request_id", request_id),
        LedgerError::RefundConflict { refund_id } => metadata.put("refund_id", refund_id),
        LedgerError::HoldNotFound {
            account_id,
            generation_id,
        } => {
            metadata.put("account_id", account_id);
            metadata.put("generation_id", generation_id);
        }
        LedgerError::GrantNotFound {
            account_id,
            grant_id,
        } => {
            metadata.put("account_id", account_id);
            metadata.put("grant_id", grant_id);
        }
        LedgerError::HoldState {
            generation_id,
            state,
            operation,
        } => {
            metadata.put("generation_id", generation_id);
            metadata.put("state", state);
            metadata.put("operation", operation);
        }
        LedgerError::SettleAboveHold {
            generation_id,
            actual_quantity,
            reserved_quantity,
        } => {
            metadata.put("generation_id", generation_id);
            metadata.put("actual_quantity", actual_quantity);
            metadata.put("reserved_quantity", reserved_quantity);
        }
        LedgerError::RefundAboveCharge {
            generation_id,
            requested,
            refundable,
        } => {
            metadata.put("generation_id", generation_id);
            metadata.put("requested_units", requested);
            metadata.put("refundable_units", refundable);
        }
        LedgerError::TooManyGrants { account_id, limit } => {
            metadata.put("account_id", account_id);
            metadata.put("max_live_grants", limit);
        }
        LedgerError::BatchItem {
            index,
            generation_id,
            source,
        } => {
            metadata.put("index", index);
            metadata.put("generation_id", generation_id);
            fill_refusal(source, metadata, details, &format!("items[{index}]."));
        }
        LedgerError::InvariantBroken(_) => {}
    }
}

/// The message for people: the error's `Display`, except an internal error's, whose detail
/// stays in the log.
fn message(err: &StoreError) -> String {
    let refusal = match err {
        StoreError::Ledger(refusal) => refusal,
        StoreError::Unavailable(_) => return err.to_string(),
        StoreError::Internal(_) => return INTERNAL_MESSAGE.to_string(),
    };
    match refusal {
        LedgerError::InvariantBroken(_) => INTERNAL_MESSAGE.to_string(),
        LedgerError::BatchItem { source, .. }
            if matches!(**source, LedgerError::InvariantBroken(_)) =>
        {
            INTERNAL_MESSAGE.to_string()
        }
        // A bad field of an item reads as the edge names it: `items[2].model: ...`.
        LedgerError::BatchItem { index, source, .. } => match &**source {
            LedgerError::InvalidArgument { field, message } => {
                format!("items[{index}].{field}: {message}")
            }
            _ => err.to_string(),
        },
        _ => err.to_string(),
    }
}

impl From<StoreError> for Status {
    /// Logs by who has to act: the caller's mistakes and refusals at debug (they are answers,
    /// not incidents), an unreachable store at warn, a bug or corrupt state at error.
    fn from(err: StoreError) -> Status {
        let code = code(&err);
        match &err {
            StoreError::Internal(_) | StoreError::Ledger(LedgerError::InvariantBroken(_)) => {
                tracing::error!(error = %err, "store failed")
            }
            StoreError::Unavailable(_) => tracing::warn!(error = %err, "store unavailable"),
            StoreError::Ledger(LedgerError::Denied(denial)) => {
                tracing::debug!(reason = denial.code(), error = %err, "denied by plan")
            }
            _ => tracing::debug!(code = ?code, error = %err, "refused by store"),
        }
        Status::with_error_details(code, message(&err), details(&err))
    }
}

/// A status with an `ErrorInfo` of `reason` and `metadata`, for the errors the edges answer
/// themselves.
pub fn with_reason(
    code: Code,
    message: impl Into<String>,
    reason: &str,
    metadata: impl IntoIterator<Item = (&'static str, String)>,
) -> Status {
    let metadata: HashMap<String, String> = metadata
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, DOMAIN, metadata),
    )
}

/// `INVALID_ARGUMENT` for `field` (its wire name, e.g. `items[2].quantity`), with a
/// `BadRequest` violation naming it. The message starts with the field: `field: message`.
pub fn invalid_argument(field: &str, message: &str) -> Status {
    let mut details = ErrorDetails::with_bad_request_violation(field, message);
    details.set_error_info(
        reason::INVALID_ARGUMENT,
        DOMAIN,
        HashMap::from([("field".to_string(), field.to_string())]),
    );
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {message}"),
        details,
    )
}

/// `UNAVAILABLE` because the store cannot answer yet, with `RetryInfo`.
pub fn store_unavailable(message: impl Into<String>) -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(STORE_RETRY_DELAY));
    details.set_error_info(reason::STORE_UNAVAILABLE, DOMAIN, HashMap::new());
    Status::with_error_details(Code::Unavailable, message, details)
}

/// The ledger's time, or UNAVAILABLE while the store's clock has not been read (a sidecar
/// started while its store was down): guessing from this machine's clock could expire holds or
/// roll cycles early.
pub fn ledger_now(clock: &dyn crate::clock::Clock) -> Result<i64, Status> {
    clock
        .ledger_now_ms()
        .ok_or_else(|| store_unavailable("the store's clock has not been read yet; retry shortly"))
}

/// A field error of one batch item: the same error with the field named as
/// `{prefix}{field}` (e.g. `items[2].quantity`) in the message and the details.
pub fn in_item(status: Status, prefix: &str) -> Status {
    let details = status.get_error_details();
    match details
        .bad_request()
        .and_then(|bad| bad.field_violations.first())
    {
        Some(violation) => invalid_argument(
            &format!("{prefix}{}", violation.field),
            &violation.description,
        ),
        None => status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Denial, DenialReason};
    use crate::store::HoldState;

    #[test]
    fn codes() {
        let denial = Denial {
            plan: "microbudget".into(),
            needs: Some("hollywood".into()),
            reason: DenialReason::Model {
                model: "cinema".into(),
            },
        };
        let cases = [
            (
                StoreError::Ledger(LedgerError::InvalidArgument {
                    field: "model",
                    message: "unknown model `x`".into(),
                }),
                Code::InvalidArgument,
            ),
            (
                StoreError::Ledger(LedgerError::Denied(denial.clone())),
                Code::PermissionDenied,
            ),
            (
                StoreError::Ledger(LedgerError::InsufficientFunds {
                    needed: 8,
                    available: 4,
                }),
                Code::ResourceExhausted,
            ),
            (
                StoreError::Ledger(LedgerError::GenerationConflict {
                    generation_id: "g".into(),
                    existing: "a".into(),
                    requested: "b".into(),
                }),
                Code::AlreadyExists,
            ),
            (
                StoreError::Ledger(LedgerError::GrantConflict {
                    grant_id: "g".into(),
                }),
                Code::AlreadyExists,
            ),
            (
                StoreError::Ledger(LedgerError::RequestConflict {
                    request_id: "r".into(),
                }),
                Code::AlreadyExists,
            ),
            (
                StoreError::Ledger(LedgerError::HoldNotFound {
                    account_id: "a".into(),
                    generation_id: "g".into(),
                }),
                Code::NotFound,
            ),
            (
                StoreError::Ledger(LedgerError::GrantNotFound {
                    account_id: "a".into(),
                    grant_id: "g".into(),
                }),
                Code::NotFound,
            ),
            (
                StoreError::Ledger(LedgerError::HoldState {
                    generation_id: "g".into(),
                    state: HoldState::Settled,
                    operation: "release",
                }),
                Code::FailedPrecondition,
            ),
            (
                StoreError::Ledger(LedgerError::SettleAboveHold {
                    generation_id: "g".into(),
                    actual_quantity: 3,
                    reserved_quantity: 2,
                }),
                Code::FailedPrecondition,
            ),
            (
                StoreError::Ledger(LedgerError::TooManyGrants {
                    account_id: "a".into(),
                    limit: 1_000,
                }),
                Code::ResourceExhausted,
            ),
            (StoreError::Unavailable("timeout".into()), Code::Unavailable),
            (StoreError::Internal("bad hash".into()), Code::Internal),
        ];
        for (err, expected) in cases {
            let message = err.to_string();
            let reason = reason_of(&err);
            let status = Status::from(err.clone());
            assert_eq!(status.code(), expected, "{message}");
            let details = status.get_error_details();
            let info = details.error_info().expect("every error has an ErrorInfo");
            assert_eq!(info.domain, DOMAIN, "{message}");
            assert_eq!(info.reason, reason, "{message}");
            if matches!(err, StoreError::Internal(_)) {
                assert_eq!(status.message(), INTERNAL_MESSAGE);
            } else {
                assert_eq!(status.message(), message);
            }
        }
        assert_eq!(
            Status::from(StoreError::Ledger(LedgerError::Denied(denial))).message(),
            "model `cinema` needs plan `hollywood`; account is on `microbudget`"
        );
    }

    #[test]
    fn batch_item_details_name_the_item() {
        let err = StoreError::Ledger(LedgerError::BatchItem {
            index: 2,
            generation_id: "g2".into(),
            source: Box::new(LedgerError::InsufficientFunds {
                needed: 8,
                available: 3,
            }),
        });
        let details = Status::from(err).get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.reason, reason::INSUFFICIENT_FUNDS);
        assert_eq!(info.metadata["index"], "2");
        assert_eq!(info.metadata["generation_id"], "g2");
        assert_eq!(info.metadata["needed_units"], "8");
        assert_eq!(info.metadata["available_units"], "3");
        assert!(details.quota_failure().is_some());

        let field = in_item(invalid_argument("quantity", "images are 1-16"), "items[2].");
        assert_eq!(field.message(), "items[2].quantity: images are 1-16");
        let details = field.get_error_details();
        let violation = &details.bad_request().unwrap().field_violations[0];
        assert_eq!(violation.field, "items[2].quantity");
        assert_eq!(violation.description, "images are 1-16");
        assert_eq!(
            details.error_info().unwrap().metadata["field"],
            "items[2].quantity"
        );
    }

    #[test]
    fn a_broken_invariant_answers_internal_wherever_it_is() {
        let broken = || LedgerError::InvariantBroken("held below zero".into());
        let in_item = StoreError::Ledger(LedgerError::BatchItem {
            index: 1,
            generation_id: "g1".into(),
            source: Box::new(broken()),
        });
        for err in [
            StoreError::from(broken()),
            StoreError::Ledger(broken()),
            in_item,
        ] {
            let status = Status::from(err.clone());
            assert_eq!(status.code(), Code::Internal, "{err:?}");
            assert_eq!(status.message(), INTERNAL_MESSAGE, "{err:?}");
            let details = status.get_error_details();
            assert_eq!(details.error_info().unwrap().reason, reason::INTERNAL);
            assert!(!format!("{:?}", status.details()).contains("below"));
        }
    }

    #[test]
    fn internal_detail_stays_in_the_log() {
        let status = Status::from(StoreError::Internal("script f_abc123 line 7".into()));
        assert_eq!(status.message(), INTERNAL_MESSAGE);
        assert!(!format!("{:?}", status.details()).contains("abc123"));
    }
}
