"""A real Alertmanager posts to diag's receiver, which diagnoses a real SSH lab host; the incident side is recorded.

Alertmanager (Debian ``prometheus-alertmanager``) gets its alerts through its v2 API, the way Prometheus sends
them, and notifies diag's HTTP server with its own bearer token. The receiver runs the ``disk-full`` playbook
over SSH on a lab host whose tmpfs is filled, and hands the finding to the incident side. That side is a
recording stand-in (``RecordingEngine``, a fake named as such): the real engine and Redmine are in
tests/integration/test_e2e_alertmanager.py; here the receiver's own policy is pinned down (one finding per alert,
repeats, ordering, the verifying re-check, refusing a wrong token).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from diag.agent import daemon as agent_mod
from diag.alertmanager import mount
from diag.alertmanager.receiver import SOURCE, Verdict
from diag.httpserver import BoundedServer as Server
from diag.model import Evidence, Finding
from diag.wsgi import App
from tests.conftest import free_port, wait_for
from tests.labs.alerting import PROMTOOL, Alertmanager, Prometheus
from tests.labs.lab import Lab
from tests.labs.lab import lab as one_lab

pytestmark = pytest.mark.integration

PORTS = range(20360, 20380)
TOKEN = "am-receiver-token-0123456789"


class RecordingEngine:
    """A fake incident engine that records what the receiver hands it and runs the verifier it is given."""

    def __init__(self) -> None:
        self.ingested: list[tuple[str, Finding]] = []
        self.resolved: list[tuple[str, str, Verdict]] = []
        self.lock = threading.Lock()

    def ingest(self, source: str, findings: Sequence[Finding], *, now: float | None = None) -> str:
        with self.lock:
            self.ingested.extend((source, f) for f in findings)
        return "recorded"

    def resolve(self, source: str, fingerprint: str, verify: Callable[[], Verdict], evidence: Evidence) -> str:
        verdict = verify()
        with self.lock:
            self.resolved.append((source, fingerprint, verdict))
        return "resolved" if verdict.cleared else "kept open"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with one_lab(1) as lb:
        yield lb


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A Prometheus that scrapes itself (job ``self``) and a port where nothing listens (job ``dead``, up 0).

    The re-check of alerts without a playbook asks it.
    """
    port = free_port(PORTS)
    prom = Prometheus(port, tmp_path_factory.mktemp("prometheus"))
    try:
        config = (
            "global: {scrape_interval: 1s}\n"
            f"scrape_configs:\n  - job_name: self\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        )
        prom.start(config)
        wait_for(lambda: prom.query('up{job="self"} == 1'), what="Prometheus to scrape itself")
        dead = free_port(PORTS)  # taken once Prometheus listens: another port, reserved for this run, never listened on
        (prom.dir / "prometheus.yml").write_text(
            config + f"  - job_name: dead\n    static_configs: [{{targets: ['127.0.0.1:{dead}']}}]\n"
        )
        prom.reload()
        wait_for(lambda: prom.query('up{job="dead"} == 0'), what="Prometheus to fail scraping the dead target")
        yield prom
    finally:
        prom.close()


@pytest.fixture(scope="module")
def receiver_url(
    lab: Lab, prometheus: Prometheus, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, RecordingEngine, Any]]:
    tmp = tmp_path_factory.mktemp("receiver")
    (tmp / "token").write_text(TOKEN + "\n")
    inv = tmp / "inventory.yaml"
    inv.write_text(
        lab.inventory.read_text()
        + "agent:\n"
        + "  alertmanager:\n"
        + f"    auth: {{bearer_token: 'file:{tmp / 'token'}'}}\n"
        + f"    known_hosts: ['{lab.known_hosts}']\n"
        + "    rediagnose_after: 0\n"
        + f"    prometheus_url: {prometheus.url}\n"
        + "    playbooks:\n"
        + "      DiagFilesystemAlmostFull: {playbook: disk-full, vars_from_labels: {path: mountpoint}}\n"
    )
    cfg, inventory = agent_mod.load_config(str(inv), data=str(tmp / "data"))
    engine = RecordingEngine()
    app = App()
    receiver = mount(app, cfg, inventory, sink=engine)
    assert receiver is not None
    server = Server(app, "127.0.0.1", free_port(PORTS))
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}/api/v1/alertmanager", engine, receiver
    finally:
        server.stop()
        receiver.close()


