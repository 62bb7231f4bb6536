"""`client.hold(...)`: every way out of the block leaves exactly the charge the policy says
(settled: the cost or less; any failure: nothing), and the heartbeat keeps a long job's hold
alive."""

from __future__ import annotations

import asyncio
import time

import pytest

from conftest import new_id
from quota_sidecar import ContentFiltered, FeatureNotInPlan, HoldNotActive, HoldState


def assert_charged(client, admin, account, units):
    """The account was charged exactly `units` and holds nothing any more."""
    b = client.balance(account)
    assert (b.allowance_used, b.allowance_held, b.credits_held, b.open_holds) == (units, 0, 0, 0)
    assert admin.charged_units(account) == units


def released_reason(admin, account, generation) -> str:
    events = admin.hold_events(account, generation, until_type="hold.released")
    assert [e.type for e in events] == ["hold.reserved", "hold.released"]
    return events[-1].reason


def test_normal_exit_settles_the_whole_cost(client, admin, account):
    generation = new_id("gen")
    with client.hold(account, generation, "video", 5) as h:
        assert h.hold.state is HoldState.HELD and h.hold.cost_units == 50
        assert client.balance(account).allowance_held == 50
    assert h.settlement.charged_units == 50 and h.release_result is None
    assert_charged(client, admin, account, 50)


def test_partial_output_settles_for_less(client, admin, account):
    with client.hold(account, new_id("gen"), "video", 5) as h:
        h.actual_quantity = 3
    assert (h.settlement.charged_units, h.settlement.returned_units) == (30, 20)
    assert_charged(client, admin, account, 30)


def test_nothing_produced_releases(client, admin, account):
    generation = new_id("gen")
    with client.hold(account, generation, "character_image", 2) as h:
        h.actual_quantity = 0
    assert h.settlement is None and h.release_result.returned_units == 8
    assert_charged(client, admin, account, 0)
    assert released_reason(admin, account, generation) == "failed"


def test_content_filtered_releases_as_content_filtered(client, admin, account):
    generation = new_id("gen")
    with pytest.raises(ContentFiltered, match="nsfw"):
        with client.hold(account, generation, "character_image", 2) as h:
            raise ContentFiltered("nsfw")
    assert h.release_result.returned_units == 8
    assert_charged(client, admin, account, 0)
    assert released_reason(admin, account, generation) == "content_filtered"


def test_crash_releases_as_failed_and_propagates(client, admin, account):
    generation = new_id("gen")
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        with client.hold(account, generation, "video", 4):
            raise RuntimeError("CUDA out of memory")
    assert_charged(client, admin, account, 0)
    assert released_reason(admin, account, generation) == "failed"


def test_keyboard_interrupt_releases_as_cancelled(client, admin, account):
    generation = new_id("gen")
    with pytest.raises(KeyboardInterrupt):
        with client.hold(account, generation, "first_frame", 1):
            raise KeyboardInterrupt
    assert_charged(client, admin, account, 0)
    assert released_reason(admin, account, generation) == "cancelled"


def test_a_denied_hold_never_runs_the_block(client, account):
    ran = False
    with pytest.raises(FeatureNotInPlan):
        with client.hold(account, new_id("gen"), "video", 2, model="cinema"):
            ran = True
    assert not ran


TTL_SECONDS = 2
# Past three TTLs: without the heartbeat the hold would be long gone.
BLOCK_SECONDS = 3 * TTL_SECONDS + 1


def test_heartbeat_keeps_the_hold_alive_past_three_ttls(client, admin, account):
    # The control: the same TTL, nobody extends it, so it expires while the block runs.
    control = new_id("gen")
    client.reserve(account, control, "character_image", 1, ttl=TTL_SECONDS)
    started = time.monotonic()
    with client.hold(account, new_id("gen"), "video", 5, ttl=TTL_SECONDS) as h:
        time.sleep(BLOCK_SECONDS)
    assert time.monotonic() - started >= 3 * TTL_SECONDS
    assert h.heartbeat_error is None
    # Three beats per TTL, give or take scheduling.
    assert h.extensions >= BLOCK_SECONDS * 3 // TTL_SECONDS - 2
    assert h.settlement.charged_units == 50
    with pytest.raises(HoldNotActive) as e:
        client.settle(account, control)
    assert e.value.state is HoldState.EXPIRED
    assert_charged(client, admin, account, 50)


async def test_async_normal_and_partial_exits_settle(aclient, admin, account):
    async with aclient.hold(account, new_id("gen"), "video", 5) as h:
        await asyncio.sleep(0)
    assert h.settlement.charged_units == 50
    async with aclient.hold(account, new_id("gen"), "character_image", 4) as h:
        h.actual_quantity = 1
    assert h.settlement.charged_units == 4
    b = await aclient.balance(account)
    assert (b.allowance_used, b.allowance_held) == (54, 0)
    assert admin.charged_units(account) == 54


async def test_async_failures_release(aclient, admin, account):
    filtered, crashed = new_id("gen"), new_id("gen")
    with pytest.raises(ContentFiltered):
        async with aclient.hold(account, filtered, "character_image", 1):
            raise ContentFiltered("blocked")
    with pytest.raises(ValueError):
        async with aclient.hold(account, crashed, "character_image", 1):
            raise ValueError("bad prompt")
    b = await aclient.balance(account)
    assert (b.allowance_used, b.allowance_held, b.open_holds) == (0, 0, 0)
    assert admin.charged_units(account) == 0
    assert released_reason(admin, account, filtered) == "content_filtered"
    assert released_reason(admin, account, crashed) == "failed"


async def test_async_task_cancellation_releases_as_cancelled(aclient, admin, account):
    generation = new_id("gen")
    entered = asyncio.Event()

    async def job():
        async with aclient.hold(account, generation, "video", 3):
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(job())
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    b = await aclient.balance(account)
    assert (b.allowance_used, b.allowance_held, b.open_holds) == (0, 0, 0)
    assert released_reason(admin, account, generation) == "cancelled"


@pytest.mark.parametrize("sidecar", ["redis"], indirect=True)
async def test_async_heartbeat_keeps_the_hold_alive_past_three_ttls(aclient, admin, account):
    control = new_id("gen")
    await aclient.reserve(account, control, "character_image", 1, ttl=TTL_SECONDS)
    async with aclient.hold(account, new_id("gen"), "video", 5, ttl=TTL_SECONDS) as h:
        await asyncio.sleep(BLOCK_SECONDS)
    assert h.heartbeat_error is None
    assert h.extensions >= BLOCK_SECONDS * 3 // TTL_SECONDS - 2
    assert h.settlement.charged_units == 50
    with pytest.raises(HoldNotActive) as e:
        await aclient.settle(account, control)
    assert e.value.state is HoldState.EXPIRED
