"""Network interfaces: the 16 counters of /proc/net/dev and link state, carrier, speed and MTU from sysfs.

Findings: an interface that is administratively up but has no link, and errors or drops that rose
since the previous run.
"""

from __future__ import annotations

import os
import re

from diag.errors import NoData, ProbeError
from diag.model import Evidence, Result
from diag.probes.base import Paths, Probe, ProbeOptions, read_text, register

IFF_UP = 0x1

# /proc/net/dev columns in order: 8 receive, then 8 transmit (names as node_exporter uses them)
FIELDS: tuple[tuple[str, str], ...] = (
    ("receive_bytes_total", "Bytes received."),
    ("receive_packets_total", "Packets received."),
    ("receive_errs_total", "Receive errors the driver detected."),
    ("receive_drop_total", "Received packets dropped (no buffer, unknown protocol, filtered)."),
    ("receive_fifo_total", "Receive FIFO buffer overruns."),
    ("receive_frame_total", "Receive framing (alignment) errors."),
    ("receive_compressed_total", "Compressed packets received."),
    ("receive_multicast_total", "Multicast packets received."),
    ("transmit_bytes_total", "Bytes transmitted."),
    ("transmit_packets_total", "Packets transmitted."),
    ("transmit_errs_total", "Transmit errors the driver detected."),
    ("transmit_drop_total", "Packets dropped on transmit."),
    ("transmit_fifo_total", "Transmit FIFO buffer underruns."),
    ("transmit_colls_total", "Collisions detected on transmit."),
    ("transmit_carrier_total", "Transmit carrier losses."),
    ("transmit_compressed_total", "Compressed packets transmitted."),
)
ERR_IDX = (2, 10)  # receive_errs, transmit_errs
DROP_IDX = (3, 11)


class NetDevOptions(ProbeOptions, kw_only=True):
    link_ignore: str = r"^lo$"  # interfaces never reported as "link down"
    device_exclude: str = ""  # interfaces left out entirely (e.g. "^veth" on container hosts)
    errors_warning_delta: float = 10.0  # rx+tx errors added since the previous run
    drops_warning_delta: float = 1000.0  # rx+tx drops added since the previous run (some drops are normal)


def parse_net_dev(text: str, source: str = "/proc/net/dev") -> dict[str, list[float]]:
    """``/proc/net/dev`` -> {interface: [16 counters]} (the two header lines are skipped)."""
    out: dict[str, list[float]] = {}
    for lineno, line in enumerate(text.splitlines()[2:], 3):
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        values = rest.split()
        if len(values) >= 16:
            try:
                out[name.strip()] = [float(v) for v in values[:16]]
            except ValueError:
                raise ProbeError(f"{source}:{lineno}: not a counter line: {line[:80]!r}") from None
    return out


