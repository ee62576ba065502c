"""``diag report`` on an incident store filled by real runs of the incident engine, recomputed by hand.

Two simulated weeks (the engine's clock is settable, as in tests/unit/test_incidents.py): disks filling again and
again on web-1 (typical, KB disk-full, one reopened within the reopen window), an atypical application fault on
db-1 acknowledged by engineers and breaching its SLA (escalated), a switch not answering SNMP for 3 hours (host
availability), nginx failed on web-2 for an hour (service availability), and one incident still open at the end.
The test then runs the real ``diag report`` command (JSON, CSV, HTML) and recomputes every figure it checks
straight from the SQLite database with its own SQL, not with diag's code. The HTML is rendered by headless
Chromium (Debian ``chromium``) and the screenshot saved to tests/artifacts/report.png (path printed).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sqlite3
import statistics
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from diag.agent import daemon as agent
from diag.incidents.service import IncidentService
from diag.model import Evidence, Finding
from tests.conftest import DIAG

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
DAY, HOUR, MIN = 86400.0, 3600.0, 60.0
T0 = 1_798_761_600.0  # 2027-01-01T00:00:00Z: the period starts here and lasts 14 days
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


INVENTORY = """
agent:
  incidents:
    open_after: 60
    close_after: 30
    reopen_window: 1d
    sla: {{high: {{respond: 30m, resolve: 4h}}, normal: {{respond: 4h, resolve: 1d}}}}
  data: {data}
groups:
  web: {{}}
  db: {{}}
  network: {{}}
hosts:
  web-1: {{address: 127.0.0.1, groups: [web]}}
  web-2: {{address: 127.0.0.1, groups: [web]}}
  db-1: {{address: 127.0.0.1, groups: [db]}}
  sw-1: {{address: 127.0.0.1, groups: [network]}}
