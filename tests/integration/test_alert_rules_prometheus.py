"""The shipped alert rules in a real Prometheus, scraping a real ``diag agent``, with real conditions made on this host.

Conditions: a 4 MiB tmpfs filled step by step to 97% (the agent's filesystem probe watches it), a veth whose
peer in our namespace is set down (the netdev probe sees it administratively up, operationally down), a FIFO in
the textfile probe's directory (a read that blocks: the probe times out and fails), the incident the down veth
opens (its 1 s respond clock runs out), a closed TCP port, ping and an HTTPS
site answering 503 with a certificate that expires in 2 days (the reach probe), a port of a real snmpd set
down behind its veth peer (IF-MIB via the agent's /snmp), and an SNMP target with nothing listening. The rule
files are the ones in deploy/ with every ``for:`` shortened to 2 s; Prometheus evaluates every second. The test
reads /api/v1/alerts and checks that each alert fires with its labels and annotations. Ports 20400-20449,
namespaces dgp-*.
"""

from __future__ import annotations

import datetime as dt
import http.server
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DIAG, AgentProcess, free_port, http_get, owns_port, stop_process, wait_for
from tests.integration.test_reach_http import _Handler, make_cert
from tests.labs.alerting import Prometheus
from tests.labs.snmplab import COMMUNITY, SnmpLab

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules"
PORTS = range(20400, 20440)
DEAD_PORTS = range(20440, 20450)  # reserved, nothing listens (TCP or UDP): a dead target

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (tmpfs mount, network namespaces)")


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


class Stack:
    """tmpfs + veth + textfile FIFO + snmpd + agent + Prometheus; torn down in reverse."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mnt = root / "fill"
        self.mounted = False
        self.netns = ""
        self.veth = ""
        self.lab: SnmpLab | None = None
        self.agent: AgentProcess | None = None
        self.prom: Prometheus | None = None
        self.https: http.server.ThreadingHTTPServer | None = None
        self.https_url = ""
        self.trap_port = 0
        self.dead_port = 0

    def _serve_https(self) -> None:
        """A web server whose certificate expires in 2 days and whose application fails (503)."""
        now = dt.datetime.now(dt.UTC)
        cert = make_cert(self.root, now - dt.timedelta(days=1), now + dt.timedelta(days=2))
        port = free_port(PORTS)
        self.https = http.server.ThreadingHTTPServer(("127.0.0.1", port), type("H", (_Handler,), {"status": 503}))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        self.https.socket = ctx.wrap_socket(self.https.socket, server_side=True)
        threading.Thread(target=self.https.serve_forever, daemon=True).start()
        self.https_url = f"https://127.0.0.1:{port}/"

    def start(self) -> Stack:
        self.mnt.mkdir()
        _run("mount", "-t", "tmpfs", "-o", "size=4m", "dgp-alerts", str(self.mnt))
        self.mounted = True
        for i in range(1, 250):  # `ip netns add` fails when the name exists: a lock between parallel runs
            if subprocess.run(["ip", "netns", "add", f"dgp-{i}"], capture_output=True).returncode == 0:
                self.netns, self.veth = f"dgp-{i}", f"dgp-{i}-h"
                break
        _run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "peer", "netns", self.netns)
        _run("ip", "link", "set", self.veth, "up")
        _run("ip", "-n", self.netns, "link", "set", "peer", "up")
        textfile = self.root / "textfile"
        textfile.mkdir()
        os.mkfifo(textfile / "stuck.prom")  # read_text blocks on a FIFO with no writer: the probe times out
        self.lab = SnmpLab(interfaces=6, prefix="dgp", net=240).start()
        self._serve_https()
        os.environ["DGP_SNMP_COMMUNITY"] = COMMUNITY
        agent_port = free_port(PORTS)
        self.trap_port = free_port(PORTS, udp=True)  # the agent's trap listener (UDP)
        self.dead_port = free_port(DEAD_PORTS, udp=True)
        inventory = self.root / "inventory.yaml"
        inventory.write_text(
            f"""agent:
  hostname: alerts-host
  probes:
    filesystem: {{interval: 1}}
    netdev: {{interval: 1}}
    textfile: {{interval: 1, timeout: 1, directory: {textfile}}}
    diskhealth: {{enabled: false}}
    logscan: {{enabled: false}}
    reach:
      interval: 1
      timeout: 5
      checks:
        - {{type: ping, target: 127.0.0.1, count: 2, timeout: 1}}
        - {{type: tcp, target: 127.0.0.1, port: {self.dead_port}, timeout: 1}}   # nothing listens: refused
        - {{type: http, target: "{self.https_url}", cafile: "{self.root / "cert.pem"}", timeout: 2}}
  archive: {{interval: 5, files: {{archived: [/etc/hostname]}}}}   # its one host has no sshd: fetch fails
  traps: {{listen: ["127.0.0.1:{self.trap_port}"], communities: ["env:DGP_SNMP_COMMUNITY"]}}
  snmp_poll: {{interval: 1}}   # hosts with snmp.profiles, served on /snmp/inventory
  incidents:
    open_after: 0
    tick: 1s
    # every priority's respond clock is 1 s (the shipped KB's disk-full entry keeps its own 30m)
    sla:
      urgent: {{respond: 1s, resolve: 1h}}
      high: {{respond: 1s, resolve: 1h}}
      normal: {{respond: 1s, resolve: 1h}}
      low: {{respond: 1s, resolve: 1h}}
