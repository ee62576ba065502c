"""An SSH test lab: N target hosts, each a network namespace with a veth to the root namespace and a real OpenSSH sshd.

Used by the integration tests (``tests/integration/conftest.py``) and by ``bench/ssh_fanout.py``. Every host has its
own ed25519 host key, listens on port 22 of its own address in 10.231.0.0/16, and accepts the dedicated user
``diaglab`` (empty home, ``/bin/sh``) with the lab's client key. The lab writes ``known_hosts`` and an
``inventory.yaml`` for ``diag check``. Fault knobs: stop/kill a host's sshd (with its live sessions), hosts without
sshd, host-key rotation, an unauthorized second client key, hosts reachable only through another host (jump), and a
small tmpfs private to one host that a test can fill. ``close()`` kills every process by PID and deletes the
namespaces, also after failures.

Addressing: lab ``L`` (0..63, picked under a lock so a bench and a test session can run side by side) owns
10.231.4L.0/22; host ``i`` gets the /30 ``10.231.(4L + i // 64).(4 * (i % 64))``: ``.1`` is the root side of the
veth, ``.2`` the host. Namespaces are ``dgs-<L>h<i>``, root-side veths ``dgs<L>h<i>``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

PREFIX = "dgs-"
LAB_USER = "diaglab"
LAB_HOME = Path("/var/lib/diaglab")
SSHD = "/usr/sbin/sshd"
LOCK_DIR = Path("/run/dgs-lab")
MAX_LABS = 64
HOSTS_PER_LAB = 256



def _tempdir(prefix: str) -> str:
    """A mkdtemp directory whose name has no ``_``: the lab's paths (a tmpfs mount point) end up in Markdown ticket
    bodies, where ``_`` is rightly escaped, and tests look for them there as plain text. mkdtemp's alphabet has
    ``_``, so about one name in five would hold one (CI saw ``dgs-lab1-jmnwt___``)."""
    while True:
        path = tempfile.mkdtemp(prefix=prefix)
        if "_" not in os.path.basename(path):
            return path
        os.rmdir(path)

class LabError(RuntimeError):
    """The lab could not be built (a command failed); the message holds the command and its stderr."""


def _run(argv: list[str], check: bool = True, timeout: float = 30.0, **kw: Any) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip() or p.stdout.strip()}")
    return p


def ensure_openssh_server() -> None:
    """Install openssh-server when sshd is missing (CI machines are fresh Debian 12)."""
    if Path(SSHD).exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    p = _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "openssh-server"], False, 600, env=env)
    if p.returncode != 0:
        _run(["apt-get", "update", "-q"], timeout=600, env=env)
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "openssh-server"], timeout=600, env=env)


def ensure_lab_user() -> None:
    """Create ``diaglab`` with an empty home and a ``*`` password (``!`` locks the account when UsePAM is off)."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_DIR / "setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two labs starting together must not race useradd
        try:
            pwd.getpwnam(LAB_USER)
        except KeyError:
            _run(["useradd", "-M", "-d", str(LAB_HOME), "-s", "/bin/sh", LAB_USER])
        _run(["usermod", "-p", "*", LAB_USER])
        LAB_HOME.mkdir(parents=True, exist_ok=True)
        pw = pwd.getpwnam(LAB_USER)
        os.chown(LAB_HOME, pw.pw_uid, pw.pw_gid)
        LAB_HOME.chmod(0o755)
        # sshd's privilege-separation directory; a machine without a running sshd has none.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)


def keygen(path: Path, comment: str) -> str:
    """Write a fresh ed25519 key pair at ``path``; return the public key line."""
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path.with_name(path.name + ".pub").read_text().strip()


def fingerprint(pubkey_line: str) -> str:
    """``SHA256:...`` fingerprint of an OpenSSH public key line (what ssh and diag print)."""
    p = _run(["ssh-keygen", "-l", "-f", "/dev/stdin"], input=pubkey_line + "\n")
    return p.stdout.split()[1]


