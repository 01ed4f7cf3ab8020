"""TLS to Redis (rediss://) with the server certificate verified: a whole fleet runs over it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from tests.conftest import FAST_RECOVERY
from tests.environment import missing_dependency
from tests.helpers import migrate_on_own_broker
from tests.redis_server import launch_redis, on_free_port


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    if shutil.which("openssl") is None:
        missing_dependency("openssl is not installed (apt-get install openssl)")
    ca_key, ca, key, csr, cert = (
        directory / n for n in ("ca.key", "ca.crt", "redis.key", "redis.csr", "redis.crt")
    )
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=vmigrate-test-ca",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return ca, cert, key


@pytest.fixture
def tls_redis(tmp_path):
    ca, cert, key = make_certificates(tmp_path)

    def start(port):
        client = redis.Redis(
            port=port,
            ssl=True,
            ssl_ca_certs=str(ca),
            ssl_cert_reqs="required",
            decode_responses=True,
            socket_connect_timeout=0.5,
            retry_on_error=[],
        )
        args = [
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(ca),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ]
        return launch_redis(args, client), client

    port, (proc, client) = on_free_port(start)
    try:
        yield port, ca, client
    finally:
        proc.kill()
        proc.wait(10)


def test_a_fleet_runs_over_verified_tls(tls_redis, tmp_path):
    port, ca, client = tls_redis
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis(
            port=port,
            ssl=True,
            ssl_cert_reqs="required",
            socket_connect_timeout=1,
            retry_on_error=[],
        ).ping()  # no CA: the server is not trusted
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    env = {"VMIGRATE_BROKER_URL": url, **FAST_RECOVERY}
    migrate_on_own_broker(env, tmp_path / "home", client, "tls")