def _read_sys(path: str) -> str | None:
    """A sysfs attribute, or None when the kernel refuses it (carrier and speed of a down link give EINVAL)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("ascii", "replace").strip()
    except OSError:
        return None


def _empty_bridge(base: str) -> bool:
    """A bridge with no ports has no carrier by design (docker0 on a host without containers): not a fault."""
    try:
        return not os.listdir(base + "/brif")
    except OSError:
        return False  # not a bridge


def _int(text: str, base: int = 10) -> int:
    """A sysfs number; anything else (a half-torn-down interface) counts as 0."""
    try:
        return int(text, base)
    except ValueError:
        return 0


@register
class NetDevProbe(Probe):
    name = "netdev"
    help = "Network interface counters, link state, carrier, speed and MTU; link down and rising errors."
    Options = NetDevOptions

    def __init__(self, options: ProbeOptions, paths: Paths) -> None:
        super().__init__(options, paths)
        assert isinstance(options, NetDevOptions)
        self._ignore = re.compile(options.link_ignore) if options.link_ignore else None
        self._exclude = re.compile(options.device_exclude) if options.device_exclude else None
        self._names: dict[str, tuple[bool, bool]] = {}  # name -> (excluded, link ignored), regexes once per name
        self._last: dict[str, list[float]] = {}

    def _classify(self, name: str) -> tuple[bool, bool]:
        hit = self._names.get(name)
        if hit is None:
            hit = (
                self._exclude is not None and self._exclude.search(name) is not None,
                self._ignore is not None and self._ignore.search(name) is not None,
            )
            self._names[name] = hit
        return hit

    def collect(self) -> Result:
        assert isinstance(self.options, NetDevOptions)
        o = self.options
        counters = parse_net_dev(read_text(self.paths.proc("net", "dev")))
        if not counters:
            raise NoData("/proc/net/dev lists no interfaces")
        r = Result()
        fams = [r.metric(f"diag_network_{n}", h, "counter", ("device",)) for n, h in FIELDS]
        up = r.metric(
            "diag_network_up", "Whether the interface's operational state is up (1) or not (0).", labels=("device",)
        )
        admin = r.metric(
            "diag_network_admin_up", "Whether the interface is administratively up (IFF_UP).", labels=("device",)
        )
        carrier = r.metric("diag_network_carrier", "Whether the interface has a carrier (link).", labels=("device",))
        speed = r.metric("diag_network_speed_bytes", "Link speed in bytes per second.", labels=("device",))
        mtu = r.metric("diag_network_mtu_bytes", "Maximum transmission unit.", labels=("device",))
        sys_net = str(self.paths.sys("class", "net"))
        last = self._last
        for dev, values in counters.items():
            excluded, ignored = self._classify(dev)
            if excluded:
                continue
            for fam, v in zip(fams, values, strict=True):
                fam.add(v, dev)
            base = os.path.join(sys_net, dev)
            oper = _read_sys(base + "/operstate")
            if oper is None:
                continue  # no sysfs entry (fixture without it, or the interface just vanished)
            flags_s = _read_sys(base + "/flags")
            admin_up = flags_s is not None and bool(_int(flags_s, 16) & IFF_UP)
            # the kernel answers carrier only for an interface that is up, and speed only with a link
            # (EINVAL otherwise); speed also takes the rtnl lock, so it is not asked for in vain
            carrier_s = _read_sys(base + "/carrier") if admin_up else None
            speed_s = _read_sys(base + "/speed") if oper == "up" else None
            mtu_s = _read_sys(base + "/mtu")
            up.add(1.0 if oper == "up" else 0.0, dev)
            admin.add(1.0 if admin_up else 0.0, dev)
            if carrier_s in ("0", "1"):
                carrier.add(float(carrier_s), dev)
            if speed_s is not None and speed_s.lstrip("-").isdigit() and int(speed_s) > 0:
                speed.add(int(speed_s) * 125000.0, dev)  # Mb/s -> bytes/s
            if mtu_s is not None and mtu_s.isdigit():
                mtu.add(float(mtu_s), dev)
            if (
                admin_up
                and not ignored
                and (carrier_s == "0" or oper in ("down", "lowerlayerdown"))
                and not _empty_bridge(base)
            ):
                r.find(
                    "link_down",
                    "warning",
                    f"interface {dev} is up but has no link (operstate {oper}, carrier {carrier_s or '?'})",
                    subject=dev,
                    cause="link_down",
                    evidence=[
                        Evidence(
                            "file",
                            f"/sys/class/net/{dev}",
                            f"flags={flags_s} operstate={oper} carrier={carrier_s} mtu={mtu_s}",
                            {"device": dev, "operstate": oper, "carrier": carrier_s, "flags": flags_s},
                        )
                    ],
                )
            prev = last.get(dev)
            if prev is not None:
                self._judge_delta(r, dev, prev, values, "errors", ERR_IDX, o.errors_warning_delta)
                self._judge_delta(r, dev, prev, values, "drops", DROP_IDX, o.drops_warning_delta)
        self._last = counters
        return r

    @staticmethod
    def _judge_delta(
        r: Result, dev: str, prev: list[float], now: list[float], what: str, idx: tuple[int, int], limit: float
    ) -> None:
        rx, tx = now[idx[0]] - prev[idx[0]], now[idx[1]] - prev[idx[1]]
        if rx < 0 or tx < 0 or rx + tx <= limit:
            return  # a negative delta is a counter reset (driver reload), not a change
        # a /proc/net/dev-like table: one column per counter, short names, aligned
        names = ["", "iface"] + [
            n.removesuffix("_total").replace("receive_", "rx_").replace("transmit_", "tx_") for n, _ in FIELDS
        ]
        table = [names] + [
            [label, dev] + [f"{v:.0f}" for v in vals] for label, vals in (("before", prev), ("now", now))
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(names))]
        text = "\n".join(" ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table)
        r.find(
            f"interface_{what}",
            "warning",
            f"interface {dev}: {rx + tx:.0f} {what} since the previous run (receive {rx:.0f}, transmit {tx:.0f})",
            subject=dev,
            cause=f"nic_{what}",
            evidence=[
                Evidence(
                    "file",
                    "/proc/net/dev (previous run, this run)",
                    text,
                    {"receive": rx, "transmit": tx},
                )
            ],
        )
