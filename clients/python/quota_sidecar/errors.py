"""Errors of the worker API as types, chosen by the server's error details.

Every error the sidecar answers carries `google.rpc.Status` details (the
`grpc-status-details-bin` trailer): an `ErrorInfo` of domain `quota.v1` whose `reason` says
what happened and whose `metadata` carries the numbers, plus `BadRequest` for a bad field,
`QuotaFailure` for missing funds and `RetryInfo` when the store is unavailable. The type of an
error is chosen by `reason` and its fields are read from `metadata`; the message is for people
and is never parsed. An answer without details (a proxy, a transport failure) maps by its
status code, with the fields `None`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2

from .types import HoldState

__all__ = [
    "DOMAIN",
    "ErrorDetails",
    "QuotaError",
    "InvalidArgument",
    "FeatureNotInPlan",
    "InsufficientFunds",
    "HoldConflict",
    "HoldNotFound",
    "FailedPrecondition",
    "HoldNotActive",
    "SettleAboveHold",
    "QuotaUnavailable",
    "InternalError",
    "Unimplemented",
    "ContentFiltered",
    "error_details",
    "from_rpc_error",
]

# The `ErrorInfo.domain` of the sidecar's errors.
DOMAIN = "quota.v1"
# The trailer that carries a serialized `google.rpc.Status`.
_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class ErrorDetails:
    """What a failed call's `google.rpc.Status` said, beyond code and message."""

    # `ErrorInfo.reason` (e.g. "HOLD_NOT_FOUND"); `None` when the answer had no details.
    reason: str | None = None
    # `ErrorInfo.metadata`: the numbers and names, as strings.
    metadata: Mapping[str, str] = field(default_factory=dict)
    # `BadRequest` field violations as (field, description).
    field_violations: tuple[tuple[str, str], ...] = ()
    # `QuotaFailure` violations as (subject, description).
    quota_violations: tuple[tuple[str, str], ...] = ()
    # `RetryInfo.retry_delay` in seconds, when the server suggested one.
    retry_delay_seconds: float | None = None


def _trailers(err: grpc.RpcError) -> Iterable[tuple[str, object]]:
    try:
        trailers = err.trailing_metadata()  # type: ignore[attr-defined]
    except Exception:  # a locally made RpcError may have none
        return ()
    return trailers or ()


