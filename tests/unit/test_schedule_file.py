"""Schedule files for `diag scheduler`: valid files load; every mistake is FILE:LINE: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from diag.distributed.scheduler import load_schedule, slot_of, slot_start
from diag.errors import ConfigError


def test_a_valid_schedule_loads(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("schedule:\n  - {name: a, playbook: linux-baseline, targets: [web], every: 300}\n")
    (job,) = load_schedule(p)
    assert (job.name, job.playbook, job.targets, job.every) == ("a", "linux-baseline", ["web"], 300)
    # Slots: the start of a job's slot lies within its interval and slots advance by exactly one interval.
    s = slot_of(job, 1_800_000_000.0)
    assert slot_start(job, s) <= 1_800_000_000.0 < slot_start(job, s + 1)
    assert slot_start(job, s + 1) - slot_start(job, s) == 300


def test_mistakes_name_the_line(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(
        "schedule:\n"
        "  - {name: a, playbook: x, targets: [web], every: 300}\n"
        "  - name: a\n"
        "    playbook: x\n"
        "    targets: []\n"
        "    every: 0\n"
    )
    with pytest.raises(ConfigError) as e:
        load_schedule(p)
    msg = str(e.value)
    assert f"{p}:3: duplicate job name 'a'" in msg
    assert f"{p}:5: targets:" in msg
    assert f"{p}:6: every: must be a positive number" in msg


def test_unknown_key_and_wrong_type(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("schedule:\n  - name: a\n    playbook: x\n    targets: [web]\n    every: often\n")
    with pytest.raises(ConfigError, match=rf"^{p}:5: every: Expected `float`, got `str`$"):
        load_schedule(p)
    p.write_text("schedule:\n  - name: a\n    playbook: x\n    targets: [web]\n    every: 5\n    colour: red\n")
    with pytest.raises(ConfigError, match=rf"^{p}:6: unknown key `colour`$"):
        load_schedule(p)


def test_snmp_jobs_need_no_playbook_but_checks_do(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("schedule:\n  - {name: poll, kind: snmp, targets: [switches], every: 60}\n")
    (job,) = load_schedule(p)
    assert (job.kind, job.playbook) == ("snmp", "")
    p.write_text("schedule:\n  - {name: base, targets: [web], every: 60}\n")
    with pytest.raises(ConfigError, match=rf"^{p}:2: playbook: a check needs a playbook"):
        load_schedule(p)


def test_every_job_and_its_names_are_checked_at_once(tmp_path: Path) -> None:
    """One bad job does not hide the others; with the inventory and the playbooks, a typo in a target or a
    playbook name is a FILE:LINE problem at start, every one of them, not the first only."""
    from diag import inventory, yamlsrc

    inv = inventory.parse(yamlsrc.load_text("groups: {web: {}}\nhosts:\n  web-1: {groups: [web]}\n", "inv.yaml"))
    p = tmp_path / "s.yaml"
    p.write_text(
        "schedule:\n"
        "  - {name: a, playbook: facts, targets: [web], every: often}\n"
        "  - {name: b, playbook: factz, targets: [web, wbe], every: 60, colour: red}\n"
        "  - {name: c, playbook: factz, targets: [web-1, all], every: 60}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_schedule(p, inv, lambda name: name == "facts")
    assert str(e.value).splitlines() == [
        f"{p}:2: every: Expected `float`, got `str`",
        f"{p}:3: unknown key `colour`",
        f"{p}:3: targets: no host or group named 'wbe'",
        f"{p}:3: playbook: no playbook 'factz' (diag playbook list)",
        f"{p}:4: playbook: no playbook 'factz' (diag playbook list)",
    ]
    p.write_text("schedule:\n  - {name: b, playbook: factz, targets: [web, wbe], every: 60}\n")
    with pytest.raises(ConfigError) as e:
        load_schedule(p, inv, lambda name: name == "facts")
    assert str(e.value).splitlines() == [
        f"{p}:2: targets: no host or group named 'wbe'",
        f"{p}:2: playbook: no playbook 'factz' (diag playbook list)",
    ]
