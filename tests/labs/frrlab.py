"""A real CLI device lab: two FRRouting routers in network namespaces, r1 reachable over SSH with vtysh as the shell.

::

    root ns  dgf-r1 10.239.0.1/30 ---- eth0 10.239.0.2/30  r1 (sshd :22, zebra staticd bgpd ospfd)  AS 65001
                                        eth1 10.239.1.1/30 ---- eth1 10.239.1.2/30  r2 (zebra staticd bgpd ospfd)
                                        eth2 10.239.2.1/30 ---- eth2 10.239.2.2/30       AS 65002, lo 10.239.255.2/32

r1 has a static route 198.51.100.0/24 (blackhole); r2 announces 203.0.113.0/24 over BGP and its loopback over OSPF,
so r1's routing table holds S, B, O and C routes. BGP and OSPF timers are 1 s / 3 s so that a neighbour that goes
away is noticed within seconds.

Each router runs in its own network, mount and UTS namespace: a holder process (``sleep infinity``) owns them; the
router's private ``run/`` and ``etc/`` directories are bind-mounted on ``/run/frr`` and ``/etc/frr`` there, so the
daemons, ``vtysh`` and sshd's sessions (started with ``nsenter`` into the holder) all see that router's sockets and
configuration and nothing else. No systemd, no watchfrr: the daemons are started with ``-d`` and stopped by PID.

The SSH user ``dgfvty`` has ``/usr/bin/vtysh`` as its login shell and is in the ``frrvty`` group (which may open
the daemons' vty sockets); its password field is ``*`` (``!`` would lock it out with ``UsePAM no``) and it logs in
with the lab's ed25519 key only. ``/etc/shells`` is not touched: sshd checks it only through PAM (pam_shells).

One lab at a time per machine (fixed names and addresses): :class:`FrrLab` waits on a lock. Namespaces ``dgf-r1``,
``dgf-r2``; addresses 10.239.0.0/16; nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.labs.lab import SSHD, LabError, _kill_pids, _run, ensure_openssh_server, keygen

PREFIX = "dgf-"
VTY_USER = "dgfvty"
VTY_HOME = Path("/var/lib/dgfvty")
VTYSH = "/usr/bin/vtysh"
FRR_LIB = Path("/usr/lib/frr")
LOCK = Path("/run/dgf-lab/lab.lock")
DAEMONS = ("zebra", "staticd", "bgpd", "ospfd")
MGMT = "10.239.0.2"  # r1's SSH address
STATIC_PREFIX = "198.51.100.0/24"  # r1's own static route
BGP_PREFIX = "203.0.113.0/24"  # learned from r2 over BGP
OSPF_PREFIX = "10.239.255.2/32"  # r2's loopback, learned over OSPF

_TIMERS = " ip ospf network point-to-point\n ip ospf hello-interval 1\n ip ospf dead-interval 3\n"

R1_CONF = f"""frr defaults traditional
hostname r1
service integrated-vtysh-config
!
ip route {STATIC_PREFIX} blackhole
!
interface eth1
 description link to r2
{_TIMERS}!
interface eth2
 description second link to r2
!
router bgp 65001
 bgp router-id 10.239.255.1
 no bgp ebgp-requires-policy
 timers bgp 1 3
 neighbor 10.239.1.2 remote-as 65002
 neighbor 10.239.1.2 timers connect 1
!
router ospf
 ospf router-id 10.239.255.1
 network 10.239.1.0/30 area 0
!
line vty
!
"""

R2_CONF = f"""frr defaults traditional
hostname r2
service integrated-vtysh-config
!
ip route {BGP_PREFIX} blackhole
!
interface eth1
{_TIMERS}!
router bgp 65002
 bgp router-id 10.239.255.2
 no bgp ebgp-requires-policy
 timers bgp 1 3
 neighbor 10.239.1.1 remote-as 65001
 neighbor 10.239.1.1 timers connect 1
 !
 address-family ipv4 unicast
  network {BGP_PREFIX}
 exit-address-family
!
router ospf
 ospf router-id 10.239.255.2
 network 10.239.1.0/30 area 0
 network 10.239.255.2/32 area 0
!
line vty
!
"""

# Runs as root inside the router's namespaces (the holder process); ends as `sleep infinity`.
_START = """set -e
mount --bind {dir}/run /run/frr
mount --bind {dir}/etc /etc/frr
hostname {name}
for d in {daemons}; do
  {lib}/$d -d -i /run/frr/$d.pid -A 127.0.0.1 -P 0 --log file:/run/frr/$d.log
  n=0; while [ ! -S /run/frr/$d.vty ]; do n=$((n+1)); [ $n -lt 200 ] || exit 3; sleep 0.05; done
