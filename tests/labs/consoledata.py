"""A realistic data directory for the console: 50 hosts, 30 open incidents, history, checks, facts, approvals.

Written through diag's own stores and engine (the incident engine with a back-dated clock, the journal's check
records, the approval and token stores, the facts store), never by hand-made SQL, so the console reads what an
agent that has run for a few days would have. Used by tests/integration/test_console_live.py (screenshots,
live updates, axe-core) and bench/console_pages.py (page times). Deterministic: the same call gives the same data.
"""

from __future__ import annotations

import random
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from diag.model import Evidence, Finding

#: token name -> role; the people of the assignee list are these names
PEOPLE = {"noc-wall": "viewer", "petrov": "engineer", "sidorov": "engineer", "ivanova": "lead", "admin": "admin"}

SERVERS = [f"web-{i:02d}" for i in range(1, 16)] + [f"db-{i:02d}" for i in range(1, 9)]
SERVERS += [f"app-{i:02d}" for i in range(1, 13)] + ["lb-01", "lb-02", "mail-01", "backup-01", "mon-01"]
DEVICES = [f"sw-{i:02d}" for i in range(1, 7)] + [f"rtr-{i:02d}" for i in range(1, 5)]
assert len(SERVERS) + len(DEVICES) == 50

_CHECKS = [
    ("disk_full", "critical", "filesystem {s} is {p}% full", ["/var", "/", "/srv/data", "/var/log"]),
    ("service_down", "critical", "service {s} is not running", ["nginx", "postgresql", "exim4", "redis"]),
    ("memory_pressure", "warning", "memory {p}% used, swap in use", ["mem"]),
    ("load_high", "warning", "load average {p} on 4 cores", ["load"]),
    ("cert_expiry", "warning", "TLS certificate for {s} expires in 9 days", ["www.example.net", "api.example.net"]),
    ("ntp_offset", "warning", "clock offset {p} ms from NTP", ["ntp"]),
    ("raid_degraded", "critical", "RAID array {s} degraded", ["md0", "md1"]),
]
_DEVICE_CHECKS = [
    ("if_down", "critical", "interface {s} is down (admin up)", ["Gi0/1", "Gi0/24", "xe-0/0/1"]),
    ("if_errors", "warning", "interface {s} input errors {p}/s", ["Gi0/2", "Te1/1"]),
    ("psu_failed", "warning", "power supply {s} failed", ["PSU2"]),
]


@dataclass
class Seeded:
    inventory: Path
    data: Path
    tokens: dict[str, str] = field(default_factory=dict)
    open_incidents: int = 0
    hosts: int = 0


def inventory_text(data: Path, port: int, extra_agent: str = "") -> str:
    """50 hosts (servers over SSH on a closed loopback port, network devices) and the agent's incident settings."""
    lines = ["defaults:", "  user: diag", f"  port: {port}", "  connect_timeout: 2", "groups:"]
    lines += [f"  {g}: {{}}" for g in ("web", "db", "app", "infra", "net")]
    lines.append("hosts:")
    for i, name in enumerate(SERVERS):
        group = {"web": "web", "db-": "db", "app": "app"}.get(name[:3], "infra")
        lines.append(f"  {name}: {{address: 127.0.21.{i + 1}, groups: [{group}], site: msk-1}}")
    for i, name in enumerate(DEVICES):
        dt = "cisco_ios" if name.startswith("sw") else "juniper_junos"
        lines.append(f"  {name}: {{address: 127.0.22.{i + 1}, groups: [net], device_type: {dt}, site: msk-1}}")
    lines += [
        "agent:",
        f"  data: {str(data)!r}",
        "  snmp_poll: {enabled: false}",
        "  api: {max_body_bytes: 16384}",
        "  incidents: {open_after: 0, close_after: 0, tick: 0.5, delivery: {poll: 0.2}, tickets: {backend: local}}",
    ]
    return "\n".join(lines) + "\n" + textwrap.dedent(extra_agent)


