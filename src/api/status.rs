//! The one mapping from store errors to gRPC status codes. Messages are the error's `Display`,
//! written for the caller.

use tonic::{Code, Status};

use crate::store::StoreError;

/// The gRPC code of a store error.
pub fn code(err: &StoreError) -> Code {
    match err {
        StoreError::InvalidArgument { .. } => Code::InvalidArgument,
        StoreError::Denied(_) => Code::PermissionDenied,
        StoreError::InsufficientFunds { .. } | StoreError::TooManyGrants { .. } => {
            Code::ResourceExhausted
        }
        StoreError::GenerationConflict { .. }
        | StoreError::GrantConflict { .. }
        | StoreError::RequestConflict { .. } => Code::AlreadyExists,
        StoreError::HoldNotFound { .. } | StoreError::GrantNotFound { .. } => Code::NotFound,
        StoreError::HoldState { .. } | StoreError::SettleAboveHold { .. } => {
            Code::FailedPrecondition
        }
        StoreError::RefundAboveCharge { .. } => Code::FailedPrecondition,
        StoreError::RefundConflict { .. } => Code::AlreadyExists,
        StoreError::BatchItem { source, .. } => code(source),
        StoreError::Unavailable(_) => Code::Unavailable,
        StoreError::Internal(_) => Code::Internal,
    }
}

impl From<StoreError> for Status {
    /// Logs by who has to act: the caller's mistakes and refusals at debug (they are answers,
    /// not incidents), an unreachable store at warn, a bug or corrupt state at error.
    fn from(err: StoreError) -> Status {
        let code = code(&err);
        match &err {
            StoreError::Internal(_) => tracing::error!(error = %err, "store failed"),
            StoreError::Unavailable(_) => tracing::warn!(error = %err, "store unavailable"),
            StoreError::Denied(denial) => {
                tracing::debug!(reason = denial.code(), error = %err, "denied by plan")
            }
            _ => tracing::debug!(code = ?code, error = %err, "refused by store"),
        }
        Status::new(code, err.to_string())
    }
}

/// The ledger's time, or UNAVAILABLE while the store's clock has not been read (a sidecar
/// started while its store was down): guessing from this machine's clock could expire holds or
/// roll cycles early.
pub fn ledger_now(clock: &dyn crate::clock::Clock) -> Result<i64, Status> {
    clock.ledger_now_ms().ok_or_else(|| {
        Status::unavailable("the store's clock has not been read yet; retry shortly")
    })
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
                StoreError::InvalidArgument {
                    field: "model",
                    message: "unknown model `x`".into(),
                },
                Code::InvalidArgument,
            ),
            (StoreError::Denied(denial.clone()), Code::PermissionDenied),
            (
                StoreError::InsufficientFunds {
                    needed: 8,
                    available: 4,
                },
                Code::ResourceExhausted,
            ),
            (
                StoreError::GenerationConflict {
                    generation_id: "g".into(),
                    existing: "a".into(),
                    requested: "b".into(),
                },
                Code::AlreadyExists,
            ),
            (
                StoreError::GrantConflict {
                    grant_id: "g".into(),
                },
                Code::AlreadyExists,
            ),
            (
                StoreError::RequestConflict {
                    request_id: "r".into(),
                },
                Code::AlreadyExists,
            ),
            (
                StoreError::HoldNotFound {
                    account_id: "a".into(),
                    generation_id: "g".into(),
                },
                Code::NotFound,
            ),
            (
                StoreError::GrantNotFound {
                    account_id: "a".into(),
                    grant_id: "g".into(),
                },
                Code::NotFound,
            ),
            (
                StoreError::HoldState {
                    generation_id: "g".into(),
                    state: HoldState::Settled,
                    operation: "release",
                },
                Code::FailedPrecondition,
            ),
            (
                StoreError::SettleAboveHold {
                    generation_id: "g".into(),
                    actual_quantity: 3,
                    reserved_quantity: 2,
                },
                Code::FailedPrecondition,
            ),
            (
                StoreError::TooManyGrants {
                    account_id: "a".into(),
                    limit: 1_000,
                },
                Code::ResourceExhausted,
            ),
            (StoreError::Unavailable("timeout".into()), Code::Unavailable),
            (StoreError::Internal("bad hash".into()), Code::Internal),
        ];
        for (err, expected) in cases {
            let message = err.to_string();
            let status = Status::from(err);
            assert_eq!(status.code(), expected, "{message}");
            assert_eq!(status.message(), message);
        }
        assert_eq!(
            Status::from(StoreError::Denied(denial)).message(),
            "model `cinema` needs plan `hollywood`; account is on `microbudget`"
        );
    }
}
