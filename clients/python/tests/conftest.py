"""Fixtures that run the real `quota-sidecar` binary (path in `QUOTA_SIDECAR_BIN`) on free
loopback ports, with the memory store and with a private `redis-server` that the tests start
themselves (never a Redis already running). Everything started here is stopped here."""

from __future__ import annotations

import collections
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import grpc
import pytest

from quota_sidecar import AsyncQuotaClient, QuotaClient, RetryPolicy
from quota_sidecar._proto.quota.v1 import admin_pb2, admin_pb2_grpc, events_pb2, events_pb2_grpc
from quota_sidecar._proto.quota.v1 import quota_pb2

ADMIN_TOKEN = "python-client-test-token"
STARTUP_TIMEOUT_SECONDS = 10.0
# Short enough that an unextended 2 s hold is expired by the sweeper within the tests' waits.
SWEEP_INTERVAL_MS = "100"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A `redis-server` owned by the tests, on a free loopback port, in a temporary directory
    (with AOF and fsync on every write when `aof`, so a restart keeps every answered write)."""

    def __init__(self, aof: bool = False) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not installed (apt-get install -y redis-server)")
        self.aof = aof
        self.dir = tempfile.TemporaryDirectory(prefix="quota-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        for _ in range(5):  # another process may grab the free port first
            self.port = free_port()
            if self._spawn():
                return
        pytest.fail("could not start redis-server on a free loopback port")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def _spawn(self) -> bool:
        args = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--dir", self.dir.name,
            "--appendonly", "yes" if self.aof else "no",
            # Lets a test stall the server with DEBUG SLEEP (loopback clients only).
            "--enable-debug-command", "local",
        ]
        if self.aof:
            args += ["--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False  # exited: port taken
            if self.ping():
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str, timeout: float = 10.0) -> bytes:
        """Sends one command (inline protocol) and returns the first reply bytes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(" ".join(args).encode() + b"\r\n")
            return s.recv(1024)

    def stop(self) -> None:
        """Kills the server at once, like a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        """Starts it again on the same port (with what AOF kept)."""
        self.stop()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._spawn():  # the port may linger briefly after a kill
            assert time.monotonic() < deadline, "redis-server did not restart"
            time.sleep(0.1)

    def close(self) -> None:
        self.stop()
        self.dir.cleanup()


class Sidecar:
    """The real binary on port-0 loopback listeners; the bound addresses come from its JSON
    log, which is drained (and its tail kept for failure messages) by a thread."""

    def __init__(self, binary: str, store: str, extra_args: tuple[str, ...] = ()) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUOTA_", "OTEL_"))}
        env.update(QUOTA_ADMIN_TOKEN=ADMIN_TOKEN, RUST_LOG="info", OTEL_SDK_DISABLED="true")
        args = [
            binary,
            "--listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0",
            "--metrics-listen", "127.0.0.1:0",
            "--log-format", "json",
            "--store", store,
            "--sweep-interval-ms", SWEEP_INTERVAL_MS,
            *extra_args,
        ]
        self.proc = subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )
        self.log: collections.deque[str] = collections.deque(maxlen=200)
        self.listeners: dict[str, str] = {}
        ready = threading.Event()
        threading.Thread(target=self._drain, args=(ready,), daemon=True).start()
        if not ready.wait(STARTUP_TIMEOUT_SECONDS):
            self.stop()
            tail = "\n".join(self.log)
            pytest.fail(f"quota-sidecar did not log its listeners in time:\n{tail}")
        self.worker = self.listeners["worker"]
        self.admin = self.listeners["admin"]

    def _drain(self, ready: threading.Event) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip())
            try:
                fields = json.loads(line)
            except ValueError:
                continue
            if fields.get("message") == "listening":
                self.listeners[fields.get("listener", "")] = fields.get("addr", "")
                if {"worker", "admin", "metrics"} <= self.listeners.keys():
                    ready.set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Admin:
    """The admin API (bearer token) for setting accounts up and reading them back."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = admin_pb2_grpc.QuotaAdminStub(self.channel)
        self.events = events_pb2_grpc.UsageEventsStub(self.channel)
        self.metadata = (("authorization", f"Bearer {ADMIN_TOKEN}"),)

    def set_plan(self, account_id: str, plan: str) -> None:
        self.stub.SetPlan(
            admin_pb2.SetPlanRequest(
                request_id=f"plan-{account_id}-{plan}", account_id=account_id, plan=plan
            ),
            metadata=self.metadata, timeout=5,
        )

    def grant(self, account_id: str, units: int, grant_id: str | None = None) -> None:
        self.stub.GrantCredits(
            admin_pb2.GrantCreditsRequest(
                account_id=account_id, grant_id=grant_id or f"grant-{uuid.uuid4().hex[:12]}",
                units=units, source=quota_pb2.CREDIT_SOURCE_PURCHASED,
            ),
            metadata=self.metadata, timeout=5,
        )

    def account(self, account_id: str) -> admin_pb2.Account:
        return self.stub.GetAccount(
            admin_pb2.GetAccountRequest(account_id=account_id), metadata=self.metadata, timeout=5
        )

    def charged_units(self, account_id: str) -> int:
        """Units Settle ever charged the account, allowance and credits."""
        a = self.account(account_id)
        return a.lifetime_charged_allowance_units + a.lifetime_charged_credit_units

    def hold_events(self, account_id: str, generation_id: str, until_type: str) -> list:
        """The usage events of one hold, read through a fresh consumer group until one of
        type `until_type` arrives (bounded: 10 s)."""
        stream = self.events.Subscribe(
            events_pb2.SubscribeRequest(group=f"test-{uuid.uuid4().hex}", consumer="c"),
            metadata=self.metadata, timeout=10,
        )
        found = []
        try:
            for event in stream:
                if event.account_id == account_id and event.generation_id == generation_id:
                    found.append(event)
                    if event.type == until_type:
                        return found
        finally:
            stream.cancel()
        raise AssertionError(f"no {until_type} event for {generation_id}: saw {found}")

    def close(self) -> None:
        self.channel.close()