def seed(base: Path, port: int, extra_agent: str = "", now: float | None = None) -> Seeded:
    """Write the inventory and fill the data directory; the agent is started on it afterwards."""
    from diag.agent.daemon import load_config
    from diag.api.approvals import ApprovalStore
    from diag.api.tokens import TokenStore
    from diag.incidents.service import IncidentService
    from diag.journal import checks as jchecks
    from diag.journal import open_journal
    from diag.model import HostResult
    from diag.remote import facts

    now = time.time() if now is None else now
    rnd = random.Random(20)
    base.mkdir(parents=True, exist_ok=True)
    data = base / "data"
    inv = base / "inventory.yaml"
    inv.write_text(inventory_text(data, port, extra_agent))
    cfg, inventory = load_config(str(inv))
    assert cfg.incidents is not None and inventory is not None
    out = Seeded(inv, data, hosts=len(inventory.hosts))

    tokens = TokenStore(data)
    for name, role in PEOPLE.items():
        out.tokens[name] = tokens.add(name, role)
    tokens.close()

    clock = [now]
    svc = IncidentService(cfg.incidents, inventory.hosts, clock=lambda: clock[0])
    engine = svc.engine

    def finding(host: str, checks: list[tuple[str, str, str, list[str]]]) -> Finding:
        check, sev, text, subjects = rnd.choice(checks)
        subject = rnd.choice(subjects)
        summary = text.format(s=subject, p=rnd.choice([91, 95, 97, 100, 12, 250]))
        ev = [Evidence("command", "df -Pk" if check == "disk_full" else check, f"{host}: {summary}\n", {})]
        return Finding(check, sev, summary, subject, None, ev, host)  # type: ignore[arg-type]

    # resolved history first (a week back): opened, acknowledged, fixed and re-checked
    for _ in range(18):
        host = rnd.choice(SERVERS + DEVICES)
        f = finding(host, _DEVICE_CHECKS if host in DEVICES else _CHECKS)
        t = now - rnd.uniform(1.5, 7) * 86400
        scope = f"playbook:linux-baseline@{host}"
        engine.observe("api", scope, [f], now=t)
        inc = svc.store.live(f.fingerprint)
        if inc is not None:
            engine.acknowledge(inc.id, rnd.choice(["token:petrov", "token:sidorov"]), now=t + rnd.uniform(300, 3000))
        engine.observe("api", scope, [], recheck=lambda: [], now=t + rnd.uniform(3600, 20000))

    # 30 open incidents of different ages: some fresh, some close to their SLA, some breached
    opened = 0
    hosts_used: set[str] = set()
    ages = [rnd.uniform(60, 600) for _ in range(8)] + [rnd.uniform(1800, 3500) for _ in range(8)]
    ages += [rnd.uniform(3 * 3600, 3.9 * 3600) for _ in range(6)] + [rnd.uniform(5 * 3600, 30 * 3600) for _ in range(8)]
    for age in ages:
        while True:
            host = rnd.choice(SERVERS + DEVICES)
            f = finding(host, _DEVICE_CHECKS if host in DEVICES else _CHECKS)
            if svc.store.live(f.fingerprint) is None:
                break
        hosts_used.add(host)
        t = now - age
        if host in DEVICES:
            engine.observe("snmp", f"snmp:{host}", [f], now=t)
        else:
            engine.ingest("alertmanager", [f], now=t)
        inc = svc.store.live(f.fingerprint)
        assert inc is not None and inc.state == "open", (f.fingerprint, inc)
        opened += 1
        r = rnd.random()
        if r < 0.3:
            engine.acknowledge(inc.id, rnd.choice(["token:petrov", "token:sidorov"]), now=t + min(age / 2, 600))
        if r < 0.2:
            with svc.store.tx() as c:
                who = rnd.choice(["petrov", "sidorov"])
                svc.store.event(c, inc.id, f"token:{who}", "assigned", f"assigned to {who}", t + min(age / 2, 700))
    # one incident reassigned over and over: the history that once grew to 3,857 px
    busy = svc.store.query(["open"], limit=1)[0]
    with svc.store.tx() as c:
        for k in range(60):
            who = ["petrov", "sidorov", "ivanova"][k % 3]
            svc.store.event(c, busy.id, "token:ivanova", "assigned", f"assigned to {who}", now - 3000 + 40 * k)
    svc.close()
    out.open_incidents = opened

    # the last check of every server (the journal), with findings on some; facts of a few
    journal = open_journal(data)
    for name in SERVERS:
        r = HostResult(name, duration_s=round(rnd.uniform(0.4, 3.5), 2))
        roll = rnd.random()
        if roll < 0.12:
            r.fail("unreachable", f"{name}: connection refused")
        elif roll < 0.45:
            r.status = "findings"
            r.findings.append(finding(name, _CHECKS))
        jchecks.host_done(journal, rnd.choice(["token:petrov", "token:sidorov"]), "linux-baseline", r)
    for name in SERVERS[:6]:
        facts.save(data, name, "facts", {
            "os": {"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}, "kernel": {"release": "6.1.0-28-amd64"},
            "hardware": {"sys_vendor": "Dell Inc.", "product_name": "PowerEdge R650"},
            "cpu": {"model": "Intel(R) Xeon(R) Silver 4314", "count": 32}, "memory": {"MemTotal": 131072000},
        }, now - 7200)  # fmt: skip

    approvals = ApprovalStore(data)
    approvals.create("token:petrov", "service-restart", ["web-03"], {"service": "nginx"}, ["restart"], "changes hosts")
    approvals.create("token:sidorov", "disk-cleanup", ["db-02"], {"path": "/var/log"}, ["clean"], "changes hosts")
    return out