groups:
  archived: {{}}
hosts:
  nossh: {{address: 127.0.0.1, port: {self.dead_port}, groups: [archived]}}
  sw1:
    address: {self.lab.address}
    snmp: {{version: 2c, community: "env:DGP_SNMP_COMMUNITY", timeout: 1, retries: 0, profiles: [system, if_mib]}}
  deadsw:
    address: 127.0.0.1
    snmp: {{version: 2c, community: "env:DGP_SNMP_COMMUNITY", port: {self.dead_port}, timeout: 1, retries: 0}}  # nobody
"""
        )
        log = self.root / "agent.log"
        args = [DIAG, "agent", "--inventory", str(inventory), "--listen", f"127.0.0.1:{agent_port}"]
        args += ["--data", str(self.root / "data")]
        with log.open("wb") as err:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        self.agent = AgentProcess(proc, agent_port, log, args)
        wait_for(lambda: http_get(self.agent.url + "/healthz", 2)[0] == 200, timeout=30, what="diag agent")  # type: ignore[union-attr]
        assert owns_port(proc.pid, agent_port), f"port {agent_port}: the agent answering is not ours"
        # The deploy rules with every `for:` at 2 s, so that pending -> firing happens within the test.
        short_for = re.compile(r"(?m)^(\s+for:\s*)\S+")
        rules = {p.name: short_for.sub(r"\g<1>2s", p.read_text()) for p in sorted(RULES.glob("*.yml"))}
        agent = f"127.0.0.1:{agent_port}"
        config = f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 1s}}
rule_files: ["RULES_DIR/*.yml"]
scrape_configs:
  - job_name: diag
    static_configs: [{{targets: ["{agent}"]}}]
  - job_name: snmp
    metrics_path: /snmp
    params: {{module: [system, if_mib]}}  # two values: module=system&module=if_mib
    static_configs: [{{targets: [sw1, deadsw]}}]
    relabel_configs:
      - {{source_labels: [__address__], target_label: __param_target}}
      - {{source_labels: [__param_target], target_label: instance}}
      - {{target_label: __address__, replacement: "{agent}"}}
  - job_name: snmp-inventory   # the agent's own poll of inventory devices: one scrape, a target label per device
    metrics_path: /snmp/inventory
    static_configs: [{{targets: ["{agent}"]}}]
    metric_relabel_configs:
      - {{source_labels: [target], target_label: instance}}
      - {{regex: target, action: labeldrop}}
"""
        prom_dir = self.root / "prometheus"
        prom_dir.mkdir()
        self.prom = Prometheus(free_port(PORTS), prom_dir).start(config, rules)
        return self

    def close(self) -> None:
        if self.prom is not None:
            self.prom.close()
        if self.https is not None:
            self.https.shutdown()
            self.https.server_close()
        if self.agent is not None:
            stop_process(self.agent.proc)
        if self.lab is not None:
            self.lab.close()
        if self.netns:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
            subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        if self.mounted:
            subprocess.run(["umount", str(self.mnt)], capture_output=True)

    def firing(self, alertname: str, **labels: str) -> dict[str, Any] | None:
        assert self.prom is not None
        for a in self.prom.alerts():
            wanted = {"alertname": alertname, **labels}
            if a["state"] == "firing" and all(a["labels"].get(k) == v for k, v in wanted.items()):
                return a
        return None

    def wait_firing(self, alertname: str, timeout: float = 90, **labels: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def check() -> bool:
            a = self.firing(alertname, **labels)
            if a is not None:
                found.update(a)
            return a is not None

        try:
            wait_for(check, timeout=timeout, what=f"{alertname} {labels} firing")
        except BaseException:
            assert self.prom is not None and self.agent is not None
            print("alerts:", [(a["labels"], a["state"]) for a in self.prom.alerts()])
            print("agent log:", self.agent.stderr()[-2000:])
            raise
        return found


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="dgp-alerts-"))
    s = Stack(root)
    try:
        yield s.start()
    finally:
        s.close()
        shutil.rmtree(root, ignore_errors=True)


