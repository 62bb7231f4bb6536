"""The typed errors come from the server's error details (`ErrorInfo.reason` and its
metadata, `BadRequest`, `QuotaFailure`, `RetryInfo`), not from its wording: each reason a
worker can meet, with its numbers."""

from __future__ import annotations

import grpc
import pytest

from conftest import Admin, RedisServer, Sidecar, new_id
from quota_sidecar import (
    BatchItem,
    FeatureNotInPlan,
    HoldConflict,
    HoldNotActive,
    HoldNotFound,
    HoldState,
    InsufficientFunds,
    InternalError,
    InvalidArgument,
    QuotaClient,
    QuotaUnavailable,
    RetryPolicy,
    SettleAboveHold,
)
from quota_sidecar import errors as quota_errors


def test_plan_denied_carries_plan_required_plan_and_feature(client, account):
    with pytest.raises(FeatureNotInPlan) as e:
        client.reserve(account, new_id("gen"), "video", 2, model="cinema")
    err = e.value
    assert err.reason == "PLAN_DENIED"
    assert err.metadata["plan"] == "microbudget"
    assert err.metadata["required_plan"] == "hollywood"
    assert err.metadata["feature"] == "model"
    assert err.metadata["model"] == "cinema"


def test_insufficient_funds_carries_the_units_and_a_quota_failure(client, admin):
    account = new_id("acct")
    admin.grant(account, 30)
    with pytest.raises(InsufficientFunds) as e:
        client.reserve(account, new_id("gen"), "video", 5)
    err = e.value
    assert err.reason == "INSUFFICIENT_FUNDS"
    assert (err.needed_units, err.available_units) == (50, 30)
    assert err.metadata["needed_units"] == "50"
    assert len(err.details.quota_violations) == 1


def test_conflict_not_found_state_and_settle_above_hold_by_reason(client, account):
    generation = new_id("gen")
    client.reserve(account, generation, "character_image", 1)
    with pytest.raises(HoldConflict) as e:
        client.reserve(account, generation, "character_image", 2)
    assert e.value.reason == "GENERATION_CONFLICT"
    assert e.value.metadata["generation_id"] == generation

    with pytest.raises(SettleAboveHold) as e:
        client.settle(account, generation, actual_quantity=2)
    assert e.value.reason == "SETTLE_ABOVE_HOLD"
    assert (e.value.actual_quantity, e.value.reserved_quantity) == (2, 1)

    client.release(account, generation)
    with pytest.raises(HoldNotActive) as e:
        client.extend(account, generation, ttl=60)
    assert e.value.reason == "HOLD_STATE"
    assert e.value.metadata["state"] == "released"
    assert e.value.state is HoldState.RELEASED

    missing = new_id("gen")
    with pytest.raises(HoldNotFound) as e:
        client.settle(account, missing)
    assert e.value.reason == "HOLD_NOT_FOUND"
    assert e.value.metadata["generation_id"] == missing


def test_invalid_argument_names_the_field_in_bad_request(client, account):
    with pytest.raises(InvalidArgument) as e:
        client.reserve(account, new_id("gen"), "character_image", 17)
    assert e.value.reason == "INVALID_ARGUMENT"
    assert e.value.field == "quantity"
    assert e.value.details.field_violations[0][0] == "quantity"
    items = [BatchItem(new_id("gen"), "first_frame", 1), BatchItem(new_id("gen"), "video", 0)]
    with pytest.raises(InvalidArgument) as e:
        client.reserve_batch(account, items)
    assert e.value.field == "items[1].quantity"


async def test_async_errors_read_the_same_details(aclient, account):
    with pytest.raises(FeatureNotInPlan) as e:
        await aclient.reserve(account, new_id("gen"), "video", 2, model="pro")
    assert (e.value.reason, e.value.required_plan) == ("PLAN_DENIED", "independent")
    with pytest.raises(HoldNotFound) as e:
        await aclient.settle(account, new_id("gen"))
    assert e.value.reason == "HOLD_NOT_FOUND"


class _Refusal(grpc.RpcError):
    """A refusal as a proxy might answer it: a code and a message, no details."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self._code, self._message = code, message

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self):
        return ()


def test_an_answer_without_details_is_typed_by_code_and_never_parsed():
    # The wording of a plan denial, without details: no field is guessed from it.
    err = quota_errors.from_rpc_error(_Refusal(
        grpc.StatusCode.PERMISSION_DENIED,
        "model `cinema` needs plan `hollywood`; account is on `microbudget`"))
    assert type(err) is quota_errors.QuotaError
    assert err.reason is None and dict(err.metadata) == {}
    assert isinstance(quota_errors.from_rpc_error(
        _Refusal(grpc.StatusCode.UNAVAILABLE, "connection refused")), QuotaUnavailable)


@pytest.fixture
def redis_stack(sidecar_bin):
    """A private Redis and a sidecar on it, for failures of the store itself."""
    redis = RedisServer()
    sidecar = Sidecar(sidecar_bin, redis.url, ("--redis-timeout-ms", "300"))
    admin = Admin(sidecar.admin)
    yield redis, sidecar, admin
    admin.close()
    sidecar.stop()
    redis.close()


def test_store_failures_are_internal_or_unavailable_with_a_retry_delay(redis_stack):
    redis, sidecar, admin = redis_stack
    broken = new_id("acct")
    admin.grant(broken, 100)
    keys = redis.command("KEYS", f"*:a:{broken}").decode()
    key = next(line for line in keys.split("\r\n") if line.endswith(f":a:{broken}"))
    # The account state (one MessagePack value in field `s`) no longer decodes as one.
    assert redis.command("HSET", key, "s", "oops").startswith(b":")
    no_retry = RetryPolicy(give_up_after_seconds=0.0)
    with QuotaClient(sidecar.worker, timeout=5.0, retry=no_retry) as client:
        with pytest.raises(InternalError) as e:
            client.balance(broken)
        assert e.value.reason == "INTERNAL"
        assert e.value.message == "internal error in the sidecar; its log has the detail"

        redis.stop()
        with pytest.raises(QuotaUnavailable) as e:
            client.balance(new_id("acct"))
        assert e.value.reason == "STORE_UNAVAILABLE"
        assert e.value.retry_delay_seconds is not None and e.value.retry_delay_seconds > 0
