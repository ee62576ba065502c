"""Inventory: inheritance, secrets by reference, and FILE:LINE errors for every kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from diag import inventory
from diag.cli.main import main
from diag.errors import ConfigError
from diag.secrets import SecretRef

GOOD = """\
defaults:
  user: diag
  port: 22
  vars: {ntp: pool.ntp.org}
groups:
  servers:
    tags: [prod]
    vars: {tier: base}
  web:
    groups: [servers]
    port: 2222
    vars: {tier: web}
  net:
    device_type: cisco_ios
    snmp: {version: 2c, community: env:COMMUNITY, port: 1161}
hosts:
  sw-1: {address: 10.0.0.1, groups: [net]}
  web-03:
    address: 10.0.0.3
    groups: [web]
    parents: [sw-1]
    tags: [frontend]
    password: file:/etc/diag/web.pw
    snmp: {port: 161}
"""


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "inventory.yaml"
    p.write_text(text)
    return str(p)


def test_inheritance_host_then_groups_then_defaults(tmp_path: Path) -> None:
    inv = inventory.load(write(tmp_path, GOOD))
    web = inv.hosts["web-03"]
    assert web.port == 2222  # from group web, over defaults' 22
    assert web.user == "diag"
    assert web.groups == ("web", "servers")
    assert web.tags == ("frontend", "prod")
    assert web.vars == {"ntp": "pool.ntp.org", "tier": "web"}
    assert web.parents == ("sw-1",)
    assert web.password == SecretRef("file:/etc/diag/web.pw")
    assert "web.pw" in repr(web.password) and web.device_type == "linux"
    sw = inv.hosts["sw-1"]
    assert sw.device_type == "cisco_ios"
    assert sw.snmp["port"] == 1161 and sw.snmp_secret("community") == SecretRef("env:COMMUNITY")
    assert [h.name for h in inv.select(["servers"])] == ["web-03"]
    assert {h.name for h in inv.select(["all"])} == {"sw-1", "web-03"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hosts:\n  a: {portt: 22}\n", ":2: unknown key `portt`"),
        ("hosts:\n  a:\n    port: abc\n", ":3: port: Expected `int | null`, got `str`"),
        ("hosts:\n  a: {}\n  b: {parents: [zz]}\n", ":3: host 'b': unknown parent 'zz'"),
        ("hosts:\n  a: {}\n  a: {}\n", ":3: duplicate key 'a' (first at line 2)"),
        ("hosts:\n  a: {parents: [b]}\n  b: {parents: [a]}\n", "cycle in parents: a -> b -> a"),
        ("groups:\n  g: {groups: [h]}\n  h: {groups: [g]}\n", "cycle in group membership"),
        ("hosts:\n  a: {groups: [nope]}\n", ":2: host 'a': unknown group 'nope'"),
        ("hosts:\n  a: {password: hunter2}\n", ":2: password must be a reference"),
        ("hosts:\n  a:\n    enable_secret: cisco123\n", ":3: enable_secret must be a reference"),
        ("hosts:\n  a: [1\n", ":3: YAML syntax error"),
        ("hostz: {}\n", ":1: unknown top-level key 'hostz'"),
        ("hosts:\n  'a;rm -rf /': {}\n", "may only hold letters"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        inventory.load(path)
    assert any(p.startswith(path) and expected in p for p in e.value.problems), e.value.problems


def test_every_error_is_reported_not_just_the_first(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts:\n  a: {portt: 1}\n  b: {groups: [x]}\n  c: {parents: [y]}\n")
    with pytest.raises(ConfigError) as e:
        inventory.load(path)
    assert len(e.value.problems) == 3


def test_secret_value_is_never_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMUNITY", "s3cr3t-community")
    inv = inventory.load(write(tmp_path, GOOD))
    ref = inv.hosts["sw-1"].snmp_secret("community")
    assert ref is not None and ref.reveal() == "s3cr3t-community"
    assert "s3cr3t" not in repr(inv.hosts["sw-1"])


def test_cli_validate_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COMMUNITY", raising=False)
    good = write(tmp_path, GOOD)
    assert main(["inventory", "validate", good]) == 0
    # the file is valid; that this machine lacks the secret it names is a warning, not an error
    assert capsys.readouterr().err.splitlines() == [
        f"{good}:15: warning: env:COMMUNITY: environment variable COMMUNITY is not set here",
        f"{good}:23: warning: file:/etc/diag/web.pw: cannot read the file here: No such file or directory",
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts:\n  a: {port: x}\n  b: {parents: [a, q]}\n")
    assert main(["inventory", "validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"{bad}:2: port: Expected `int | null`, got `str`",
        f"{bad}:3: host 'b': unknown parent 'q'",
    ]


def test_ten_thousand_hosts_resolve(tmp_path: Path) -> None:
    from bench.gen_inventory import generate

    inv = inventory.load(write(tmp_path, generate(10_000)))
    assert len(inv.hosts) == 10_000
    assert inv.hosts["host-09799"].parents == ("sw-199",)


def test_enable_secret_is_inherited_as_a_reference(tmp_path: Path) -> None:
    text = "groups:\n  sw: {enable_secret: 'env:SW_ENABLE'}\nhosts:\n  a: {groups: [sw]}\n"
    inv = inventory.load(write(tmp_path, text))
    assert inv.hosts["a"].enable_secret == SecretRef("env:SW_ENABLE")
