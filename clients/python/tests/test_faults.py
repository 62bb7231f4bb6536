"""Settle and Reserve across a Redis outage: the client retries with the same ids, and the
account is charged (or held) once, whether or not an earlier attempt reached the store."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from conftest import Admin, RedisServer, Sidecar, new_id
from quota_sidecar import QuotaClient, QuotaUnavailable, RetryPolicy


@pytest.fixture
def aof_stack(sidecar_bin):
    """A private Redis that keeps every answered write across a restart, and a sidecar on it."""
    redis = RedisServer(aof=True)
    sidecar = Sidecar(sidecar_bin, redis.url)
    admin = Admin(sidecar.admin)
    yield redis, sidecar, admin
    admin.close()
    sidecar.stop()
    redis.close()


def wait_for_retry_log(caplog, method: str, limit_seconds: float = 10.0) -> None:
    deadline = time.monotonic() + limit_seconds
    while not any(r.getMessage().startswith(f"{method}: sidecar unavailable")
                  for r in caplog.records):
        assert time.monotonic() < deadline, f"{method} was never retried"
        time.sleep(0.05)


def settle_in_background(client, account, generation):
    outcome: dict = {}

    def run():
        try:
            outcome["settlement"] = client.settle(account, generation)
        except Exception as err:  # reported by the test
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_settle_retried_across_a_redis_restart_charges_once(aof_stack, caplog):
    caplog.set_level(logging.WARNING, logger="quota_sidecar")
    redis, sidecar, admin = aof_stack
    account, generation = new_id("acct"), new_id("gen")
    admin.set_plan(account, "microbudget")
    patient = RetryPolicy(give_up_after_seconds=30.0)
    with QuotaClient(sidecar.worker, timeout=1.0, retry=patient) as client, \
            QuotaClient(sidecar.worker, timeout=1.0,
                        retry=RetryPolicy(give_up_after_seconds=0.5)) as hasty:
        client.reserve(account, generation, "video", 5)
        redis.stop()
        with pytest.raises(QuotaUnavailable):
            hasty.settle(account, generation)
        thread, outcome = settle_in_background(client, account, generation)
        wait_for_retry_log(caplog, "Settle")
        redis.restart()
        thread.join(timeout=40)
        assert not thread.is_alive(), "Settle still retrying 40 s after Redis came back"
        assert "error" not in outcome, outcome.get("error")
        assert outcome["settlement"].charged_units == 50
        again = client.settle(account, generation)
        assert (again.replayed, again.charged_units) == (True, 50)
        b = client.balance(account)
        assert (b.allowance_used, b.allowance_held, b.open_holds) == (50, 0, 0)
    assert admin.charged_units(account) == 50


def test_settle_whose_answer_was_lost_is_replayed_not_charged_again(aof_stack, caplog):
    caplog.set_level(logging.WARNING, logger="quota_sidecar")
    redis, sidecar, admin = aof_stack
    account, generation = new_id("acct"), new_id("gen")
    admin.set_plan(account, "microbudget")
    with QuotaClient(sidecar.worker, timeout=1.0,
                     retry=RetryPolicy(give_up_after_seconds=30.0)) as client:
        client.reserve(account, generation, "video", 5)
        # Redis stalls past the sidecar's 250 ms deadline: the first Settle answers
        # UNAVAILABLE, yet its script is queued and runs when the stall ends.
        stall = threading.Thread(target=redis.command, args=("DEBUG", "SLEEP", "1.5"))
        stall.start()
        time.sleep(0.1)
        settlement = client.settle(account, generation)
        stall.join(timeout=10)
        assert any(r.getMessage().startswith("Settle: sidecar unavailable")
                   for r in caplog.records), "the first attempt should have timed out"
        assert settlement.charged_units == 50
        assert settlement.replayed is True, "the first, unanswered attempt charged it"
    assert admin.charged_units(account) == 50


def test_reserve_retried_after_a_lost_answer_holds_once(aof_stack, caplog):
    caplog.set_level(logging.WARNING, logger="quota_sidecar")
    redis, sidecar, admin = aof_stack
    account, generation = new_id("acct"), new_id("gen")
    admin.set_plan(account, "microbudget")
    with QuotaClient(sidecar.worker, timeout=1.0,
                     retry=RetryPolicy(give_up_after_seconds=30.0)) as client:
        stall = threading.Thread(target=redis.command, args=("DEBUG", "SLEEP", "1.5"))
        stall.start()
        time.sleep(0.1)
        reservation = client.reserve(account, generation, "video", 5)
        stall.join(timeout=10)
        assert any(r.getMessage().startswith("Reserve: sidecar unavailable")
                   for r in caplog.records), "the first attempt should have timed out"
        # The retry carried the same generation id, so it found the first attempt's hold.
        assert reservation.replayed is True
        b = client.balance(account)
        assert (b.allowance_held, b.open_holds) == (50, 1)
