"""``diag inventory validate`` and the agent's start check a file as a whole: every problem of every section in one
run (each FILE:LINE), unknown device types and thresholds that cannot be meant, and secrets as the machine's."""

from __future__ import annotations

from pathlib import Path

import pytest

from diag.agent import daemon
from diag.cli.main import main
from diag.errors import ConfigError

MANY = """\
hosts:
  web-1: {address: 10.0.0.1, groups: [nosuch]}
  sw-1: {address: 10.0.0.2, device_type: cisco_iso}
  fw-1: {address: 10.0.0.3, device_type: nosuch}
agent:
  listen: "127.0.0.1:99999"
  probes:
    filesystem: {warning_percent: 97, critical_percent: 95}
    memory: {available_warning_percent: 3}
    fds: {system_warning_percent: -1, process_critical_percent: 150}
    warp_drive: {}
"""


def test_every_stage_reports_in_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "inv.yaml"
    f.write_text(MANY)
    assert main(["inventory", "validate", str(f)]) == 2
    err = capsys.readouterr().err.splitlines()
    expected = [
        f"{f}:2: host 'web-1': unknown group 'nosuch'",
        f"{f}:3: unknown device_type 'cisco_iso'; did you mean 'cisco_ios'?",
        f"{f}:4: unknown device_type 'nosuch'; known: arista_eos, cisco_ios,",  # the list goes on
        f"{f}:6: listen address '127.0.0.1:99999' must be HOST:PORT",
        f"{f}:8: filesystem: warning_percent 97 must not be above critical_percent 95 (a warning comes first)",
        f"{f}:9: memory: available_warning_percent 3 must not be below available_critical_percent 5",
        f"{f}:10: fds: system_warning_percent must not be negative (got -1)",
        f"{f}:10: fds: process_critical_percent is a percentage, at most 100 (got 150)",
        f"{f}:11: unknown probe 'warp_drive'",
    ]
    for line in expected:
        assert any(e.startswith(line) for e in err), (line, err)
    assert len(err) == len(expected), err
    lines = [int(e[len(str(f)) + 1 :].split(":")[0]) for e in err]
    assert lines == sorted(lines)  # top to bottom, though the sections are checked one after the other
    with pytest.raises(ConfigError) as e:  # the agent's start reads the same file the same way
        daemon.load_config(str(f))
    assert e.value.problems == err


def test_thresholds_in_order_and_real_device_types_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "inv.yaml"
    f.write_text(
        "groups:\n  sw: {device_type: juniper_junos}\nhosts:\n  r1: {device_type: frr, groups: [sw]}\n"
        "agent:\n  probes:\n    filesystem: {warning_percent: 95, critical_percent: 95}\n"
        "    memory: {available_warning_percent: 20, available_critical_percent: 2}\n"
        "    thermal: {warning_celsius: -5, critical_celsius: 0}\n"
    )
    assert main(["inventory", "validate", str(f)]) == 0, capsys.readouterr().err


def test_device_types_known_without_drivers_are_the_drivers() -> None:
    from diag.network.devices import registry

    assert registry.known_device_types() == sorted({"linux", *registry.device_types()})


SECRETS = """\
hosts:
  sw-1: {address: 10.0.0.2, snmp: {community: env:DGT_V_COMMUNITY}, vars: {stage: "env:prod"}}
agent:
  traps:
    communities: [env:DGT_V_TRAP]
    users:
      - {name: noc, auth_protocol: SHA, auth_key: env:DGT_V_AUTH, priv_protocol: AES, priv_key: file:/nonexistent/p}
      - {name: bad, auth_protocol: SHA, auth_key: env:DGT_V_SHORT}
"""


def test_secrets_are_the_machines_not_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DGT_V_COMMUNITY", "DGT_V_TRAP", "DGT_V_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DGT_V_SHORT", "short")  # set, and too short: a problem of the file's settings
    f = tmp_path / "inv.yaml"
    f.write_text(SECRETS)
    warnings = [
        f"{f}:2: warning: env:DGT_V_COMMUNITY: environment variable DGT_V_COMMUNITY is not set here",
        f"{f}:5: warning: env:DGT_V_TRAP: environment variable DGT_V_TRAP is not set here",
        f"{f}:7: warning: env:DGT_V_AUTH: environment variable DGT_V_AUTH is not set here",
        f"{f}:7: warning: file:/nonexistent/p: cannot read the file here: No such file or directory",
    ]
    assert main(["inventory", "validate", str(f)]) == 2  # the short password is wrong wherever it is checked
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{f}:8: user bad: auth password must have at least 8 characters", *warnings]
    assert "short" not in "\n".join(err).replace("DGT_V_SHORT", "")

    monkeypatch.setenv("DGT_V_SHORT", "long-enough-now")
    assert main(["inventory", "validate", str(f)]) == 0  # structure fine: exit 0, the missing secrets said
    out, err2 = capsys.readouterr()
    assert err2.splitlines() == warnings and out == f"{f}: ok (4 warnings)\n"

    assert main(["inventory", "validate", "--secrets", str(f)]) == 2  # on the agent's machine: they must resolve
    strict = capsys.readouterr().err.splitlines()
    assert strict == [w.replace(": warning: ", ": ") for w in warnings]
    with pytest.raises(ConfigError):  # the agent cannot start without them, as before
        daemon.load_config(str(f))


def test_commands_that_read_hosts_refuse_an_unknown_device_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inventory.yaml").write_text("hosts:\n  a: {address: 127.0.0.1, device_type: cisco_iso}\n")
    for argv in (["check", "-p", "facts", "a"], ["inventory", "list"]):
        assert main(argv) == 2
        assert (
            capsys.readouterr().err == "inventory.yaml:2: unknown device_type 'cisco_iso'; did you mean 'cisco_ios'?\n"
        )