def _am_config(url: str, token_file: Path) -> str:
    return f"""\
route:
  receiver: diag
  group_by: [alertname, instance]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 3s
receivers:
  - name: diag
    webhook_configs:
      - url: {url}
        send_resolved: true
        http_config:
          authorization: {{type: Bearer, credentials_file: {token_file}}}
"""


def _alert(lab: Lab, mountpoint: str, ends: bool = False, **extra: str) -> dict[str, Any]:
    h = lab.host("h01")
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    a: dict[str, Any] = {
        "labels": {
            "alertname": "DiagFilesystemAlmostFull",
            "instance": f"{h.address}:9847",
            "job": "diag",
            "mountpoint": mountpoint,
            "severity": "critical",
            **extra,
        },
        "annotations": {"summary": f"{mountpoint} is almost full"},
        "generatorURL": "http://127.0.0.1:1/graph",
    }
    if ends:
        a["endsAt"] = now
    return a


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Callable[[str, str], Alertmanager]]:
    started: list[Alertmanager] = []

    def start(url: str, token: str) -> Alertmanager:
        (tmp_path / "am.token").write_text(token)
        am = Alertmanager(free_port(PORTS[::-1]), tmp_path / f"am{len(started)}")
        (tmp_path / f"am{len(started)}").mkdir()
        started.append(am)
        return am.start(_am_config(url, tmp_path / "am.token"))

    yield start
    for am in started:
        am.close()


def test_alert_is_diagnosed_repeated_and_resolved_after_a_recheck(
    lab: Lab, receiver_url: tuple[str, RecordingEngine, Any], alertmanager: Callable[[str, str], Alertmanager]
) -> None:
    url, engine, receiver = receiver_url
    mnt = lab.mount_tmpfs("h01", "4M")
    lab.fill("h01", mnt, 97)
    am = alertmanager(url, TOKEN)
    am.post_alerts([_alert(lab, str(mnt))])

    first = wait_for(lambda: engine.ingested[:1], timeout=60, what="the receiver to hand over the alert")
    source, f = first[0]
    assert source == SOURCE == "alertmanager"
    assert (f.host, f.check, f.severity, f.cause) == ("h01", "DiagFilesystemAlmostFull", "critical", "disk_full")
    assert f.subject == f"mountpoint={mnt}"
    diagnosis = next(e for e in f.evidence if e.title == "diagnosis findings (disk-full)")
    assert "[critical] disk_full" in diagnosis.text and str(mnt) in diagnosis.text
    df = next(e for e in f.evidence if e.kind == "command" and e.data["step"] == "usage")
    assert df.data["command"] == f"df -Pk {mnt}" and " 9" in df.text  # 97% (or so) in df's own output
    assert "diagnosis:" in f.summary and "% full" in f.summary

    # Alertmanager repeats the notification (repeat_interval 3 s): the same finding again, not a new one.
    wait_for(lambda: len(engine.ingested) >= 2, timeout=30, what="a repeat notification")
    assert {x.fingerprint for _, x in engine.ingested} == {f.fingerprint}

    # The condition clears and Alertmanager says so: the receiver re-checks on the host before resolving.
    lab.exec("h01", ["rm", "-f", f"{mnt}/fill"])
    am.post_alerts([_alert(lab, str(mnt), ends=True)])
    done = wait_for(lambda: engine.resolved[:1], timeout=60, what="the resolved alert")
    _, fp, verdict = done[0]
    assert fp == f.fingerprint
    assert verdict.cleared, verdict.note
    assert "re-check (disk-full) on h01 confirms it: disk_full found before" in verdict.note
    assert any(e.data.get("step") == "usage" for e in verdict.evidence)  # the re-check's own df output
    ingested = len(engine.ingested)
    time.sleep(4)  # past repeat_interval: a resolved alert is not notified as firing again
    assert len(engine.ingested) == ingested
    assert receiver.wait_idle(30)
    # The event journal has the trail `diag check` leaves, with the receiver as the actor, and the alert's events.
    recs = [(r.actor, r.action, r.target, r.result) for r in receiver.journal.query(limit=1000)]
    assert ("alertmanager", "alert.firing", "h01", "recorded") in recs
    assert ("alertmanager", "check.started", "h01", "running") in recs
    assert ("alertmanager", "finding", "h01", "critical") in recs
    sent = [r for r in receiver.journal.query(limit=1000) if r.action == "command.sent"]
    assert any(r.details["command"] == f"df -Pk {mnt}" and r.details["job"].startswith("alert:") for r in sent)
    assert ("alertmanager", "alert.resolved", "h01", "resolved") in recs
    assert receiver.journal.verify()[1] == []
    text = receiver.render().decode()
    assert 'diag_alertmanager_alerts_total{status="resolved"} 1.0' in text
    assert 'diag_alertmanager_diagnoses_total{status="findings"}' in text
    assert 'diag_alertmanager_rechecks_total{result="cleared"} 1.0' in text
    assert "diag_alertmanager_pending_alerts 0.0" in text
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert (check.returncode, check.stdout + check.stderr) == (0, "")


