"""Every worker method against the real sidecar, memory store and Redis."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conftest import new_id
from quota_sidecar import (
    Balance,
    HoldState,
    Kind,
    ReleaseReason,
)


def test_reserve_returns_the_hold_and_the_balance_after(client, account):
    generation = new_id("gen")
    r = client.reserve(account, generation, "video", 5, labels={"job": "storyboard-7"})
    assert r.replayed is False
    hold = r.hold
    assert (hold.account_id, hold.generation_id) == (account, generation)
    assert (hold.kind, hold.model, hold.quantity) == (Kind.VIDEO, "standard", 5)
    assert hold.state is HoldState.HELD
    assert hold.cost_units == 50  # 10 units per standard video second
    assert (hold.from_allowance, hold.from_credits, hold.charged_units) == (50, 0, 0)
    assert hold.created_at is not None and hold.expires_at is not None
    # Default TTL: 300 s.
    assert hold.expires_at - hold.created_at == timedelta(seconds=300)
    assert isinstance(r.balance, Balance)
    assert (r.balance.allowance_total, r.balance.allowance_held) == (1000, 50)
    assert r.balance.allowance_available == 950
    assert r.balance.open_holds == 1


def test_reserve_accepts_the_kind_enum_a_model_and_a_ttl(client, admin):
    account = new_id("acct")
    admin.set_plan(account, "independent")
    r = client.reserve(account, new_id("gen"), Kind.FIRST_FRAME, 3, model="pro",
                       ttl=timedelta(minutes=2))
    assert (r.hold.kind, r.hold.model, r.hold.cost_units) == (Kind.FIRST_FRAME, "pro", 12)
    assert r.hold.expires_at - r.hold.created_at == timedelta(seconds=120)
    r = client.reserve(account, new_id("gen"), "location_image", 1, ttl=45)
    assert r.hold.expires_at - r.hold.created_at == timedelta(seconds=45)


def test_reserve_again_with_the_same_generation_id_replays(client, account):
    generation = new_id("gen")
    first = client.reserve(account, generation, "character_image", 2)
    again = client.reserve(account, generation, "character_image", 2)
    assert again.replayed is True
    assert again.hold == first.hold
    assert client.balance(account).allowance_held == 8  # held once


def test_unknown_kind_is_refused_before_any_call(client, account):
    with pytest.raises(ValueError, match="unknown generation kind 'audio'"):
        client.reserve(account, new_id("gen"), "audio", 1)


def test_settle_charges_and_replays(client, account):
    generation = new_id("gen")
    client.reserve(account, generation, "character_image", 2)
    s = client.settle(account, generation)
    assert (s.charged_units, s.returned_units, s.replayed) == (8, 0, False)
    assert s.hold.state is HoldState.SETTLED and s.hold.charged_units == 8
    assert (s.balance.allowance_used, s.balance.allowance_held) == (8, 0)
    again = client.settle(account, generation)
    assert (again.charged_units, again.replayed) == (8, True)
    assert client.balance(account).allowance_used == 8


def test_settle_for_less_returns_the_rest(client, account):
    generation = new_id("gen")
    client.reserve(account, generation, "video", 5)
    s = client.settle(account, generation, actual_quantity=3)
    assert (s.charged_units, s.returned_units) == (30, 20)
    assert s.balance.allowance_used == 30


def test_release_returns_everything(client, account):
    generation = new_id("gen")
    client.reserve(account, generation, "first_frame", 4)
    r = client.release(account, generation, ReleaseReason.SYSTEM_ERROR)
    assert (r.returned_units, r.replayed) == (8, False)
    assert r.hold.state is HoldState.RELEASED
    assert (r.balance.allowance_used, r.balance.allowance_held) == (0, 0)
    again = client.release(account, generation, "system_error")
    assert again.replayed is True


def test_extend_moves_the_expiry(client, account):
    generation = new_id("gen")
    held = client.reserve(account, generation, "video", 2, ttl=60).hold
    extended = client.extend(account, generation, ttl=timedelta(minutes=30))
    assert extended.state is HoldState.HELD
    assert extended.expires_at - held.expires_at >= timedelta(seconds=1740)
    now = datetime.now(timezone.utc)
    assert timedelta(minutes=29) < extended.expires_at - now <= timedelta(minutes=30, seconds=5)


def test_balance_keeps_allowance_and_credits_apart(client, admin, account):
    admin.grant(account, 25)
    b = client.balance(account)
    assert (b.account_id, b.plan, b.scheduled_plan) == (account, "microbudget", "")
    assert (b.allowance_total, b.allowance_available, b.credits_available) == (1000, 1000, 25)
    assert b.available_units == 1025
    assert b.cycle_start < datetime.now(timezone.utc) < b.cycle_end


async def test_async_client_runs_every_method(aclient, account):
    generation = new_id("gen")
    r = await aclient.reserve(account, generation, Kind.VIDEO, 4, ttl=30)
    assert r.hold.cost_units == 40
    extended = await aclient.extend(account, generation, ttl=120)
    assert extended.expires_at > r.hold.expires_at
    s = await aclient.settle(account, generation, actual_quantity=2)
    assert (s.charged_units, s.returned_units) == (20, 20)
    other = new_id("gen")
    await aclient.reserve(account, other, "character_image", 1)
    released = await aclient.release(account, other, "cancelled")
    assert released.returned_units == 4
    b = await aclient.balance(account)
    assert (b.allowance_used, b.allowance_held, b.open_holds) == (20, 0, 0)
