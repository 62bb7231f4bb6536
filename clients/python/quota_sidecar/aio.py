"""The asyncio client and its `async with client.hold(...)` context manager."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from . import _common as c
from ._proto.quota.v1 import quota_pb2 as pb
from ._proto.quota.v1 import quota_pb2_grpc as pb_grpc
from .client import release_reason_for
from .errors import QuotaError, QuotaUnavailable
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


class AsyncQuotaClient:
    """asyncio client of the sidecar's worker API; the same methods, errors and retries as
    `QuotaClient`, as coroutines. Create it inside the event loop that uses it and
    `await client.close()` (or use `async with`)."""

    def __init__(
        self,
        target: str | None = None,
        timeout: float = c.DEFAULT_TIMEOUT_SECONDS,
        *,
        retry: RetryPolicy = RetryPolicy(),
        finish_retry: RetryPolicy = c.FINISH_RETRY,
        credentials: grpc.ChannelCredentials | None = None,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self.timeout = timeout
        self.retry = retry
        self.finish_retry = finish_retry
        self._owns_channel = channel is None
        if channel is None:
            where = c.parse_target(target)
            credentials = where.credentials(credentials)
            options = [("grpc.enable_retries", 0)]
            channel = (
                grpc.aio.secure_channel(where.address, credentials, options)
                if credentials is not None
                else grpc.aio.insecure_channel(where.address, options)
            )
        self._channel = channel
        self._stub = pb_grpc.QuotaStub(channel)

    async def close(self) -> None:
        """Closes the channel (when the client opened it)."""
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> AsyncQuotaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(
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
                return await rpc(
                    request, timeout=timeout or self.timeout, metadata=c.call_metadata()
                )
            except grpc.aio.AioRpcError as err:
                await asyncio.sleep(
                    c.retry_delay(method, err, started, backoffs, retry.give_up_after_seconds)
                )

    async def reserve(
        self,
        account_id: str,
        generation_id: str,
        kind: Kind | str,
        quantity: int,
        model: str = "standard",
        ttl: c.Ttl = None,
        labels: Mapping[str, str] | None = None,
    ) -> Reservation:
        """See `QuotaClient.reserve`."""
        request = c.reserve_request(
            account_id, generation_id, kind, quantity, model, ttl, labels
        )
        r = await self._call("Reserve", request)
        return Reservation.from_pb(r)

    async def settle(
        self,
        account_id: str,
        generation_id: str,
        actual_quantity: int | None = None,
        *,
        retry: RetryPolicy | None = None,
    ) -> Settlement:
        """See `QuotaClient.settle`."""
        request = c.settle_request(account_id, generation_id, actual_quantity)
        r = await self._call("Settle", request, retry)
        return Settlement.from_pb(r)

    async def release(
        self,
        account_id: str,
        generation_id: str,
        reason: ReleaseReason | str = ReleaseReason.FAILED,
        *,
        retry: RetryPolicy | None = None,
    ) -> Release:
        """See `QuotaClient.release`."""
        request = c.release_request(account_id, generation_id, reason)
        r = await self._call("Release", request, retry)
        return Release.from_pb(r)

    async def extend(
        self,
        account_id: str,
        generation_id: str,
        ttl: c.Ttl = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> Hold:
        """See `QuotaClient.extend`."""
        request = c.extend_request(account_id, generation_id, ttl)
        r = await self._call("Extend", request, retry, timeout)
        return Hold.from_pb(r.hold)

    async def balance(self, account_id: str) -> Balance:
        """See `QuotaClient.balance`."""
        r = await self._call("GetBalance", pb.GetBalanceRequest(account_id=account_id))
        return Balance.from_pb(r)

    async def quote(
        self, account_id: str, kind: Kind | str, quantity: int, model: str = "standard"
    ) -> Quote:
        """See `QuotaClient.quote`."""
        r = await self._call("Quote", c.quote_request(account_id, kind, quantity, model))
        return quote_from_pb(r)

    async def reserve_batch(
        self,
        account_id: str,
        items: Iterable[BatchItem | Mapping[str, object]],
        ttl: c.Ttl = None,
    ) -> BatchReservation:
        """See `QuotaClient.reserve_batch`."""
        r = await self._call("ReserveBatch", c.batch_request(account_id, items, ttl))
        return BatchReservation.from_pb(r)

    async def catalog(self) -> Catalog:
        """See `QuotaClient.catalog`."""
        return catalog_from_pb(await self._call("GetCatalog", pb.GetCatalogRequest()))

    def hold(
        self,
        account_id: str,
        generation_id: str,
        kind: Kind | str,
        quantity: int,
        model: str = "standard",
        ttl: c.Ttl = None,
        labels: Mapping[str, str] | None = None,
    ) -> AsyncHoldContext:
        """`async with client.hold(...) as h:` — as `QuotaClient.hold`, with the heartbeat as
        a task; a cancelled task releases the hold as `cancelled`."""
        return AsyncHoldContext(
            self, account_id, generation_id, kind, quantity, model, ttl, labels
        )


class AsyncHoldContext:
    """One generation's hold inside `async with client.hold(...) as h:`; the same attributes
    as `HoldContext`."""

    def __init__(
        self,
        client: AsyncQuotaClient,
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
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def hold(self) -> Hold:
        """The hold Reserve returned."""
        assert self.reservation is not None, "the hold exists inside the async with block"
        return self.reservation.hold

    async def __aenter__(self) -> AsyncHoldContext:
        self.reservation = await self.client.reserve(
            self.account_id,
            self.generation_id,
            self.kind,
            self.quantity,
            self.model,
            self.ttl_seconds or None,
            self.labels,
        )
        self._heartbeat = asyncio.create_task(
            self._beat(), name=f"quota-heartbeat-{self.generation_id}"
        )
        return self

    async def _beat(self) -> None:
        period = c.heartbeat_period_seconds(self.ttl_seconds)
        while True:
            await asyncio.sleep(period)
            try:
                await self.client.extend(
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
                c.log.error("heartbeat of %s stopped: %s", self.generation_id, err)
                self.heartbeat_error = err
                return

    async def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            # wait() never raises the heartbeat's own cancellation, only ours.
            await asyncio.wait([self._heartbeat])

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        await self._stop_heartbeat()
        retry = self.client.finish_retry
        if exc is None:
            if self.actual_quantity == 0:
                self.release_result = await self._shielded(
                    self.client.release(
                        self.account_id, self.generation_id, ReleaseReason.FAILED, retry=retry
                    )
                )
            else:
                self.settlement = await self._shielded(
                    self.client.settle(
                        self.account_id, self.generation_id, self.actual_quantity, retry=retry
                    )
                )
            return False
        reason = release_reason_for(exc)
        try:
            self.release_result = await self._shielded(
                self.client.release(self.account_id, self.generation_id, reason, retry=retry)
            )
        except QuotaError as err:
            c.log.error("release of %s as %s failed: %s", self.generation_id, reason, err)
            if hasattr(exc, "add_note"):
                exc.add_note(f"quota-sidecar: release as {reason} failed: {err}")
        return False

    @staticmethod
    async def _shielded(call: Any) -> Any:
        # A second cancellation while the hold is being finished must not leave it open: the
        # call carries on in its own task and the cancellation reaches the caller.
        return await asyncio.shield(asyncio.ensure_future(call))
