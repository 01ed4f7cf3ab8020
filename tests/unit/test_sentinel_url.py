"""A ``sentinel://`` broker URL, read once for both clients: the sentinels, the credentials,
the database and TLS, and what Celery is given from it."""

from __future__ import annotations

import pytest

from broker.app import celery_config
from broker.sentinel import parse_sentinel_url
from broker.settings import ConfigError, Settings

URL = "sentinel://:pw@s1:26379;sentinel://s2:26380;sentinel://s3/2"


def test_every_sentinel_and_the_options_written_on_any_part_are_read() -> None:
    address = parse_sentinel_url(URL)
    assert address.sentinels == (("s1", 26379), ("s2", 26380), ("s3", 26379))
    assert (address.password, address.db, address.username) == ("pw", 2, None)
    assert (
        address.kombu_url() == "sentinel://:pw@s1:26379/2;sentinel://s2:26380;sentinel://s3:26379"
    )


def test_tls_options_are_taken_as_for_rediss() -> None:
    address = parse_sentinel_url(
        "sentinel://u:p@s1:26379;sentinel://s2:26379/0?ssl_cert_reqs=required&ssl_ca_certs=/ca.crt"
    )
    assert address.tls_options() == {"ssl_cert_reqs": "required", "ssl_ca_certs": "/ca.crt"}
    assert address.username == "u"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sentinel://s1:26379;redis://s2:6379", "sentinel://HOST:PORT"),
        ("sentinel://s1:26379/0;sentinel://s2:26379/1", "db given twice"),
        ("sentinel://s1:26379/zero", "database is a number"),
        ("sentinel://s1:26379/0?master=x", "unknown option"),
        ("sentinel://s1:99999", "out of range"),
    ],
)
def test_a_malformed_sentinel_url_is_a_configuration_error(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_sentinel_url(url)


def test_celery_gets_kombus_sentinel_transport_with_the_master_and_sentinel_password() -> None:
    settings = Settings(broker_url=URL, sentinel_master="fleet-a", sentinel_password="spw")
    config = celery_config(settings, URL)
    assert config["broker_transport"] == "broker.transport:SentinelTransport"
    assert config["broker_url"] == parse_sentinel_url(URL).kombu_url()
    options = config["broker_transport_options"]
    assert options["master_name"] == "fleet-a"
    assert options["sentinel_kwargs"]["password"] == "spw"
    assert options["visibility_timeout"] == settings.visibility_timeout  # kept beside them
    plain = celery_config(Settings(), "redis://127.0.0.1:6379/0")
    assert "master_name" not in plain["broker_transport_options"]
    assert plain["broker_transport"] == "broker.transport:Transport"
