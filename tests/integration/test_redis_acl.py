"""The ACL rules deploy/ ships are enough for a fleet, and the reader can only read."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.conftest import FAST_RECOVERY
from tests.helpers import migrate_on_own_broker
from tests.redis_server import private_redis

ACL = Path(__file__).resolve().parents[2] / "deploy" / "redis" / "users.acl.example"
PASSWORD = "s3cret-for-the-test-only-0123456789"


@pytest.fixture
def acl_redis(tmp_path):
    acl = tmp_path / "users.acl"
    acl.write_text(
        "\n".join(
            line
            for line in ACL.read_text().replace("CHANGE-ME", PASSWORD).splitlines()
            if line and not line.startswith("#")
        )
        + "\n"
    )

    acl_user = {"username": "vmigrate", "password": PASSWORD, "retry_on_error": []}
    with private_redis(tmp_path, "--aclfile", str(acl), **acl_user) as (port, client):
        yield port, client


def test_a_fleet_runs_as_the_acl_user_and_the_reader_cannot_write(acl_redis, tmp_path):
    port, client = acl_redis
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    url = f"redis://vmigrate:{PASSWORD}@127.0.0.1:{port}/0"
    env = {"VMIGRATE_BROKER_URL": url, **FAST_RECOVERY}
    home = tmp_path / "home"
    migrate_on_own_broker(env, home, client, "acl")
    for log in (home / "logs").iterdir():
        assert "NOPERM" not in log.read_text(), log.name

    reader = redis.Redis(
        port=port, username="vmigrate-reader", password=PASSWORD, decode_responses=True
    )
    assert reader.smembers("vmigrate:hosts") == {"acl-a", "acl-b"}
    with pytest.raises(redis.exceptions.NoPermissionError):
        reader.set("vmigrate:hosts", "x")
