"""Host-key verification: OpenSSH known_hosts files plus diag's trust-on-first-use store.

The policy: a key listed for the host is accepted; a host listed with other keys only is a CHANGED key and refused,
even under TOFU; an unlisted host is refused unless its inventory group opted into ``hostkey_policy: tofu``, in
which case the key is appended to the TOFU store and accepted. ``@revoked`` keys are always refused. Nothing is ever
accepted silently: TOFU logs a warning with the fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from diag.errors import HostKeyError, HostKeyUnknown

if TYPE_CHECKING:  # at run time the keys come from diag.remote.ssh, which imports paramiko its own way
    from paramiko import PKey

log = logging.getLogger(__name__)


def fingerprint(key: PKey) -> str:
    """OpenSSH's ``SHA256:<base64>`` fingerprint, as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def host_pattern(address: str, port: int) -> str:
    """How known_hosts names a host: ``addr`` on port 22, ``[addr]:port`` otherwise."""
    return address if port == 22 else f"[{address}]:{port}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One known_hosts line: who it matches, the key, and where it came from (for messages)."""

    names: tuple[str, ...]  # plain names or |1|salt|hash hashed names; negations already dropped
    key_type: str
    blob: bytes
    source: str  # FILE:LINE
    revoked: bool = False

    def matches(self, candidate: str) -> bool:
        for name in self.names:
            if name.startswith("|1|"):
                if _hashed_match(name, candidate):
                    return True
            elif name == candidate or (("*" in name or "?" in name) and _glob(name, candidate)):
                return True
        return False

    @property
    def fingerprint(self) -> str:
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")


def _hashed_match(hashed: str, candidate: str) -> bool:
    try:
        _, _, salt_b64, hash_b64 = hashed.split("|", 3)
        salt = base64.b64decode(salt_b64)
        want = base64.b64decode(hash_b64)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(hmac.new(salt, candidate.encode(), hashlib.sha1).digest(), want)


def _glob(pattern: str, name: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(name, pattern)


def parse_known_hosts(path: Path) -> list[Entry]:
    """Entries of one known_hosts file (missing file: none). ``@cert-authority`` lines are not supported: skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise HostKeyError(f"{path}: cannot read known_hosts: {e.strerror}") from None
    out: list[Entry] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        revoked = False
        if fields[0].startswith("@"):
            if fields[0] != "@revoked":
                continue
            revoked = True
            fields = fields[1:]
        if len(fields) < 3:
            log.warning("%s:%d: known_hosts line has fewer than 3 fields; ignored", path, lineno)
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except ValueError:
            log.warning("%s:%d: known_hosts key is not base64; ignored", path, lineno)
            continue
        names = tuple(n for n in fields[0].split(",") if not n.startswith("!"))
        out.append(Entry(names, fields[1], blob, f"{path}:{lineno}", revoked))
    return out


class HostKeyStore:
    """known_hosts files (read-only) plus the TOFU store (appended to); thread-safe, loaded once."""

    def __init__(self, known_hosts: list[Path], tofu_store: Path | None) -> None:
        self.known_hosts = known_hosts
        self.tofu_store = tofu_store
        self._lock = threading.Lock()
        self._entries: list[Entry] | None = None
        self._by_name: dict[str, list[Entry]] = {}
        self._patterns: list[Entry] = []  # hashed or wildcard names: must be tried one by one

    def _load(self) -> list[Entry]:
        if self._entries is None:
            entries: list[Entry] = []
            for p in self.known_hosts:
                entries += parse_known_hosts(p)
            if self.tofu_store is not None:
                entries += parse_known_hosts(self.tofu_store)
            self._entries = []
            for e in entries:
                self._add(e)
        return self._entries

    def _add(self, e: Entry) -> None:
        assert self._entries is not None
        self._entries.append(e)
        if any(n.startswith("|") or "*" in n or "?" in n for n in e.names):
            self._patterns.append(e)
        else:
            for n in e.names:
                self._by_name.setdefault(n, []).append(e)

    def _lookup(self, candidates: list[str]) -> list[Entry]:
        """Entries naming any of ``candidates``, in file order (a 10,000-line known_hosts stays cheap)."""
        self._load()
        found = {id(e): e for c in candidates for e in self._by_name.get(c, ())}
        found.update({id(e): e for e in self._patterns if any(map(e.matches, candidates))})
        order = {id(e): i for i, e in enumerate(self._entries or [])}
        return sorted(found.values(), key=lambda e: order[id(e)])

    def known_types(self, candidates: list[str]) -> list[str]:
        """Key types listed for the host, so the key exchange asks for a type we can verify."""
        with self._lock:
            return list(dict.fromkeys(e.key_type for e in self._lookup(candidates) if not e.revoked))

    def verify(self, key: PKey, candidates: list[str], policy: str, where: str) -> None:
        """Accept ``key`` for a host known as ``candidates`` or raise HostKeyError naming ``where`` (host:port)."""
        key_type, blob, fp = key.get_name(), key.asbytes(), fingerprint(key)
        with self._lock:
            entries = self._lookup(candidates)
            for e in self._load():
                if e.revoked and e.blob == blob:
                    raise HostKeyError(f"{where}: host key {key_type} {fp} is marked @revoked in {e.source}")
            listed = [e for e in entries if not e.revoked]
            if any(e.blob == blob for e in listed):
                return
            if listed:
                same_type = [e for e in listed if e.key_type == key_type] or listed
                old = same_type[0]
                raise HostKeyError(
                    f"{where}: host key CHANGED: server offers {key_type} {fp} but {old.source} has "
                    f"{old.key_type} {old.fingerprint}; possible man-in-the-middle. If the change is expected, "
                    f"remove the old entry (ssh-keygen -R {candidates[0]} -f {old.source.rsplit(':', 1)[0]})"
                )
            if policy != "tofu" or self.tofu_store is None:
                files = ", ".join(str(p) for p in self.known_hosts) or "no known_hosts file"
                raise HostKeyUnknown(
                    f"{where}: unknown host key {key_type} {fp} (not in {files}); verify it and add it to "
                    "known_hosts, or set hostkey_policy: tofu on the host's group to trust it on first use"
                )
            self._remember(candidates[0], key_type, blob)
        log.warning("%s: trusting new host key %s %s on first use (stored in %s)", where, key_type, fp, self.tofu_store)

    def _remember(self, name: str, key_type: str, blob: bytes) -> None:
        assert self.tofu_store is not None
        line = f"{name} {key_type} {base64.b64encode(blob).decode()}\n"
        try:
            self.tofu_store.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND and 0600: two diag runs may add keys at once, and the store is nobody else's business.
            fd = os.open(self.tofu_store, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "r+", encoding="utf-8") as f:
                lineno = sum(1 for _ in f)
                f.write(line)
        except OSError as e:
            raise HostKeyError(f"{name}: cannot store host key in {self.tofu_store}: {e.strerror}") from None
        self._add(Entry((name,), key_type, blob, f"{self.tofu_store}:{lineno + 1}"))
