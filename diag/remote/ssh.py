"""The SSH transport: a pool of paramiko connections, one per host, reused for every command of a run.

``SSHPool.connect(host)`` opens (once, thread-safe) a verified, authenticated connection; ``SSHConnection.run``
executes one command on its own exec channel and returns a :class:`CommandResult` with capped, secret-masked
output. Failures raise the ``diag.errors`` tree with one line naming ``address:port (host)``; :func:`host_status`
maps them to the statuses of the ``diag check`` contract. Speed matters (hundreds of hosts): no thread per command,
no polling loop, TCP_NODELAY, curve25519 key exchange first, keys parsed once per pool.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from diag import secrets
from diag.errors import AuthError, ConfigError, ConnectError, DiagError, SecretError, Timeout, Unreachable
from diag.inventory import Host
from diag.model import Evidence
from diag.remote import host_status, sudo_wrap, where
from diag.remote.hostkeys import HostKeyStore, fingerprint, host_pattern

# paramiko.config imports invoke (a paramiko dependency) only for ssh_config "Match exec", which diag never
# uses; that import costs ~140 ms of CPU on every `diag check`. Hide it while paramiko loads, then un-hide it.
_hide_invoke = "invoke" not in sys.modules
if _hide_invoke:
    sys.modules["invoke"] = None  # type: ignore[assignment]
try:
    import paramiko
    from paramiko.common import cMSG_CHANNEL_REQUEST
    from paramiko.message import Message
finally:
    if _hide_invoke and sys.modules.get("invoke", 0) is None:
        del sys.modules["invoke"]


log = logging.getLogger(__name__)

# paramiko logs every failed handshake with a traceback at ERROR; diag reports the same failure as one line
# through its own exceptions, so paramiko's own chatter stays quiet unless someone configured it on purpose.
if logging.getLogger("paramiko").level == logging.NOTSET:
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)

#: Key exchange preference: curve25519 first (fast, and what OpenSSH picks); the rest as paramiko ships them.
KEX_FIRST = ("curve25519-sha256@libssh.org",)
#: Ciphers first: AES-GCM is an AEAD, so paramiko needs no separate HMAC per packet and no pure-Python MAC
#: comparison (paramiko's constant_time_bytes_eq): about a fifth less controller CPU than aes-ctr + hmac-sha2.
CIPHERS_FIRST = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
DEFAULT_OUTPUT_CAP = 1 << 20
_READ_CHUNK = 1 << 16
_IDLE_WAKEUP_S = 1.0
_HOSTKEY_ALGS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}
_KNOWN_HOSTS_ENV = "DIAG_KNOWN_HOSTS"  # os.pathsep-separated files, for callers that cannot pass known_hosts=

R = TypeVar("R")
__all__ = ["CommandResult", "ConnectionLost", "SSHConnection", "SSHPool", "host_status", "where"]


class ConnectionLost(ConnectError):
    """An established connection dropped (sshd killed, network gone) while a command ran."""


@dataclass(slots=True)
class CommandResult:
    """One command's outcome. ``stdout``/``stderr`` are capped (``truncated``) and have secrets masked."""

    command: str
    exit_status: int | None
    stdout: str
    stderr: str
    duration_s: float
    truncated: bool = False
    timed_out: bool = False
    stdout_bytes: int = 0  # what the command really printed, before the cap
    stderr_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.timed_out

    def evidence(self, title: str | None = None, parsed: Mapping[str, Any] | None = None) -> Evidence:
        """This result as command evidence (the text is stdout, with stderr appended when there is any)."""
        text = self.stdout if not self.stderr else f"{self.stdout}\n--- stderr ---\n{self.stderr}"
        data: dict[str, Any] = {
            "command": self.command,
            "exit_status": self.exit_status,
            "duration_s": round(self.duration_s, 4),
            "truncated": self.truncated,
            "timed_out": self.timed_out,
            "stdout_bytes": self.stdout_bytes,
            "stderr_bytes": self.stderr_bytes,
        }
        if parsed is not None:
            data["parsed"] = dict(parsed)
        return Evidence("command", title or self.command, text, data)


