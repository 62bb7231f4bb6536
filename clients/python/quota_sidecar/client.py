"""The blocking client and its `hold(...)` context manager."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import grpc

from . import _common as c
from ._proto.quota.v1 import quota_pb2 as pb
from ._proto.quota.v1 import quota_pb2_grpc as pb_grpc
from .errors import (
    ContentFiltered,
    QuotaError,
    QuotaUnavailable,
)
from .types import (
    Balance,
    BatchItem,
    BatchReservation,
    Catalog,
    Hold,
    Kind,
    Quote,
    Release,
    ReleaseReason,
    Reservation,
    Settlement,
    catalog_from_pb,
    quote_from_pb,
)

RetryPolicy = c.RetryPolicy


class QuotaClient:
    """Blocking client of the sidecar's worker API (`quota.v1.Quota`).

    `target` is the worker listener: `host:port` or `http://host:port` (plaintext),
    `https://host:port` (TLS, with `credentials` or the system's CA roots); `None` reads
    `QUOTA_SIDECAR_URL` (default `127.0.0.1:50051`). A malformed target raises `ValueError`
    here. `timeout` is each attempt's deadline in seconds. Calls that fail with `UNAVAILABLE` or a deadline are sent again with the same
    ids under `retry` (they are all idempotent); other refusals raise a `QuotaError` subclass
    at once. Thread-safe; use one client per process and `close()` it (or use `with`).
    """

    def __init__(
        self,
        target: str | None = None,
        timeout: float = c.DEFAULT_TIMEOUT_SECONDS,
        *,
        retry: RetryPolicy = RetryPolicy(),
        finish_retry: RetryPolicy = c.FINISH_RETRY,
        credentials: grpc.ChannelCredentials | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        self.timeout = timeout
        self.retry = retry
        self.finish_retry = finish_retry
        self._owns_channel = channel is None
        if channel is None:
            where = c.parse_target(target)
            credentials = where.credentials(credentials)
            # The client retries by itself, on its own schedule and with the same ids.
            options = [("grpc.enable_retries", 0)]
            channel = (
                grpc.secure_channel(where.address, credentials, options)
                if credentials is not None
                else grpc.insecure_channel(where.address, options)
            )
        self._channel = channel
        self._stub = pb_grpc.QuotaStub(channel)

    def close(self) -> None:
        """Closes the channel (when the client opened it)."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> QuotaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self,
        method: str,
        request: object,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> Any:
        retry = retry or self.retry
        rpc = getattr(self._stub, method)
        started = time.monotonic()
        backoffs = retry.backoffs()
        while True:
            try:
                return rpc(
                    request, timeout=timeout or self.timeout, metadata=c.call_metadata()
                )
            except grpc.RpcError as err:
                time.sleep(
                    c.retry_delay(method, err, started, backoffs, retry.give_up_after_seconds)
                )

    def reserve(
        self,
        account_id: str,
        generation_id: str,
        kind: Kind | str,
        quantity: int,
        model: str = "standard",
        ttl: c.Ttl = None,
        labels: Mapping[str, str] | None = None,
    ) -> Reservation:
        """Checks the plan and funds and holds the cost of one generation.

        `quantity` is images (1-16) or video seconds; `ttl` (a `timedelta` or seconds) is how
        long the hold lives unless extended (default 300 s, at most 3600 s). Sending the same
        generation id again returns the first hold (`replayed=True`), so a retry never holds
        twice. Raises `FeatureNotInPlan`, `InsufficientFunds`, `HoldConflict`, ...
        """
        request = c.reserve_request(
            account_id, generation_id, kind, quantity, model, ttl, labels
        )
        r: pb.ReserveResponse = self._call("Reserve", request)
        return Reservation.from_pb(r)

    def settle(
        self,
        account_id: str,
        generation_id: str,
        actual_quantity: int | None = None,
        *,
        retry: RetryPolicy | None = None,
    ) -> Settlement:
        """Charges the hold, or only `actual_quantity` of it (never more than reserved).
        A second Settle returns the first result (`replayed=True`)."""
        request = c.settle_request(account_id, generation_id, actual_quantity)
        r: pb.SettleResponse = self._call("Settle", request, retry)
        return Settlement.from_pb(r)

    def release(
        self,
        account_id: str,
        generation_id: str,
        reason: ReleaseReason | str = ReleaseReason.FAILED,
        *,
        retry: RetryPolicy | None = None,
    ) -> Release:
        """Returns the whole hold: the generation failed, was content-filtered, hit a system
        error or was cancelled. Idempotent."""
        request = c.release_request(account_id, generation_id, reason)
        r: pb.ReleaseResponse = self._call("Release", request, retry)
        return Release.from_pb(r)

    def extend(
        self,
        account_id: str,
        generation_id: str,
        ttl: c.Ttl = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> Hold:
        """Keeps the hold alive for `ttl` from now (default 300 s); a hold lives at most 6 h
        in total."""
        request = c.extend_request(account_id, generation_id, ttl)
        r: pb.ExtendResponse = self._call("Extend", request, retry, timeout)
        return Hold.from_pb(r.hold)

    def balance(self, account_id: str) -> Balance:
        """The account's plan, cycle, allowance and credits."""
        r: pb.Balance = self._call("GetBalance", pb.GetBalanceRequest(account_id=account_id))
        return Balance.from_pb(r)

    def quote(
        self, account_id: str, kind: Kind | str, quantity: int, model: str = "standard"
    ) -> Quote:
        """What Reserve would answer now (cost, split, allowed or the denial); holds nothing."""
        r: pb.QuoteResponse = self._call(
            "Quote", c.quote_request(account_id, kind, quantity, model)
        )
        return quote_from_pb(r)

    def reserve_batch(
        self,
        account_id: str,
        items: Iterable[BatchItem | Mapping[str, object]],
        ttl: c.Ttl = None,
    ) -> BatchReservation:
        """Holds 1-64 generations of one account, all or none (a storyboard's shots).
        Idempotent on the generation ids; denials raise as `reserve` does."""
        r: pb.ReserveBatchResponse = self._call(
            "ReserveBatch", c.batch_request(account_id, items, ttl)
        )
        return BatchReservation.from_pb(r)

    def catalog(self) -> Catalog:
        """Plans, prices and usage alert thresholds in force."""
        r: pb.Catalog = self._call("GetCatalog", pb.GetCatalogRequest())
        return catalog_from_pb(r)

    def hold(
        self,
        account_id: str,
        generation_id: str,
        kind: Kind | str,
        quantity: int,
        model: str = "standard",
        ttl: c.Ttl = None,
        labels: Mapping[str, str] | None = None,
    ) -> HoldContext:
        """A hold for the duration of a `with` block::

            with client.hold(account, generation, "video", 10, ttl=60) as h:
                frames = render(...)
                h.actual_quantity = len(frames) // fps   # optional: settle for less

        Reserve on enter; Settle on a normal exit (Release as `failed` when
        `actual_quantity` is 0); on an exception Release as `content_filtered` for
        `ContentFiltered`, `cancelled` for `KeyboardInterrupt`/`SystemExit`, `failed`
        otherwise, and the exception propagates. A background thread extends the hold three
        times per TTL while the block runs.
        """
        return HoldContext(self, account_id, generation_id, kind, quantity, model, ttl, labels)


def release_reason_for(exc: BaseException) -> ReleaseReason:
    """How a hold is released when its block raised `exc`."""
    if isinstance(exc, ContentFiltered):
        return ReleaseReason.CONTENT_FILTERED
    if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
        return ReleaseReason.CANCELLED
    return ReleaseReason.FAILED


class HoldContext:
    """One generation's hold inside `with client.hold(...) as h:`.

    After enter, `h.reservation` and `h.hold` describe the hold. Set `h.actual_quantity` to
    settle for less than reserved. After exit, `h.settlement` or `h.release_result` is the
    outcome; `h.heartbeat_error` is the error that stopped the heartbeat, if one did.
    """

    def __init__(
        self,
        client: QuotaClient,
        account_id: str,
        generation_id: str,
        kind: Kind | str,
        quantity: int,
        model: str,
        ttl: c.Ttl,
        labels: Mapping[str, str] | None,
    ) -> None:
        self.client = client
        self.account_id = account_id
        self.generation_id = generation_id
        self.kind = kind
        self.quantity = quantity
        self.model = model
        self.ttl_seconds = c.ttl_seconds(ttl)
        self.labels = dict(labels or {})
        self.actual_quantity: int | None = None
        self.reservation: Reservation | None = None
        self.settlement: Settlement | None = None
        self.release_result: Release | None = None
        self.heartbeat_error: QuotaError | None = None
        self.extensions = 0
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def hold(self) -> Hold:
        """The hold Reserve returned."""
        assert self.reservation is not None, "the hold exists inside the with block"
        return self.reservation.hold

    def __enter__(self) -> HoldContext:
        self.reservation = self.client.reserve(
            self.account_id,
            self.generation_id,
            self.kind,
            self.quantity,
            self.model,
            self.ttl_seconds or None,
            self.labels,
        )
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"quota-heartbeat-{self.generation_id}", daemon=True
        )
        self._heartbeat.start()
        return self

    def _beat(self) -> None:
        period = c.heartbeat_period_seconds(self.ttl_seconds)
        while not self._stop.wait(period):
            try:
                # One attempt per beat: the next beat is the retry, well before expiry.
                self.client.extend(
                    self.account_id,
                    self.generation_id,
                    self.ttl_seconds or None,
                    retry=c.NO_RETRY,
                    timeout=min(self.client.timeout, period),
                )
                self.extensions += 1
            except QuotaUnavailable as err:
                c.log.warning("heartbeat of %s missed: %s", self.generation_id, err)
            except QuotaError as err:
                # Gone (expired, settled elsewhere, forgotten): extending again cannot help.
                c.log.error("heartbeat of %s stopped: %s", self.generation_id, err)
                self.heartbeat_error = err
                return

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=self.client.timeout + 1.0)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._stop_heartbeat()
        retry = self.client.finish_retry
        if exc is None:
            if self.actual_quantity == 0:
                # Nothing produced: the server refuses to settle 0; nothing is owed.
                self.release_result = self.client.release(
                    self.account_id, self.generation_id, ReleaseReason.FAILED, retry=retry
                )
            else:
                self.settlement = self.client.settle(
                    self.account_id, self.generation_id, self.actual_quantity, retry=retry
                )
            return False
        reason = release_reason_for(exc)
        try:
            self.release_result = self.client.release(
                self.account_id, self.generation_id, reason, retry=retry
            )
        except QuotaError as err:
            # The block's exception matters more; an unreleased hold expires by itself and
            # returns its units.
            c.log.error("release of %s as %s failed: %s", self.generation_id, reason, err)
            if hasattr(exc, "add_note"):  # Python 3.11+
                exc.add_note(f"quota-sidecar: release as {reason} failed: {err}")
        return False
