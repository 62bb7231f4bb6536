"""What the client puts on the wire and reads back, against a small in-test gRPC server:
the W3C trace context of the caller's span, and the second-version methods' requests and
replies (the real server does not serve those yet)."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider

from quota_sidecar import AsyncQuotaClient, BatchItem, DenialReason, Kind, QuotaClient
from quota_sidecar._proto.quota.v1 import quota_pb2 as pb
from quota_sidecar._proto.quota.v1 import quota_pb2_grpc as pb_grpc


class RecordingQuota(pb_grpc.QuotaServicer):
    """Records each request and its metadata, answers canned replies."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object, dict[str, str]]] = []

    def _record(self, name, request, context):
        self.calls.append((name, request, dict(context.invocation_metadata())))

    def GetBalance(self, request, context):
        self._record("GetBalance", request, context)
        return pb.Balance(account_id=request.account_id, plan="microbudget")

    def Quote(self, request, context):
        self._record("Quote", request, context)
        return pb.QuoteResponse(
            cost_units=80, from_allowance=0, from_credits=0, allowed=False,
            denial=pb.DENIAL_REASON_MODEL_NOT_IN_PLAN,
            denial_message="model `cinema` needs plan `hollywood`; account is on `none`",
            balance=pb.Balance(account_id=request.account_id, plan="none"),
        )

    def ReserveBatch(self, request, context):
        self._record("ReserveBatch", request, context)
        holds = [pb.Hold(account_id=request.account_id, generation_id=i.generation_id,
                         kind=i.kind, model=i.model, quantity=i.quantity,
                         cost_units=4 * i.quantity, state=pb.HOLD_STATE_HELD)
                 for i in request.items]
        return pb.ReserveBatchResponse(holds=holds, replayed=False,
                                       balance=pb.Balance(open_holds=len(holds)))

    def GetCatalog(self, request, context):
        self._record("GetCatalog", request, context)
        return pb.Catalog(
            version="v1:abc",
            plans=[pb.Plan(id="microbudget", price_cents=1000, allowance_units=1000,
                           models=["standard"], max_open_holds=2, max_video_seconds=5)],
            prices=[pb.Price(kind=pb.GENERATION_KIND_VIDEO, model="pro", units_per_item=20)],
            alert_thresholds_percent=[80, 100],
        )


@pytest.fixture
def fake():
    servicer = RecordingQuota()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_QuotaServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(grace=None)


@pytest.fixture(scope="module")
def tracer():
    provider = TracerProvider()
    return provider.get_tracer("quota-sidecar-client-tests")


def test_sends_the_callers_trace_context(fake, tracer):
    servicer, target = fake
    with QuotaClient(target) as client:
        with tracer.start_as_current_span("generate") as span:
            client.balance("acct-1")
        client.balance("acct-2")  # no span: no trace context
    ctx = span.get_span_context()
    expected = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    (_, _, with_span), (_, _, without) = [c for c in servicer.calls]
    assert with_span.get("traceparent") == expected
    assert "traceparent" not in without


async def test_async_client_sends_the_trace_context(fake, tracer):
    servicer, target = fake
    async with AsyncQuotaClient(target) as client:
        with tracer.start_as_current_span("generate") as span:
            await client.balance("acct-1")
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert servicer.calls[0][2]["traceparent"].split("-")[1] == trace_id


def test_quote_request_and_reply(fake):
    servicer, target = fake
    with QuotaClient(target) as client:
        q = client.quote("acct-1", Kind.CHARACTER_IMAGE, 2, model="cinema")
    (_, request, _), = servicer.calls
    assert request == pb.QuoteRequest(account_id="acct-1", kind=pb.GENERATION_KIND_CHARACTER_IMAGE,
                                      model="cinema", quantity=2)
    assert (q.allowed, q.denial, q.cost_units) == (False, DenialReason.MODEL_NOT_IN_PLAN, 80)
    assert q.balance.plan == "none"


def test_reserve_batch_request_and_reply(fake):
    servicer, target = fake
    with QuotaClient(target) as client:
        batch = client.reserve_batch(
            "acct-1",
            [BatchItem("s1", "character_image", 2, labels={"scene": "1"}),
             {"generation_id": "s2", "kind": Kind.VIDEO, "quantity": 3, "model": "pro"}],
            ttl=90,
        )
    (_, request, _), = servicer.calls
    assert request.account_id == "acct-1" and request.ttl_seconds == 90
    assert [(i.generation_id, i.kind, i.model, i.quantity, dict(i.labels)) for i in request.items] == [
        ("s1", pb.GENERATION_KIND_CHARACTER_IMAGE, "standard", 2, {"scene": "1"}),
        ("s2", pb.GENERATION_KIND_VIDEO, "pro", 3, {}),
    ]
    assert [(h.generation_id, h.kind, h.cost_units) for h in batch.holds] == [
        ("s1", Kind.CHARACTER_IMAGE, 8), ("s2", Kind.VIDEO, 12)]
    assert batch.balance.open_holds == 2


def test_catalog_reply(fake):
    _, target = fake
    with QuotaClient(target) as client:
        catalog = client.catalog()
    assert catalog.version == "v1:abc"
    assert catalog.plan("microbudget").models == ("standard",)
    assert catalog.units_per_item("video", "pro") == 20
    assert catalog.units_per_item("video", "cinema") is None
    assert catalog.alert_thresholds_percent == (80, 100)