def test_resolved_while_still_full_keeps_the_incident_open(
    lab: Lab, receiver_url: tuple[str, RecordingEngine, Any], alertmanager: Callable[[str, str], Alertmanager]
) -> None:
    url, engine, _ = receiver_url
    mnt = lab.mount_tmpfs("h01", "4M")
    lab.fill("h01", mnt, 98)
    am = alertmanager(url, TOKEN)
    n_in, n_res = len(engine.ingested), len(engine.resolved)
    am.post_alerts([_alert(lab, str(mnt))])  # Alertmanager only tells "resolved" about alerts it told as firing
    wait_for(lambda: len(engine.ingested) > n_in, timeout=60, what="the firing alert")
    am.post_alerts([_alert(lab, str(mnt), ends=True)])  # hearsay: Alertmanager says resolved, the disk is full
    done = wait_for(lambda: engine.resolved[n_res:], timeout=60, what="the resolved alert")
    verdict = done[0][2]
    assert not verdict.cleared
    assert "still finds" in verdict.note and str(mnt) in verdict.note


def test_a_playbook_that_never_saw_the_alert_cannot_confirm_it_is_gone(
    lab: Lab, receiver_url: tuple[str, RecordingEngine, Any], alertmanager: Callable[[str, str], Alertmanager]
) -> None:
    """The rule fires at 75% (a user's rule), the disk-full playbook warns at 90%: its diagnosis finds nothing.
    Alertmanager then says "resolved" while the disk is still 80% full (as when Prometheus stops sending the alert
    and it expires). The playbook's re-check finding nothing again proves nothing: it used to "confirm" it ("nothing
    found before, no problem found now") and the incident was resolved while its condition held. The rule's own
    expression decides instead; here Prometheus has no data for the target, so it is "not checked"."""
    url, engine, _ = receiver_url
    mnt = lab.mount_tmpfs("h01", "4M")
    lab.fill("h01", mnt, 80)
    am = alertmanager(url, TOKEN)
    n_in, n_res = len(engine.ingested), len(engine.resolved)
    am.post_alerts([_alert(lab, str(mnt), rule="custom-75")])
    first = wait_for(lambda: engine.ingested[n_in:], timeout=60, what="the firing alert")
    diagnosis = next(e for e in first[0][1].evidence if e.kind == "command" and e.data["step"] == "usage")
    assert " 8" in diagnosis.text  # df saw about 80%: below the playbook's 90%, so no finding
    am.post_alerts([_alert(lab, str(mnt), ends=True, rule="custom-75")])
    verdict = wait_for(lambda: engine.resolved[n_res:], timeout=60, what="the resolved alert")[0][2]
    assert not verdict.cleared, verdict.note
    assert verdict.note.startswith("The disk-full playbook did not see it while it fired"), verdict.note