class _Capped:
    """Collects up to ``cap`` bytes and counts (then drops) the rest, so a chatty command costs no memory."""

    __slots__ = ("cap", "chunks", "kept", "seen")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.chunks: list[bytes] = []
        self.kept = 0
        self.seen = 0

    def feed(self, data: bytes) -> None:
        self.seen += len(data)
        room = self.cap - self.kept
        if room > 0:
            part = data if len(data) <= room else data[:room]
            self.chunks.append(part)
            self.kept += len(part)

    @property
    def full(self) -> bool:
        return self.kept >= self.cap

    def text(self) -> str:
        return secrets.mask(b"".join(self.chunks).decode("utf-8", errors="replace"))


class SSHConnection:
    """An authenticated connection to one host; ``run`` may be called from several threads at once."""

    def __init__(self, pool: SSHPool, host: Host, transport: paramiko.Transport, via: SSHConnection | None) -> None:
        self.pool = pool
        self.host = host
        self.transport = transport
        self.via = via
        self.where = where(host)
        self.commands_run = 0

    @property
    def alive(self) -> bool:
        return self.transport.is_active()

    def close(self) -> None:
        # Wake the transport thread at once (it may sit in a 1 s recv, see SSHPool._open), then let paramiko close.
        if isinstance(self.transport.sock, socket.socket):
            with contextlib.suppress(OSError):
                self.transport.sock.shutdown(socket.SHUT_RDWR)
        self.transport.close()

    def run(self, command: str, timeout: float | None = None, sudo: bool = False) -> CommandResult:
        """Run exactly ``command`` (a shell command line) on a new channel of this connection.

        A command still running at ``timeout`` (default: the host's command_timeout) is killed (SSH ``signal``
        request, which sshd turns into killpg of the session) and returns ``timed_out=True`` with the output so
        far. Raises ConnectionLost when the connection drops before the command finished.
        """
        timeout = self.host.command_timeout if timeout is None else timeout
        wire = sudo_wrap(command) if sudo else command
        shown = secrets.mask(wire)
        start = time.monotonic()
        deadline = start + timeout
        try:
            chan = self.transport.open_session(timeout=max(timeout, 0.001))
        except paramiko.ChannelException as e:
            # The server said no (MaxSessions, policy); the connection itself is fine.
            raise ConnectError(f"{self.where}: server refused a channel for `{shown}`: {e.text or e.code}") from None
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise self._lost(f"cannot open a channel for `{shown}`: {_reason(e)}") from None
        self.commands_run += 1
        with contextlib.closing(chan):
            # One event for both streams: paramiko sets it whenever either buffer receives data or closes, so
            # the loop sleeps until something happens instead of polling (and needs no reader thread).
            wake = threading.Event()
            chan.in_buffer.set_event(wake)
            chan.in_stderr_buffer.set_event(wake)
            try:
                chan.exec_command(wire)
            except (paramiko.SSHException, EOFError, OSError) as e:
                raise self._lost(f"cannot start `{shown}`: {_reason(e)}") from None
            out, err = _Capped(self.pool.output_cap), _Capped(self.pool.output_cap)
            timed_out = False
            while True:
                got = False
                if chan.recv_ready():
                    out.feed(chan.recv(_READ_CHUNK if not out.full else 1 << 20))
                    got = True
                if chan.recv_stderr_ready():
                    err.feed(chan.recv_stderr(_READ_CHUNK if not err.full else 1 << 20))
                    got = True
                if got:
                    continue
                # Reading a buffer empty clears the shared event, possibly after the other stream got data:
                # the ready checks above ran after the last read, so waiting now misses nothing.
                if chan.eof_received or chan.closed:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                wake.wait(remaining)
                wake.clear()
            if not timed_out:
                remaining = deadline - time.monotonic()
                if not chan.status_event.wait(max(remaining, 0)):
                    timed_out = True  # closed its output but still runs: same as hanging
            if timed_out:
                self._kill(chan)
        status: int | None = chan.exit_status if chan.exit_status >= 0 else None
        if status is None and not self._still_alive():
            # A channel closes without an exit status both when the command died of a signal (exit-signal) and
            # when the whole connection dropped; only the latter is a ConnectionLost.
            raise self._lost(f"connection lost while running `{shown}`")
        if timed_out:
            status = None
        return CommandResult(
            command=shown,
            exit_status=status,
            stdout=out.text(),
            stderr=err.text(),
            duration_s=time.monotonic() - start,
            truncated=out.seen > out.kept or err.seen > err.kept,
            timed_out=timed_out,
            stdout_bytes=out.seen,
            stderr_bytes=err.seen,
        )

    def _still_alive(self) -> bool:
        """Is the connection up? A round trip settles it when the transport thread may still be dying."""
        if not self.transport.is_active():
            return False
        with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
            self.transport.global_request("keepalive@openssh.com", wait=True)
        return self.transport.is_active()

    def _kill(self, chan: paramiko.Channel) -> None:
        """Kill a hung command: sshd answers a ``signal`` request with killpg(session), so children die too."""
        if chan.closed or not self.transport.is_active():
            return
        m = Message()
        m.add_byte(cMSG_CHANNEL_REQUEST)
        m.add_int(chan.remote_chanid)
        m.add_string("signal")
        m.add_boolean(False)
        m.add_string("KILL")
        try:
            # paramiko has no public API for the RFC 4254 "signal" request; this is how Channel sends its own.
            self.transport._send_user_message(m)  # type: ignore[attr-defined]
        except (paramiko.SSHException, EOFError, OSError) as e:
            log.debug("%s: cannot send KILL: %s", self.where, e)
            return
        # Give sshd a moment to reap the process group so that "timed out" means "gone" for the caller.
        chan.status_event.wait(2.0)

    def _lost(self, what: str) -> ConnectionLost:
        self.pool._forget(self)
        return ConnectionLost(f"{self.where}: {what}")


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    conn: SSHConnection | None = None


