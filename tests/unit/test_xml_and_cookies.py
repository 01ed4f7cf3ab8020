"""Domain XML, cookies and the safe parser, including hostile documents and a hypothesis fuzz."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers import domxml, safexml
from workers.cookie import Cookie, CookieRejected, SameHost, parse_cookie, validate_cookie

UUID = "6f1c1bde-1f4e-4a7c-9e1e-2b8d2a0c5d11"
OTHER = "0b6a8c2e-3d4f-4e5a-8b6c-7d8e9f0a1b2c"
XML = f"""<domain type='kvm'><name>web</name><uuid>{UUID}</uuid>
<memory unit='GiB'>2</memory><vcpu>4</vcpu><os><type arch='x86_64' machine='q35'>hvm</type></os>
<devices><disk type='file' device='disk'><source file='/a/web.qcow2'/><target dev='vda' bus='virtio'/></disk>
<interface type='user'><mac address='52:54:00:00:00:01'/><model type='virtio'/></interface></devices>
</domain>"""

HOSTILE = {
    "billion laughs": '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
    "<domain>&b;</domain>",
    "external entity": '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    "<domain>&x;</domain>",
    "external DTD": '<!DOCTYPE domain SYSTEM "http://127.0.0.1:1/evil.dtd"><domain/>',
    "malformed": "<domain><name>x</domain>",
    "empty": "",
    "oversized": "<domain>" + "x" * 2_000_000 + "</domain>",
}


def test_parse_domain_reads_the_facts():
    dom = domxml.parse_domain(XML)
    assert (dom.name, dom.uuid, dom.type, dom.memory_kib, dom.vcpus) == (
        "web",
        UUID,
        "kvm",
        2 * 1024 * 1024,
        4,
    )


def test_define_assigns_a_uuid_when_missing():
    dom = domxml.parse_domain(XML.replace(f"<uuid>{UUID}</uuid>", ""), assign_uuid=True)
    assert len(dom.uuid) == 36 and f"<uuid>{dom.uuid}</uuid>" in dom.xml


@pytest.mark.parametrize(
    "name", ["../etc", "a b", "x;rm -rf", "vm,file=/etc/passwd", "", "-x", "a" * 65]
)
def test_unsafe_names_are_refused(name):
    with pytest.raises(domxml.InvalidDomain):
        domxml.parse_domain(XML.replace("<name>web</name>", f"<name>{name}</name>"))


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_documents_are_refused(kind):
    with pytest.raises(safexml.XMLRejected):
        safexml.parse(HOSTILE[kind])


def test_wrong_domain_type_and_units_are_refused():
    with pytest.raises(domxml.InvalidDomain, match="domain type"):
        domxml.parse_domain(XML.replace("type='kvm'", "type='xen'"))
    with pytest.raises(domxml.InvalidDomain, match="memory unit"):
        domxml.parse_domain(XML.replace("unit='GiB'", "unit='parsecs'"))


def test_abi_check_allows_host_paths_and_refuses_guest_changes():
    domxml.check_abi_stable(XML, XML.replace("/a/web.qcow2", "/b/other.qcow2"))
    for change in (
        ("<vcpu>4", "<vcpu>8"),
        ("52:54:00:00:00:01", "52:54:00:00:00:02"),
        ("machine='q35'", "machine='pc'"),
        ("dev='vda'", "dev='vdb'"),
        (UUID, OTHER),
    ):
        with pytest.raises(domxml.ABIMismatch):
            domxml.check_abi_stable(XML, XML.replace(*change))


def test_cookie_round_trip_and_checks():
    text = Cookie("web", UUID, "hostA", OTHER, statistics={"downtime_ms": 12}).to_xml()
    cookie = validate_cookie(
        text, phase="finish", expect_name="web", expect_uuid=UUID, local_host_uuid=UUID
    )
    assert cookie.hostname == "hostA" and cookie.statistics == {"downtime_ms": 12}
    with pytest.raises(CookieRejected, match="unexpected UUID"):
        validate_cookie(
            text,
            phase="finish",
            expect_name="web",
            expect_uuid=UUID.replace("6f", "7f"),
            local_host_uuid=UUID,
        )
    with pytest.raises(CookieRejected, match="unexpected name"):
        validate_cookie(
            text, phase="finish", expect_name="db", expect_uuid=UUID, local_host_uuid=UUID
        )
    with pytest.raises(SameHost):
        validate_cookie(
            text, phase="finish", expect_name="web", expect_uuid=UUID, local_host_uuid=OTHER
        )


def test_cookie_refuses_unknown_mandatory_features_and_missing_uuid():
    text = Cookie("web", UUID, "hostA", OTHER, features=("nbd",)).to_xml()
    with pytest.raises(CookieRejected, match="unsupported migration cookie feature nbd"):
        validate_cookie(
            text, phase="confirm", expect_name="web", expect_uuid=UUID, local_host_uuid=UUID
        )
    no_uuid = Cookie("web", None, "hostA", OTHER).to_xml()
    with pytest.raises(CookieRejected, match="no <uuid>"):
        validate_cookie(
            no_uuid, phase="perform", expect_name="web", expect_uuid=UUID, local_host_uuid=UUID
        )
    validate_cookie(
        no_uuid,
        phase="perform",
        expect_name="web",
        expect_uuid=UUID,
        local_host_uuid=UUID,
        uuid_optional=True,
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_parsers_never_raise_anything_but_clear_errors(text):
    for parse in (domxml.parse_domain, parse_cookie):
        with contextlib.suppress(safexml.XMLRejected, domxml.InvalidDomain, CookieRejected):
            parse(text)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.sampled_from(
            [
                "<name>x</name>",
                "<uuid>bad</uuid>",
                "<memory>1</memory>",
                "<vcpu>0</vcpu>",
                "&amp;",
                "<![CDATA[x]]>",
            ]
        ),
        lambda inner: st.builds(lambda a, b: f"<domain type='qemu'>{a}{b}</domain>", inner, inner),
        max_leaves=6,
    )
)
def test_fuzz_structured_domain_documents(text):
    with contextlib.suppress(safexml.XMLRejected, domxml.InvalidDomain):
        domxml.parse_domain(text)
