"""Each refusal of the server as its own exception type, with the server's message and the
facts read from its error details."""

from __future__ import annotations

import grpc
import pytest

from conftest import free_port, new_id
from quota_sidecar import (
    AsyncQuotaClient,
    FeatureNotInPlan,
    HoldConflict,
    HoldNotActive,
    HoldNotFound,
    HoldState,
    InsufficientFunds,
    InvalidArgument,
    QuotaClient,
    QuotaError,
    QuotaUnavailable,
    RetryPolicy,
    SettleAboveHold,
)


def test_model_not_in_plan_names_the_plan_that_allows_it(client, account):
    with pytest.raises(FeatureNotInPlan) as e:
        client.reserve(account, new_id("gen"), "video", 2, model="cinema")
    err = e.value
    assert (err.feature, err.plan, err.required_plan) == ("model", "microbudget", "hollywood")
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert str(err) == err.message and "`cinema`" in err.message


def test_video_too_long_names_the_plan_that_allows_it(client, account):
    with pytest.raises(FeatureNotInPlan) as e:
        client.reserve(account, new_id("gen"), "video", 8)
    err = e.value
    assert (err.feature, err.plan, err.required_plan) == (
        "video_seconds", "microbudget", "independent")
    assert "8 s video" in err.message


def test_too_many_concurrent_holds_names_the_plan_that_allows_more(client, admin):
    account = new_id("acct")  # no plan: one generation at a time
    admin.grant(account, 100)
    client.reserve(account, new_id("gen"), "character_image", 1)
    with pytest.raises(FeatureNotInPlan) as e:
        client.reserve(account, new_id("gen"), "character_image", 1)
    err = e.value
    assert (err.feature, err.plan, err.required_plan) == (
        "concurrent_holds", "none", "microbudget")


def test_insufficient_funds_carries_needed_and_available(client, admin):
    account = new_id("acct")
    admin.grant(account, 30)
    with pytest.raises(InsufficientFunds) as e:
        client.reserve(account, new_id("gen"), "video", 5)
    assert (e.value.needed, e.value.available) == (50, 30)
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # A denied Reserve leaves nothing behind.
    assert client.balance(account).credits_held == 0


def test_generation_id_reused_for_another_generation_is_a_conflict(client, account):
    generation = new_id("gen")
    client.reserve(account, generation, "character_image", 1)
    with pytest.raises(HoldConflict) as e:
        client.reserve(account, generation, "character_image", 2)
    assert generation in e.value.message


def test_unknown_hold_is_not_found(client, account):
    for call in (client.settle, client.release, client.extend):
        with pytest.raises(HoldNotFound):
            call(account, new_id("gen"))


def test_finished_hold_is_not_active_and_says_its_state(client, account):
    settled, released = new_id("gen"), new_id("gen")
    client.reserve(account, settled, "character_image", 1)
    client.settle(account, settled)
    with pytest.raises(HoldNotActive) as e:
        client.release(account, settled)
    assert e.value.state is HoldState.SETTLED
    client.reserve(account, released, "character_image", 1)
    client.release(account, released)
    with pytest.raises(HoldNotActive) as e:
        client.settle(account, released)
    assert e.value.state is HoldState.RELEASED
    with pytest.raises(HoldNotActive) as e:
        client.extend(account, released, ttl=60)
    assert e.value.state is HoldState.RELEASED


def test_settle_above_the_hold_is_refused(client, account):
    generation = new_id("gen")
    client.reserve(account, generation, "video", 2)
    with pytest.raises(SettleAboveHold) as e:
        client.settle(account, generation, actual_quantity=3)
    assert (e.value.actual_quantity, e.value.reserved_quantity) == (3, 2)


def test_bad_input_is_invalid_argument_naming_the_field(client, account):
    with pytest.raises(InvalidArgument) as e:
        client.reserve(account, "not a valid id", "character_image", 1)
    assert e.value.field == "generation_id"
    with pytest.raises(InvalidArgument) as e:
        client.reserve(account, new_id("gen"), "character_image", 17)
    assert e.value.field == "quantity"
    assert isinstance(e.value, QuotaError)


def test_no_sidecar_is_unavailable_after_the_retry_window():
    target = f"127.0.0.1:{free_port()}"
    with QuotaClient(target, timeout=0.5,
                     retry=RetryPolicy(give_up_after_seconds=1.0)) as client:
        with pytest.raises(QuotaUnavailable, match="after .* of retries"):
            client.balance("acct-1")


async def test_async_errors_are_the_same_types(aclient, account):
    with pytest.raises(FeatureNotInPlan):
        await aclient.reserve(account, new_id("gen"), "video", 2, model="pro")
    with pytest.raises(HoldNotFound):
        await aclient.settle(account, new_id("gen"))
    async with AsyncQuotaClient(f"127.0.0.1:{free_port()}", timeout=0.5,
                                retry=RetryPolicy(give_up_after_seconds=1.0)) as nobody:
        with pytest.raises(QuotaUnavailable):
            await nobody.balance(account)
