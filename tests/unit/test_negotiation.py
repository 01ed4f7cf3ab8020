"""Negotiation is a pure function: highest common version, early refusals, fallback order."""

from __future__ import annotations

import pytest

from tasks.errors import Refused
from tasks.negotiation import Wants, fallback, negotiate

ALL = frozenset({1, 2, 3})


@pytest.mark.parametrize(
    ("src", "dst", "wants", "expected"),
    [
        (ALL, ALL, Wants(), [3, 2, 1]),
        (ALL, frozenset({1, 2}), Wants(), [2, 1]),
        (frozenset({2}), ALL, Wants(), [2]),
        (ALL, ALL, Wants(rename=True), [3, 2]),
        (ALL, ALL, Wants(dest_xml=True), [3]),
        (ALL, ALL, Wants(offline=True), [3]),
        (frozenset({2, 3}), frozenset({1, 2, 3}), Wants(rename=True), [3, 2]),
    ],
)
def test_usable_versions_best_first(src, dst, wants, expected):
    assert negotiate(src, dst, wants) == expected


@pytest.mark.parametrize(
    ("src", "dst", "wants", "code"),
    [
        (frozenset({1}), frozenset({2, 3}), Wants(), "NO_COMMON_PROTOCOL"),
        (frozenset({1}), ALL, Wants(rename=True), "DNAME_UNSUPPORTED"),
        (ALL, frozenset({1, 2}), Wants(dest_xml=True), "DEST_XML_UNSUPPORTED"),
        (frozenset({2}), ALL, Wants(offline=True), "OFFLINE_UNSUPPORTED"),
    ],
)
def test_refusals_name_the_reason(src, dst, wants, code):
    with pytest.raises(Refused) as refused:
        negotiate(src, dst, wants)
    assert refused.value.code == code
    assert refused.value.message


def test_fallback_takes_the_next_lower_candidate():
    assert fallback([3, 2, 1], 3) == 2
    assert fallback([3, 1], 3) == 1
    assert fallback([3, 2], 2) is None