class SSHPool:
    """Connections by host name, opened on first use and shared by every step of a run.

    ``known_hosts``: files to verify host keys against (default: ``$DIAG_KNOWN_HOSTS`` or ``~/.ssh/known_hosts``);
    ``tofu_store``: where hosts with ``hostkey_policy: tofu`` get their first key written (default
    ``.diag/known_hosts.tofu``); ``hosts``: the inventory's hosts, needed to resolve ``jump:`` names.
    ``max_concurrency`` bounds how many hosts are worked on at once (``slot()`` / ``map()``).
    """

    def __init__(
        self,
        known_hosts: Path | Iterable[Path] | None = None,
        tofu_store: Path | None = None,
        max_concurrency: int = 50,
        output_cap: int = DEFAULT_OUTPUT_CAP,
        hosts: Mapping[str, Host] | None = None,
        use_agent: bool = True,
        kex_first: tuple[str, ...] = KEX_FIRST,
        ciphers_first: tuple[str, ...] = CIPHERS_FIRST,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if known_hosts is None:
            env = os.environ.get(_KNOWN_HOSTS_ENV)
            files = [Path(p) for p in env.split(os.pathsep) if p] if env else [Path("~/.ssh/known_hosts")]
        elif isinstance(known_hosts, Path | str):
            files = [Path(known_hosts)]
        else:
            files = [Path(p) for p in known_hosts]
        self.hostkeys = HostKeyStore(
            [p.expanduser() for p in files], tofu_store if tofu_store is not None else Path(".diag/known_hosts.tofu")
        )
        self.max_concurrency = max_concurrency
        self.output_cap = output_cap
        self.hosts: Mapping[str, Host] = hosts or {}
        self.use_agent = use_agent
        self.kex_first = kex_first
        self.ciphers_first = ciphers_first
        self._semaphore = threading.BoundedSemaphore(max_concurrency)
        self._slots: dict[str, _Slot] = {}
        self._slots_lock = threading.Lock()
        self._keys: dict[str, paramiko.PKey] = {}
        self._keys_lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> SSHPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of ``max_concurrency`` slots while working on a host."""
        with self._semaphore:
            yield

    def map(self, fn: Callable[[Host], R], hosts: Iterable[Host]) -> Iterator[tuple[Host, R | DiagError]]:
        """Call ``fn(host)`` for every host, ``max_concurrency`` at a time, yielding results as they finish.

        A DiagError raised by ``fn`` is yielded in place of its result: one host never stops the others.
        """
        hosts = list(hosts)

        def one(h: Host) -> tuple[Host, R | DiagError]:
            with self.slot():
                try:
                    return h, fn(h)
                except DiagError as e:
                    return h, e

        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, max(len(hosts), 1))) as ex:
            yield from (f.result() for f in as_completed([ex.submit(one, h) for h in hosts]))

    def connect(self, host: Host) -> SSHConnection:
        """The connection to ``host``, opened now if there is none (or the cached one died)."""
        return self._connect(host, ())

    def _connect(self, host: Host, chain: tuple[str, ...]) -> SSHConnection:
        if self._closed:
            raise ConnectError(f"{where(host)}: the SSH pool is closed")
        with self._slots_lock:
            slot = self._slots.setdefault(host.name, _Slot())
        with slot.lock:  # one handshake per host even when several threads ask at once
            if slot.conn is not None and slot.conn.alive:
                return slot.conn
            via = None
            if host.jump:
                if host.jump in (*chain, host.name):
                    raise ConfigError(f"{where(host)}: jump host loop: {' -> '.join((*chain, host.name, host.jump))}")
                jump = self.hosts.get(host.jump)
                if jump is None:
                    raise ConfigError(f"{where(host)}: jump host {host.jump!r} is not in the inventory")
                via = self._connect(jump, (*chain, host.name))
            slot.conn = self._open(host, via)
            return slot.conn

    def _forget(self, conn: SSHConnection) -> None:
        with self._slots_lock:
            slot = self._slots.get(conn.host.name)
        if slot is not None and slot.conn is conn:
            slot.conn = None
        conn.close()

    def close_all(self) -> None:
        """Close every connection (targets before the jump hosts they go through)."""
        self._closed = True
        with self._slots_lock:
            conns = [s.conn for s in self._slots.values() if s.conn is not None]
            self._slots.clear()
        for c in sorted(conns, key=lambda c: c.via is None):
            c.close()

    # ---- opening a connection
    def _open(self, host: Host, via: SSHConnection | None) -> SSHConnection:
        w = where(host)
        deadline = time.monotonic() + host.connect_timeout
        sock = self._socket(host, via, w)
        transport = paramiko.Transport(sock)
        try:
            self._handshake(host, transport, deadline, w)
            self._authenticate(host, transport, deadline, w)
        except BaseException:
            transport.close()
            raise
        # paramiko's transport thread wakes every 0.1 s (its socket timeout) only to notice close() and keepalives;
        # 500 idle connections would burn CPU on that. close() shuts the socket down, which wakes it anyway.
        transport.sock.settimeout(_IDLE_WAKEUP_S)
        log.debug("%s: connected in %.3f s", w, host.connect_timeout - (deadline - time.monotonic()))
        return SSHConnection(self, host, transport, via)

    def _socket(self, host: Host, via: SSHConnection | None, w: str) -> socket.socket | paramiko.Channel:
        if via is not None:
            try:
                return via.transport.open_channel(
                    "direct-tcpip", (host.address, host.port), ("127.0.0.1", 0), timeout=host.connect_timeout
                )
            except paramiko.ChannelException as e:
                raise Unreachable(f"{w}: jump host {via.where} cannot connect: {e.text or e.code}") from None
            except (paramiko.SSHException, EOFError, OSError) as e:
                raise Unreachable(f"{w}: through jump host {via.where}: {_reason(e)}") from None
        try:
            sock = socket.create_connection((host.address, host.port), timeout=host.connect_timeout)
        except socket.gaierror as e:
            raise Unreachable(f"{w}: cannot resolve {host.address}: {e.strerror}") from None
        except TimeoutError:
            raise Timeout(f"{w}: TCP connect timed out after {host.connect_timeout:g} s") from None
        except ConnectionRefusedError:
            raise Unreachable(f"{w}: connection refused (no sshd listening?)") from None
        except OSError as e:
            if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                raise Unreachable(f"{w}: no route to host") from None
            raise Unreachable(f"{w}: {e.strerror or e}") from None
        # Small request/response packets: Nagle would hold each one back for the previous ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _handshake(self, host: Host, t: paramiko.Transport, deadline: float, w: str) -> None:
        opts = t.get_security_options()
        opts.kex = [*self.kex_first, *(k for k in opts.kex if k not in self.kex_first)]
        opts.ciphers = [*self.ciphers_first, *(c for c in opts.ciphers if c not in self.ciphers_first)]
        candidates = list(dict.fromkeys([host_pattern(host.address, host.port), host_pattern(host.name, host.port)]))
        # known_hosts says "ssh-rsa" for an RSA key; the key exchange names the signature (rsa-sha2-*).
        wanted = [a for t in self.hostkeys.known_types(candidates) for a in _HOSTKEY_ALGS.get(t, (t,))]
        known = [k for k in dict.fromkeys(wanted) if k in opts.key_types]
        if known:  # as OpenSSH does: ask for a key type we hold, not one we would have to call "changed"
            opts.key_types = [*known, *(k for k in opts.key_types if k not in known)]
        remaining = max(deadline - time.monotonic(), 0.001)
        t.banner_timeout = remaining
        t.handshake_timeout = remaining
        done = threading.Event()
        try:
            t.start_client(event=done)  # async: paramiko's own wait loop would return silently on timeout
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise ConnectError(f"{w}: SSH handshake failed: {_reason(e)}") from None
        if not done.wait(remaining):
            raise Timeout(f"{w}: SSH handshake timed out after {host.connect_timeout:g} s")
        if not t.is_active() or not t.initial_kex_done:
            exc = t.get_exception()
            reason = _reason(exc) if exc is not None else "connection closed by the server"
            if _timed_out(exc, reason):
                raise Timeout(f"{w}: SSH handshake timed out after {host.connect_timeout:g} s")
            raise ConnectError(f"{w}: SSH handshake failed: {reason}")
        key = t.get_remote_server_key()
        self.hostkeys.verify(key, candidates, host.hostkey_policy, w)
        log.debug("%s: host key %s %s verified", w, key.get_name(), fingerprint(key))

    def _authenticate(self, host: Host, t: paramiko.Transport, deadline: float, w: str) -> None:
        user = host.user or _local_user()
        t.auth_timeout = max(deadline - time.monotonic(), 0.001)
        tried: list[str] = []
        keys: list[paramiko.PKey] = []
        if host.ssh_key:
            keys.append(self._load_key(host.ssh_key, w))
        elif self.use_agent and os.environ.get("SSH_AUTH_SOCK"):
            try:
                keys.extend(paramiko.Agent().get_keys())
            except paramiko.SSHException as e:
                log.debug("%s: ssh-agent unavailable: %s", w, e)
        for key in keys:
            try:
                t.auth_publickey(user, key)
            except paramiko.BadAuthenticationType as e:
                tried.append(f"publickey not allowed (server allows {', '.join(e.allowed_types)})")
                break
            except paramiko.AuthenticationException as e:
                if "timeout" in str(e).lower():
                    raise Timeout(f"{w}: authentication timed out after {host.connect_timeout:g} s") from None
                tried.append(f"key {fingerprint(key)} refused")
                continue
            except (paramiko.SSHException, EOFError, OSError) as e:
                raise ConnectError(f"{w}: connection lost during authentication: {_reason(e)}") from None
            if t.is_authenticated():
                return
        if host.password is not None:
            try:
                password = host.password.reveal()
            except SecretError as e:
                raise AuthError(f"{w}: {e}") from None
            try:
                t.auth_password(user, password)
            except paramiko.AuthenticationException as e:
                if "timeout" in str(e).lower():
                    raise Timeout(f"{w}: authentication timed out after {host.connect_timeout:g} s") from None
                tried.append(f"password {host.password.ref} refused")
            except (paramiko.SSHException, EOFError, OSError) as e:
                raise ConnectError(f"{w}: connection lost during authentication: {_reason(e)}") from None
            if t.is_authenticated():
                return
        if not tried:
            raise AuthError(f"{w}: no credentials for user {user}: set ssh_key or password, or use ssh-agent")
        raise AuthError(f"{w}: authentication failed for user {user}: {'; '.join(tried)}")

    def _load_key(self, path: str, w: str) -> paramiko.PKey:
        """Parse a private key once per pool (500 hosts share one key file; parsing costs CPU)."""
        with self._keys_lock:
            key = self._keys.get(path)
            if key is None:
                try:
                    key = paramiko.PKey.from_path(Path(path).expanduser())
                except paramiko.PasswordRequiredException:
                    raise AuthError(f"{w}: key {path} is encrypted; load it into ssh-agent instead") from None
                except (OSError, paramiko.SSHException, ValueError) as e:
                    raise AuthError(f"{w}: cannot load key {path}: {_reason(e)}") from None
                self._keys[path] = key
            return key


def _timed_out(exc: BaseException | None, reason: str) -> bool:
    """Whether a failed handshake ran out of time. paramiko's transport thread, whose banner wait ends with the
    connect deadline too, reports a silent server as SSHException("Error reading SSH protocol banner") raised from
    a socket.timeout: when that thread woke before ours, a silent server was an "error", not a "timeout" (2 of 11
    runs of test_handshake_timeout_on_a_silent_server on a loaded machine)."""
    if isinstance(exc, TimeoutError) or isinstance(getattr(exc, "__context__", None), TimeoutError):
        return True
    return "timed out" in reason.lower() or "timeout" in reason.lower()


def _reason(e: BaseException) -> str:
    """A one-line reason for a low-level exception."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _local_user() -> str:
    import getpass

    return getpass.getuser()