def _check_annotations(alert: dict[str, Any], *in_summary: str) -> None:
    ann = alert["annotations"]
    name = alert["labels"]["alertname"]
    for text in in_summary:
        assert text in ann["summary"], ann
    assert ann["description"] and "{{" not in ann["description"], ann  # rendered, not the template
    assert ann["runbook_url"].endswith("docs/runbooks.md#" + name.lower()), ann


def test_filesystem_filling_fires_trend_then_full(stack: Stack) -> None:
    assert stack.agent is not None
    mount = str(stack.mnt)
    # nothing fires on the empty tmpfs (it is watched: its size is exported)
    wait_for(lambda: f'mountpoint="{mount}"' in stack.agent.metrics(), timeout=30, what="the tmpfs in /metrics")  # type: ignore[union-attr]
    assert stack.firing("DiagFilesystemFillingUp", mountpoint=mount) is None
    # fill it in steps, so that Prometheus records a falling trend, up to 97%
    chunk = b"x" * (128 * 1024)
    with (stack.mnt / "data").open("wb") as f:
        for _ in range(31):  # 31 x 128 KiB of 4 MiB = 96.9%
            f.write(chunk)
            f.flush()
            time.sleep(0.5)
    full = stack.wait_firing("DiagFilesystemAlmostFull", mountpoint=mount)
    assert full["labels"]["severity"] == "critical" and full["labels"]["fstype"] == "tmpfs"
    assert full["labels"]["instance"].startswith("127.0.0.1:") and full["labels"]["job"] == "diag"
    assert 95 < float(full["value"]) < 100
    _check_annotations(full, mount, "% full")
    trend = stack.wait_firing("DiagFilesystemFillingUp", mountpoint=mount)
    assert trend["labels"]["severity"] == "warning" and trend["labels"]["area"] == "host"
    _check_annotations(trend, mount, "within 24 hours")
    low = stack.wait_firing("DiagFilesystemSpaceLow", mountpoint=mount)
    assert low["labels"]["severity"] == "warning"
    _check_annotations(low, mount, "96.88% full")  # 31 x 128 KiB of 4 MiB, humanizePercentage


def test_interface_down_fires_for_that_interface_only(stack: Stack) -> None:
    assert stack.firing("DiagNetworkInterfaceDown", device=stack.veth) is None
    _run("ip", "-n", stack.netns, "link", "set", "peer", "down")  # our end keeps IFF_UP, loses its carrier
    alert = stack.wait_firing("DiagNetworkInterfaceDown", device=stack.veth)
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["area"] == "host"
    _check_annotations(alert, stack.veth, "is down")
    assert "network-path" in alert["annotations"]["description"]
    firing = [a for a in stack.prom.alerts() if a["labels"]["alertname"] == "DiagNetworkInterfaceDown"]  # type: ignore[union-attr]
    assert all(a["labels"]["device"] != "lo" for a in firing)


def test_incident_from_the_down_interface_breaches_its_sla(stack: Stack) -> None:
    # the down veth is a link_down finding -> an incident (KB: typical, L1) whose 1 s respond clock runs out
    breach = stack.wait_firing("DiagIncidentSlaBreached", kind="respond")
    assert breach["labels"]["severity"] == "warning" and breach["labels"]["area"] == "support"
    _check_annotations(breach, "ran out of their respond time")
    critical = stack.wait_firing("DiagIncidentCriticalOpen")
    assert critical["labels"]["line"] in {"L1", "L2", "L3"} and critical["labels"]["severity"] == "warning"
    _check_annotations(critical, "critical incident(s) open")
    assert stack.firing("DiagTicketDeliveryFailing") is None  # the embedded ticket store takes the deliveries


def test_failing_probe_fires_with_the_probe_label(stack: Stack) -> None:
    alert = stack.wait_firing("DiagProbeFailing", probe="textfile")
    assert alert["labels"]["severity"] == "warning"
    _check_annotations(alert, "textfile")
    assert stack.agent is not None
    error = stack.agent.health()["errors"]["textfile"]
    assert "timed out after 1 s" in error or "previous run still going after 1 s" in error
    # the probes that work do not fire
    assert stack.firing("DiagProbeFailing", probe="filesystem") is None


