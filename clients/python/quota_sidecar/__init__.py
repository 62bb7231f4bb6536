"""Client of the quota-sidecar worker API for generation workers.

    from quota_sidecar import QuotaClient, ContentFiltered

    client = QuotaClient()  # QUOTA_SIDECAR_URL, else 127.0.0.1:50051
    with client.hold(account_id, generation_id, "video", 10) as h:
        run_the_generation()

The hold is settled when the block ends normally and released (nothing charged) when it
raises; a heartbeat keeps it alive meanwhile. See `QuotaClient.hold`.
"""

from ._common import RetryPolicy
from .aio import AsyncHoldContext, AsyncQuotaClient
from .client import HoldContext, QuotaClient
from .errors import (
    ContentFiltered,
    ErrorDetails,
    FailedPrecondition,
    FeatureNotInPlan,
    HoldConflict,
    HoldNotActive,
    HoldNotFound,
    InsufficientFunds,
    InternalError,
    InvalidArgument,
    QuotaError,
    QuotaUnavailable,
    SettleAboveHold,
    Unimplemented,
)
from .types import (
    Balance,
    BatchItem,
    BatchReservation,
    Catalog,
    DenialReason,
    GrantDraw,
    Hold,
    HoldState,
    Kind,
    Plan,
    Price,
    Quote,
    Release,
    ReleaseReason,
    Reservation,
    Settlement,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncHoldContext",
    "AsyncQuotaClient",
    "Balance",
    "BatchItem",
    "BatchReservation",
    "Catalog",
    "ContentFiltered",
    "DenialReason",
    "ErrorDetails",
    "FailedPrecondition",
    "FeatureNotInPlan",
    "GrantDraw",
    "Hold",
    "HoldConflict",
    "HoldContext",
    "HoldNotActive",
    "HoldNotFound",
    "HoldState",
    "InsufficientFunds",
    "InternalError",
    "InvalidArgument",
    "Kind",
    "Plan",
    "Price",
    "QuotaClient",
    "QuotaError",
    "QuotaUnavailable",
    "Quote",
    "Release",
    "ReleaseReason",
    "Reservation",
    "RetryPolicy",
    "SettleAboveHold",
    "Settlement",
    "Unimplemented",
]
