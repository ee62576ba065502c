"""Playbook loading: FILE:LINE validation, variables, shell quoting of command templates, lookup, CLI validate."""

from __future__ import annotations

import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest

from diag.cli import main as cli
from diag.errors import ConfigError
from diag.remote import playbook as pbmod
from diag.remote.runner import host_view
from tests.unit.fake_ssh import host

GOOD = """\
name: demo
description: a demo playbook
vars:
  target: {default: example.org, description: what to look up}
  mounts: [/, /var]
  limit: 90
  svc: {required: true}
steps:
  - id: df
    description: space
    run: df -P {{ mounts }} | awk '{print $6}' ${HOME} {limit} {host.name}
    parse: {type: columns, names: [fs, kib, used, avail, pct, mount], types: {pct: int}}
    checks:
      - check: full
        each: parsed
        if: item.pct >= limit
        severity: critical
        subject: "{{ item.mount }}"
        summary: "{{ item.mount }} is {{ item.pct }}% full"
  - id: dns
    description: lookup
    when: df.exit == 0
    run: getent hosts {{ target }} && systemctl status {{svc}}
"""


def write(tmp_path: Path, text: str, name: str = "pb.yaml") -> Path:
    f = tmp_path / name
    f.write_text(textwrap.dedent(text))
    return f


def problems(tmp_path: Path, text: str) -> list[str]:
    f = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        pbmod.load(f)
    for line in e.value.problems:
        assert line.startswith(f"{f}:"), line
    return [line.removeprefix(f"{f}:") for line in e.value.problems]


def test_good_playbook_loads(tmp_path: Path) -> None:
    pb = pbmod.load(write(tmp_path, GOOD))
    assert pb.name == "demo" and [s.id for s in pb.steps] == ["df", "dns"]
    assert pb.vars["mounts"].default == ["/", "/var"] and pb.vars["svc"].required
    assert pb.steps[1].when is not None and pb.steps[0].parse_type == "columns"


def test_rendered_commands_quote_every_value(tmp_path: Path) -> None:
    pb = pbmod.load(write(tmp_path, GOOD))
    hostile = ";rm -rf /"
    v = pb.resolve_vars({"svc": "$(touch /tmp/pwned)", "target": hostile, "mounts": "/a b,/c;d"}, {})
    h = host("web-03")
    df = pb.steps[0].command.render(v, host_view(h))
    # awk braces and ${HOME} stay literal; {limit} and {host.name} are placeholders
    assert df == "df -P '/a b' '/c;d' | awk '{print $6}' ${HOME} 90 web-03"
    dns = pb.steps[1].command.render(v, host_view(h))
    assert dns == "getent hosts ';rm -rf /' && systemctl status '$(touch /tmp/pwned)'"
    # what the shell would pass: the payload is one inert argument
    words = shlex.split(dns)
    assert words[2] == hostile and words[-1] == "$(touch /tmp/pwned)"


def test_hostile_values_do_not_run_in_a_real_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = GOOD.replace(
        "run: getent hosts {{ target }} && systemctl status {{svc}}", "run: printf '%s\\n' {{ target }} {{ svc }}"
    )
    pb = pbmod.load(write(tmp_path, text))
    v = pb.resolve_vars({"target": f";touch {marker}", "svc": f"$(touch {marker})`touch {marker}`"}, {})
    cmd = pb.steps[1].command.render(v, host_view(host()))
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [f";touch {marker}", f"$(touch {marker})`touch {marker}`"]
    assert not marker.exists()


def test_variables_defaults_host_vars_and_overrides(tmp_path: Path) -> None:
    pb = pbmod.load(write(tmp_path, GOOD))
    v = pb.resolve_vars({"svc": "nginx", "limit": "80"}, {"target": "intranet.local", "limit": 70})
    assert v == {"target": "intranet.local", "mounts": ["/", "/var"], "limit": 80, "svc": "nginx"}
    assert pb.resolve_vars({}, {"svc": "cron", "limit": "75"})["limit"] == 75  # inventory strings are coerced too
    with pytest.raises(ConfigError, match="variable 'svc' is required; pass --var svc=VALUE"):
        pb.resolve_vars({}, {})
    with pytest.raises(ConfigError, match="--var limit: 'lots' is not an integer"):
        pb.resolve_vars({"svc": "x", "limit": "lots"}, {})
    assert pbmod.parse_var_args(["a=b=c", "x=;rm -rf /"]) == {"a": "b=c", "x": ";rm -rf /"}
    with pytest.raises(ConfigError, match="expected NAME=VALUE"):
        pbmod.parse_var_args(["novalue"])


