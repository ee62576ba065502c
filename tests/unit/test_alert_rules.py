"""The shipped Prometheus rules: promtool accepts every file, every alert is documented, no name is repeated.

Whether the metric names they read are really exported is checked against a live agent in
tests/integration/test_dashboards.py; whether they fire, in a real Prometheus, in
tests/integration/test_alert_rules_prometheus.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.labs.alerting import PROMTOOL
from tests.labs.promql import metric_names

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
RUNBOOKS = (ROOT / "docs" / "runbooks.md").read_text()
PLAYBOOKS = {p.stem for p in (ROOT / "playbooks").glob("*.yaml")}


def _rules() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            out += [(path.name, rule) for rule in group["rules"]]
    return out


def test_there_are_rule_files_for_each_area() -> None:
    assert {p.name for p in RULE_FILES} >= {"diag-alerts.yml", "host.yml", "snmp.yml", "diag-self.yml"}


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    p = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    # the check above could pass vacuously if promtool accepted anything; it does not
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(foo[5m]\n")
    p = subprocess.run([PROMTOOL, "check", "rules", str(bad)], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0


def test_every_alert_has_severity_summary_description_and_a_runbook_section() -> None:
    headings = set(re.findall(r"(?m)^#{2,3} (Diag\w+)$", RUNBOOKS))
    alerts = [(f, r) for f, r in _rules() if "alert" in r]
    assert len(alerts) >= 45
    for fname, rule in alerts:
        name = rule["alert"]
        where = f"{fname}: {name}"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, where
        ann = rule["annotations"]
        assert ann.get("summary") and ann.get("description"), where
        assert ann["runbook_url"] == f"file:///opt/diag/docs/runbooks.md#{name.lower()}", where
        assert name in headings, f"{where}: no '### {name}' section in docs/runbooks.md"
    # and no runbook section is left over for an alert that no longer exists
    assert headings == {r["alert"] for _, r in alerts}


def test_alert_and_record_names_are_unique_across_files() -> None:
    names = [r.get("alert") or r["record"] for _, r in _rules()]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_recording_rules_follow_the_level_metric_operations_convention() -> None:
    for _, rule in _rules():
        if "record" in rule:
            assert re.fullmatch(r"diag:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def test_runbooks_name_only_playbooks_that_exist() -> None:
    named = set(re.findall(r"\*\*Playbook:\*\* `([a-z0-9-]+)`", RUNBOOKS))
    assert named and named <= PLAYBOOKS, named - PLAYBOOKS
    sections = re.split(r"(?m)^### ", RUNBOOKS)[1:]
    missing = [s.splitlines()[0] for s in sections if "**Playbook:**" not in s]
    assert not missing


def test_rules_read_diag_metrics_or_prometheus_own_series() -> None:
    recorded = {r["record"] for _, r in _rules() if "record" in r}
    prometheus_own = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
    for fname, rule in _rules():
        for name in metric_names(rule["expr"]):
            assert name.startswith(("diag_", "process_")) or name in recorded | prometheus_own, f"{fname}: {name}"


def test_example_prometheus_config_with_the_snmp_jobs_passes_promtool() -> None:
    cfg = ROOT / "deploy" / "prometheus.yml"
    p = subprocess.run([PROMTOOL, "check", "config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    jobs = {j["job_name"]: j for j in yaml.safe_load(cfg.read_text())["scrape_configs"]}
    snmp = jobs["snmp"]
    assert snmp["metrics_path"] == "/snmp"
    relabel = snmp["relabel_configs"]
    assert relabel[0] == {"source_labels": ["__address__"], "target_label": "__param_target"}
    assert relabel[1] == {"source_labels": ["__param_target"], "target_label": "instance"}
    assert relabel[2]["target_label"] == "__address__"


def test_interface_utilisation_covers_32_bit_counter_rows(tmp_path: Path) -> None:
    """if_mib labels each octet counter row with counter_bits (64 or 32) and the speed row without it: the
    utilisation recording rules must still divide one by the other (promtool's rule unit test)."""
    labels = 'instance="sw1", ifIndex="1", ifName="eth0", ifAlias="", ifDescr="eth0"'
    test = tmp_path / "snmp_test.yml"
    test.write_text(
        f"rule_files: [{ROOT / 'deploy' / 'prometheus' / 'rules' / 'snmp.yml'}]\n"
        "evaluation_interval: 1m\n"
        "tests:\n"
        "  - interval: 1m\n"
        "    input_series:\n"
        f"      - series: 'diag_snmp_if_hc_in_octets_total{{{labels}, counter_bits=\"32\"}}'\n"
        "        values: '0+6000000x10'\n"  # 6 MB a minute: 100,000 bytes/s
        f"      - series: 'diag_snmp_if_speed_bytes{{{labels}}}'\n"
        "        values: '1000000x10'\n"  # 8 Mbit/s
        "    promql_expr_test:\n"
        "      - expr: diag:snmp_if_in_utilisation:ratio_rate5m\n"
        "        eval_time: 10m\n"
        "        exp_samples:\n"
        f"          - labels: 'diag:snmp_if_in_utilisation:ratio_rate5m{{{labels}}}'\n"  # ignoring() drops it
        "            value: 0.1\n"
    )
    p = subprocess.run([PROMTOOL, "test", "rules", str(test)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