done
vtysh -b > {dir}/boot.log 2>&1 || true
echo ready > {dir}/ready
exec sleep infinity
"""


@dataclass
class Router:
    name: str
    netns: str
    dir: Path
    holder: subprocess.Popen[bytes] | None = None
    sshd: subprocess.Popen[bytes] | None = None


def ensure_frr() -> None:
    if not (FRR_LIB / "zebra").exists() or not Path(VTYSH).exists():
        raise LabError("FRRouting is not installed: apt-get install frr (listed in scripts/debian-packages.txt)")


def ensure_vty_user() -> None:
    """``dgfvty``: shell vtysh, group frrvty, password ``*``, an existing home (sshd chdirs there)."""
    try:
        pwd.getpwnam(VTY_USER)
    except KeyError:
        _run(["useradd", "-M", "-d", str(VTY_HOME), "-s", VTYSH, "-G", "frrvty", VTY_USER])
    _run(["usermod", "-p", "*", "-s", VTYSH, "-a", "-G", "frrvty", VTY_USER])
    VTY_HOME.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)


def _remove_stale() -> None:
    for ns in ("dgf-r1", "dgf-r2"):
        if Path(f"/run/netns/{ns}").exists():
            _kill_pids(_run(["ip", "netns", "pids", ns], check=False).stdout.split())
            _run(["ip", "netns", "del", ns], check=False)
    _run(["ip", "link", "del", "dgf-r1"], check=False)


class FrrLab:
    """Start with ``start()`` (or as a context manager); ``close()`` kills every process by PID and removes all."""

    def __init__(self) -> None:
        self.dir = Path()
        self.routers: dict[str, Router] = {}
        self._lock: IO[str] | None = None

    # ---- paths for the tests
    @property
    def client_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.yaml"

    def __enter__(self) -> FrrLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> FrrLab:
        ensure_frr()
        ensure_openssh_server()
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(LOCK, "w")  # noqa: SIM115 - held for the lab's lifetime
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(f"another FRR lab holds {LOCK} for more than 10 minutes") from None
                time.sleep(0.5)
        try:
            ensure_vty_user()
            _remove_stale()
            self.dir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}frrlab-"))
            self.dir.chmod(0o755)  # sshd reads authorized_keys as dgfvty
            keygen(self.client_key, "diag-frrlab-client")
            host_pub = keygen(self.host_key, "diag-frrlab-r1")
            auth = self.dir / "authorized_keys"
            auth.write_text(self.client_key.with_name("id_ed25519.pub").read_text())
            auth.chmod(0o644)
            self._network()
            self._start_router("r1", R1_CONF)
            self._start_router("r2", R2_CONF)
            self._start_sshd()
            self.known_hosts.write_text(f"{MGMT} {' '.join(host_pub.split()[:2])}\n")
            self.write_inventory()
        except BaseException:
            self.close()
            raise
        return self

    def _network(self) -> None:
        for r in ("r1", "r2"):
            _run(["ip", "netns", "add", f"dgf-{r}"])
            self.routers[r] = Router(r, f"dgf-{r}", self.dir / r)
            _run(["ip", "-n", f"dgf-{r}", "link", "set", "lo", "up"])
        _run(["ip", "link", "add", "dgf-r1", "type", "veth", "peer", "name", "eth0", "netns", "dgf-r1"])
        _run(["ip", "addr", "add", "10.239.0.1/30", "dev", "dgf-r1"])
        _run(["ip", "link", "set", "dgf-r1", "up"])
        _run(["ip", "-n", "dgf-r1", "addr", "add", f"{MGMT}/30", "dev", "eth0"])
        _run(["ip", "-n", "dgf-r1", "link", "set", "eth0", "up"])
        for link in (1, 2):
            _run(
                [
                    "ip",
                    "-n",
                    "dgf-r1",
                    "link",
                    "add",
                    f"eth{link}",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    f"eth{link}",
                    "netns",
                    "dgf-r2",
                ]
            )
            for r, last in (("r1", 1), ("r2", 2)):
                _run(["ip", "-n", f"dgf-{r}", "addr", "add", f"10.239.{link}.{last}/30", "dev", f"eth{link}"])
                _run(["ip", "-n", f"dgf-{r}", "link", "set", f"eth{link}", "up"])
        _run(["ip", "-n", "dgf-r2", "addr", "add", OSPF_PREFIX, "dev", "lo"])

    def _start_router(self, name: str, conf: str) -> None:
        r = self.routers[name]
        frr = pwd.getpwnam("frr")
        for sub in ("run", "etc"):
            (r.dir / sub).mkdir(parents=True)
        (r.dir / "etc" / "frr.conf").write_text(conf)
        (r.dir / "etc" / "vtysh.conf").write_text("service integrated-vtysh-config\n")
        (r.dir / "etc" / "daemons").write_text("".join(f"{d}=yes\n" for d in DAEMONS))
        for p in (r.dir, r.dir / "run", r.dir / "etc", *(r.dir / "etc").iterdir()):
            os.chown(p, frr.pw_uid, frr.pw_gid)
            p.chmod(0o755 if p.is_dir() else 0o644)
        script = r.dir / "start.sh"
        script.write_text(_START.format(dir=r.dir, name=name, daemons=" ".join(DAEMONS), lib=FRR_LIB))
        r.holder = subprocess.Popen(
            ["ip", "netns", "exec", r.netns, "unshare", "-m", "-u", "--propagation", "private", "sh", str(script)],
            stdin=subprocess.DEVNULL,
            stdout=open(r.dir / "start.log", "wb"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not (r.dir / "ready").exists():
            if r.holder.poll() is not None:
                raise LabError(f"{name}: FRR start failed: {(r.dir / 'start.log').read_text(errors='replace')[-800:]}")
            if time.monotonic() > deadline:
                raise LabError(f"{name}: FRR daemons not up after 30 s")
            time.sleep(0.05)

    def _start_sshd(self) -> None:
        r1 = self.routers["r1"]
        cfg = self.dir / "sshd_config"
        cfg.write_text(
            "\n".join(
                [
                    f"ListenAddress {MGMT}:22",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    "StrictModes no",  # authorized_keys is under /tmp
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    f"AllowUsers {VTY_USER}",
                    "UseDNS no",
                    "PrintMotd no",
                    "PrintLastLog no",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        assert r1.holder is not None
        r1.sshd = subprocess.Popen(
            [
                "nsenter",
                "-t",
                str(r1.holder.pid),
                "-m",
                "-n",
                "-u",
                SSHD,
                "-D",
                "-f",
                str(cfg),
                "-E",
                str(self.dir / "sshd.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            if r1.sshd.poll() is not None:
                raise LabError(f"sshd exited: {(self.dir / 'sshd.log').read_text(errors='replace')[-500:]}")
            p = _run(["ip", "netns", "exec", r1.netns, "ss", "-Hltn", "sport = :22"], check=False)
            if MGMT in p.stdout:
                return
            if time.monotonic() > deadline:
                raise LabError("sshd in r1 not listening after 15 s")
            time.sleep(0.05)

    def write_inventory(self, path: Path | None = None, extra: str = "") -> Path:
        """Group ``routers`` (r1, device_type frr) and ``dead`` (an address where no sshd listens)."""
        path = path or self.inventory
        path.write_text(
            f"""defaults:
  user: {VTY_USER}
  ssh_key: {self.client_key}
  connect_timeout: 10
  command_timeout: 20
