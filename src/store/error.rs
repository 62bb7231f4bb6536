//! What a store call answers when it does not succeed.

pub use crate::ledger::error::LedgerError as StoreError;

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;