SECTIONS = """\
hosts:
  web-1: {address: 10.0.0.1, port: x}
agent:
  listen: nonsense
  http: {threads: 0}
  incidents: {open_after: xyz, tickets: {backend: nosuch}}
  api: {max_body_bytes: -1}
  alertmanager: {auth: {bearer_token: literal}}
  archive: {interval: -5}
  journal: {anchor_interval: -1}
  traps: {communities: [literal]}
  line1: {nosuch: 1}
  snmp_poll: {interval: 0}
  probes:
    reach: {checks: [{type: tcp, target: db-1, port: 99999}]}
    logscan: {max_bytes: -1}
"""


def test_a_problem_in_every_section_is_a_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "inv.yaml"
    f.write_text(SECTIONS)
    assert main(["inventory", "validate", str(f)]) == 2
    err = capsys.readouterr().err.splitlines()
    lines = [int(e[len(str(f)) + 1 :].split(":")[0]) for e in err]
    assert lines == [2, 4, 5, 6, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16], err  # every section of the file, in order


def test_every_mistake_of_one_host_and_one_playbook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """msgspec stops at a value's first error; the others of the same host (or playbook) are still reported."""
    f = tmp_path / "inv.yaml"
    f.write_text("hosts:\n  a: {adress: x, port: y, sudo: maybe}\n")
    assert main(["inventory", "validate", str(f)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{f}:2: unknown key `adress`",
        f"{f}:2: port: Expected `int | null`, got `str`",
        f"{f}:2: sudo: Expected `bool | null`, got `str`",
    ]
    pb = tmp_path / "pb.yaml"
    pb.write_text(
        "name: bad\nsteps:\n  - id: a\n    run: echo {{ nosuch }}\n"
        "  - id: b\n    run: echo\n    parse: {type: nosuch}\n"
        "findings: []\n"
    )
    assert main(["playbook", "validate", str(pb)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{pb}:4: run: unknown variable 'nosuch'; declare it under vars:",
        f"{pb}:7: type: Invalid value 'nosuch'",  # not also "missing required key `type`": that is the same
        f"{pb}:8: unknown key `findings`",  # a bad top-level key no longer hides the steps' problems
    ]


def test_every_bad_item_of_a_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad list item (a scheduled reach check, a tag) is left out and the rest checked: each gets its line and
    its index, and the reach checks are refused with the limits diag net applies, at start."""
    f = tmp_path / "inv.yaml"
    f.write_text(
        "hosts:\n  a: {tags: [1, ok, [x]], groups: [g, 2]}\n"
        "agent:\n  probes:\n    reach:\n      checks:\n"
        "        - {type: dns, target: example.org, server: notip}\n"
        "        - {type: ping, target: 10.0.0.1, rtt_threshold: -1}\n"
        "        - {type: tcp, target: db, port: 5432}\n"
        "        - {type: tcp, target: db, port: 5432, timeout: 1e300}\n"
        "        - {type: dns, target: example.org, server: 127.0.0.1, record: BOGUS}\n"
    )
    assert main(["inventory", "validate", str(f)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{f}:2: tags[0]: Expected `str`, got `int`",
        f"{f}:2: tags[2]: Expected `str`, got `array`",
        f"{f}:2: groups[1]: Expected `str`, got `int`",
        f"{f}:7: checks[0]: server 'notip': not an IP address or IP:PORT",
        f"{f}:8: checks[1]: rtt_threshold -1 must be positive",
        f"{f}:10: checks[3]: timeout 1e+300 is too large (at most 2.592e+06)",
        f"{f}:11: checks[4]: BOGUS: not a DNS record type (A, AAAA, MX, TXT, ...)",
    ]


def test_check_names_every_unknown_target_and_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inventory.yaml").write_text("hosts:\n  web-1: {address: 127.0.0.1}\n")
    assert main(["check", "-p", "disk-full", "wbe-1", "web-1", "dbb"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "inventory.yaml: no host or group named 'wbe-1'",
        "inventory.yaml: no host or group named 'dbb'",
    ]
    assert main(["check", "-p", "disk-full", "--var", "pth=/", "--var", "dpth=3", "web-1"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [e.split(":")[0] for e in err] == ["--var dpth", "--var pth"], err


def test_snmp_protocols_take_the_clients_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The inventory takes every name ``-a``/``-x`` take (AES-256-C for Cisco's key extension, SHA-256), and an unknown
    one is a FILE:LINE in the client's words (it was 'Invalid enum value' for all but DES/AES/AES192/AES256)."""
    f = tmp_path / "inv.yaml"
    f.write_text(
        "defaults: {snmp: {version: '3', user: noc, auth_protocol: SHA-256, priv_protocol: AES-256-C}}\n"
        "hosts:\n"
        "  sw-1: {address: 10.0.0.2, snmp: {priv_protocol: aes-192}}\n"
        "  sw-2: {address: 10.0.0.3, snmp: {priv_protocol: AES-512, auth_protocol: SHA-3}}\n"
    )
    assert main(["inventory", "validate", str(f)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{f}:4: snmp: unknown auth protocol 'SHA-3'; use MD5, SHA, SHA224, SHA256, SHA384, SHA512",
        f"{f}:4: snmp: privacy protocol 'AES-512' is not supported; use AES, AES-192, AES-256, AES-192-C, AES-256-C,"
        " DES",
    ]
    f.write_text(f.read_text().replace("  sw-2", "# sw-2"))
    assert main(["inventory", "validate", str(f)]) == 0
