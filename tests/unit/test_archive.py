"""The configuration archive without a network: masking, normalising, the versioned store and its settings."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from diag import inventory, yamlsrc
from diag.archive import redact, settings
from diag.archive.fetch import normalise, plan
from diag.archive.names import compile_patterns
from diag.archive.store import RUNNING_CONFIG, Archive, ArchiveError
from diag.errors import ConfigError

# A running configuration in the styles of Cisco IOS, Arista, Juniper (set form) and FRR, with every secret
# the issue names: passwords, enable secret, SNMP communities, SNMPv3 auth/priv keys, keys and PSKs.
DEVICE = """\
Building configuration...

Current configuration : 1234 bytes
! Last configuration change at 10:22:33 UTC Mon Nov 23 2026 by admin
hostname r1
enable secret 5 $1$mERr$hx5rVt7rPNoS4wqbXKX7m0
username admin privilege 15 secret 0 Adm1nPass
username bob password 7 0822455D0A16
snmp-server community PublicComm RO 10
snmp-server host 192.0.2.1 version 2c TrapComm
snmp-server user alice grp v3 auth sha AuthPass1 priv aes 128 PrivPass1
tacacs-server key 7 045802150C2E
crypto isakmp key IsakmpKey1 address 192.0.2.2
key chain KC
 key 1
  key-string KeyString1
interface eth0
 description uplink key switch
 ip ospf authentication-key OspfKey1
 ip ospf message-digest-key 1 md5 OspfMd5Key
 shutdown
router bgp 65000
 neighbor 192.0.2.3 password BgpPass1
password ZebraPass
enable password ZebraEnable
set system root-authentication encrypted-password "$6$abcdefgh"
set security ike policy p pre-shared-key ascii-text "$9$JuniperPsk"
 wpa-psk ascii 0 WifiPass1
"""
DEVICE_SECRETS = [
    "$1$mERr$hx5rVt7rPNoS4wqbXKX7m0",
    "Adm1nPass",
    "0822455D0A16",
    "PublicComm",
    "TrapComm",
    "AuthPass1",
    "PrivPass1",
    "045802150C2E",
    "IsakmpKey1",
    "KeyString1",
    "OspfKey1",
    "OspfMd5Key",
    "BgpPass1",
    "ZebraPass",
    "ZebraEnable",
    "$6$abcdefgh",
    "$9$JuniperPsk",
    "WifiPass1",
]


def masker(key: bytes = b"k" * 32, extra: list[str] | None = None) -> redact.Masker:
    return redact.Masker(key, compile_patterns(extra or []))


def test_device_secrets_are_masked_and_the_lines_kept() -> None:
    out = masker().mask(DEVICE, "device")
    for s in DEVICE_SECRETS:
        assert s not in out, s
    lines = out.splitlines()
    assert len(lines) == len(DEVICE.splitlines())
    assert "enable secret 5 <masked:" in out and "snmp-server community <masked:" in out and " RO 10" in out
    assert "auth sha <masked:" in out and "priv aes 128 <masked:" in out
    assert ' encrypted-password "<masked:' in out
    assert " shutdown" in lines and " description uplink key switch" in lines and "hostname r1" in lines


def test_tags_show_a_change_without_the_value() -> None:
    m = masker()
    a = m.mask("password OldPass\n", "device")
    b = m.mask("password NewPass\n", "device")
    assert a != b and a == m.mask("password OldPass\n", "device")
    assert masker(b"x" * 32).mask("password OldPass\n", "device") != a  # the key matters: no guessing offline
    assert m.mask(a, "device") == a  # masking twice changes nothing


def test_host_patterns_defaults_and_configured() -> None:
    text = (
        "DB_PASSWORD=hunter2\napi_key: abc123\nurl = https://u:pa55word@db.invalid/x\n"
        "rocommunity s3cretcomm 10.0.0.0/8\nbind_pw LdapPw\n"
        "HostKey /etc/ssh/ssh_host_rsa_key\nPasswordAuthentication no\n"
        "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\nBBBB\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    out = masker(extra=[r"(?i)^\s*bind_pw\s+(?P<s>\S+)"]).mask(text, "host")
    for s in ("hunter2", "abc123", "pa55word", "s3cretcomm", "LdapPw", "AAAA"):
        assert s not in out, s
    assert "HostKey /etc/ssh/ssh_host_rsa_key" in out and "PasswordAuthentication no" in out
    assert "bind_pw" in masker().mask("bind_pw LdapPw\n", "host") and "LdapPw" in masker().mask(
        "bind_pw LdapPw\n", "host"
    )


def test_revealed_inventory_secrets_are_masked_everywhere() -> None:
    from diag import secrets

    secrets.remember("Xyzzy-Revealed-42")
    assert "Xyzzy-Revealed-42" not in masker().mask("comment Xyzzy-Revealed-42 here\n", "host")


def test_mask_key_is_private_and_stable(tmp_path: Path) -> None:
    k = redact.load_key(tmp_path / "a")
    assert len(k) == 32 and redact.load_key(tmp_path / "a") == k
    assert (tmp_path / "a" / "mask.key").stat().st_mode & 0o777 == 0o600


def test_normalise_drops_volatile_lines() -> None:
    out = normalise(DEVICE.replace("\n", "\r\n") + "\n\n", compile_patterns(settings.DEFAULT_IGNORE))
    assert "Last configuration change" not in out and "Building configuration" not in out
    assert "Current configuration" not in out and out.startswith("\nhostname r1\n") and out.endswith("WifiPass1\n")


def test_store_versions_unchanged_and_diff(tmp_path: Path) -> None:
    a = Archive(tmp_path)
    v1, new = a.put("r1", RUNNING_CONFIG, "hostname r1\ninterface eth0\n", at=100)
    assert new and v1.version == 1 and v1.prev_seen_at is None
    same, new = a.put("r1", RUNNING_CONFIG, "hostname r1\ninterface eth0\n", at=200)
    assert not new and same == v1
    st = a.status("r1", RUNNING_CONFIG)
    assert st is not None and st.state == "unchanged" and st.at == 200
    a.record_error("r1", RUNNING_CONFIG, "timed out", at=250)
    v2, new = a.put("r1", RUNNING_CONFIG, "hostname r1\ninterface eth0\n shutdown\n", at=300)
    assert new and v2.version == 2 and v2.prev_seen_at == 200  # the last fetch that still saw v1
    assert [v.version for v in a.versions("r1", RUNNING_CONFIG)] == [1, 2]
    assert a.get("r1", RUNNING_CONFIG, -2) == v1 and a.get("r1", RUNNING_CONFIG) == v2
    diff = a.diff(v1, v2)
    assert "+ shutdown" in diff and diff[0].startswith("--- r1:running-config@v1")
    assert a.targets() == ["r1"] and a.sources("r1") == [RUNNING_CONFIG]
    with pytest.raises(ArchiveError, match="no version 9"):
        a.get("r1", RUNNING_CONFIG, 9)
    with pytest.raises(ArchiveError):
        a.versions("../etc", RUNNING_CONFIG)
    with pytest.raises(ArchiveError):
        a.put("r1", "etc/passwd", "x")


def test_changes_before_takes_the_window_and_says_how_sure_it_is(tmp_path: Path) -> None:
    a = Archive(tmp_path)
    a.put("r1", RUNNING_CONFIG, "a\n", at=1000)
    a.put("r1", RUNNING_CONFIG, "a\n", at=1500)  # still unchanged at 1500
    a.put("r1", RUNNING_CONFIG, "a\nb\n", at=2000)  # the change happened in (1500, 2000]
    a.put("r1", "/etc/x", "1\n", at=100)
    a.put("r1", "/etc/x", "1\n", at=2200)
    a.put("r1", "/etc/x", "2\n", at=5000)  # changed in (2200, 5000]
    (c,) = a.changes_before("r1", when=2100, window=300)
    assert (c.source, c.version, c.previous, c.previous_at, c.noticed_at) == (RUNNING_CONFIG, 2, 1, 1500, 2000)
    assert c.before_fault and c.added == 1 and c.removed == 0 and "+b" in c.diff
    # A fault at 1800: the change may have come before it (it was noticed after it, at 2000).
    (maybe,) = a.changes_before("r1", when=1800, window=600)
    assert maybe.source == RUNNING_CONFIG and not maybe.before_fault
    assert a.changes_before("r1", when=1400, window=100) == []  # v1 was still there at 1500
    # A fault at 3000: only /etc/x can have changed in the 10 minutes before it.
    assert [(x.source, x.before_fault) for x in a.changes_before("r1", when=3000, window=600)] == [("/etc/x", False)]
    assert [x.source for x in a.changes_before("r1", when=6000, window=5000)] == ["/etc/x", RUNNING_CONFIG]
    assert a.changes_before("nobody", when=1800, window=600) == []


def test_concurrent_writers_make_one_version(tmp_path: Path) -> None:
    a = Archive(tmp_path)
    news: list[bool] = []
    threads = [threading.Thread(target=lambda: news.append(a.put("h", "/f", "same\n")[1])) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert news.count(True) == 1 and len(a.versions("h", "/f")) == 1


INV = """\
groups:
  linux: {}
  switches: {device_type: cisco_ios}
