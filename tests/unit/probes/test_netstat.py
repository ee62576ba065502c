"""Netstat probe on recorded /proc/net/{snmp,netstat,snmp6,sockstat,sockstat6} snapshots."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from diag.errors import ProbeError
from diag.model import Result
from diag.probes.base import Paths
from diag.probes.netstat import NetstatOptions, NetstatProbe, parse_snmp6, parse_table

FIX = Path(__file__).parents[2] / "fixtures" / "proc" / "netstat"


def values(r: Result) -> dict[str, float]:
    return {m.name: m.samples[0][1] for m in r.metrics}


def snapshot(tmp_path: Path, name: str) -> None:
    shutil.copytree(FIX / name / "net", tmp_path / "net", dirs_exist_ok=True)


def test_every_counter_is_exported_with_valid_names(tmp_path: Path) -> None:
    snapshot(tmp_path, "t0")
    r = NetstatProbe(NetstatOptions(), Paths(procfs=tmp_path)).collect()
    got = values(r)
    snmp = parse_table((FIX / "t0" / "net" / "snmp").read_text())
    netstat = parse_table((FIX / "t0" / "net" / "netstat").read_text())
    snmp6 = parse_snmp6((FIX / "t0" / "net" / "snmp6").read_text())
    fields = sum(len(f) for t in (snmp, netstat, snmp6) for f in t.values())
    assert len([n for n in got if n.startswith("diag_netstat_")]) == fields
    assert got["diag_netstat_tcp_retranssegs_total"] == snmp["Tcp"]["RetransSegs"]
    assert got["diag_netstat_tcpext_listenoverflows_total"] == netstat["TcpExt"]["ListenOverflows"]
    assert got["diag_netstat_ip6_inreceives_total"] == snmp6["Ip6"]["InReceives"]
    assert got["diag_netstat_tcp_rto_min_seconds"] == 0.2  # 200 ms
    assert "diag_netstat_tcp_currestab" in got and "diag_netstat_tcp_currestab_total" not in got
    assert got["diag_sockstat_tcp_tw"] == 27  # recorded "TCP: inuse ... tw 27"
    assert "diag_sockstat_tcp_mem_bytes" in got and "diag_sockstat_tcp6_inuse" in got
    for m in r.metrics:  # Prometheus naming: snake case, counters end in _total, gauges do not
        assert re.fullmatch(r"diag_[a-z0-9_]+", m.name), m.name
        assert m.name.endswith("_total") == (m.kind == "counter"), m.name
        assert m.help.endswith(".")
    assert not r.findings


def test_exclude_regex(tmp_path: Path) -> None:
    snapshot(tmp_path, "t0")
    got = values(NetstatProbe(NetstatOptions(exclude="^(MPTcpExt|Icmp6?)_"), Paths(procfs=tmp_path)).collect())
    assert not [n for n in got if "mptcpext" in n or "_icmp_" in n or "_icmp6_" in n]
    assert "diag_netstat_tcp_insegs_total" in got


def test_listen_overflows_retransmits_and_udp_drops_rising(tmp_path: Path) -> None:
    snapshot(tmp_path, "t0")
    probe = NetstatProbe(NetstatOptions(), Paths(procfs=tmp_path))
    probe.collect()
    snapshot(tmp_path, "t1")
    found = {f.check: f for f in probe.collect().findings}
    assert sorted(found) == ["tcp_listen_overflows", "tcp_retransmits", "udp_rcvbuf_errors"]
    assert found["tcp_listen_overflows"].summary.startswith("25 TCP connections dropped")
    assert "ListenOverflows" in found["tcp_listen_overflows"].evidence[0].text
    assert "12.0 %" in found["tcp_retransmits"].summary  # 600 of 5000 segments
    assert found["udp_rcvbuf_errors"].evidence[0].data["delta"] == 500
    # a third run with no change: nothing rises, nothing is reported
    assert not probe.collect().findings


def test_missing_ipv6_is_fine(tmp_path: Path) -> None:
    snapshot(tmp_path, "t0")
    (tmp_path / "net" / "snmp6").unlink()
    got = values(NetstatProbe(NetstatOptions(), Paths(procfs=tmp_path)).collect())
    assert "diag_netstat_tcp_insegs_total" in got and "diag_netstat_ip6_inreceives_total" not in got


def test_garbage_names_the_file_and_line(tmp_path: Path) -> None:
    snapshot(tmp_path, "t0")
    lines = (tmp_path / "net" / "snmp").read_text().splitlines()
    lines[3] = lines[3].replace(" 0 ", " x ", 1)  # the Icmp values line
    (tmp_path / "net" / "snmp").write_text("\n".join(lines) + "\n")
    with pytest.raises(ProbeError, match=r"^/proc/net/snmp:4: not a counter line"):
        NetstatProbe(NetstatOptions(), Paths(procfs=tmp_path)).collect()
