"""SNMP polls sharded across real `diag worker` processes: real Redis, real snmpd (tests/labs/snmplab.py).

Two workers poll the devices; the poll state travels through Redis (so the second cycle's rate rules work even
when another worker polls), and a worker started with --export-snmp serves every device's metrics with a target
label on its /metrics, including the dead device as diag_snmp_up 0.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from diag import inventory
from diag.distributed.app import make_app
from diag.distributed.backend import dispatch_snmp
from diag.distributed.snmp_fleet import fleet_metrics
from diag.distributed.tasks import SNMP_LATEST_KEY, snmp_state_key
from tests.conftest import free_port
from tests.integration.test_distributed import Workers
from tests.labs.redislab import RedisServer
from tests.labs.snmplab import COMMUNITY, SnmpLab

pytestmark = pytest.mark.integration

METRICS_PORTS = range(20530, 20550)


@pytest.fixture(scope="module")
def snmp_lab() -> Iterator[SnmpLab]:
    with SnmpLab(4) as lab:
        yield lab


def test_snmp_polls_are_sharded_and_rendered(
    snmp_lab: SnmpLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DGD_SNMP_COMMUNITY", COMMUNITY)
    dead = f"10.232.{snmp_lab.lab_id}.9"
    inv_path = tmp_path / "inventory.yaml"
    inv_path.write_text(
        "defaults:\n"
        "  snmp: {community: 'env:DGD_SNMP_COMMUNITY', timeout: 0.3, retries: 0}\n"
        "hosts:\n"
        + "".join(f"  sw{i}: {{address: {snmp_lab.address}, snmp: {{profiles: [system, if_mib]}}}}\n" for i in range(6))
        + f"  dead: {{address: {dead}, snmp: {{profiles: [system]}}}}\n"
        "  server: {address: 10.232.0.77}\n"
    )
    inv = inventory.load(str(inv_path))
    with RedisServer() as rs:
        r = redis.Redis.from_url(rs.url, decode_responses=True)
        (tmp_path / "known_hosts").write_text("")  # SNMP polls open no SSH connection
        w = Workers(rs.url, tmp_path / "known_hosts", tmp_path)
        try:
            metrics_port = free_port(METRICS_PORTS)
            w.start("wA", "--metrics-listen", f"127.0.0.1:{metrics_port}", "--export-snmp", concurrency=3)
            w.start("wB", concurrency=3)
            w.wait_ready(r)
            app = make_app(rs.url)
            assert dispatch_snmp(app, inv_path, list(inv.hosts.values())) == 7  # 'server' has no profiles
            deadline = time.monotonic() + 60
            while r.hlen(SNMP_LATEST_KEY) < 7:
                assert time.monotonic() < deadline, "the workers did not poll every device"
                time.sleep(0.1)
            first = {h: r.hget(SNMP_LATEST_KEY, h) for h in inv.hosts if h != "server"}
            assert r.get(snmp_state_key("sw0"))  # the counters for the next cycle are in Redis
            # Second cycle: wait until every device has a newer result.
            dispatch_snmp(app, inv_path, list(inv.hosts.values()))
            while any(r.hget(SNMP_LATEST_KEY, h) == first[h] for h in first):
                assert time.monotonic() < deadline, "the second cycle did not finish"
                time.sleep(0.1)
            workers_seen = {json.loads(r.hget(SNMP_LATEST_KEY, h) or "{}")["worker"] for h in first}
            assert workers_seen == {"wA", "wB"}, workers_seen  # the polls were shared
            metrics, findings = fleet_metrics(r)
            up = next(m for m in metrics if m.name == "diag_snmp_up")
            assert {labels[0] for labels, _ in up.samples} == set(first)
            assert {(f.host, f.check) for f in findings} == {("dead", "snmp_not_answering")}
            # No reboot was seen on the second cycle: the state from the first poll (maybe on the other worker)
            # was used, and sysUpTime went forward.
            assert not [f for f in findings if f.check == "snmp_device_rebooted"]
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
            assert re.search(r'^diag_snmp_up\{profile="system",target="sw3"\} 1\.0$', text, re.M), text[:2000]
            assert re.search(r'^diag_snmp_up\{profile="system",target="dead"\} 0\.0$', text, re.M)
            rows = re.findall(r'^diag_snmp_if_hc_in_octets_total\{[^}]*target="sw5"\}', text, re.M)
            assert len(rows) == 4  # the lab's four interfaces
            assert re.search(r"^diag_worker_hosts_checked_total\{status=\"ok\"\} [1-9]", text, re.M)
        finally:
            w.close()
