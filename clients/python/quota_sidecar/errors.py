"""Errors of the worker API as types, each carrying the server's message.

The server sends no structured error details, so the facts a caller acts on (the plan that
would allow a feature, the units needed and available, a hold's state) are read from its
messages, whose wording the sidecar keeps stable (see `src/store/mod.rs` and
`src/ledger/features.rs` of the service). A field that cannot be read is `None`; the error's
type never depends on the wording.
"""

from __future__ import annotations

import re

import grpc

from .types import HoldState

__all__ = [
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
    "Unimplemented",
    "ContentFiltered",
    "from_rpc_error",
]


class QuotaError(Exception):
    """A call the sidecar refused or could not answer. `message` is the server's text."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class InvalidArgument(QuotaError):
    """A request field is out of range (`INVALID_ARGUMENT`); `field` is its wire name."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message, code)
        head, sep, _ = message.partition(": ")
        self.field: str | None = head if sep and re.fullmatch(r"[a-z_]+", head) else None


class FeatureNotInPlan(QuotaError):
    """The account's plan does not allow the generation (`PERMISSION_DENIED`); credits never
    unlock features.

    `feature` is `"model"`, `"video_seconds"` or `"concurrent_holds"`; `plan` is the account's
    plan and `required_plan` the cheapest plan that would allow it (`None` when none does).
    """

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message, code)
        if "video is longer than" in message:
            self.feature: str | None = "video_seconds"
        elif "generations, the most plan" in message:
            self.feature = "concurrent_holds"
        elif re.search(r"\bmodel `", message):
            self.feature = "model"
        else:
            self.feature = None
        needs = re.search(r"(?:needs|move to) plan `([^`]+)`", message)
        self.required_plan: str | None = needs.group(1) if needs else None
        on = re.search(r"account is on `([^`]+)`|than plan `([^`]+)`|the most plan `([^`]+)`", message)
        self.plan: str | None = next((g for g in on.groups() if g), None) if on else None


class InsufficientFunds(QuotaError):
    """Allowance and credits together do not cover the cost (`RESOURCE_EXHAUSTED`)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message, code)
        found = re.search(r"costs (\d+) units, account has (\d+) available", message)
        self.needed: int | None = int(found.group(1)) if found else None
        self.available: int | None = int(found.group(2)) if found else None


class HoldConflict(QuotaError):
    """The generation id is already used for another generation (`ALREADY_EXISTS`)."""


class HoldNotFound(QuotaError):
    """No hold for this generation id on the account (`NOT_FOUND`)."""


class FailedPrecondition(QuotaError):
    """The hold does not allow the operation now (`FAILED_PRECONDITION`)."""


class HoldNotActive(FailedPrecondition):
    """The hold was already settled, released or has expired; `state` says which."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message, code)
        found = re.search(r"its hold is (\w+)", message)
        try:
            self.state: HoldState | None = HoldState(found.group(1)) if found else None
        except ValueError:
            self.state = None


class SettleAboveHold(FailedPrecondition):
    """Settle asked to charge more than was reserved."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message, code)
        found = re.search(r"for (\d+): only (\d+) were reserved", message)
        self.actual_quantity: int | None = int(found.group(1)) if found else None
        self.reserved_quantity: int | None = int(found.group(2)) if found else None


class QuotaUnavailable(QuotaError):
    """The sidecar or its store did not answer in time, retries included. Nothing is known
    to have changed; the same call with the same ids is safe to send again."""


class Unimplemented(QuotaError):
    """The sidecar does not serve this method (an older server)."""


class ContentFiltered(Exception):
    """Raise inside `client.hold(...)` when the content filter rejected the output: the hold
    is released as `content_filtered` (nothing charged) and the exception propagates."""


_BY_CODE: dict[grpc.StatusCode, type[QuotaError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.PERMISSION_DENIED: FeatureNotInPlan,
    grpc.StatusCode.RESOURCE_EXHAUSTED: InsufficientFunds,
    grpc.StatusCode.ALREADY_EXISTS: HoldConflict,
    grpc.StatusCode.NOT_FOUND: HoldNotFound,
    grpc.StatusCode.UNAVAILABLE: QuotaUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: QuotaUnavailable,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}


def from_rpc_error(err: grpc.RpcError) -> QuotaError:
    """The typed error for a failed call."""
    code = err.code()  # type: ignore[attr-defined]
    message = err.details() or ""  # type: ignore[attr-defined]
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        if "its hold is" in message:
            return HoldNotActive(message, code)
        if "were reserved" in message:
            return SettleAboveHold(message, code)
        return FailedPrecondition(message, code)
    return _BY_CODE.get(code, QuotaError)(message, code)
