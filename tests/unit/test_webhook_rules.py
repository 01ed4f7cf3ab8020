"""Webhooks' pure rules: which callback URLs pass the allow-list, how a delivery is signed and
checked, when a failed one is tried again, and the ``[webhooks]`` settings."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

import pytest

from broker.callback_urls import BadURL, allowed
from broker.settings import ConfigError, settings_from
from tasks.events import order
from tasks.webhook_signing import BadSignature, signature_header, verify
from tasks.webhooks import expired, retry_delay, targets

ROOT = Path(__file__).resolve().parents[2]
ALLOW = ("https://hooks.example.com/vmigrate", "http://127.0.0.1:8099/")


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/vmigrate",
        "https://hooks.example.com/vmigrate/",
        "https://hooks.example.com/vmigrate/m1?x=1",
        "https://HOOKS.example.com:443/vmigrate/a/b",
        "http://127.0.0.1:8099/anything",
    ],
)
def test_a_callback_under_an_allowed_url_passes(url: str) -> None:
    assert allowed(url, ALLOW)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/vmigrateevil",  # a prefix, not a path under it
        "https://hooks.example.com.evil.net/vmigrate",
        "http://hooks.example.com/vmigrate",  # another scheme
        "https://hooks.example.com:8443/vmigrate",  # another port
        "http://127.0.0.1:6379/",  # the broker itself
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_anything_else_is_not_allowed(url: str) -> None:
    assert not allowed(url, ALLOW)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("file:///etc/passwd", "http"),
        ("gopher://127.0.0.1:6379/_", "http"),
        ("https://user:pw@hooks.example.com/vmigrate", "user name"),
        ("https://hooks.example.com/vmigrate/../admin", ".."),
        ("https://hooks.example.com/vmigrate/%2e%2e/admin", ".."),
        ("https://hooks.example.com/vmigrate#x", "fragment"),
        ("https://hooks.example.com/vm igrate", "spaces"),
        ("/vmigrate", "absolute"),
        ("http://127.0.0.1:80990/", "Port out of range"),
        ("", "characters"),
        ("https://h/" + "a" * 3000, "characters"),
    ],
)
def test_a_url_vmigrate_could_not_call_safely_is_refused_with_why(url: str, says: str) -> None:
    with pytest.raises(BadURL, match=says):
        allowed(url, ALLOW)


def test_nothing_is_allowed_by_an_empty_list() -> None:
    assert not allowed("https://hooks.example.com/vmigrate", ())


def test_the_worked_example_of_the_documentation_holds() -> None:
    text = (ROOT / "docs" / "webhooks.md").read_text()
    header = signature_header("s3cret", b'{"event": "1764590404512-0"}', timestamp=1764590404)
    assert f"X-Vmigrate-Signature: {header}`" in text


def test_a_signature_is_the_hmac_of_timestamp_dot_body_as_documented() -> None:
    body = b'{"event": "1764590404512-0", "state": "completed"}'
    header = signature_header("s3cret", body, timestamp=1764590404)
    expected = hmac.new(b"s3cret", b"1764590404." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1764590404,v1={expected}"
    verify("s3cret", {"x-vmigrate-signature": header}, body, now=1764590404 + 10)


@pytest.mark.parametrize(
    ("secret", "body", "now", "says"),
    [
        ("other", b"{}", 100, "does not match"),
        ("s3cret", b"{ }", 100, "does not match"),  # one byte changed
        ("s3cret", b"{}", 100 + 301, "away"),  # a replay, five minutes later
    ],
)
def test_a_receiver_refuses_a_wrong_key_a_changed_body_or_an_old_one(
    secret: str, body: bytes, now: float, says: str
) -> None:
    header = signature_header("s3cret", b"{}", timestamp=100)
    with pytest.raises(BadSignature, match=says):
        verify(secret, {"X-Vmigrate-Signature": header}, body, now=now)
    with pytest.raises(BadSignature, match="no X-Vmigrate-Signature"):
        verify("s3cret", {}, b"{}")


def test_retries_back_off_doubling_up_to_the_cap() -> None:
    assert [retry_delay(n, 300) for n in range(1, 12)] == [
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        300,
        300,
    ]
    assert retry_delay(5, 2) == 2


def test_each_receiver_gets_an_event_once() -> None:
    assert targets(None, ()) == []
    assert targets("https://a/x", ("https://b/all",)) == ["https://b/all", "https://a/x"]
    assert targets("https://b/all", ("https://b/all",)) == ["https://b/all"]


def test_a_delivery_expires_by_the_age_of_its_state_change() -> None:
    now = time.time()
    recent = f"{int((now - 10) * 1000)}-0"
    assert not expired(recent, now, 60)
    assert expired(recent, now, 5)
    assert order("0") == (0, 0) and order("12-3") > order("12-2") > order("11-9")


def test_the_webhooks_table_sets_the_webhook_settings() -> None:
    document = {
        "webhooks": {
            "allow": ["https://hooks.example.com/vmigrate"],
            "subscribers": ["https://ops.example.com/all"],
            "secret": "k",
            "retry_max_seconds": 10,
        }
    }
    settings = settings_from(document, {})
    assert settings.webhook_allow == ("https://hooks.example.com/vmigrate",)
    assert settings.webhook_subscribers == ("https://ops.example.com/all",)
    assert settings.webhook_retry_max_seconds == 10.0
    env = {
        "VMIGRATE_WEBHOOK_ALLOW": "https://a.example/h, http://127.0.0.1:9/x",
        "VMIGRATE_WEBHOOK_SECRET": "k",
    }
    assert settings_from({}, env).webhook_allow == ("https://a.example/h", "http://127.0.0.1:9/x")


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({"webhooks": {"allow": ["https://a.example/h"]}}, "secret"),
        ({"webhooks": {"subscribers": ["https://a.example/h"]}}, "secret"),
        ({"webhooks": {"allow": ["ftp://a.example/"], "secret": "k"}}, "http"),
        ({"webhooks": {"alow": ["https://a.example/"]}}, "no setting 'alow'"),
    ],
)
def test_webhook_settings_that_cannot_work_are_refused_at_start(
    document: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        settings_from(document, {})
