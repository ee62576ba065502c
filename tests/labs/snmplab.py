"""A real net-snmp ``snmpd`` in a network namespace with many interfaces, for the SNMP tests and bench.

The namespace ``dgn-<id>`` is joined to the root namespace by a veth pair (10.232.<id>.1 on the host side,
10.232.<id>.2 inside, where snmpd listens on UDP 161). Extra veth pairs made inside the namespace give
ifTable as many rows as asked for (the ``dummy`` link type is missing here). snmpd runs in the foreground
(``-f``) with its own configuration, persistent directory, pid file and log; it is stopped by PID and the
namespace is deleted on :meth:`SnmpLab.close`, also after failures.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

SNMPD = "/usr/sbin/snmpd"
#: One lock file per 10.NET.ID.0/24 a lab uses, shared by every test run on this machine (/run is emptied at boot).
NET_LOCKS = Path("/run/diag-test-nets")
COMMUNITY = "dgn-public"
V3_USER = "dgnuser"
V3_AUTH = "dgn-auth-pass-1"
V3_PRIV = "dgn-priv-pass-1"
#: A second v3 user with authentication only (authNoPriv).
V3_AUTH_USER = "dgnauthonly"
#: Users for the other protocols the client speaks: MD5 with DES (old devices), SHA-256 with AES.
V3_DES_USER = "dgndes"
V3_SHA256_USER = "dgnsha256"
#: SHA users with AES-192/256, net-snmp's names: the Blumenthal key extension (AES192, AES256) and the
#: Reeder one (AES192C, AES256C, as Cisco's).
V3_AES_USERS = {"AES192": "dgnaes192", "AES256": "dgnaes256", "AES192C": "dgnaes192c", "AES256C": "dgnaes256c"}


def _run(argv: list[str], check: bool = True, timeout: float = 60.0, **kw: Any) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


class SnmpLab:
    """One snmpd in its own namespace with ``interfaces`` ifTable rows (lo + uplink + veth ends)."""

    def __init__(
        self, interfaces: int = 201, root: Path | None = None, extra_conf: str = "", prefix: str = "dgn", net: int = 232
    ) -> None:
        self.interfaces = interfaces
        #: Namespace/veth name prefix and the second octet of 10.NET.<id>.0/24: another suite's own range.
        self.prefix, self.net = prefix, net
        #: More snmpd.conf lines (e.g. ``[snmp] serverSendBuf 1024`` to make large answers fail).
        self.extra_conf = extra_conf
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="dgn-snmplab-")) if root is None else root
        self.lab_id = -1
        self.netns = ""
        self.host_veth = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._net_lock: IO[str] | None = None

    # -- addresses -------------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """snmpd's address, reachable from the root namespace."""
        return f"10.{self.net}.{self.lab_id}.2"

    @property
    def host_address(self) -> str:
        return f"10.{self.net}.{self.lab_id}.1"

    @property
    def conf(self) -> Path:
        return self.root / "snmpd.conf"

    @property
    def log(self) -> Path:
        return self.root / "snmpd.log"

    @property
    def pidfile(self) -> Path:
        return self.root / "snmpd.pid"

    # -- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> SnmpLab:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> SnmpLab:
        self._claim_namespace()
        self._add_interfaces()
        self._write_conf()
        self.start_snmpd()
        return self

    def close(self) -> None:
        self.stop_snmpd()
        if self.netns:
            _run(["ip", "netns", "del", self.netns], check=False)
        if self.host_veth:  # normally gone with the namespace that held its peer
            _run(["ip", "link", "del", self.host_veth], check=False)
        if self._net_lock is not None:
            self._net_lock.close()  # the subnet is free for another lab
            self._net_lock = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def _claim_namespace(self) -> None:
        """Claim a namespace name and its subnet 10.NET.ID.0/24.

        `ip netns add` fails when the name exists, so it locks the name between parallel labs; but two labs with
        other prefixes and the same NET got the same subnet (both 10.236.1.0/24): the root namespace then routed
        one lab's SNMP to the other's snmpd, and a test saw interface p188 of a lab that has four. So the subnet is
        locked too (a lock file per subnet, held until close), and one already on an interface is skipped.
        """
        NET_LOCKS.mkdir(parents=True, exist_ok=True)
        for i in range(1, 250):
            lock = (NET_LOCKS / f"10.{self.net}.{i}.lock").open("w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another lab of a test run holds this subnet
                lock.close()
                continue
            on_link = _run(["ip", "-4", "-o", "addr", "show", "to", f"10.{self.net}.{i}.0/24"], check=False).stdout
            if on_link.strip() or _run(["ip", "netns", "add", f"{self.prefix}-{i}"], check=False).returncode != 0:
                lock.close()
                continue
            self._net_lock = lock
            self.lab_id, self.netns = i, f"{self.prefix}-{i}"
            return
        raise RuntimeError(f"no free {self.prefix}-N namespace with a free subnet 10.{self.net}.N.0/24")

    def _add_interfaces(self) -> None:
        ns, i = self.netns, self.lab_id
        self.host_veth = f"{self.prefix}-{i}-h"
        _run(["ip", "link", "add", self.host_veth, "type", "veth", "peer", "name", "uplink", "netns", ns])
        _run(["ip", "addr", "add", f"{self.host_address}/24", "dev", self.host_veth])
        _run(["ip", "link", "set", self.host_veth, "up"])
        extra = max(0, self.interfaces - 2)  # lo and uplink are rows too
        lines = [f"addr add {self.address}/24 dev uplink", "link set uplink up", "link set lo up"]
        for n in range(0, extra - extra % 2, 2):
            lines.append(f"link add p{n} type veth peer name p{n + 1}")
        if extra % 2:  # an odd count: one more pair, with its peer moved out of the way
            lines.append(f"link add p{extra - 1} type veth peer name px")
        names = [f"p{n}" for n in range(extra)]
        for n, name in enumerate(names):
            if n % 10 != 9:  # every tenth stays admin down, so oper/admin findings have something to see
                lines.append(f"link set {name} up")
        if extra % 2:
            lines.append("link del px")
        batch = self.root / "links.batch"
        batch.write_text("\n".join(lines) + "\n")
        _run(["ip", "-n", ns, "-batch", str(batch)], timeout=120)

    def _write_conf(self) -> None:
        persist = self.root / "persist"
        persist.mkdir(exist_ok=True)
        self.conf.write_text(
            f"agentAddress udp:{self.address}:161\n"
            f"rocommunity {COMMUNITY} default\n"
            f"createUser {V3_USER} SHA {V3_AUTH} AES {V3_PRIV}\n"
            f"rouser {V3_USER} priv\n"
            f"createUser {V3_AUTH_USER} SHA {V3_AUTH}\n"
            f"rouser {V3_AUTH_USER} auth\n"
            f"createUser {V3_DES_USER} MD5 {V3_AUTH} DES {V3_PRIV}\n"
            f"rouser {V3_DES_USER} priv\n"
            f"createUser {V3_SHA256_USER} SHA-256 {V3_AUTH} AES {V3_PRIV}\n"
            f"rouser {V3_SHA256_USER} priv\n"
            + "".join(f"createUser {u} SHA {V3_AUTH} {p} {V3_PRIV}\nrouser {u} priv\n" for p, u in V3_AES_USERS.items())
            + f"sysName dgn-snmplab-{self.lab_id}\n"
            "sysLocation diag test lab\n"
            f"{self.extra_conf}"
        )

    def start_snmpd(self, timeout: float = 20.0) -> None:
        env = {**os.environ, "SNMP_PERSISTENT_DIR": str(self.root / "persist"), "MIBS": ""}
        log = open(self.root / "snmpd.stdout", "ab")  # noqa: SIM115 - held by the child
        self.proc = subprocess.Popen(
            [
                "ip", "netns", "exec", self.netns, SNMPD, "-f", "-C", "-c", str(self.conf),
                "-p", str(self.pidfile), "-Lf", str(self.log), "-I", "-smux",
            ],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"snmpd exited {self.proc.returncode}: {self.log_text()}")
            p = _run(
                ["snmpget", "-v2c", "-c", COMMUNITY, "-t", "0.5", "-r", "0", self.address, "1.3.6.1.2.1.1.3.0"],
                check=False,
            )
            if p.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"snmpd did not answer in {timeout}s: {self.log_text()}")

    def stop_snmpd(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test froze it
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def freeze(self) -> None:
        """SIGSTOP snmpd: it keeps its socket but answers nothing (a device that hangs)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    # -- reference tools -------------------------------------------------------------------------------
    def netsnmp(self, tool: str, *args: str, v3: bool = False, options: tuple[str, ...] = ("-Oe", "-Ot")) -> str:
        """Run a net-snmp tool (snmpget, snmpbulkwalk...) against the lab with numeric output (-On)."""
        auth = (
            ["-v3", "-l", "authPriv", "-u", V3_USER, "-a", "SHA", "-A", V3_AUTH, "-x", "AES", "-X", V3_PRIV]
            if v3
            else ["-v2c", "-c", COMMUNITY]
        )
        env = {**os.environ, "MIBS": ""}
        return _run([tool, *auth, "-On", *options, "-t", "5", self.address, *args], env=env).stdout
