"""Storage migration's decisions, without a broker or a hypervisor: which flags combine, which disks
are copied, what the cookie carries, and which host paths a definition may name."""

from __future__ import annotations

import pytest

from broker.settings import ConfigError, settings_from
from tasks.errors import Refused
from tasks.flags import validate_flags
from tasks.negotiation import Wants, negotiate
from workers.cookie import Cookie, CookieDisk, CookieRejected, Nbd, parse_cookie, validate_cookie
from workers.disks import DiskSelectionError, disks_in_xml, disks_to_copy
from workers.host_paths import PathOutsideRoots, check_host_paths, host_paths, inside
from workers.safexml import parse

UUID = "3f2d1c4b-5a69-4e7d-8c1b-2a3f4e5d6c7b"
XML = f"""<domain type='qemu'><name>vm</name><uuid>{UUID}</uuid><memory>65536</memory>
<os><type>hvm</type><kernel>/images/k</kernel><initrd>/images/../images/i</initrd></os>
<devices>
 <disk type='file' device='disk'><source file='/images/a.qcow2'/><target dev='vda'/></disk>
 <disk type='file' device='disk'><source file='/images/b.img'/><target dev='vdb'/><readonly/></disk>
 <disk type='file' device='cdrom'><target dev='sda'/></disk>
 <serial type='file'><source path='/images/console.log'/><target port='0'/></serial>
 <serial type='file'><source path='relative.log'/><target port='1'/></serial>
 <serial type='pty'><target port='2'/></serial>
</devices></domain>"""


@pytest.mark.parametrize(
    "flags",
    [
        {"copy_storage_all", "copy_storage_inc", "live"},
        {"copy_storage_all", "offline", "persist"},
        {"copy_storage_inc", "postcopy", "live"},
    ],
)
def test_copy_storage_refuses_the_combinations_it_cannot_carry(flags):
    with pytest.raises(Refused) as refused:
        validate_flags(frozenset(flags))
    assert refused.value.code == "INVALID_FLAGS"


def test_storage_migration_needs_v3_and_says_so():
    wants = Wants.of(None, None, frozenset({"copy_storage_all"}))
    assert negotiate(frozenset({2, 3}), frozenset({2, 3}), wants) == [3]
    with pytest.raises(Refused) as refused:
        negotiate(frozenset({2, 3}), frozenset({2}), wants)
    assert refused.value.code == "STORAGE_MIGRATION_UNSUPPORTED"


def test_every_writable_disk_is_copied_unless_some_are_named():
    disks = disks_in_xml(XML)
    assert [d.target for d in disks_to_copy(disks, [])] == ["vda"]
    assert [d.target for d in disks_to_copy(disks, ["vda"])] == ["vda"]
    with pytest.raises(DiskSelectionError) as missing:
        disks_to_copy(disks, ["vdz"])
    assert missing.value.code == "DISK_NOT_FOUND" and "vda, vdb, sda" in str(missing.value)
    with pytest.raises(DiskSelectionError) as readonly:
        disks_to_copy(disks, ["vdb"])
    assert readonly.value.code == "DISK_NOT_COPYABLE"


def test_the_nbd_cookie_round_trips_and_is_a_mandatory_feature():
    nbd = Nbd((CookieDisk("vda", 2**30, "qcow2", "/images/base.raw", "raw"),), "10.0.0.2", 49300)
    text = Cookie("vm", UUID, "a", "host-a", nbd=nbd).to_xml()
    assert parse_cookie(text).nbd == nbd
    found = validate_cookie(
        text, phase="perform", expect_name="vm", expect_uuid=UUID, local_host_uuid="host-b"
    )
    assert found.nbd == nbd
    with pytest.raises(CookieRejected, match="feature nbd in finish"):
        validate_cookie(
            text, phase="finish", expect_name="vm", expect_uuid=UUID, local_host_uuid="host-b"
        )
    with pytest.raises(CookieRejected, match="non-integer"):
        parse_cookie(text.replace(str(2**30), "big"))


def test_host_paths_are_every_file_the_hypervisor_opens():
    found = host_paths(parse(XML))
    assert [p for _, p in found] == [
        "/images/k",
        "/images/../images/i",
        "/images/a.qcow2",
        "/images/b.img",
        "/images/console.log",
    ]


def test_paths_resolve_before_they_are_judged(tmp_path):
    roots = (str(tmp_path / "images"),)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "escape").symlink_to("/etc")
    assert inside(str(tmp_path / "images" / "a.img"), roots)
    assert not inside(str(tmp_path / "images" / ".." / "a.img"), roots)
    assert not inside(str(tmp_path / "images" / "escape" / "passwd"), roots)
    assert not inside("images/a.img", roots), "a relative disk path is refused"
    assert not inside(str(tmp_path / "images-other" / "a.img"), roots), "not a prefix match"


def test_a_definition_outside_the_roots_is_refused_naming_path_and_setting():
    check_host_paths(parse(XML), ("/images",), "define")
    with pytest.raises(PathOutsideRoots) as refused:
        check_host_paths(parse(XML.replace("/images/a.qcow2", "/etc/shadow")), ("/images",), "x")
    said = str(refused.value)
    assert "'/etc/shadow'" in said and "storage_roots" in said and "disk vda" in said


def test_storage_roots_come_from_toml_or_the_environment():
    assert settings_from({}, {}).storage_roots == ("/var/lib/vmigrate/images",)
    assert settings_from({"storage_roots": ["/a", "/b"]}, {}).storage_roots == ("/a", "/b")
    from_env = settings_from({}, {"VMIGRATE_STORAGE_ROOTS": "/a:/b/c"})
    assert from_env.storage_roots == ("/a", "/b/c")
    with pytest.raises(ConfigError, match="absolute"):
        settings_from({"storage_roots": ["images"]}, {})
