//! Why a ledger operation did not happen: the ledger's refusals, and its own finding that an
//! account breaks an invariant. What can go wrong around the ledger (a store that does not
//! answer, a reply it cannot read) is the store's error (`store/error.rs`), which wraps this.

use super::hold_state::HoldState;
use super::Denial;

/// Why an operation did not happen. A refused operation (or one a broken invariant stopped)
/// changes nothing: not the account, not an event, not a counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// A request field is out of range; `field` is its wire name.
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    /// The plan does not allow the generation (credits never unlock features).
    #[error("{0}")]
    Denied(Denial),
    /// Allowance and credits together do not cover the cost.
    #[error(
        "not enough funds: generation costs {needed} units, account has {available} available"
    )]
    InsufficientFunds { needed: u64, available: u64 },
    /// The generation id is already used for a different generation.
    #[error("generation `{generation_id}` is already reserved as {existing}; this request asks for {requested}")]
    GenerationConflict {
        generation_id: String,
        existing: String,
        requested: String,
    },
    /// The grant id is already used with different terms.
    #[error("grant `{grant_id}` already exists with different units, source or expiry")]
    GrantConflict { grant_id: String },
    /// The request id was already used for a different plan change.
    #[error("request `{request_id}` was already used for a different plan change")]
    RequestConflict { request_id: String },
    /// No hold with this generation id (or it was forgotten after the retention period).
    #[error("no hold for generation `{generation_id}` on account `{account_id}`")]
    HoldNotFound {
        account_id: String,
        generation_id: String,
    },
    /// No grant with this id on the account.
    #[error("no grant `{grant_id}` on account `{account_id}`")]
    GrantNotFound {
        account_id: String,
        grant_id: String,
    },
    /// The hold is not in a state that allows the operation.
    #[error("cannot {operation} generation `{generation_id}`: its hold is {state}")]
    HoldState {
        generation_id: String,
        state: HoldState,
        operation: &'static str,
    },
    /// Settle asked to charge more than was reserved.
    #[error("cannot settle generation `{generation_id}` for {actual_quantity}: only {reserved_quantity} were reserved")]
    SettleAboveHold {
        generation_id: String,
        actual_quantity: u32,
        reserved_quantity: u32,
    },
    /// The account has as many live grants as it may.
    #[error("account `{account_id}` already has {limit} live grants")]
    TooManyGrants { account_id: String, limit: usize },
    /// One item of a ReserveBatch failed; the batch held nothing. Maps like the item's error.
    #[error("item {index} (generation `{generation_id}`): {source}")]
    BatchItem {
        index: usize,
        generation_id: String,
        source: Box<LedgerError>,
    },
    /// A refund asks for more than is left of the charge.
    #[error("cannot refund {requested} units of generation `{generation_id}`: {refundable} of its charge are left to refund")]
    RefundAboveCharge {
        generation_id: String,
        requested: u64,
        refundable: u64,
    },
    /// The refund id was already used for another refund.
    #[error("refund `{refund_id}` was already used for a different refund")]
    RefundConflict { refund_id: String },
    /// The account's state breaks one of the ledger's invariants (corrupt state or a bug;
    /// never expected). The operation stops before anything changes; a store answers it as
    /// its internal error.
    #[error("ledger invariant broken: {0}")]
    InvariantBroken(String),
}
