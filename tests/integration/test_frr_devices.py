"""Network devices over SSH against real FRRouting (tests/labs/frrlab.py): vtysh as the login shell, netmiko driver.

One lab for the module (two routers, BGP + OSPF between them). Every test that breaks something (an interface shut,
a route removed, a link down) restores it and waits for the lab to converge again before it ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diag import inventory
from diag.errors import HostKeyError, Unreachable
from diag.network.devices import open_device
from diag.network.devices.base import DeviceError
from diag.remote import parsers
from tests.labs.frrlab import BGP_PREFIX, MGMT, OSPF_PREFIX, STATIC_PREFIX, FrrLab
from tests.labs.lab import keygen
from tests.labs.redislab import RedisServer

pytestmark = pytest.mark.integration
#: eth2 is shut and unshut by several tests: its "Link downs" grows, which the playbook rightly calls flapping.
NO_FLAPS = ("--var", "flap_threshold=1000")
PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
TEMPLATES = Path(__file__).resolve().parents[2] / "diag" / "network" / "devices" / "templates"


@pytest.fixture(scope="module")
def frr() -> Iterator[FrrLab]:
    lab = FrrLab()
    try:
        lab.start()
        lab.converged()
        yield lab
    finally:
        lab.close()


def diag(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diag.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=180
    )


def check(lab: FrrLab, cwd: Path, *args: str, known_hosts: Path | None = None) -> tuple[int, dict[str, Any]]:
    kh = known_hosts or lab.known_hosts
    p = diag(cwd, "check", "--json", "-i", str(lab.inventory), "--known-hosts", str(kh), *args)
    assert p.stdout.strip(), f"no JSON on stdout; stderr: {p.stderr}"
    return p.returncode, json.loads(p.stdout)


def only(doc: dict[str, Any], host: str = "r1") -> dict[str, Any]:
    by = {r["host"]: r for r in doc["results"]}
    return by[host]


def textfsm(template: str) -> parsers.Parser:
    return parsers.prepare(parsers.TextfsmParse(template=template.replace("-", "_")), TEMPLATES)


def r1_host(lab: FrrLab) -> inventory.Host:
    return inventory.load(lab.inventory).hosts["r1"]


def test_driver_runs_show_commands_and_textfsm_parses_them(frr: FrrLab) -> None:
    with open_device(r1_host(frr), known_hosts=frr.known_hosts) as dev:
        assert dev.where == f"{MGMT}:22 (r1, frr)"
        ifaces = {r["interface"]: r for r in textfsm("frr-show-interface.textfsm")(dev.send_command("show interface"))}
        assert set(ifaces) == {"lo", "eth0", "eth1", "eth2"}
        assert ifaces["eth0"]["ipv4"] == [f"{MGMT}/30"]
        assert ifaces["eth1"]["admin_state"] == "up" and ifaces["eth1"]["link_state"] == "up"
        assert ifaces["eth1"]["description"] == "link to r2"
        assert ifaces["eth2"]["protodown"] == "off"

        routes = textfsm("frr-show-ip-route.textfsm")(dev.send_command("show ip route"))
        by = {(r["protocol"], r["prefix"]): r for r in routes if r["selected"] == ">"}
        assert by[("S", STATIC_PREFIX)]["nexthop"] == "blackhole"
        assert by[("B", BGP_PREFIX)]["nexthop"] == "10.239.1.2" and by[("B", BGP_PREFIX)]["interface"] == "eth1"
        assert by[("O", OSPF_PREFIX)]["fib"] == "*"
        assert by[("C", "10.239.2.0/30")]["interface"] == "eth2"

        bgp = textfsm("frr-show-bgp-summary.textfsm")(dev.send_command("show bgp summary"))
        assert [(n["neighbor"], n["remote_as"], n["state_pfxrcd"]) for n in bgp] == [("10.239.1.2", "65002", "1")]

        config = dev.running_config()
        assert config.startswith("!\nfrr version ") and "Building configuration" not in config
        assert config.rstrip().endswith("\nend")  # read to the end: "hostname r1" inside did not stop the read
        assert "hostname r1" in config and f"ip route {STATIC_PREFIX} blackhole" in config

        with pytest.raises(DeviceError, match=r"10\.239\.0\.2:22 \(r1, frr\): `show nonsense`: % Unknown command"):
            dev.send_command("show nonsense")
        assert dev.send_command("show ip route").count(BGP_PREFIX) == 1  # the session is still in step


def test_clean_lab_gives_no_findings(frr: FrrLab, tmp_path: Path) -> None:
    for pb in ("network-interfaces", "network-routes", "network-neighbors"):
        rc, doc = check(frr, tmp_path, "-p", pb, "r1")
        r = only(doc)
        assert (rc, r["status"], r["findings"]) == (0, "ok", []), (pb, r)
    assert doc["skipped"] == [] and [s["id"] for s in r["steps"]] == ["bgp", "ospf", "neighbors"]


def test_interface_shut_in_frr_becomes_a_finding(frr: FrrLab, tmp_path: Path) -> None:
    frr.vtysh("r1", "configure terminal", "interface eth2", "shutdown")
    try:
        rc, doc = check(frr, tmp_path, "-p", "network-interfaces", *NO_FLAPS, "r1")
        r = only(doc)
        assert r["status"] == "findings" and rc == 1  # shut by configuration: warning
        [f] = r["findings"]
        assert (f["check"], f["severity"], f["subject"]) == ("interface_admin_down", "warning", "eth2")
        assert "second link to r2" in f["summary"]
        assert f["evidence"][0]["data"]["command"] == "show interface"
        assert "Interface eth2 is down" in f["evidence"][0]["text"]
    finally:
        frr.vtysh("r1", "configure terminal", "interface eth2", "no shutdown")
    # The far end shut: r1's eth2 stays enabled but loses its carrier. That is an outage: critical.
    frr.vtysh("r2", "configure terminal", "interface eth2", "shutdown")
    try:
        frr.wait_until("r1", "show interface eth2", lambda o: "line protocol is down" in o)
        rc, doc = check(frr, tmp_path, "-p", "network-interfaces", *NO_FLAPS, "r1")
        [f] = only(doc)["findings"]
        assert (rc, f["check"], f["severity"], f["subject"]) == (2, "interface_down", "critical", "eth2")
    finally:
        frr.vtysh("r2", "configure terminal", "interface eth2", "no shutdown")
        frr.wait_until("r1", "show interface eth2", lambda o: "line protocol is up" in o)


def test_route_that_disappears_is_found(frr: FrrLab, tmp_path: Path) -> None:
    frr.vtysh("r1", "configure terminal", f"no ip route {STATIC_PREFIX} blackhole")
    try:
        frr.wait_until("r1", "show ip route", lambda o: STATIC_PREFIX not in o)
        rc, doc = check(frr, tmp_path, "-p", "network-routes", "r1")
        r = only(doc)
        [f] = r["findings"]
        assert (rc, f["check"], f["severity"], f["subject"]) == (2, "route_missing", "critical", STATIC_PREFIX)
        assert BGP_PREFIX in f["evidence"][0]["text"]  # the table it looked at, which has the others
        # --var overrides the inventory's expectation: without that prefix, nothing is missing
        rc, doc = check(frr, tmp_path, "-p", "network-routes", "--var", f"expected_prefixes={BGP_PREFIX}", "r1")
        assert (rc, only(doc)["findings"]) == (0, [])
    finally:
        frr.vtysh("r1", "configure terminal", f"ip route {STATIC_PREFIX} blackhole")
        frr.wait_until("r1", "show ip route", lambda o: STATIC_PREFIX in o)


def test_neighbours_lost_when_the_link_goes_down(frr: FrrLab, tmp_path: Path) -> None:
    frr.vtysh("r2", "configure terminal", "interface eth1", "shutdown")
    try:
        frr.wait_until("r1", "show bgp summary", lambda o: "Active" in o or "Connect" in o or "Idle" in o)
        frr.wait_until("r1", "show ip ospf neighbor", lambda o: OSPF_PREFIX.split("/")[0] not in o)
        rc, doc = check(frr, tmp_path, "-p", "network-neighbors", "--var", "expected_ospf_neighbors=10.239.255.2", "r1")
        found = {(f["check"], f["subject"]) for f in only(doc)["findings"]}
        assert found == {("bgp_neighbor_down", "10.239.1.2"), ("ospf_neighbor_missing", "10.239.255.2")}
        assert rc == 2
        rc, doc = check(frr, tmp_path, "-p", "network-routes", "r1")
        assert {f["subject"] for f in only(doc)["findings"]} == {BGP_PREFIX, OSPF_PREFIX}
    finally:
        frr.vtysh("r2", "configure terminal", "interface eth1", "no shutdown")
        frr.converged()


def test_wrong_host_key_refused_key_and_dead_device(frr: FrrLab, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other_key", "not-r1")
    bad = tmp_path / "known_hosts.bad"
    bad.write_text(f"{MGMT} {' '.join(other.split()[:2])}\n")
    rc, doc = check(frr, tmp_path, "-p", "network-interfaces", "r1", "dead", known_hosts=bad)
    r1, dead = only(doc, "r1"), only(doc, "dead")
    assert r1["status"] == "hostkey_mismatch" and "host key CHANGED" in r1["error"]
    assert r1["error"].startswith(f"{MGMT}:22 (r1, frr): ")
    assert dead["status"] == "unreachable" and dead["error"].startswith(f"{MGMT}:2200 (dead, frr): ")
    assert rc == 3
    with pytest.raises(HostKeyError, match="host key CHANGED"):
        open_device(r1_host(frr), known_hosts=bad)
    # the right host key, a key the device does not accept
    inv = frr.write_inventory(
        tmp_path / "inv.yaml",
        f"  r1-badkey:\n    address: {MGMT}\n    groups: [routers]\n    ssh_key: {tmp_path / 'other_key'}\n",
    )
    p = diag(
        tmp_path,
        "check",
        "--json",
        "-i",
        str(inv),
        "--known-hosts",
        str(frr.known_hosts),
        "-p",
        "network-interfaces",
        "r1-badkey",
    )
    r = only(json.loads(p.stdout), "r1-badkey")
    assert (p.returncode, r["status"]) == (3, "auth_failed") and r["error"].startswith(f"{MGMT}:22 (r1-badkey, frr): ")
    empty = tmp_path / "known_hosts.empty"
    empty.write_text("")
    with pytest.raises(HostKeyError, match="unknown host key"):  # never auto-added, not even on first sight
        open_device(r1_host(frr), known_hosts=empty, data=tmp_path / "data")
    assert empty.read_text() == "" and not (tmp_path / "data" / "known_hosts.tofu").exists()
    with pytest.raises(Unreachable, match=r"10\.239\.0\.2:2200 \(dead, frr\)"):
        open_device(inventory.load(frr.inventory).hosts["dead"], known_hosts=frr.known_hosts)


def test_variables_reach_the_cli_validated(frr: FrrLab, tmp_path: Path) -> None:
    pb = tmp_path / "one-interface.yaml"
    pb.write_text(
        "name: one-interface\napplies_to: {device_types: [frr]}\nvars:\n  ifname: {required: true}\n"
        "steps:\n  - id: show\n    run: show interface {{ ifname }}\n"
        "    parse: {type: regex, pattern: 'Interface (?P<name>\\S+) is (?P<state>\\w+)'}\n"
    )
    rc, doc = check(frr, tmp_path, "-p", str(pb), "--var", "ifname=eth2", "r1")
    r = only(doc)
    assert (rc, r["status"], r["steps"][0]["parsed"]) == (0, "ok", {"name": "eth2", "state": "up"})
    for hostile in ("eth2\nconfigure terminal", "eth2 | include up", "eth2;shutdown"):
        rc, doc = check(frr, tmp_path, "-p", str(pb), "--var", f"ifname={hostile}", "r1")
        r = only(doc)
        assert rc == 3 and r["status"] == "error" and "cannot be sent to a network device CLI" in r["error"], hostile
    assert "shutdown" not in frr.vtysh("r1", "show running-config")


def test_archive_keeps_the_change_that_shut_an_interface(frr: FrrLab, tmp_path: Path) -> None:
    """`diag config fetch` reads r1's running-config through the driver (archive_support); the diff shows the change."""

    def config(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "diag.cli", "config", *args]
        return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=180)

    data = str(tmp_path / "data")
    kh = ("--known-hosts", str(frr.known_hosts))
    p = config("fetch", "--json", "-i", str(frr.inventory), "--data", data, "r1")  # ~/.ssh/known_hosts: no r1
    [st] = json.loads(p.stdout)
    assert p.returncode == 3 and "unknown host key" in json.dumps(st), st
    p = config("fetch", "-i", str(frr.inventory), "--data", data, *kh, "r1")
    assert p.returncode == 0, p.stdout + p.stderr
    frr.vtysh("r1", "configure terminal", "interface eth2", "shutdown")
    try:
        p = config("fetch", "-i", str(frr.inventory), "--data", data, *kh, "r1")
        assert p.returncode == 0, p.stdout + p.stderr
        d = config("diff", "-i", str(frr.inventory), "--data", data, "r1")
        assert d.returncode == 1, d.stdout + d.stderr
        added = [line for line in d.stdout.splitlines() if line.startswith("+") and not line.startswith("+++")]
        assert added == ["+ shutdown"], d.stdout
    finally:
        frr.vtysh("r1", "configure terminal", "interface eth2", "no shutdown")


