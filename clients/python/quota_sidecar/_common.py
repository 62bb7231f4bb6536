"""What the sync and asyncio clients share: request building, retries, trace context."""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import grpc

from ._proto.quota.v1 import quota_pb2 as pb
from .errors import QuotaUnavailable, from_rpc_error
from .types import BatchItem, Kind, ReleaseReason, kind_to_pb, reason_to_pb

log = logging.getLogger("quota_sidecar")

DEFAULT_TARGET = "127.0.0.1:50051"
# Where the sidecar is when no target is given (a pod's environment sets it).
TARGET_ENV = "QUOTA_SIDECAR_URL"
DEFAULT_TIMEOUT_SECONDS = 2.0
# The server's hold TTL when a Reserve or Extend sends none.
SERVER_DEFAULT_TTL_SECONDS = 300
MAX_TTL_SECONDS = 3600

# Every worker call is idempotent on its ids (Reserve on generation_id, Settle and Release
# replay their first answer, Extend sets a TTL from now, the rest are reads), so a call that
# may or may not have reached the store is safe to send again.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

Ttl = timedelta | int | float | None


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep sending a call that failed with `UNAVAILABLE` or a deadline:
    exponential backoff with jitter, until `give_up_after_seconds` have passed since the first
    attempt (then `QuotaUnavailable`)."""

    give_up_after_seconds: float = 10.0
    initial_backoff_seconds: float = 0.05
    max_backoff_seconds: float = 2.0
    multiplier: float = 2.0

    def backoffs(self) -> Iterator[float]:
        """Successive waits before each retry, jittered to 50-100% so that workers that lost
        the sidecar together do not come back in lockstep."""
        backoff = self.initial_backoff_seconds
        while True:
            yield backoff * random.uniform(0.5, 1.0)
            backoff = min(backoff * self.multiplier, self.max_backoff_seconds)


NO_RETRY = RetryPolicy(give_up_after_seconds=0.0)
# Settle and Release at the end of a hold: giving up on a Settle gives the generation away,
# so they keep trying for longer than an ordinary call.
FINISH_RETRY = RetryPolicy(give_up_after_seconds=60.0)


@dataclass(frozen=True)
class Target:
    """Where to connect: `address` is gRPC's `host:port`; `scheme` is `"https"`, `"http"`
    or `None` for a bare `host:port` (plaintext unless credentials are given)."""

    address: str
    scheme: str | None

    def credentials(
        self, given: grpc.ChannelCredentials | None
    ) -> grpc.ChannelCredentials | None:
        """The channel's credentials: `given`, or the system's CA roots for `https://`;
        `None` means plaintext. `http://` with credentials is a contradiction."""
        if self.scheme == "https":
            return given if given is not None else grpc.ssl_channel_credentials()
        if self.scheme == "http" and given is not None:
            raise ValueError(f"{self.address}: http:// is plaintext, but credentials were given")
        return given


def parse_target(target: str | None) -> Target:
    """The sidecar's address from `target`, or from `QUOTA_SIDECAR_URL` when `target` is
    `None` (then `127.0.0.1:50051`). Accepts `host:port` and `http://host:port` (plaintext)
    and `https://host:port` (TLS); `[::1]:port` for IPv6. Anything else raises `ValueError`,
    so a wrong address fails at construction rather than as retried UNAVAILABLE calls."""
    origin = "target"
    if target is None:
        target = os.environ.get(TARGET_ENV) or DEFAULT_TARGET
        origin = TARGET_ENV
    if not isinstance(target, str):
        raise ValueError(f"{origin} must be a string, not {type(target).__name__}")
    text = target.strip()
    scheme, sep, _ = text.partition("://")
    if sep:
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(
                f"{origin} {target!r}: the scheme must be http:// (plaintext) or https:// (TLS)"
            )
        parts = urlsplit(text)
    else:
        parts = urlsplit("//" + text)
        scheme = None
    bad = (
        not text
        or any(c.isspace() for c in text)
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or not parts.hostname
    )
    try:
        port = parts.port
    except ValueError:
        bad, port = True, None
    if bad or port is None or port == 0:
        raise ValueError(
            f"{origin} {target!r} is not host:port, http://host:port or https://host:port"
        )
    host = parts.hostname
    if ":" in host:  # an IPv6 literal keeps its brackets in gRPC's host:port
        host = f"[{host}]"
    return Target(f"{host}:{port}", scheme)


def ttl_seconds(ttl: Ttl) -> int:
    """A TTL as whole seconds for the wire (0: the server's default), rounded up."""
    if ttl is None:
        return 0
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if not 0 < seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be more than 0 and at most {MAX_TTL_SECONDS} seconds")
    return math.ceil(seconds)


def heartbeat_period_seconds(ttl_secs: int) -> float:
    """How often a hold of this TTL is extended: three times per TTL, so one lost or slow
    Extend still leaves two chances before it expires."""
    effective = ttl_secs or SERVER_DEFAULT_TTL_SECONDS
    return max(effective / 3.0, 0.1)


def reserve_request(
    account_id: str,
    generation_id: str,
    kind: Kind | str,
    quantity: int,
    model: str,
    ttl: Ttl,
    labels: Mapping[str, str] | None,
) -> pb.ReserveRequest:
    return pb.ReserveRequest(
        account_id=account_id,
        generation_id=generation_id,
        kind=kind_to_pb(kind),
        model=model,
        quantity=quantity,
        ttl_seconds=ttl_seconds(ttl),
        labels=dict(labels or {}),
    )


def settle_request(
    account_id: str, generation_id: str, actual_quantity: int | None
) -> pb.SettleRequest:
    request = pb.SettleRequest(account_id=account_id, generation_id=generation_id)
    if actual_quantity is not None:
        request.actual_quantity = actual_quantity
    return request


def release_request(
    account_id: str, generation_id: str, reason: ReleaseReason | str
) -> pb.ReleaseRequest:
    return pb.ReleaseRequest(
        account_id=account_id, generation_id=generation_id, reason=reason_to_pb(reason)
    )


def extend_request(account_id: str, generation_id: str, ttl: Ttl) -> pb.ExtendRequest:
    return pb.ExtendRequest(
        account_id=account_id, generation_id=generation_id, ttl_seconds=ttl_seconds(ttl)
    )


def quote_request(account_id: str, kind: Kind | str, quantity: int, model: str) -> pb.QuoteRequest:
    return pb.QuoteRequest(
        account_id=account_id, kind=kind_to_pb(kind), model=model, quantity=quantity
    )


def batch_request(
    account_id: str, items: Iterable[BatchItem | Mapping[str, object]], ttl: Ttl
) -> pb.ReserveBatchRequest:
    request = pb.ReserveBatchRequest(account_id=account_id, ttl_seconds=ttl_seconds(ttl))
    for item in items:
        if not isinstance(item, BatchItem):
            item = BatchItem(**item)  # type: ignore[arg-type]
        request.items.add(
            generation_id=item.generation_id,
            kind=kind_to_pb(item.kind),
            model=item.model,
            quantity=item.quantity,
            labels=dict(item.labels),
        )
    return request


try:  # Trace context is sent only when the caller has OpenTelemetry.
    from opentelemetry import propagate as _propagate
except ImportError:  # pragma: no cover - exercised where opentelemetry is absent
    _propagate = None  # type: ignore[assignment]


def call_metadata() -> tuple[tuple[str, str], ...]:
    """The current OpenTelemetry context (W3C `traceparent`, `tracestate`, baggage) as gRPC
    metadata; empty without OpenTelemetry or an active span."""
    if _propagate is None:
        return ()
    carrier: dict[str, str] = {}
    _propagate.inject(carrier)
    return tuple((key.lower(), value) for key, value in carrier.items())


def unavailable(method: str, last: Exception | None, waited_seconds: float) -> QuotaUnavailable:
    message = getattr(last, "message", None) or str(last) or "no answer"
    return QuotaUnavailable(
        f"{method}: sidecar unavailable after {waited_seconds:.1f} s of retries: {message}",
        getattr(last, "code", None),
        getattr(last, "details", None),
    )


def retry_delay(
    method: str,
    err: grpc.RpcError,
    started: float,
    backoffs: Iterator[float],
    give_up_after_seconds: float,
) -> float:
    """How long to wait before sending `method` again after `err` (both clients' retry rule):
    raises the mapped error when `err` is not worth retrying, or `QuotaUnavailable` when the
    retries would outlast `give_up_after_seconds` since `started` (`time.monotonic()`)."""
    error = from_rpc_error(err)
    if err.code() not in RETRYABLE:  # type: ignore[attr-defined]
        raise error from None
    waited = time.monotonic() - started
    delay = next(backoffs)
    if waited + delay > give_up_after_seconds:
        raise unavailable(method, error, waited) from None
    log.warning("%s: sidecar unavailable (%s); retrying in %.2f s", method, error, delay)
    return delay