def test_snmp_port_down_and_device_not_answering(stack: Stack) -> None:
    assert stack.lab is not None
    # p0 and p1 are a veth pair inside snmpd's namespace: p1 admin down makes p0 oper down while admin up
    _run("ip", "-n", stack.lab.netns, "link", "set", "p1", "down")
    # both scrape jobs (/snmp and /snmp/inventory) fire it; whichever Prometheus evaluates first may come first
    alert = stack.wait_firing("DiagSnmpInterfaceDown", instance="sw1", ifName="p0", job="snmp")
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["job"] == "snmp"
    _check_annotations(alert, "sw1 p0 is down")
    # the port that is down on purpose (admin down) does not page anyone
    assert stack.firing("DiagSnmpInterfaceDown", instance="sw1", ifName="p1") is None
    # the same from the agent's own poller (/snmp/inventory), relabeled so that instance is the device
    polled = stack.wait_firing("DiagSnmpInterfaceDown", instance="sw1", ifName="p0", job="snmp-inventory")
    _check_annotations(polled, "sw1 p0 is down")
    dead = stack.wait_firing("DiagSnmpNotAnswering", instance="deadsw")
    assert dead["labels"]["profile"] in {"system", "if_mib"} and dead["labels"]["severity"] == "critical"
    _check_annotations(dead, "deadsw does not answer SNMP")
    assert stack.firing("DiagSnmpNotAnswering", instance="sw1") is None
    # the device answered a fresh sysUpTime (snmpd started minutes ago): the reboot notice is there, as info
    rebooted = stack.wait_firing("DiagSnmpDeviceRebooted", instance="sw1")
    assert rebooted["labels"]["severity"] == "info"


def test_reachability_down_port_failing_site_and_expiring_certificate(stack: Stack) -> None:
    down = stack.wait_firing("DiagReachTargetDown", check=f"tcp:{stack.dead_port}")
    assert down["labels"]["target"] == "127.0.0.1" and down["labels"]["area"] == "reach"
    _check_annotations(down, f"tcp:{stack.dead_port} check of 127.0.0.1")
    cert = stack.wait_firing("DiagCertificateExpiresSoon", target=stack.https_url)
    assert cert["labels"]["severity"] == "warning"
    assert 1.9 * 86400 < float(cert["value"]) < 2 * 86400
    _check_annotations(cert, "expires in 1d 23h")  # humanizeDuration of just under 2 days
    err = stack.wait_firing("DiagHttpServerError", target=stack.https_url)
    assert float(err["value"]) == 503 and err["labels"]["severity"] == "critical"
    _check_annotations(err, "answers HTTP 503")
    assert stack.firing("DiagReachTargetDown", check="ping") is None  # 127.0.0.1 answers
    assert stack.firing("DiagCertificateExpired") is None


def test_refused_trap_and_failing_config_fetch(stack: Stack) -> None:
    # a device sending with the wrong community: the receiver refuses it, and says so
    subprocess.run(
        ["snmptrap", "-v", "2c", "-c", "not-the-community", f"127.0.0.1:{stack.trap_port}", "", "1.3.6.1.6.3.1.1.5.3"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    refused = stack.wait_firing("DiagSnmpTrapsRejected")
    assert refused["labels"]["reason"] == "bad_community" and refused["labels"]["area"] == "diag"
    # the other reasons, exported at 0, do not fire
    fired = {a["labels"]["reason"] for a in stack.prom.alerts() if a["labels"]["alertname"] == "DiagSnmpTrapsRejected"}  # type: ignore[union-attr]
    assert fired == {"bad_community"}
    _check_annotations(refused, "refuses SNMP traps")
    fetch = stack.wait_firing("DiagConfigFetchFailing", target="nossh")
    assert fetch["labels"]["source"] == "/etc/hostname"
    _check_annotations(fetch, "cannot fetch /etc/hostname from nossh")


def test_rules_api_lists_every_shipped_rule_healthy(stack: Stack) -> None:
    assert stack.prom is not None
    status, body = http_get(stack.prom.url + "/api/v1/rules", 5)
    assert status == 200
    import json

    groups = json.loads(body)["data"]["groups"]
    loaded = {r["name"] for g in groups for r in g["rules"]}
    shipped = set()
    for p in RULES.glob("*.yml"):
        shipped |= set(re.findall(r"(?m)^\s+- (?:alert|record): (\S+)", p.read_text()))
    assert loaded == shipped
    bad = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] == "err"]
    assert not bad