groups:
  routers:
    device_type: frr
hosts:
  r1:
    address: {MGMT}
    groups: [routers]
    vars:
      expected_prefixes: ["{STATIC_PREFIX}", "{BGP_PREFIX}", "{OSPF_PREFIX}"]
      require_default_route: false
  dead:
    address: {MGMT}
    port: 2200
    groups: [routers]
{extra}"""
        )
        return path

    # ---- driving the routers from the test (as an operator at the console would)
    def vtysh(self, router: str, *commands: str, check: bool = True) -> str:
        """Run vtysh commands as root inside ``router`` (``configure terminal``, ``interface eth2``, ``shutdown``)."""
        r = self.routers[router]
        assert r.holder is not None
        argv = ["nsenter", "-t", str(r.holder.pid), "-m", "-n", "-u", VTYSH]
        for c in commands:
            argv += ["-c", c]
        p = _run(argv, check=False)
        if check and p.returncode != 0:
            raise LabError(f"{router}: vtysh {' / '.join(commands)}: exit {p.returncode}: {p.stdout}{p.stderr}")
        return p.stdout

    def wait_until(self, router: str, command: str, ok: Callable[[str], bool], timeout: float = 30.0) -> str:
        """Poll a show command until ``ok(output)``; LabError with the last output otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.vtysh(router, command, check=False)
            if ok(out):
                return out
            if time.monotonic() > deadline:
                raise LabError(f"{router}: `{command}` did not reach the expected state in {timeout:g} s:\n{out}")
            time.sleep(0.2)

    def converged(self, timeout: float = 60.0) -> None:
        """Wait until r1 has its BGP and OSPF routes (sessions up)."""
        self.wait_until("r1", "show ip route", lambda o: BGP_PREFIX in o and OSPF_PREFIX in o, timeout)

    def pids(self, router: str) -> list[int]:
        p = _run(["ip", "netns", "pids", self.routers[router].netns], check=False)
        return [int(x) for x in p.stdout.split()]

    def close(self) -> None:
        for r in self.routers.values():
            for proc in (r.sshd, r.holder):
                if proc is not None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(5)
            # the daemons forked away from the holder: every process left in the namespace, by PID
            _kill_pids(_run(["ip", "netns", "pids", r.netns], check=False).stdout.split())
            _run(["ip", "netns", "del", r.netns], check=False)
        _run(["ip", "link", "del", "dgf-r1"], check=False)
        self.routers.clear()
        if self.dir != Path() and not os.environ.get("DGF_LAB_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


@contextlib.contextmanager
def frr_lab(**kw: Any) -> Iterator[FrrLab]:
    lab = FrrLab(**kw)
    try:
        yield lab.start()
    finally:
        lab.close()


if __name__ == "__main__":  # python -m tests.labs.frrlab: start a lab and keep it until Enter
    with frr_lab() as lab:
        lab.converged()
        print(f"lab in {lab.dir}; inventory {lab.inventory}; known_hosts {lab.known_hosts}")
        print(lab.vtysh("r1", "show ip route"))
        input("Enter to stop ")
