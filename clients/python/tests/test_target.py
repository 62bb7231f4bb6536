"""Where the client connects: an explicit target or `QUOTA_SIDECAR_URL`, as `host:port`,
`http://host:port` (plaintext) or `https://host:port` (TLS); anything else raises
`ValueError` when the client is made, not later as retried calls."""

from __future__ import annotations

import subprocess

import grpc
import pytest

from conftest import Sidecar, new_id
from quota_sidecar import AsyncQuotaClient, QuotaClient
from quota_sidecar._common import TARGET_ENV, parse_target


@pytest.mark.parametrize("target, address, scheme", [
    ("127.0.0.1:50051", "127.0.0.1:50051", None),
    ("localhost:7", "localhost:7", None),
    ("http://127.0.0.1:50051", "127.0.0.1:50051", "http"),
    ("http://127.0.0.1:50051/", "127.0.0.1:50051", "http"),
    ("HTTPS://sidecar.example:443", "sidecar.example:443", "https"),
    ("[::1]:50051", "[::1]:50051", None),
    ("http://[::1]:50051", "[::1]:50051", "http"),
])
def test_targets_that_parse(target, address, scheme):
    parsed = parse_target(target)
    assert (parsed.address, parsed.scheme) == (address, scheme)


@pytest.mark.parametrize("target", [
    "", "   ", "127.0.0.1", "http://127.0.0.1", ":50051", "127.0.0.1:port",
    "127.0.0.1:0", "127.0.0.1:70000", "grpc://127.0.0.1:50051", "http://127.0.0.1:50051/path",
    "http://user@127.0.0.1:50051", "127.0.0.1:50051?x=1", "127.0.0.1 :50051",
    "http//127.0.0.1:50051",
])
def test_malformed_targets_raise_at_construction(target):
    with pytest.raises(ValueError):
        QuotaClient(target)
    with pytest.raises(ValueError):
        AsyncQuotaClient(target)


def test_the_environment_gives_the_target_when_none_is(monkeypatch, sidecar, account):
    monkeypatch.setenv(TARGET_ENV, f"http://{sidecar.worker}")
    with QuotaClient(timeout=5.0) as client:
        assert client.balance(account).plan == "microbudget"
    monkeypatch.setenv(TARGET_ENV, "not a target")
    with pytest.raises(ValueError, match=TARGET_ENV):
        QuotaClient()
    monkeypatch.delenv(TARGET_ENV)
    assert parse_target(None).address == "127.0.0.1:50051"


async def test_the_asyncio_client_reads_the_environment_too(monkeypatch, sidecar, account):
    monkeypatch.setenv(TARGET_ENV, f"http://{sidecar.worker}")
    client = AsyncQuotaClient(timeout=5.0)
    try:
        assert (await client.balance(account)).plan == "microbudget"
    finally:
        await client.close()


def test_http_with_credentials_is_a_contradiction(sidecar):
    with pytest.raises(ValueError, match="plaintext"):
        QuotaClient(f"http://{sidecar.worker}", credentials=grpc.ssl_channel_credentials())


@pytest.fixture(scope="module")
def tls_sidecar(sidecar_bin, tmp_path_factory):
    """The sidecar with TLS on its worker listener, certified for 127.0.0.1 by a
    self-signed certificate (made with the `openssl` command)."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=quota-sidecar-test",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    sidecar = Sidecar(sidecar_bin, "memory", ("--tls-cert", str(cert), "--tls-key", str(key)))
    yield sidecar, cert.read_bytes()
    sidecar.stop()


def test_https_targets_use_tls(tls_sidecar, monkeypatch):
    sidecar, ca = tls_sidecar
    credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    account = new_id("acct")
    with QuotaClient(f"https://{sidecar.worker}", timeout=5.0, credentials=credentials) as c:
        assert c.balance(account).plan == "none"
    monkeypatch.setenv(TARGET_ENV, f"https://{sidecar.worker}")
    with QuotaClient(timeout=5.0, credentials=credentials) as c:
        assert c.balance(account).plan == "none"