def test_celery_worker_checks_a_device_through_its_driver(frr: FrrLab, tmp_path: Path) -> None:
    """`diag check --backend celery`: a real `diag worker` on a real Redis runs the device playbook via the driver."""
    with RedisServer() as redis_server:
        log = tmp_path / "worker.log"
        argv = [sys.executable, "-m", "diag.cli", "worker", "--redis", redis_server.url, "--name", "dgf-w1"]
        argv += [
            "--known-hosts",
            str(frr.known_hosts),
            "--data",
            str(tmp_path / "w"),
            "--concurrency",
            "1",
            "--log-level",
            "INFO",
        ]
        with open(log, "wb") as out:
            worker = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while "ready." not in log.read_text(errors="replace"):
                assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            frr.vtysh("r1", "configure terminal", "interface eth2", "shutdown")
            try:
                p = diag(
                    tmp_path,
                    "check",
                    "--json",
                    "-i",
                    str(frr.inventory),
                    "--backend",
                    "celery",
                    "--redis",
                    redis_server.url,
                    "-p",
                    "network-interfaces",
                    *NO_FLAPS,
                    "r1",
                )
            finally:
                frr.vtysh("r1", "configure terminal", "interface eth2", "no shutdown")
            doc = json.loads(p.stdout)
            r = only(doc)
            assert [(f["check"], f["subject"]) for f in r["findings"]] == [("interface_admin_down", "eth2")], r
            assert p.returncode == 1
            # vtysh as a login shell would also answer a plain exec channel (`vtysh -c CMD`); that the worker went
            # through the driver shows in how a variable is treated: validated for the CLI, not shell-quoted.
            pb = tmp_path / "one-interface.yaml"
            pb.write_text(
                "name: one-interface\napplies_to: {device_types: [frr]}\nvars:\n  ifname: {required: true}\n"
                "steps:\n  - id: show\n    run: show interface {{ ifname }}\n"
            )
            args = ["check", "--json", "-i", str(frr.inventory), "--backend", "celery", "--redis", redis_server.url]
            p = diag(tmp_path, *args, "-p", str(pb), "--var", "ifname=eth2 x", "r1")
            r = only(json.loads(p.stdout))
            assert p.returncode == 3 and "cannot be sent to a network device CLI" in r["error"], r
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
