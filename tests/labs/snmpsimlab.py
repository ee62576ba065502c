"""snmpsim (PyPI) serving recordings of real devices on loopback, for the SNMP profile tests.

Recordings come from the ``snmpsim-data`` package (real devices: APC PDUs, Eaton UPSes, Cisco switches...)
and from tests/data/snmprec/ (written here from the vendors' MIBs where no recording of a device was at
hand; their names end in ``-written``). One recording is edited to answer out of order, as a misbehaving
agent does. Each recording is served under its file name as the community. The responder runs as root
(``SNMPSIM_ALLOW_ROOT``: dropping to nobody cannot read a Python under /root) on a free 127.0.0.1 port and
is stopped by PID.
"""

from __future__ import annotations

import bz2
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import free_port, owns_port

PORTS = range(20760, 20780)  # snmpsim's UDP port, reserved per test run

WRITTEN = Path(__file__).resolve().parent.parent / "data" / "snmprec"
#: community -> recording in snmpsim-data (path under its data/ folder).
RECORDINGS = {
    "apc-7902b": "UPS/apc-7902b.snmprec",
    "apc-8641": "UPS/apc-8641.snmprec",
    "apc-8932": "UPS/apc-8932.snmprec",
    "eaton-9px": "UPS/eaton-9px-partial.snmprec.bz2",
    "eaton-93e": "UPS/eaton-93e-80.snmprec.bz2",
    "cisco-c3560": "network/switch/cisco-c3560.snmprec.bz2",
    "cisco-c3750": "network/switch/cisco-c3750.snmprec.bz2",
    "cisco-n5000": "network/switch/cisco-n5000.snmprec.bz2",
    "cisco-router": "network/router/cisco-unmarked-0.snmprec.bz2",
    "arista-7150s": "cloud/arista-dcs-7150s-52-cl.snmprec.bz2",
    "paloalto-pa-5000": "network/firewall/paloalto-pa-5000.snmprec.bz2",
    "linux-vm": "os/linux/unknown-006.snmprec.bz2",  # net-snmp on a VMware guest (MACs 00:50:56:...)
    # UPS-MIB cards under their makers' own sysObjectIDs, and net-snmp under a vendor's: found by a probe GET
    "phoenixtec-ups": "UPS/phoenixtec-power.snmprec.bz2",
    "santak-ups": "UPS/ingrasys-power-switch.snmprec.bz2",
    "huawei-ups-card": "UPS/huawei-gse200m.snmprec.bz2",
    "vyatta": "network/router/vyatta-unknown.snmprec.bz2",
    "juniper-mx960": "network/router/juniper-mx960-13-3r9-13.snmprec.bz2",  # Junos 13.3R9
}
#: The out-of-order recording: eaton-9px with xupsOutputVoltage.1 and xupsOutputWatts.1 swapped.
DISORDER = "eaton-9px-disorder"
SWAPPED = ("1.3.6.1.4.1.534.1.4.4.1.2.1", "1.3.6.1.4.1.534.1.4.4.1.4.1")


def snmpsim_data() -> Path:
    import snmpsim_data  # type: ignore[import-untyped]

    return Path(snmpsim_data.__file__).parent / "data"


class SnmpSim:
    """One snmpsim-command-responder on 127.0.0.1 serving every recording above."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dgn-snmpsim-"))
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SnmpSim:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        data = self.root / "data"
        data.mkdir()
        source = snmpsim_data()
        for community, rel in RECORDINGS.items():
            raw = (source / rel).read_bytes()
            (data / f"{community}.snmprec").write_bytes(bz2.decompress(raw) if rel.endswith(".bz2") else raw)
        for f in WRITTEN.glob("*.snmprec"):
            shutil.copy(f, data / f.name)
        lines = (data / "eaton-9px.snmprec").read_text().splitlines()
        at = [next(i for i, line in enumerate(lines) if line.startswith(oid + "|")) for oid in SWAPPED]
        lines[at[0]], lines[at[1]] = lines[at[1]], lines[at[0]]
        (data / f"{DISORDER}.snmprec").write_text("\n".join(lines) + "\n")
        # A reserved port below the kernel's ephemeral range: a port the kernel picked, closed here and bound by
        # snmpsim seconds later (after indexing) could meanwhile go to any UDP client, even to our own snmpget probe.
        self.port = free_port(PORTS, udp=True)
        responder = str(Path(sys.executable).with_name("snmpsim-command-responder"))
        self.proc = subprocess.Popen(
            [responder, f"--data-dir={data}", f"--cache-dir={self.root / 'cache'}",
             f"--agent-udpv4-endpoint=127.0.0.1:{self.port}", "--logging-method=null"],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "stderr", "wb"),  # noqa: SIM115 - held by the child
            env={**os.environ, "SNMPSIM_ALLOW_ROOT": "true"},
        )  # fmt: skip
        deadline = time.monotonic() + 120  # indexing the recordings takes a few seconds the first time
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"snmpsim exited {self.proc.returncode}: {self.stderr()}")
            probe = [
                "snmpget",
                "-v2c",
                "-c",
                "apc-8641",
                "-t",
                "0.5",
                "-r",
                "0",
                f"127.0.0.1:{self.port}",
                "1.3.6.1.2.1.1.2.0",
            ]
            p = subprocess.run(probe, capture_output=True, env={**os.environ, "MIBS": ""}, check=False)
            if p.returncode == 0:
                if not owns_port(self.proc.pid, self.port, udp=True):  # the recordings answer from any snmpsim
                    raise RuntimeError(f"UDP port {self.port} answers, but not from our snmpsim")
                return
            time.sleep(0.2)
        raise RuntimeError(f"snmpsim did not answer: {self.stderr()}")

    def stderr(self) -> str:
        path = self.root / "stderr"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)