def error_details(err: grpc.RpcError) -> ErrorDetails:
    """The error details of a failed call; empty when it carried none (or none of the
    sidecar's domain)."""
    raw = next((value for key, value in _trailers(err) if key == _DETAILS_KEY), None)
    if not isinstance(raw, bytes):
        return ErrorDetails()
    status = status_pb2.Status()
    try:
        status.ParseFromString(raw)
    except Exception:  # undecodable details are no details
        return ErrorDetails()
    reason: str | None = None
    metadata: dict[str, str] = {}
    fields: list[tuple[str, str]] = []
    quota: list[tuple[str, str]] = []
    retry: float | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == DOMAIN:
                reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend((v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            failure = error_details_pb2.QuotaFailure()
            detail.Unpack(failure)
            quota.extend((v.subject, v.description) for v in failure.violations)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info_retry = error_details_pb2.RetryInfo()
            detail.Unpack(info_retry)
            delay = info_retry.retry_delay
            retry = delay.seconds + delay.nanos / 1e9
    return ErrorDetails(reason, metadata, tuple(fields), tuple(quota), retry)


def _int(metadata: Mapping[str, str], key: str) -> int | None:
    try:
        return int(metadata[key])
    except (KeyError, ValueError):
        return None


class QuotaError(Exception):
    """A call the sidecar refused or could not answer. `message` is the server's text (for
    people); `reason` and `metadata` are its error details (for programs)."""

    def __init__(
        self,
        message: str,
        code: grpc.StatusCode | None = None,
        details: ErrorDetails | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details or ErrorDetails()

    @property
    def reason(self) -> str | None:
        """`ErrorInfo.reason`, e.g. `"INSUFFICIENT_FUNDS"`; `None` without details."""
        return self.details.reason

    @property
    def metadata(self) -> Mapping[str, str]:
        """`ErrorInfo.metadata`: the numbers and names of the refusal, as strings."""
        return self.details.metadata


class InvalidArgument(QuotaError):
    """A request field is out of range (`INVALID_ARGUMENT`); `field` is its wire name, e.g.
    `quantity` or `items[2].quantity`."""

    @property
    def field(self) -> str | None:
        if self.details.field_violations:
            return self.details.field_violations[0][0]
        return self.metadata.get("field")


class FeatureNotInPlan(QuotaError):
    """The account's plan does not allow the generation (`PLAN_DENIED`); credits never unlock
    features.

    `feature` is `"model"`, `"video_seconds"` or `"concurrent_holds"`; `plan` is the account's
    plan and `required_plan` the cheapest plan that would allow it (`None` when none does).
    """

    @property
    def feature(self) -> str | None:
        return self.metadata.get("feature")

    @property
    def plan(self) -> str | None:
        return self.metadata.get("plan")

    @property
    def required_plan(self) -> str | None:
        return self.metadata.get("required_plan")


class InsufficientFunds(QuotaError):
    """Allowance and credits together do not cover the cost (`INSUFFICIENT_FUNDS`)."""

    @property
    def needed_units(self) -> int | None:
        return _int(self.metadata, "needed_units")

    @property
    def available_units(self) -> int | None:
        return _int(self.metadata, "available_units")

    # The names of earlier releases.
    needed = needed_units
    available = available_units


class HoldConflict(QuotaError):
    """The generation id is already used for another generation (`GENERATION_CONFLICT`), or
    another id is reused with other terms (`*_CONFLICT`)."""


class HoldNotFound(QuotaError):
    """No hold for this generation id on the account (`HOLD_NOT_FOUND`)."""


class FailedPrecondition(QuotaError):
    """The hold does not allow the operation now (`FAILED_PRECONDITION`)."""


class HoldNotActive(FailedPrecondition):
    """The hold was already settled, released or has expired (`HOLD_STATE`); `state` says
    which."""

    @property
    def state(self) -> HoldState | None:
        try:
            return HoldState(self.metadata["state"])
        except (KeyError, ValueError):
            return None


class SettleAboveHold(FailedPrecondition):
    """Settle asked to charge more than was reserved (`SETTLE_ABOVE_HOLD`)."""

    @property
    def actual_quantity(self) -> int | None:
        return _int(self.metadata, "actual_quantity")

    @property
    def reserved_quantity(self) -> int | None:
        return _int(self.metadata, "reserved_quantity")


class QuotaUnavailable(QuotaError):
    """The sidecar or its store did not answer in time, retries included
    (`STORE_UNAVAILABLE`, or no answer at all). The call may or may not have taken effect
    (a write can reach the primary before its replicas, or answer after the deadline): only
    the same call with the same ids is safe to send again, never one with new ids. `retry_delay_seconds` is the server's
    suggestion, when it made one."""

    @property
    def retry_delay_seconds(self) -> float | None:
        return self.details.retry_delay_seconds


class InternalError(QuotaError):
    """A bug or corrupt state in the sidecar (`INTERNAL`); its log has the detail."""


class Unimplemented(QuotaError):
    """The sidecar does not serve this method (an older server)."""


class ContentFiltered(Exception):
    """Raise inside `client.hold(...)` when the content filter rejected the output: the hold
    is released as `content_filtered` (nothing charged) and the exception propagates."""


_BY_REASON: dict[str, type[QuotaError]] = {
    "INVALID_ARGUMENT": InvalidArgument,
    "PLAN_DENIED": FeatureNotInPlan,
    "INSUFFICIENT_FUNDS": InsufficientFunds,
    "GENERATION_CONFLICT": HoldConflict,
    "GRANT_CONFLICT": HoldConflict,
    "REQUEST_CONFLICT": HoldConflict,
    "REFUND_CONFLICT": HoldConflict,
    "HOLD_NOT_FOUND": HoldNotFound,
    "HOLD_STATE": HoldNotActive,
    "SETTLE_ABOVE_HOLD": SettleAboveHold,
    "REFUND_ABOVE_CHARGE": FailedPrecondition,
    "STORE_UNAVAILABLE": QuotaUnavailable,
    "SHUTTING_DOWN": QuotaUnavailable,
    "INTERNAL": InternalError,
}

# Answers without details (not from the sidecar itself): by code alone.
_BY_CODE: dict[grpc.StatusCode, type[QuotaError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.UNAVAILABLE: QuotaUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: QuotaUnavailable,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: InternalError,
}


def from_rpc_error(err: grpc.RpcError) -> QuotaError:
    """The typed error for a failed call."""
    code = err.code()  # type: ignore[attr-defined]
    message = err.details() or ""  # type: ignore[attr-defined]
    details = error_details(err)
    if details.reason is not None:
        kind = _BY_REASON.get(details.reason, QuotaError)
    else:
        kind = _BY_CODE.get(code, QuotaError)
    return kind(message, code, details)