@dataclass
class LabHost:
    """One target host: its namespace, addresses, host key and sshd process."""

    name: str
    index: int
    netns: str
    veth: str  # the link on the "outer" side (root namespace, or the jump host's namespace)
    address: str  # where sshd listens
    gateway: str  # the outer side's address
    dir: Path
    behind: str | None = None  # name of the host whose namespace this one hangs off (reachable only via it)
    sshd: subprocess.Popen[bytes] | None = None
    host_pub: str = ""
    tmpfs: list[Path] = field(default_factory=list)

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def sshd_config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def sshd_log(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.host_pub)


class Lab:
    """A set of lab hosts; use as a context manager, or call ``start()`` and ``close()``."""

    def __init__(self, n_hosts: int = 4, *, no_sshd: tuple[int, ...] = (), root: Path | None = None) -> None:
        if not 0 < n_hosts <= HOSTS_PER_LAB - 8:  # keep a few slots for add_host()
            raise ValueError(f"a lab holds 1..{HOSTS_PER_LAB - 8} hosts")
        self.n_hosts = n_hosts
        self.no_sshd = set(no_sshd)
        self._root_arg = root
        self.lab_id = -1
        self.dir = Path()
        self.hosts: dict[str, LabHost] = {}
        self._lock: IO[str] | None = None
        self._next_index = 0

    # ---- paths the tests and the bench use
    @property
    def client_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def bad_key(self) -> Path:
        """A valid key pair that is NOT in authorized_keys (auth_failed)."""
        return self.dir / "id_ed25519_unauthorized"

    @property
    def authorized_keys(self) -> Path:
        return self.dir / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.yaml"

    def host(self, name_or_index: str | int) -> LabHost:
        if isinstance(name_or_index, int):
            return next(h for h in self.hosts.values() if h.index == name_or_index)
        return self.hosts[name_or_index]

    # ---- life cycle
    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Lab:
        ensure_openssh_server()
        ensure_lab_user()
        self._claim_lab_id()
        try:
            self.dir = Path(self._root_arg or _tempdir(f"{PREFIX}lab{self.lab_id}-"))
            self.dir.mkdir(parents=True, exist_ok=True)
            self.dir.chmod(0o755)  # sshd reads authorized_keys as diaglab
            keygen(self.client_key, "diag-lab-client")
            keygen(self.bad_key, "diag-lab-unauthorized")
            self.authorized_keys.write_text(self.client_key.with_name("id_ed25519.pub").read_text())
            self.authorized_keys.chmod(0o644)
            new = [self._add_namespace(f"h{i + 1:02d}", behind=None) for i in range(self.n_hosts)]
            for h in new:
                if h.index not in self.no_sshd:
                    self._spawn_sshd(h)
            for h in new:
                if h.sshd is not None:
                    self._wait_listening(h)
            self.write_known_hosts()
            self.write_inventory()
        except BaseException:
            self.close()
            raise
        return self

    def add_host(self, name: str | None = None, *, behind: str | None = None, sshd: bool = True) -> LabHost:
        """Add a host after start; ``behind=NAME`` links it to that host's namespace only (a jump target)."""
        h = self._add_namespace(name or f"h{self._next_index + 1:02d}", behind=behind)
        if sshd:
            self._spawn_sshd(h)
            self._wait_listening(h)
        self.write_known_hosts()
        self.write_inventory()
        return h

    def close(self) -> None:
        """Kill every process in the lab namespaces, delete them and their veths. Safe to call twice."""
        for h in list(self.hosts.values()):
            self._kill_namespace_procs(h)
        for h in reversed(list(self.hosts.values())):
            _run(["ip", "netns", "del", h.netns], check=False)
            if h.behind is None:
                _run(["ip", "link", "del", h.veth], check=False)  # gone with the namespace unless it moved
        self.hosts.clear()
        if self._root_arg is None and self.dir != Path() and not os.environ.get("DGS_LAB_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)  # DGS_LAB_KEEP=1 keeps sshd logs for a post-mortem
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # ---- namespaces
    def _claim_lab_id(self) -> None:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        for lab_id in range(MAX_LABS):
            f = open(LOCK_DIR / f"lab{lab_id}.lock", "w")  # noqa: SIM115 - held open for the lab's lifetime
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            self._lock, self.lab_id = f, lab_id
            _remove_stale(lab_id)  # a crashed run may have left namespaces with this id behind
            return
        raise LabError(f"all {MAX_LABS} lab ids are in use (see {LOCK_DIR})")

    def _addr(self, index: int, last: int) -> str:
        third = 4 * self.lab_id + index // 64
        return f"10.231.{third}.{4 * (index % 64) + last}"

    def _add_namespace(self, name: str, behind: str | None) -> LabHost:
        if name in self.hosts:
            raise ValueError(f"lab host {name} exists")
        index = self._next_index
        if index >= HOSTS_PER_LAB:
            raise LabError("lab is full")
        self._next_index += 1
        ns = f"{PREFIX}{self.lab_id}h{index}"
        veth = f"dgs{self.lab_id}h{index}"
        hdir = self.dir / name
        hdir.mkdir(exist_ok=True)
        hdir.chmod(0o755)
        h = LabHost(name, index, ns, veth, self._addr(index, 2), self._addr(index, 1), hdir, behind)
        self.hosts[name] = h
        _run(["ip", "netns", "add", ns])
        outer = ["ip", "-n", self.hosts[behind].netns] if behind else ["ip"]
        _run([*outer, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        _run([*outer, "addr", "add", f"{h.gateway}/30", "dev", veth])
        _run([*outer, "link", "set", veth, "up"])
        inner = ["ip", "-n", ns]
        _run([*inner, "link", "set", "lo", "up"])
        _run([*inner, "addr", "add", f"{h.address}/30", "dev", "eth0"])
        _run([*inner, "link", "set", "eth0", "up"])
        _run([*inner, "route", "add", "default", "via", h.gateway])
        h.host_pub = keygen(h.host_key, f"diag-lab-{name}")
        self._write_sshd_config(h)
        return h

    def _write_sshd_config(self, h: LabHost) -> None:
        h.sshd_config.write_text(
            "\n".join(
                [
                    f"ListenAddress {h.address}:22",
                    f"HostKey {h.host_key}",
                    f"PidFile {h.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    # authorized_keys lives under /tmp (world-writable), which StrictModes would refuse.
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin no",
                    f"AllowUsers {LAB_USER}",
                    "AllowTcpForwarding yes",
                    "UseDNS no",
                    "PrintMotd no",
                    "PrintLastLog no",
                    "MaxStartups 200:30:300",
                    "MaxSessions 50",
                    "LogLevel VERBOSE",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )

    # ---- sshd
    def _spawn_sshd(self, h: LabHost) -> None:
        # `ip netns exec` execs sshd, so the Popen PID is sshd's; it also gives sshd a private mount
        # namespace (slave of the root one), which is where mount_tmpfs() puts a host's own filesystem.
        h.sshd = subprocess.Popen(
            ["ip", "netns", "exec", h.netns, SSHD, "-D", "-f", str(h.sshd_config), "-E", str(h.sshd_log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _wait_listening(self, h: LabHost, timeout: float = 15.0) -> None:
        assert h.sshd is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if h.sshd.poll() is not None:
                log = h.sshd_log.read_text(errors="replace") if h.sshd_log.exists() else ""
                raise LabError(f"sshd for {h.name} exited with {h.sshd.returncode}: {log.strip()[-500:]}")
            p = _run(["ip", "netns", "exec", h.netns, "ss", "-Hltn", "sport = :22"], check=False)
            if h.address in p.stdout:
                return
            time.sleep(0.02)
        raise LabError(f"sshd for {h.name} not listening on {h.address}:22 after {timeout:.0f} s")

    def start_sshd(self, name: str) -> None:
        h = self.hosts[name]
        if h.sshd is not None and h.sshd.poll() is None:
            raise LabError(f"sshd for {name} already runs")
        self._spawn_sshd(h)
        self._wait_listening(h)

    def stop_sshd(self, name: str) -> None:
        """Stop the listener gracefully; established sessions live on (as with a real sshd restart)."""
        h = self.hosts[name]
        if h.sshd is not None and h.sshd.poll() is None:
            h.sshd.terminate()
            h.sshd.wait(10)
        h.sshd = None

    def kill_sshd(self, name: str) -> None:
        """SIGKILL the listener and every per-connection sshd in the host: live sessions drop at once."""
        h = self.hosts[name]
        if h.sshd is not None:
            with contextlib.suppress(ProcessLookupError):
                h.sshd.kill()
            h.sshd.wait(10)
            h.sshd = None
        for pid in self.pids(name):
            if _comm(pid) == "sshd":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def rotate_host_key(self, name: str) -> tuple[str, str]:
        """Give the host a new host key and restart its sshd; known_hosts keeps the old one. (old, new) fps."""
        h = self.hosts[name]
        old = h.fingerprint
        running = h.sshd is not None
        self.stop_sshd(name)
        h.host_pub = keygen(h.host_key, f"diag-lab-{name}-rotated")
        if running:
            self.start_sshd(name)
        return old, h.fingerprint

    # ---- files for clients
    def write_known_hosts(self, path: Path | None = None, names: list[str] | None = None) -> Path:
        """known_hosts with the host keys as they are now (``names`` restricts the hosts)."""
        path = path or self.known_hosts
        lines = [f"{h.address} {h.host_pub}" for h in self.hosts.values() if names is None or h.name in names]
        path.write_text("".join(line + "\n" for line in lines))
        return path

    def write_inventory(
        self,
        path: Path | None = None,
        *,
        key: Path | None = None,
        hostkey_policy: str | None = None,
        connect_timeout: float = 5.0,
        command_timeout: float = 30.0,
        extra_hosts: dict[str, dict[str, Any]] | None = None,
    ) -> Path:
        """An inventory for ``diag check``: every lab host in group ``lab``; jump targets get ``jump:``."""
        path = path or self.inventory
        lines = [
            "defaults:",
            f"  user: {LAB_USER}",
            f"  ssh_key: {key or self.client_key}",
            "  port: 22",
            f"  connect_timeout: {connect_timeout}",
            f"  command_timeout: {command_timeout}",
            "groups:",
            "  lab:",
            "    tags: [lab]",
        ]
        if hostkey_policy:
            lines.append(f"    hostkey_policy: {hostkey_policy}")
        lines.append("hosts:")
        for h in self.hosts.values():
            lines += [f"  {h.name}:", f"    address: {h.address}", "    groups: [lab]"]
            if h.behind:
                lines.append(f"    jump: {h.behind}")
        for name, attrs in (extra_hosts or {}).items():
            lines.append(f"  {name}:")
            lines += [f"    {k}: {_yaml_scalar(v)}" for k, v in attrs.items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    # ---- looking inside a host
    def pids(self, name: str) -> list[int]:
        """Every process in the host's network namespace."""
        p = _run(["ip", "netns", "pids", self.hosts[name].netns], check=False)
        return [int(x) for x in p.stdout.split()]

    def processes(self, name: str) -> list[str]:
        """Command lines of the processes in the host (for "the remote sleep is gone" checks)."""
        out = []
        for pid in self.pids(name):
            with contextlib.suppress(OSError):
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
        return out

    def exec(
        self, name: str, argv: list[str], check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the host: its network namespace and, while sshd runs, sshd's mount namespace."""
        h = self.hosts[name]
        if h.sshd is not None and h.sshd.poll() is None:
            return _run(["nsenter", "-t", str(h.sshd.pid), "-n", "-m", "--", *argv], check, timeout)
        return _run(["ip", "netns", "exec", h.netns, *argv], check, timeout)

    def tcp_connections(self, name: str) -> list[str]:
        """Established TCP connections to the host's sshd (``ss`` inside the namespace), one line each."""
        p = self.exec(name, ["ss", "-Htn", "state", "established", "sport", "= :22"])
        return [line for line in p.stdout.splitlines() if line.strip()]

    def accepted_logins(self, name: str) -> int:
        """How many SSH logins sshd accepted (LogLevel VERBOSE logs one line per connection)."""
        log = self.hosts[name].sshd_log
        return log.read_text(errors="replace").count("Accepted publickey for") if log.exists() else 0

    def mount_tmpfs(self, name: str, size: str = "4M", path: str | None = None) -> Path:
        """Mount a small tmpfs visible only inside this host (sshd's mount namespace); return its path.

        The mount lives as long as this sshd: restarting the host's sshd drops it.
        """
        h = self.hosts[name]
        if h.sshd is None or h.sshd.poll() is not None:
            raise LabError(f"{name}: mount_tmpfs needs a running sshd (its mount namespace holds the tmpfs)")
        mnt = Path(path) if path else h.dir / f"fs{len(h.tmpfs)}"
        mnt.mkdir(parents=True, exist_ok=True)
        self.exec(name, ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", f"{PREFIX}tmpfs", str(mnt)])
        h.tmpfs.append(mnt)
        return mnt

    def fill(self, name: str, mnt: Path, percent: float = 100.0) -> None:
        """Fill the host's tmpfs at ``mnt`` to about ``percent`` (100 = until ENOSPC)."""
        script = (
            "set -e; total=$(df -Pk \"$1\" | awk 'NR==2{print $2}'); "
            "want=$(( total * $2 / 100 )); "
            'dd if=/dev/zero of="$1/fill" bs=1k count=$want 2>/dev/null || true'
        )
        self.exec(name, ["sh", "-c", script, "fill", str(mnt), str(int(percent))])

    # ---- teardown helpers
    def _kill_namespace_procs(self, h: LabHost) -> None:
        if h.sshd is not None:
            with contextlib.suppress(ProcessLookupError):
                h.sshd.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                h.sshd.wait(5)
            h.sshd = None
        _kill_pids(_run(["ip", "netns", "pids", h.netns], check=False).stdout.split())


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _kill_pids(pids: list[str]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _remove_stale(lab_id: int) -> None:
    """Delete namespaces and veths of lab ``lab_id`` left behind by a run that died before close()."""
    p = _run(["ip", "netns", "list"], check=False)
    for line in p.stdout.splitlines():
        ns = line.split()[0] if line.strip() else ""
        if ns.startswith(f"{PREFIX}{lab_id}h") and ns[len(f"{PREFIX}{lab_id}h") :].isdigit():
            _kill_pids(_run(["ip", "netns", "pids", ns], check=False).stdout.split())
            _run(["ip", "netns", "del", ns], check=False)
    links = _run(["ip", "-o", "link", "show"], check=False).stdout
    for line in links.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            dev = parts[1].strip().split("@")[0]
            if dev.startswith(f"dgs{lab_id}h") and dev[len(f"dgs{lab_id}h") :].isdigit():
                _run(["ip", "link", "del", dev], check=False)


def _yaml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_yaml_scalar(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def port_open(address: str, port: int = 22, timeout: float = 1.0) -> bool:
    """Can the root namespace open a TCP connection to ``address:port``?"""
    try:
        with socket.create_connection((address, port), timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def lab(n_hosts: int = 4, **kw: Any) -> Iterator[Lab]:
    """``with lab(50) as lb:`` builds a lab and always tears it down."""
    lb = Lab(n_hosts, **kw)
    try:
        lb.start()
        yield lb
    finally:
        lb.close()


def big_lab(n_hosts: int = 50) -> Lab:
    """A started lab for the fan-out bench (caller closes it)."""
    return Lab(n_hosts).start()


def main() -> None:
    """``python -m tests.labs.lab N``: build a lab, print its inventory, wait for Ctrl-C (manual experiments)."""
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    with lab(n) as lb:
        print(lb.inventory.read_text())
        print(f"# inventory: {lb.inventory}\n# known_hosts: {lb.known_hosts}\n# key: {lb.client_key}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
