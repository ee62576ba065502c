"""The versioned store: content-addressed snapshots with a per-source version log, in ``<data>/archive``.

Layout (docs/config-archive.md has the measured reason for plain files over a git repository)::

    archive/mask.key                                  the key of the masked-secret tags (0600)
    archive/objects/ab/cdef0123...                    a masked text, named by its SHA-256 (written once)
    archive/targets/<target>/<source>.jsonl           one line per version: version, fetched_at, sha256, size
    archive/targets/<target>/<source>.status.json     the last fetch attempt: ok/unchanged/error and the reason

``<source>`` is ``running-config`` or a host file path, percent-encoded into one file name. A snapshot whose
content equals the latest version makes no new version (only the status records that it was checked). Writers
(the agent's schedule and ``diag config fetch`` at the same time) serialise per source with ``flock``;
readers need no lock because a version line is appended only after its object is in place.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import hashlib
import itertools
import json
import os
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from diag.archive.names import RUNNING_CONFIG, ArchiveError, check_source, check_target

__all__ = [
    "RUNNING_CONFIG",
    "Archive",
    "ArchiveError",
    "Change",
    "FetchStatus",
    "Version",
    "check_source",
    "check_target",
]

#: Lines of a diff excerpt attached to an incident (whole diffs stay in the archive).
EXCERPT_LINES = 60
EXCERPT_CHARS = 4000

FetchState = Literal["new", "changed", "unchanged", "error"]


@dataclass(frozen=True, slots=True)
class Version:
    """One stored version of one source of one target."""

    target: str
    source: str
    version: int
    fetched_at: float
    sha256: str
    size: int
    lines: int
    #: The last time the previous version was still seen (a fetch that found it unchanged): the change that made
    #: this version happened after it. None for the first version.
    prev_seen_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fetched_at_iso": iso(self.fetched_at)}


@dataclass(frozen=True, slots=True)
class FetchStatus:
    """The last fetch attempt of one source: what happened, when, and the one-line reason of a failure."""

    target: str
    source: str
    state: FetchState
    at: float
    version: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.state != "error"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at_iso": iso(self.at)}


@dataclass(frozen=True, slots=True)
class Change:
    """A configuration change: version ``version`` differs from ``previous``.

    The change happened somewhere between ``previous_at`` (the last fetch that still saw the old text; the
    previous version's time when no status says later) and ``noticed_at`` (the fetch that saw the new one).
    ``diff`` is a capped excerpt of the unified diff, already masked.
    """

    target: str
    source: str
    version: int
    previous: int
    previous_at: float
    noticed_at: float
    added: int
    removed: int
    diff: str
    before_fault: bool  # noticed before the fault: certainly before it, not only possibly

    def summary(self) -> str:
        return (
            f"{self.target} {self.source} changed (v{self.previous} -> v{self.version}, +{self.added} -{self.removed}"
            f" lines) between {iso(self.previous_at)} and {iso(self.noticed_at)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary()}


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _source_file(source: str) -> str:
    return urllib.parse.quote(source, safe="") if source != RUNNING_CONFIG else RUNNING_CONFIG


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Archive:
    """The store under ``root`` (normally ``<data>/archive``); safe to share between threads and processes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ---- paths
    def _dir(self, target: str) -> Path:
        return self.root / "targets" / check_target(target)

    def _log(self, target: str, source: str) -> Path:
        return self._dir(target) / f"{_source_file(check_source(source))}.jsonl"

    def _status(self, target: str, source: str) -> Path:
        return self._dir(target) / f"{_source_file(check_source(source))}.status.json"

    def _object(self, sha: str) -> Path:
        return self.root / "objects" / sha[:2] / sha[2:]

    @contextlib.contextmanager
    def _locked(self, target: str, source: str) -> Iterator[None]:
        d = self._dir(target)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f".{_source_file(source)}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # ---- writing
    def put(self, target: str, source: str, text: str, at: float | None = None) -> tuple[Version, bool]:
        """Store ``text`` (already masked) as the newest version unless it equals the latest one.

        Returns (the version that holds this text, whether it is new).
        """
        at = time.time() if at is None else at
        data = text.encode("utf-8", "surrogateescape")
        sha = hashlib.sha256(data).hexdigest()
        with self._locked(target, source):
            existing = self.versions(target, source)
            latest = existing[-1] if existing else None
            if latest is not None and latest.sha256 == sha:
                self._set_status(FetchStatus(target, source, "unchanged", at, latest.version))
                return latest, False
            obj = self._object(sha)
            if not obj.exists():
                obj.parent.mkdir(parents=True, exist_ok=True)
                _write_atomic(obj, data)
            prev_seen = None
            if latest is not None:
                st = self._read_status(self._status(target, source)) or {}
                seen = st.get("last_ok_at") if st.get("version") == latest.version else None
                prev_seen = max(float(seen), latest.fetched_at) if seen is not None else latest.fetched_at
            v = Version(
                target, source, (latest.version + 1) if latest else 1, at, sha, len(data), text.count("\n"), prev_seen
            )
            fields = ("version", "fetched_at", "sha256", "size", "lines", "prev_seen_at")
            line = json.dumps({k: getattr(v, k) for k in fields})
            with self._log(target, source).open("a", encoding="utf-8") as f:
                f.write(line + "\n")
            self._set_status(FetchStatus(target, source, "changed" if latest else "new", at, v.version))
            return v, True

    def record_error(self, target: str, source: str, reason: str, at: float | None = None) -> FetchStatus:
        """Remember that fetching ``source`` failed (the last good version stays the latest)."""
        at = time.time() if at is None else at
        versions = self.versions(target, source)
        st = FetchStatus(target, source, "error", at, versions[-1].version if versions else None, reason)
        with self._locked(target, source):
            self._set_status(st)
        return st

    def _set_status(self, st: FetchStatus) -> None:
        path = self._status(st.target, st.source)
        prev = self._read_status(path)
        doc = asdict(st)
        # The last time the content was seen unchanged bounds when a later change can have happened.
        doc["last_ok_at"] = st.at if st.ok else (prev or {}).get("last_ok_at")
        _write_atomic(path, json.dumps(doc).encode())

    @staticmethod
    def _read_status(path: Path) -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return doc
        except (OSError, ValueError):
            return None

    # ---- reading
    def targets(self) -> list[str]:
        d = self.root / "targets"
        return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []

    def sources(self, target: str) -> list[str]:
        """Sources of ``target`` with at least one version or fetch attempt."""
        d = self._dir(target)
        if not d.is_dir():
            return []
        names = {p.name.removesuffix(".status.json").removesuffix(".jsonl") for p in d.iterdir()}
        return sorted(urllib.parse.unquote(n) for n in names if not n.startswith("."))

    def versions(self, target: str, source: str) -> list[Version]:
        """Every version of ``source`` of ``target``, oldest first."""
        path = self._log(target, source)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                seen = d.get("prev_seen_at")
                out.append(
                    Version(
                        target,
                        source,
                        int(d["version"]),
                        float(d["fetched_at"]),
                        str(d["sha256"]),
                        int(d["size"]),
                        int(d["lines"]),
                        float(seen) if seen is not None else None,
                    )
                )
            except (ValueError, KeyError, TypeError):
                # A line cut by a crash mid-write: skip it rather than make the whole history unreadable.
                continue
        return out

    def status(self, target: str, source: str) -> FetchStatus | None:
        d = self._read_status(self._status(target, source))
        if d is None:
            return None
        return FetchStatus(d["target"], d["source"], d["state"], d["at"], d.get("version"), d.get("reason"))

    def get(self, target: str, source: str, version: int | None = None) -> Version:
        """A version by number (negative counts from the latest: -1 is the latest, -2 the one before)."""
        versions = self.versions(target, source)
        if not versions:
            raise ArchiveError(f"{target} {source}: not in the archive (run 'diag config fetch {target}' first)")
        if version is None:
            return versions[-1]
        if version < 0 and -version <= len(versions):
            return versions[version]
        for v in versions:
            if v.version == version:
                return v
        raise ArchiveError(f"{target} {source}: no version {version} (there are 1..{versions[-1].version})")

    def read(self, v: Version) -> str:
        try:
            return self._object(v.sha256).read_bytes().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            raise ArchiveError(f"{v.target} {v.source} v{v.version}: object {v.sha256} is missing") from None

    # ---- comparing
    def diff(self, old: Version, new: Version, context: int = 3) -> list[str]:
        """Unified diff lines (without line ends) from ``old`` to ``new``."""
        a, b = self.read(old).splitlines(), self.read(new).splitlines()
        return list(
            difflib.unified_diff(
                a,
                b,
                f"{old.target}:{old.source}@v{old.version}",
                f"{new.target}:{new.source}@v{new.version}",
                iso(old.fetched_at),
                iso(new.fetched_at),
                n=context,
                lineterm="",
            )
        )

    def changes_before(self, target: str, when: float, window: float) -> list[Change]:
        """Configuration changes of ``target`` (every source) that may have happened in ``[when - window, when]``.

        A change counts when the interval in which it happened (between the last fetch that saw the old text and
        the fetch that saw the new one) overlaps the window. Newest first; ``before_fault`` tells the ones noticed
        before ``when`` (certainly before the fault) from those noticed after it (possibly before).
        """
        check_target(target)
        start = when - window
        out: list[Change] = []
        for source in self.sources(target):
            versions = self.versions(target, source)
            for prev, cur in itertools.pairwise(versions):
                # The change happened after the old text was last seen and before the new one was fetched.
                lo, hi = cur.prev_seen_at if cur.prev_seen_at is not None else prev.fetched_at, cur.fetched_at
                if hi < start or lo > when:
                    continue
                lines = self.diff(prev, cur)
                added = sum(1 for x in lines if x.startswith("+") and not x.startswith("+++"))
                removed = sum(1 for x in lines if x.startswith("-") and not x.startswith("---"))
                out.append(
                    Change(
                        target,
                        source,
                        cur.version,
                        prev.version,
                        lo,
                        hi,
                        added,
                        removed,
                        excerpt(lines),
                        hi <= when,
                    )
                )
        out.sort(key=lambda c: c.noticed_at, reverse=True)
        return out


def excerpt(lines: list[str], max_lines: int = EXCERPT_LINES, max_chars: int = EXCERPT_CHARS) -> str:
    """The first lines of a diff, capped, with a note of what was left out."""
    kept: list[str] = []
    size = 0
    for line in lines[:max_lines]:
        if size + len(line) + 1 > max_chars:
            break
        kept.append(line)
        size += len(line) + 1
    if len(kept) < len(lines):
        kept.append(f"... ({len(lines) - len(kept)} more diff lines in the archive)")
    return "\n".join(kept)