def test_every_semantic_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    got = problems(
        tmp_path,
        """\
        name: bad
        vars:
          x: 1
          host: 2
        steps:
          - id: one
            description: first
            run: echo {{ nope }} {{ x + 1 }} {{ host.secret }}
            when: later.exit == 0
            parse: {type: regex, pattern: "(unclosed"}
            checks:
              - check: c1
                if: parsed.a >
                severity: warning
                summary: "x"
              - check: c1
                if: unknown_thing > 1
                severity: warning
                summary: "{{ __import__('os') }}"
                evidence: [later]
          - id: one
            description: again
            run: "true"
          - id: later
            run: rm -rf /tmp/cache
            changes: true
          - id: two
            run: "true"
            parse: {type: xml}
          - id: three
            run: "true"
            bogus: 1
        """,
    )
    expected = [
        "4: variable name 'host' must be an identifier",
        "8: run: unknown variable 'nope'",
        "8: run: {{ x + 1 }} must name a variable or host.FIELD",
        "8: run: unknown host field 'secret'",
        "9: when: unknown name 'later'",
        "10: parse (regex): bad regular expression",
        "13: if: syntax error",
        "16: duplicate check id 'c1'",
        "17: if: unknown name 'unknown_thing'",
        "19: summary: unknown function '__import__'",
        "20: evidence: 'later' is not this or an earlier step",
        "21: duplicate step id 'one' (first is step 1)",
        "26: step 'later' changes the host: say what it changes in description:",
        "29: type: Invalid value 'xml'",
        "32: unknown key `bogus`",
    ]
    for e in expected:
        assert any(p.startswith(e) for p in got), f"missing {e!r} in {got}"
    assert len(got) == len(expected), got


def test_structural_problems(tmp_path: Path) -> None:
    assert problems(tmp_path, "- a\n- b\n")[0].startswith("1: a playbook is a mapping")
    assert problems(tmp_path, "name: x\n")[0].endswith("missing required key `steps`")
    assert problems(tmp_path, "name: x\nsteps: []\n")[0].startswith("2: a playbook needs at least one step")
    assert problems(tmp_path, "name: x\nsteps:\n  - id: a\n    run: [1\n")[0].startswith("5: YAML syntax error")
    got = problems(tmp_path, "name: x\nsteps:\n  - id: a\n    run: 'true'\n    timeout: -1\n")
    assert got == ["5: timeout must be a positive number of seconds"]
    got = problems(
        tmp_path,
        "name: x\nsteps:\n  - id: a\n    run: 'true'\n    checks:\n"
        "      - {check: c, if: 'true', severity: fatal, summary: s}\n",
    )
    assert got == ["6: severity: Invalid enum value 'fatal'"]


def test_lookup_order_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shipped = pbmod.available()
    assert "linux-baseline" in shipped
    (tmp_path / "playbooks").mkdir()
    local = write(tmp_path / "playbooks", GOOD.replace("name: demo", "name: linux-baseline"), "linux-baseline.yaml")
    assert pbmod.find("linux-baseline") == tmp_path / "playbooks" / "linux-baseline.yaml" == local
    assert pbmod.find(str(local)) == local
    with pytest.raises(ConfigError, match=r"no playbook named 'nope'.*known: .*disk-full"):
        pbmod.find("nope")
    with pytest.raises(ConfigError, match="no such playbook file"):
        pbmod.find("missing.yaml")


def test_cli_playbook_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, GOOD, "good.yaml")
    bad = write(tmp_path, "name: bad\nsteps:\n  - id: a\n    run: echo {{ nope }}\n", "bad.yaml")
    assert cli.main(["playbook", "validate", str(good)]) == 0
    assert f"{good}: ok" in capsys.readouterr().out
    assert cli.main(["playbook", "validate", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4: run: unknown variable 'nope'" in err


def test_cli_playbook_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["playbook", "list", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"name": "linux-baseline"' in out and "INVALID" not in out
    assert cli.main(["playbook", "show", "service-down"]) == 0
    out = capsys.readouterr().out
    assert "service: required" in out and "pgrep -a -x {{ service }}" in out


def test_cli_check_usage_errors_exit_2_before_connecting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text("hosts:\n  web-03: {address: 192.0.2.10}\n")  # TEST-NET: never contacted by these calls
    base = ["check", "-i", str(inv), "web-03"]
    assert cli.main([*base, "-p", "service-down"]) == 2
    assert "variable 'service' is required" in capsys.readouterr().err
    assert cli.main([*base, "-p", "service-down", "--var", "service=x", "--var", "colour=red"]) == 2
    assert "--var colour: playbook service-down has no such variable" in capsys.readouterr().err
    assert cli.main([*base, "-p", "service-down", "--var", "service=x", "--var", "port=http"]) == 2
    assert "--var port: 'http' is not an integer" in capsys.readouterr().err
    assert cli.main([*base, "-p", "no-such-playbook"]) == 2
    assert "no playbook named 'no-such-playbook'" in capsys.readouterr().err
    assert cli.main(["check", "-i", str(inv), "-p", "facts", "web-04"]) == 2
    assert "no host or group named 'web-04'" in capsys.readouterr().err