@pytest.fixture(scope="session")
def sidecar_bin() -> str:
    path = os.environ.get("QUOTA_SIDECAR_BIN")
    if not path or not Path(path).is_file():
        pytest.fail(
            "QUOTA_SIDECAR_BIN must name the quota-sidecar binary "
            "(cargo test --test python_client sets it)"
        )
    return path


@pytest.fixture(scope="session")
def memory_sidecar(sidecar_bin):
    sidecar = Sidecar(sidecar_bin, "memory")
    yield sidecar
    sidecar.stop()


@pytest.fixture(scope="session")
def redis_sidecar(sidecar_bin):
    redis = RedisServer()
    sidecar = Sidecar(sidecar_bin, redis.url)
    yield sidecar
    sidecar.stop()
    redis.close()


@pytest.fixture(params=["memory", "redis"])
def sidecar(request) -> Sidecar:
    """The same test against the memory store and against Redis."""
    return request.getfixturevalue(f"{request.param}_sidecar")


# A short give-up window: a test that loses the sidecar fails in seconds, not minutes.
TEST_RETRY = RetryPolicy(give_up_after_seconds=3.0)


@pytest.fixture
def client(sidecar):
    with QuotaClient(sidecar.worker, timeout=5.0, retry=TEST_RETRY, finish_retry=TEST_RETRY) as c:
        yield c


@pytest.fixture
async def aclient(sidecar):
    c = AsyncQuotaClient(sidecar.worker, timeout=5.0, retry=TEST_RETRY, finish_retry=TEST_RETRY)
    yield c
    await c.close()


@pytest.fixture
def admin(sidecar):
    a = Admin(sidecar.admin)
    yield a
    a.close()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def account(admin) -> str:
    """A fresh account on `microbudget` (1,000 units, standard model, 2 holds, 5 s video)."""
    account_id = new_id("acct")
    admin.set_plan(account_id, "microbudget")
    return account_id
