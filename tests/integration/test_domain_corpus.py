"""Definitions checked as libvirt checks them, on sim and QEMU hosts alike (tests/domain_corpus.py).

Every document libvirt accepts is defined, or refused by a host naming the element it does not
handle; every document libvirt rejects is refused with ``INVALID_DOMAIN_XML`` and a sentence
saying why; nothing crashes a worker. Where libvirt's RelaxNG schema is installed, documents only
the schema catches are refused too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from tasks.errors import VMigrateError
from tasks.host_commands import call_host
from tasks.runtime import runtime
from tests.conftest import FAST_RECOVERY, HOME, REDIS_URL
from tests.domain_corpus import INVALID, SCHEMA_ONLY, VALID
from tests.environment import missing_dependency
from vmigrate.fleet import LocalFleet
from workers.domain_rules import LIBVIRT_SCHEMA

HOSTS = {"corpus-sim": "sim", "corpus-qemu": "qemu"}


@pytest.fixture(scope="module")
def corpus_hosts(fleet: object) -> Iterator[list[str]]:
    roots = "/boot:/var/lib/libvirt/images:/srv/iso:/var/log"  # where the corpus keeps files
    env = {"VMIGRATE_BROKER_URL": REDIS_URL, "VMIGRATE_STORAGE_ROOTS": roots, **FAST_RECOVERY}
    local = LocalFleet(env, HOME)
    try:
        for host, driver in HOSTS.items():
            local.start_host(host, "--driver", driver, protocols="2,3")
        local.wait_ready(runtime().redis, list(HOSTS))
        yield list(HOSTS)
    finally:
        local.stop_all()


def own(xml: str, label: str) -> str:
    """The document under a name and uuid of its own."""
    return xml.replace(">corpus<", f">corpus-{label}<").replace(
        "c7a3e0a4-1d2b-4f8e-9a51-3c0e7d1f2a44", str(uuid.uuid4())
    )


def define(host: str, xml: str) -> tuple[str, str]:
    """("ok", name) or (code, message)."""
    try:
        return "ok", call_host(host, "define", {"xml": xml})["name"]
    except VMigrateError as exc:
        return exc.code, exc.message


@pytest.mark.parametrize("label", sorted(VALID))
def test_a_document_libvirt_accepts_is_defined_or_refused_by_element_name(corpus_hosts, label):
    xml = own(VALID[label], label)
    assert define("corpus-sim", xml) == ("ok", f"corpus-{label}"), "the sim defines it"
    code, said = define("corpus-qemu", xml)
    if code != "ok":
        assert code == "UNSUPPORTED_XML" and re.search(r"<[a-z]+[ />]", said), said  # names it


@pytest.mark.parametrize("label", sorted(INVALID))
def test_a_document_libvirt_rejects_is_refused_everywhere_saying_why(corpus_hosts, label):
    xml, why = INVALID[label]
    for host in corpus_hosts:
        code, said = define(host, own(xml, label))
        assert code == "INVALID_DOMAIN_XML" and why in said, (host, code, said)


@pytest.mark.parametrize("label", sorted(SCHEMA_ONLY))
def test_where_libvirts_schema_is_installed_it_judges_the_whole_document(corpus_hosts, label):
    if not LIBVIRT_SCHEMA.is_file():
        missing_dependency(f"{LIBVIRT_SCHEMA} is missing: apt-get install libvirt0")
    xml, why = SCHEMA_ONLY[label]
    for host in corpus_hosts:
        code, said = define(host, own(xml, label))
        assert code == "INVALID_DOMAIN_XML" and why in said, (host, code, said)


def test_both_hosts_still_define_after_the_corpus(corpus_hosts):
    for host in corpus_hosts:
        code, name = define(host, own(VALID["direct-kernel-boot"], f"after-{host}"))
        assert code == "ok" and call_host(host, "dumpxml", {"name": name}).startswith("<domain")
