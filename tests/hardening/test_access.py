"""Who may call what: data-plane token, admin API on its own address, TLS, rate limits, and
no secret in the log or the metrics."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from serve_models import ctr_row

from shopserve import AuthError, Client
from shopserve.testing import ShopserveProcess, free_port

DATA_TOKEN = "data-5ecret-Qx81"
ADMIN_TOKEN = "admin-5ecret-Zk42"
WRONG = "wrong-5ecret-Mm07"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made here."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def secured(serve_home: Path, tmp_path_factory: pytest.TempPathFactory) \
        -> Iterator[tuple[ShopserveProcess, str, Path]]:
    directory = tmp_path_factory.mktemp("secured")
    cert, key = self_signed(directory)
    admin_port = free_port()
    spec = {"home": str(serve_home), "replicas": 2,
            "models": [{"ref": "ctr@production", "cache": False}],
            "server": {"admin_token": ADMIN_TOKEN, "admin_port": admin_port,
                       "data_token": DATA_TOKEN, "tls_cert": str(cert), "tls_key": str(key)}}
    with ShopserveProcess.from_spec(spec, directory) as proc:
        yield proc, f"https://127.0.0.1:{admin_port}", cert


def test_tls_data_token_and_admin_on_its_own_address(
        secured: tuple[ShopserveProcess, str, Path]) -> None:
    proc, admin_url, cert = secured
    assert proc.url.startswith("https://")
    with httpx.Client(verify=ssl.create_default_context(cafile=cert), timeout=5) as http:
        assert http.get(proc.url + "/v2/health/ready").status_code == 200  # probes: no token
        for headers in ({}, {"Authorization": f"Bearer {WRONG}"},
                        {"Authorization": f"Bearer {ADMIN_TOKEN}"}):
            r = http.post(proc.url + "/v1/rank", json={"candidates": [ctr_row(1)]},
                          headers=headers)
            assert r.status_code == 401 and "data-plane token" in r.json()["error"]
            assert http.get(proc.url + "/metrics", headers=headers).status_code == 401
        admin_here = http.get(proc.url + "/admin/status",
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert admin_here.status_code == 404 and "own address" in admin_here.json()["error"]
        wrong = http.get(admin_url + "/admin/status", headers={"Authorization": f"Bearer {WRONG}"})
        assert wrong.status_code == 401
    with pytest.raises(httpx.HTTPError):  # plain HTTP is not served on a TLS port
        httpx.get(proc.url.replace("https://", "http://") + "/v2/health/live", timeout=3)
    with Client(proc.url, token=DATA_TOKEN, admin_token=ADMIN_TOKEN, admin_url=admin_url,
                verify=str(cert)) as client:
        assert len(client.rank([ctr_row(2)])["scores"]) == 1
        assert len(client.admin("status")["replicas"]) == 2
    with Client(proc.url, token=WRONG, verify=str(cert)) as client, pytest.raises(AuthError):
        client.rank([ctr_row(3)])


def test_no_secret_in_the_log_the_metrics_or_the_status(
        secured: tuple[ShopserveProcess, str, Path]) -> None:
    proc, admin_url, cert = secured
    with Client(proc.url, token=DATA_TOKEN, admin_token=ADMIN_TOKEN, admin_url=admin_url,
                verify=str(cert)) as client:
        client.rank([ctr_row(4)])
        status = str(client.admin("status"))
        metrics = client.http.get("/metrics", headers={"Authorization":
                                                       f"Bearer {DATA_TOKEN}"}).text
    assert "shopserve_" in metrics
    trust = ssl.create_default_context(cafile=cert)
    with httpx.Client(verify=trust, timeout=5) as http:  # bad calls that might get logged
        http.post(proc.url + "/v1/rank", content=b"{bad", headers={
            "Authorization": f"Bearer {DATA_TOKEN}", "X-Request-ID": "probe"})
        http.get(admin_url + "/admin/deploy", headers={"Authorization": f"Bearer {WRONG}"})
    time.sleep(0.3)
    log = proc.output()
    for secret in (DATA_TOKEN, ADMIN_TOKEN, WRONG):
        assert secret not in log and secret not in metrics and secret not in status


@pytest.fixture(scope="module")
def limited(serve_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = {"home": str(serve_home), "replicas": 1,
            "models": [{"ref": "ctr@production", "cache": False}],
            "server": {"rate_limit": {"per_s": 5, "burst": 5}}}
    with ShopserveProcess.from_spec(spec, tmp_path_factory.mktemp("limited")) as proc:
        yield proc.url


def test_rate_limit_answers_429_with_retry_after_then_recovers(limited: str) -> None:
    with httpx.Client(base_url=limited, timeout=5) as http:
        codes = []
        for i in range(20):
            r = http.post("/v1/rank", json={"candidates": [ctr_row(i)]})
            codes.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1
                assert "rate limit: 5 requests/s per client" in r.json()["error"]
        assert codes[:5] == [200] * 5 and codes.count(429) >= 10, codes
        assert http.get("/v2/health/live").status_code == 200  # probes are never limited
        time.sleep(1.2)
        assert http.post("/v1/rank", json={"candidates": [ctr_row(1)]}).status_code == 200