hosts:
  web-03: {address: 192.0.2.3, groups: [linux]}
  sw-1: {address: 192.0.2.1, groups: [switches]}
agent:
  archive:
    interval: 60
    files:
      linux: [/etc/fstab]
      web-03: [/etc/nginx/nginx.conf, /etc/fstab]
    devices: [switches]
"""


def test_settings_and_plan(tmp_path: Path) -> None:
    f = tmp_path / "inv.yaml"
    f.write_text(INV)
    inv = inventory.load(str(f))
    s = settings.from_inventory(inv)
    assert s is not None and s.interval == 60
    jobs = plan(inv.hosts.values(), s, lambda h: h.device_type != "linux", ["/etc/hosts"])
    by = {j.host.name: j for j in jobs}
    assert by["web-03"].sources == ["/etc/fstab", "/etc/nginx/nginx.conf", "/etc/hosts"]
    assert by["sw-1"].sources == [RUNNING_CONFIG]  # a device CLI has no files to read
    s.devices = ["linux"]
    assert [j.host.name for j in plan(inv.hosts.values(), s, lambda h: h.device_type != "linux")] == ["web-03"]


def test_settings_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = INV.replace("linux: [/etc/fstab]", "nosuch: [etc/fstab]").replace(
        "interval: 60", "interval: 60\n    mask: ['(']"
    )
    f = tmp_path / "inv.yaml"
    f.write_text(bad)
    doc = yamlsrc.load_file(f)
    with pytest.raises(ConfigError) as e:
        from diag import config

        config.build(doc, doc.data["agent"])
    problems = "\n".join(e.value.problems)
    assert f"{f}:12: no host or group named 'nosuch'" in problems
    assert f"{f}:12: 'etc/fstab': a source is running-config or an absolute file path" in problems
    assert f"{f}:10: bad regular expression" in problems