"""


def disk(host: str) -> Finding:
    ev = Evidence("command", "df -Pk /data", "/dev/sdb1 1000 990 10 99% /data")
    return Finding("disk_full", "critical", "/data is 99% full", "/data", "disk_full", [ev], host=host)


def app(host: str) -> Finding:
    ev = Evidence("log", "/var/log/app.log", "worker 3 waits for lock held by worker 7")
    return Finding("app_stalled", "warning", "app workers stalled", "app", "app_deadlock", [ev], host=host)


def snmp_down(host: str) -> Finding:
    return Finding("snmp_not_answering", "critical", "no SNMP answer", "", "device_down", host=host)


def unit_failed(host: str) -> Finding:
    ev = Evidence("command", "systemctl status nginx", "Active: failed")
    return Finding("systemd_unit_failed", "warning", "nginx failed", "nginx", "service_failed", [ev], host=host)


class Sim:
    """Drives the engine like the agent does: observe a scope every minute, acknowledge, tick the SLA clock."""

    def __init__(self, svc: IncidentService, clock: Clock) -> None:
        self.svc, self.clock = svc, clock
        self.ticked: list[Any] = []

    def at(self, t: float) -> None:
        assert t >= self.clock.t
        self.clock.t = t
        self.ticked = self.svc.engine.tick()  # the clock runs due re-checks itself (stored due times, issue 13)

    def episode(
        self, start: float, f: Finding, lasts: float, ack: tuple[str, float] | None = None, resolve: bool = True
    ) -> int:
        scope = f"probe:{f.check}@{f.host}"
        self.at(start)
        assert self.svc.engine.observe("probe", scope, [f], recheck=lambda: [])[0].action in {"pending", "reopened"}
        self.at(start + 61)
        out = self.svc.engine.observe("probe", scope, [f], recheck=lambda: [])[0]
        assert out.action in {"opened", "occurrence"} and out.incident_id is not None
        inc_id = out.incident_id
        if ack is not None:
            self.at(start + 61 + ack[1])
            self.svc.engine.acknowledge(inc_id, ack[0])
        # the SLA clock is ticked every 10 minutes while the condition lasts
        t = self.clock.t
        while t + 600 < start + lasts:
            t += 600
            self.at(t)
        if resolve:
            self.at(start + lasts)
            self.svc.engine.observe("probe", scope, [], recheck=lambda: [])  # gone: clearing
            self.at(start + lasts + 31)
            outs = self.ticked + self.svc.engine.observe("probe", scope, [], recheck=lambda: [])
            assert [o.action for o in outs] == ["resolved"], outs  # once: by the clock's re-check or the next run
        return inc_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("report")
    data = root / "data"
    inv = root / "inventory.yaml"
    inv.write_text(INVENTORY.format(data=data))
    cfg, inventory = agent.load_config(str(inv))
    assert cfg.incidents is not None and inventory is not None
    clock = Clock(T0 - 3 * DAY)
    svc = IncidentService(cfg.incidents, inventory.hosts, clock=clock)
    sim = Sim(svc, clock)
    ids: dict[str, int] = {}
    # before the period: history for the forecast (and nothing of it may count in the period's figures)
    sim.episode(T0 - 3 * DAY, disk("web-2"), 1 * HOUR)
    sim.episode(T0 - 2 * DAY, app("db-1"), 2 * HOUR, ack=("alice", 10 * MIN))
    # in the period
    ids["disk0"] = sim.episode(T0 + 0 * DAY + HOUR, disk("web-1"), 2 * HOUR, ack=("bob", 5 * MIN))
    ids["disk0b"] = sim.episode(T0 + 0 * DAY + 5 * HOUR, disk("web-1"), 1 * HOUR)  # within reopen_window: reopened
    ids["app1"] = sim.episode(T0 + 1 * DAY, app("db-1"), 30 * HOUR, ack=("alice", 20 * MIN))  # resolve clock breaks
    ids["sw"] = sim.episode(T0 + 2 * DAY + 12 * HOUR, snmp_down("sw-1"), 3 * HOUR)  # respond clock breaks (nobody acks)
    ids["disk3"] = sim.episode(T0 + 3 * DAY + 2 * HOUR, disk("web-1"), 90 * MIN, ack=("bob", 45 * MIN))
    ids["nginx"] = sim.episode(T0 + 4 * DAY, unit_failed("web-2"), HOUR, ack=("carol", 2 * MIN))
    ids["app5"] = sim.episode(T0 + 5 * DAY, app("db-1"), 6 * HOUR, ack=("bob", 90 * MIN))
    ids["disk6"] = sim.episode(T0 + 6 * DAY, disk("web-1"), 45 * MIN, ack=("alice", 3 * MIN))
    ids["app8"] = sim.episode(T0 + 8 * DAY, app("db-1"), 2 * HOUR)
    ids["disk9"] = sim.episode(T0 + 9 * DAY, disk("web-2"), 20 * MIN, ack=("carol", 10 * MIN))
    ids["open"] = sim.episode(T0 + 13 * DAY, app("web-2"), 0, resolve=False)
    sim.at(T0 + 14 * DAY - 60)  # the SLA tick before the period ends (the agent ticks every 15 s)
    # after the period: must not count
    sim.episode(T0 + 14 * DAY + HOUR, disk("web-1"), HOUR)
    svc.close()
    return inv, data / "incidents.sqlite", ids


def _report(inv: Path, *args: str) -> str:
    p = subprocess.run(
        [DIAG, "report", "-i", str(inv), "--from", "2027-01-01", "--to", "2027-01-15", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    return p.stdout


def _by_hand(db: Path) -> dict[str, Any]:
    """The figures straight from the database, with plain SQL and arithmetic."""
    con = sqlite3.connect(db)
    start, end = T0, T0 + 14 * DAY
    rows = con.execute(
        "SELECT id, host, check_id, subject, classification, line, opened_at, acked_at, resolved_at, "
        "json_extract(doc, '$.cause'), COALESCE(json_extract(doc, '$.reopened'), 0), first_seen "
        "FROM incidents WHERE opened_at >= ? AND opened_at < ?",
        (start, end),
    ).fetchall()
    ids = [r[0] for r in rows]
    marks = ",".join("?" * len(ids))
    breached = {
        i
        for (i,) in con.execute(
            "SELECT DISTINCT incident_id FROM events WHERE kind='sla_breach' "
            f"AND at < {end} AND incident_id IN ({marks})",
            ids,
        )
    }
    kinds = Counter(
        k for (k,) in con.execute(
            f"SELECT json_extract(data, '$.clock') FROM events WHERE kind='sla_breach' AND at < {end} "
            f"AND incident_id IN ({','.join('?' * len(ids))})", ids,
        )
    )  # fmt: skip
    escalations = con.execute(
        f"SELECT COUNT(*) FROM events WHERE kind='escalated' AND at < {end} AND incident_id IN ({marks})",
        ids,
    ).fetchone()[0]
    acks = [r[7] - r[6] for r in rows if r[7] is not None]
    fixes = [r[8] - r[6] for r in rows if r[8] is not None]
    first_ack = {}
    for iid, actor, at in con.execute(
        "SELECT incident_id, actor, at FROM events WHERE kind='acknowledged' ORDER BY at"
    ):
        first_ack.setdefault(iid, (actor, at))
    # forecast: daily opened counts from the first day with an incident in the 56 days before the end
    hist_start = end - 56 * DAY
    all_opened = [t for (t,) in con.execute("SELECT opened_at FROM incidents WHERE opened_at IS NOT NULL")]
    daily = [0] * 56
    for t in all_opened:
        if hist_start <= t < end:
            daily[int((t - hist_start) // DAY)] += 1
    lead = next(i for i, n in enumerate(daily) if n)
    xs, ys = list(range(lead, 56)), daily[lead:]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    intercept = my - slope * mx
    forecast = [max(0.0, intercept + slope * (56 + i)) for i in range(7)]
    sw = next(r for r in rows if r[1] == "sw-1")
    nginx = next(r for r in rows if r[3] == "nginx")
    con.close()
    return {
        "rows": rows, "breached": breached, "kinds": kinds, "escalations": escalations, "acks": acks, "fixes": fixes,
        "first_ack": first_ack, "forecast": forecast, "daily": ys,
        "sw_down": sw[8] - sw[11], "nginx_down": nginx[8] - nginx[11],
    }  # fmt: skip


def test_json_figures_match_a_recomputation_from_the_database(store: tuple[Path, Path, dict[str, int]]) -> None:
    inv, db, ids = store
    rep = json.loads(_report(inv, "--format", "json", "--role", "lead"))
    h = _by_hand(db)
    rows = h["rows"]
    n = len(rows)
    assert n == 10 == rep["totals"]["incidents"]  # the history and the incident after the period do not count
    assert rep["totals"]["resolved"] == sum(1 for r in rows if r[8] is not None) == 9
    assert rep["mtta_s"] == pytest.approx(statistics.fmean(h["acks"]))
    assert rep["mtta_median_s"] == pytest.approx(statistics.median(h["acks"]))
    assert rep["mttr_s"] == pytest.approx(statistics.fmean(h["fixes"]))
    typical = sum(1 for r in rows if r[4] == "typical")
    assert rep["typical"]["typical"] == typical and rep["typical"]["typical_share"] == pytest.approx(typical / n)
    assert typical >= 5  # the disk_full incidents match the verified, typical KB entry disk-full
    assert rep["typical"]["l1_share"] == pytest.approx(sum(1 for r in rows if r[5] == "L1") / n)
    # SLA: the 30 h app fault broke its resolve clock, the unacknowledged switch its respond clock
    assert ids["app1"] in h["breached"] and ids["sw"] in h["breached"]
    assert set(rep["sla"]["breached_ids"]) == h["breached"]
    assert rep["sla"]["compliance"] == pytest.approx((n - len(h["breached"])) / n)
    assert rep["sla"]["breaches"] == dict(h["kinds"])
    assert rep["totals"]["escalations"] == h["escalations"] >= 2
    # reopen: the second disk episode on web-1 came back within the reopen window into the same incident
    reopened = [r for r in rows if r[10] > 0]
    assert [r[0] for r in reopened] == [ids["disk0"]] and ids["disk0b"] == ids["disk0"]
    assert rep["reopen_rate"] == pytest.approx(1 / n)
    # by cause / host / group / line
    assert {c["name"]: c["count"] for c in rep["by_cause"]} == dict(Counter(r[9] for r in rows))
    assert {c["name"]: c["count"] for c in rep["by_host"]} == dict(Counter(r[1] for r in rows))
    groups = {"web-1": "web", "web-2": "web", "db-1": "db", "sw-1": "network"}
    assert {g["name"]: g["count"] for g in rep["by_group"]} == dict(Counter(groups[r[1]] for r in rows))
    assert {x["name"]: x["count"] for x in rep["by_line"]} == dict(Counter(r[5] for r in rows))
    # handling per group: web (web-1 and web-2) by hand
    web = [r for r in rows if groups[r[1]] == "web"]
    g = next(x for x in rep["groups"] if x["group"] == "web")
    assert g["incidents"] == len(web)
    assert g["mtta_s"] == pytest.approx(statistics.fmean([r[7] - r[6] for r in web if r[7] is not None]))
    assert g["mttr_s"] == pytest.approx(statistics.fmean([r[8] - r[6] for r in web if r[8] is not None]))
    assert g["sla_compliance"] == pytest.approx(sum(1 for r in web if r[0] not in h["breached"]) / len(web))
    assert g["typical_share"] == pytest.approx(sum(1 for r in web if r[4] == "typical") / len(web))
    assert [x["group"] for x in rep["groups"]] == ["db", "network", "web"]
    # recurring: disk_full on web-1 (3 incidents + 1 reopen = 4), app_deadlock on db-1 (3)
    recurring = {(x["cause"], x["host"]): x["count"] for x in rep["recurring"]}
    assert recurring == {("disk_full", "web-1"): 4, ("app_deadlock", "db-1"): 3}
    # KB candidates: atypical causes seen at least twice; automation: typical ones by hours spent
    assert rep["kb_candidates"][0] == {"cause": "app_deadlock", "count": 4, "hosts": 2}  # 3 on db-1, 1 on web-2
    disk_hours = sum(r[8] - r[6] for r in rows if r[2] == "disk_full" and r[8] is not None) / 3600
    assert rep["automation_candidates"][0]["kb"] == "disk-full"
    assert rep["automation_candidates"][0]["hours_to_resolve"] == pytest.approx(disk_hours)
    # availability: sw-1 down 3 h (+ damping and clearing) of 14 days; nginx on web-2 down 1 h
    hosts = {x["host"]: x for x in rep["availability"]["hosts"]}
    assert hosts["sw-1"]["downtime_s"] == pytest.approx(h["sw_down"])
    assert hosts["sw-1"]["availability"] == pytest.approx(1 - h["sw_down"] / (14 * DAY))
    assert hosts["sw-1"]["slo_met"] is False and hosts["web-1"]["availability"] == 1.0  # 99.1% < 99.9%
    (svc,) = rep["availability"]["services"]
    assert (svc["host"], svc["service"]) == ("web-2", "nginx")
    assert svc["downtime_s"] == pytest.approx(h["nginx_down"])
    # forecast: the least-squares line through the daily counts
    assert rep["forecast"]["daily"] == h["daily"]
    assert rep["forecast"]["forecast_daily"] == pytest.approx(h["forecast"])
    # per engineer (lead): the first acknowledgement owns the incident
    owners = Counter(actor for iid, (actor, _) in h["first_ack"].items() if iid in {r[0] for r in rows})
    assert {e["engineer"]: e["acknowledged"] for e in rep["engineers"]} == dict(owners)
    alice = next(e for e in rep["engineers"] if e["engineer"] == "alice")
    alice_acks = [
        at - r[6] for r in rows for iid, (who, at) in h["first_ack"].items() if iid == r[0] and who == "alice"
    ]
    assert alice["mean_time_to_ack_s"] == pytest.approx(statistics.fmean(alice_acks))
    assert alice["sla_breached"] == 1  # app1


def test_per_engineer_figures_only_for_the_lead(store: tuple[Path, Path, dict[str, int]]) -> None:
    inv, _, _ = store
    assert "engineers" not in json.loads(_report(inv, "--format", "json"))
    assert "Per engineer" not in _report(inv, "--format", "html")
    assert "Per engineer" in _report(inv, "--format", "html", "--role", "lead")


def test_csv_has_one_row_per_incident_of_the_period(store: tuple[Path, Path, dict[str, int]]) -> None:
    inv, db, ids = store
    rows = list(csv.DictReader(io.StringIO(_report(inv, "--format", "csv"))))
    h = _by_hand(db)
    assert sorted(int(r["id"]) for r in rows) == sorted(r[0] for r in h["rows"])
    app1 = next(r for r in rows if int(r["id"]) == ids["app1"])
    assert app1["sla_breached"] == "resolve" and app1["cause"] == "app_deadlock"
    assert float(app1["time_to_resolve_s"]) == pytest.approx(30 * HOUR - 61 + 31, abs=1)
    assert next(r for r in rows if int(r["id"]) == ids["open"])["resolved_at"] == ""


def test_bad_period_is_a_one_line_error(store: tuple[Path, Path, dict[str, int]]) -> None:
    inv, _, _ = store
    p = subprocess.run([DIAG, "report", "-i", str(inv), "--from", "yesterday"], capture_output=True, text=True)
    assert p.returncode == 2 and "--from: 'yesterday' is not a date" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_html_report_renders_in_headless_chromium(store: tuple[Path, Path, dict[str, int]], tmp_path: Path) -> None:
    inv, _, _ = store
    page = tmp_path / "report.html"
    text = _report(inv, "--format", "html", "--role", "lead")
    # five charts as inline SVG; nothing fetched from elsewhere (pygal's default tooltip script is a CDN link)
    assert text.count("<svg") == 5 and not re.search(r"(src|href)=[\"']?(https?:)?//", text)
    page.write_text(text)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    p = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1360,2400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a blank page is a few kB
    print(f"\nreport screenshot: {shot}")