def test_a_wrong_token_is_refused_and_nothing_reaches_the_engine(
    lab: Lab, receiver_url: tuple[str, RecordingEngine, Any], alertmanager: Callable[[str, str], Alertmanager]
) -> None:
    url, engine, receiver = receiver_url
    before = (len(engine.ingested), len(engine.resolved))
    am = alertmanager(url, "not-the-token")
    am.post_alerts([_alert(lab, "/nonexistent", device="x")])
    wait_for(
        lambda: am.metric("alertmanager_notifications_failed_total", integration="webhook") >= 1,
        timeout=30,
        what="Alertmanager to count a failed notification",
    )
    assert "401" in am.tail(20000)  # Alertmanager logs the receiver's answer
    denied = [r for r in receiver.journal.query(limit=1000) if r.action == "login.failed"]
    assert denied and denied[-1].actor == "remote:127.0.0.1" and denied[-1].result == "401"
    assert (len(engine.ingested), len(engine.resolved)) == before


def test_alert_without_a_playbook_is_rechecked_on_prometheus(
    receiver_url: tuple[str, RecordingEngine, Any], prometheus: Prometheus
) -> None:
    from diag.alertmanager.payload import decode

    _, engine, receiver = receiver_url
    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "alertmanager" / "resolved.json"
    doc = json.loads(fixture.read_bytes())
    target = f"127.0.0.1:{prometheus.port}"
    verdicts = []
    for expr, cleared in (('up{job="self"} == 1', False), ('up{job="self"} == 0', True)):
        alert = doc["alerts"][0]
        alert["labels"] = {"alertname": "SelfUp", "instance": target, "job": "self", "severity": "warning"}
        alert["generatorURL"] = f"{prometheus.url}/graph?" + urllib.parse.urlencode({"g0.expr": expr, "g0.tab": "1"})
        alert["fingerprint"] = f"self{cleared}"
        n = len(engine.resolved)
        receiver.handle(decode(json.dumps(doc).encode()))
        verdict = wait_for(lambda n=n: engine.resolved[n:], timeout=30, what="the re-check")[0][2]
        verdicts.append(verdict)
        assert verdict.cleared is cleared, verdict.note
    assert "still returns it" in verdicts[0].note and target in verdicts[0].evidence[0].text
    assert verdicts[1].note.startswith("Resolved: the rule's expression no longer returns SelfUp")
    # No data is not "gone": an expression over a target whose scrape fails, or that is not scraped at all,
    # returns nothing too; the re-check says it could not check, and the incident stays open.
    (dead,) = prometheus.query('up{job="dead"}')
    for job, instance, why in (
        ("dead", dead["metric"]["instance"], "the scrape of instance="),
        ("gone", "127.0.0.1:9", "Prometheus does not scrape instance=127.0.0.1:9"),
    ):
        alert = doc["alerts"][0]
        alert["labels"] = {"alertname": "FdsHigh", "instance": instance, "job": job, "severity": "warning"}
        expr = f'process_open_fds{{job="{job}"}} > 1000'
        alert["generatorURL"] = f"{prometheus.url}/graph?" + urllib.parse.urlencode({"g0.expr": expr, "g0.tab": "1"})
        alert["fingerprint"] = f"fds-{job}"
        n = len(engine.resolved)
        receiver.handle(decode(json.dumps(doc).encode()))
        verdict = wait_for(lambda n=n: engine.resolved[n:], timeout=30, what="the re-check")[0][2]
        assert not verdict.cleared and "returns nothing, but not checked: " in verdict.note, verdict.note
        assert why in verdict.note, verdict.note


def test_an_agent_without_the_receiver_configured_refuses_posts(start_agent: Any) -> None:
    import urllib.error
    import urllib.request

    agent = start_agent("hosts: {}\n", ports=PORTS)
    body = (Path(__file__).resolve().parent.parent / "fixtures" / "alertmanager" / "firing.json").read_bytes()
    req = urllib.request.Request(
        agent.url + "/api/v1/alertmanager",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer anything"},
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 403 and b"not configured" in e.value.read()
    assert agent.get("/api/v1/alertmanager")[0] == 405
    assert "alertmanager" not in agent.health()
