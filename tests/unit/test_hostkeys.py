"""Host-key policy of diag.remote.hostkeys: known_hosts forms, changed/unknown/revoked keys, the TOFU store."""

from __future__ import annotations

import base64
from pathlib import Path

import paramiko
import pytest

from diag.errors import HostKeyError
from diag.remote.hostkeys import HostKeyStore, fingerprint, host_pattern, parse_known_hosts

KEY_A = paramiko.ECDSAKey.generate()
KEY_B = paramiko.ECDSAKey.generate()


def line(names: str, key: paramiko.PKey, marker: str = "") -> str:
    return f"{marker}{names} {key.get_name()} {key.get_base64()}\n"


def test_fingerprint_is_openssh_sha256() -> None:
    fp = fingerprint(KEY_A)
    assert fp.startswith("SHA256:") and not fp.endswith("=")
    assert base64.b64decode(fp[7:] + "=") and len(fp) == 50


def test_host_pattern_brackets_non_default_ports() -> None:
    assert host_pattern("10.0.0.1", 22) == "10.0.0.1"
    assert host_pattern("10.0.0.1", 2222) == "[10.0.0.1]:2222"


def test_plain_hashed_and_wildcard_names_match(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    hashed = paramiko.HostKeys.hash_host("[10.0.0.2]:2222")
    kh.write_text("# comment\n\n" + line("web-1,10.0.0.1", KEY_A) + line(hashed, KEY_A) + line("*.lab", KEY_A))
    store = HostKeyStore([kh], None)
    for candidates in (["10.0.0.1"], ["[10.0.0.2]:2222"], ["db.lab"], ["nope", "web-1"]):
        store.verify(KEY_A, candidates, "strict", "x:22")
    assert store.known_types(["10.0.0.1"]) == ["ecdsa-sha2-nistp256"]


def test_changed_key_names_both_fingerprints_and_the_line(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text("\n" + line("10.0.0.1", KEY_A))
    with pytest.raises(HostKeyError) as e:
        HostKeyStore([kh], tmp_path / "tofu").verify(KEY_B, ["10.0.0.1"], "tofu", "10.0.0.1:22 (web)")
    msg = str(e.value)
    assert msg.startswith("10.0.0.1:22 (web): host key CHANGED")
    assert fingerprint(KEY_A) in msg and fingerprint(KEY_B) in msg and f"{kh}:2" in msg
    assert not (tmp_path / "tofu").exists()


def test_unknown_key_strict_refuses_tofu_stores(tmp_path: Path) -> None:
    store_file = tmp_path / "d" / "known_hosts.tofu"
    with pytest.raises(HostKeyError, match="unknown host key"):
        HostKeyStore([tmp_path / "missing"], store_file).verify(KEY_A, ["10.0.0.9"], "strict", "h:22")
    HostKeyStore([tmp_path / "missing"], store_file).verify(KEY_A, ["10.0.0.9"], "tofu", "h:22")
    assert store_file.read_text() == line("10.0.0.9", KEY_A)
    assert store_file.stat().st_mode & 0o777 == 0o600
    fresh = HostKeyStore([], store_file)  # a later run: the stored key now counts as known
    fresh.verify(KEY_A, ["10.0.0.9"], "strict", "h:22")
    with pytest.raises(HostKeyError, match="CHANGED"):
        fresh.verify(KEY_B, ["10.0.0.9"], "tofu", "h:22")


def test_revoked_key_is_refused_everywhere(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(line("10.0.0.1", KEY_A) + line("*", KEY_A, "@revoked "))
    with pytest.raises(HostKeyError, match="revoked"):
        HostKeyStore([kh], None).verify(KEY_A, ["10.0.0.1"], "strict", "h:22")


def test_malformed_lines_are_skipped(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text("garbage\n10.0.0.1 ssh-ed25519 !!!notbase64\n@cert-authority * ssh-ed25519 AAAA\n" + line("a", KEY_A))
    entries = parse_known_hosts(kh)
    assert [e.names for e in entries] == [("a",)] and entries[0].source == f"{kh}:4"
