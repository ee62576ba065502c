"""A small routed lab for the reachability tests: dgr-a -- dgr-r1 -- dgr-r2 -- dgr-b, joined by veth pairs.

Each link is a /30 in 10.233.0.0/16; r1 and r2 forward (ip_forward=1) and have static routes, so a traceroute from
a to b crosses two real routers. ICMP rate limiting is off in every namespace so that back-to-back probes all get
their time-exceeded answers. r1 also blackholes 10.233.99.0/24, a destination that swallows packets silently.
Probes run inside dgr-a (``Lab.diag(...)`` runs ``diag`` there); nothing leaves the machine. ``close()`` kills
every process the lab started (by PID), deletes the namespaces and /etc/netns/dgr-a, also after failures.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

NAMESPACES = ("dgr-a", "dgr-r1", "dgr-r2", "dgr-b")
#: (namespace, interface, address/prefix) for both ends of each /30 link.
LINKS = (
    (("dgr-a", "a-r1", "10.233.0.1/30"), ("dgr-r1", "r1-a", "10.233.0.2/30")),
    (("dgr-r1", "r1-r2", "10.233.0.5/30"), ("dgr-r2", "r2-r1", "10.233.0.6/30")),
    (("dgr-r2", "r2-b", "10.233.0.9/30"), ("dgr-b", "b-r2", "10.233.0.10/30")),
)
ADDR = {"a": "10.233.0.1", "r1": "10.233.0.2", "r1_to_r2": "10.233.0.5", "r2": "10.233.0.6", "b": "10.233.0.10"}
#: Swallowed by a blackhole route on r1: connects there time out instead of being refused.
BLACKHOLE = "10.233.99.1"
ROUTES = {
    "dgr-a": ["default via 10.233.0.2"],
    "dgr-r1": ["10.233.0.8/30 via 10.233.0.6", "blackhole 10.233.99.0/24"],
    "dgr-r2": ["10.233.0.0/30 via 10.233.0.5"],
    "dgr-b": ["default via 10.233.0.9"],
}
DIAG = str(Path(sys.executable).with_name("diag"))
LOCK = Path("/run/dgr-lab.lock")
NETNS_ETC = Path("/etc/netns/dgr-a")


class LabError(RuntimeError):
    """A lab command failed; the message holds the command and its stderr."""


def run(argv: list[str], check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip() or p.stdout.strip()}")
    return p


def nsx(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command inside a lab namespace."""
    return run(["ip", "netns", "exec", ns, *argv], check=check)


class RoutedLab:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self._lock: IO[str] | None = None
        self._logdir = Path(tempfile.mkdtemp(prefix="dgr-lab-"))

    def start(self) -> RoutedLab:
        # One lab at a time on this machine: the names are fixed. The lock is held until close().
        self._lock = open(LOCK, "w")  # noqa: SIM115 - held (locked) until close(), not a with-block
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # Another routed lab (another test session, or a second one in this process) holds the names.
                if time.monotonic() > deadline:
                    raise LabError(f"{LOCK}: another routed lab has held the lock for 10 minutes") from None
                time.sleep(0.2)
        self._delete_namespaces()  # leftovers of a run that was killed before its teardown
        try:
            for ns in NAMESPACES:
                run(["ip", "netns", "add", ns])
                run(["ip", "-n", ns, "link", "set", "lo", "up"])
                # Per-namespace sysctls: forwarding on routers, and no ICMP rate limit anywhere (traceroute sends
                # its probes back to back; the default 1/s per peer would turn answers into silent hops).
                nsx(ns, "sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0")
                if ns in ("dgr-r1", "dgr-r2"):
                    nsx(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            for (ns1, if1, ad1), (ns2, if2, ad2) in LINKS:
                run(["ip", "link", "add", if1, "netns", ns1, "type", "veth", "peer", "name", if2, "netns", ns2])
                for ns, ifname, addr in ((ns1, if1, ad1), (ns2, if2, ad2)):
                    run(["ip", "-n", ns, "addr", "add", addr, "dev", ifname])
                    run(["ip", "-n", ns, "link", "set", ifname, "up"])
            for ns, routes in ROUTES.items():
                for route in routes:
                    run(["ip", "-n", ns, "route", "add", *route.split()])
        except BaseException:
            self.close()
            raise
        return self

    def _delete_namespaces(self) -> None:
        for ns in NAMESPACES:
            # Deleting a namespace deletes its veth ends, and with them the peers in the other namespaces.
            run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(NETNS_ETC, ignore_errors=True)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        self.procs.clear()
        self._delete_namespaces()
        shutil.rmtree(self._logdir, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> RoutedLab:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- helpers for tests ----------------------------------------------------------------------------------------

    def spawn(self, ns: str, argv: list[str], ready_port: tuple[str, int] | None = None) -> subprocess.Popen[bytes]:
        """Start a server in a namespace (own process group, killed by close()); wait until it listens."""
        # stderr to a file, not a pipe: a chatty server (http.server logs every request) must never block on it.
        log_path = self._logdir / f"{len(self.procs)}.log"
        with open(log_path, "wb") as log:
            p = subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv], stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
            )
        self.procs.append(p)
        if ready_port is not None:
            host, port = ready_port
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if p.poll() is not None:
                    err = log_path.read_text(errors="replace")
                    raise LabError(f"{' '.join(argv)} exited {p.returncode}: {err.strip()}")
                out = nsx(ns, "ss", "-Hltn", f"sport = :{port}").stdout
                if host in out:
                    return p
                time.sleep(0.05)
            raise LabError(f"{' '.join(argv)}: not listening on {host}:{port} after 15 s")
        return p

    def diag(self, *args: str, ns: str = "dgr-a", user: str | None = None) -> tuple[int, dict[str, Any]]:
        """Run ``diag ARGS --json`` inside a namespace (optionally as an unprivileged user); (exit status, JSON)."""
        argv = ["ip", "netns", "exec", ns]
        if user is not None:
            # setpriv after entering the namespace (ip netns exec needs root): no capabilities, no groups.
            pw = pwd.getpwnam(user)
            argv += ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--inh-caps=-all"]
        p = subprocess.run([*argv, DIAG, *args, "--json"], capture_output=True, text=True, timeout=120)
        if p.returncode not in (0, 1, 2):
            raise LabError(f"diag {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
        return p.returncode, json.loads(p.stdout)

    def link(self, ns: str, ifname: str, up: bool) -> None:
        run(["ip", "-n", ns, "link", "set", ifname, "up" if up else "down"])

    def netem_available(self) -> tuple[bool, str]:
        """Whether ``tc qdisc ... netem`` works in this kernel (tried on the lo of dgr-b, then removed)."""
        p = nsx("dgr-b", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "loss", "1%", check=False)
        if p.returncode != 0:
            return False, p.stderr.strip()
        nsx("dgr-b", "tc", "qdisc", "del", "dev", "lo", "root")
        return True, ""
