//! What a store call answers when it does not succeed: the ledger's refusal, or what went
//! wrong in the store itself.

pub use crate::ledger::error::LedgerError;

/// Why a store operation did not happen. A refused or failed operation changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The ledger refused the operation.
    #[error(transparent)]
    Ledger(LedgerError),
    /// The store did not answer in time: the call may or may not have taken effect, so only
    /// the same call with the same ids may be sent again.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt state (a reply the store cannot read, a stored record out of shape,
    /// an account that breaks a ledger invariant); never expected.
    #[error("internal store error: {0}")]
    Internal(String),
}

impl From<LedgerError> for StoreError {
    /// The ledger's refusal; its finding of a broken invariant is the store's corrupt state.
    fn from(err: LedgerError) -> StoreError {
        match err {
            LedgerError::InvariantBroken(_) => StoreError::Internal(err.to_string()),
            refusal => StoreError::Ledger(refusal),
        }
    }
}

impl StoreError {
    /// A request field out of range (`field` is its wire name): the ledger's
    /// `InvalidArgument`, which the event log and the connection settings answer too.
    pub fn invalid_argument(field: &'static str, message: impl Into<String>) -> StoreError {
        StoreError::Ledger(LedgerError::InvalidArgument {
            field,
            message: message.into(),
        })
    }

    /// The ledger's refusal, if this is one.
    pub fn refusal(&self) -> Option<&LedgerError> {
        match self {
            StoreError::Ledger(refusal) => Some(refusal),
            _ => None,
        }
    }
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_as_the_ledger_wrote_it() {
        let refusal = LedgerError::GrantConflict {
            grant_id: "pack".into(),
        };
        let err = StoreError::from(refusal.clone());
        assert_eq!(err.to_string(), refusal.to_string());
        assert_eq!(err.refusal(), Some(&refusal));
        assert_eq!(StoreError::Unavailable("down".into()).refusal(), None);
    }

    #[test]
    fn a_broken_invariant_is_the_stores_internal_error() {
        let err = StoreError::from(LedgerError::InvariantBroken("held below zero".into()));
        assert_eq!(
            err,
            StoreError::Internal("ledger invariant broken: held below zero".into())
        );
        assert_eq!(
            err.to_string(),
            "internal store error: ledger invariant broken: held below zero"
        );
    }
}
