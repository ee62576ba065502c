"""Network interface probe on recorded /proc/net/dev snapshots and a recorded /sys/class/net tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from diag.errors import ProbeError
from diag.model import Result
from diag.probes.base import Paths
from diag.probes.netdev import NetDevOptions, NetDevProbe, parse_net_dev

FIX = Path(__file__).parents[2] / "fixtures"
SYS = FIX / "sys" / "netdev"


def by_dev(r: Result, name: str) -> dict[str, float]:
    return {lv[0]: v for m in r.metrics if m.name == name for lv, v in m.samples}


def test_parse_all_sixteen_counters() -> None:
    counters = parse_net_dev((FIX / "proc" / "netdev" / "t0" / "net" / "dev").read_text())
    assert sorted(counters) == ["eth0", "eth1", "ifb0", "ifb1", "lo"]
    assert all(len(v) == 16 for v in counters.values())
    assert counters["eth1"][2] == 3 and counters["eth1"][3] == 7


def test_link_state_metrics_and_link_down(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    shutil.copy(FIX / "proc" / "netdev" / "t0" / "net" / "dev", tmp_path / "net" / "dev")
    probe = NetDevProbe(NetDevOptions(), Paths(procfs=tmp_path, sysfs=SYS))
    r = probe.collect()
    assert by_dev(r, "diag_network_up") == {"eth0": 1, "eth1": 0, "lo": 0, "ifb0": 0}  # ifb1 has no sysfs entry
    assert by_dev(r, "diag_network_admin_up") == {"eth0": 1, "eth1": 1, "lo": 1, "ifb0": 0}
    assert by_dev(r, "diag_network_speed_bytes") == {"eth0": 10000 * 125000}  # -1 and absent speeds are left out
    assert by_dev(r, "diag_network_mtu_bytes")["lo"] == 65536
    assert by_dev(r, "diag_network_carrier") == {"eth0": 1, "eth1": 0, "lo": 1}
    assert by_dev(r, "diag_network_receive_bytes_total")["eth1"] == 5000000
    assert by_dev(r, "diag_network_transmit_compressed_total")["eth0"] == 0
    # eth1 is up with no carrier; ifb0 is administratively down (fine); lo's "unknown" state is ignored
    [down] = r.findings
    assert (down.check, down.subject, down.severity) == ("link_down", "eth1", "warning")
    assert "lowerlayerdown" in down.summary and "carrier=0" in down.evidence[0].text


def test_errors_rising_between_runs(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    shutil.copy(FIX / "proc" / "netdev" / "t0" / "net" / "dev", tmp_path / "net" / "dev")
    probe = NetDevProbe(NetDevOptions(link_ignore="^eth1$"), Paths(procfs=tmp_path, sysfs=SYS))
    assert not probe.collect().findings  # eth1 link state ignored by the regex
    shutil.copy(FIX / "proc" / "netdev" / "t1" / "net" / "dev", tmp_path / "net" / "dev")
    [f] = probe.collect().findings  # 42 receive + 3 transmit errors > 10; 5 drops are under 1000
    assert (f.check, f.subject) == ("interface_errors", "eth1")
    assert "45 errors" in f.summary and "receive 42" in f.summary
    before, now = f.evidence[0].text.splitlines()[1:]
    assert before.split()[:2] == ["before", "eth1"] and now.split()[:2] == ["now", "eth1"]
    probe2 = NetDevProbe(NetDevOptions(drops_warning_delta=4, link_ignore="^eth1$"), Paths(procfs=tmp_path, sysfs=SYS))
    shutil.copy(FIX / "proc" / "netdev" / "t0" / "net" / "dev", tmp_path / "net" / "dev")
    probe2.collect()
    shutil.copy(FIX / "proc" / "netdev" / "t1" / "net" / "dev", tmp_path / "net" / "dev")
    assert {f.check for f in probe2.collect().findings} == {"interface_errors", "interface_drops"}


def test_garbage_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    text = (FIX / "proc" / "netdev" / "t0" / "net" / "dev").read_text().replace("eth0: 1", "eth0: x", 1)
    (tmp_path / "net" / "dev").write_text(text)
    with pytest.raises(ProbeError, match=r"^/proc/net/dev:6: not a counter line"):
        NetDevProbe(NetDevOptions(), Paths(procfs=tmp_path, sysfs=SYS)).collect()


def test_bridge_without_ports_is_not_link_down(tmp_path: Path) -> None:
    """docker0 on a host without containers: up, no carrier, no ports. A bridge that has a port is judged."""
    sys_root = tmp_path / "sys"
    shutil.copytree(SYS, sys_root)
    eth1 = sys_root / "class" / "net" / "eth1"
    (eth1 / "brif").mkdir()
    (tmp_path / "proc" / "net").mkdir(parents=True)
    shutil.copy(FIX / "proc" / "netdev" / "t0" / "net" / "dev", tmp_path / "proc" / "net" / "dev")
    paths = Paths(procfs=tmp_path / "proc", sysfs=sys_root)
    assert not NetDevProbe(NetDevOptions(), paths).collect().findings
    (eth1 / "brif" / "veth0").mkdir()
    assert [f.subject for f in NetDevProbe(NetDevOptions(), paths).collect().findings] == ["eth1"]
