"""The archive's hypothesis provider for the incident engine: "the configuration of this host changed just before".

:func:`register` adds :data:`PROVIDER` to ``diag.incidents.knowledge.PROVIDERS`` (the agent does so when incidents
are configured). For a new incident on host H at time T it asks :meth:`Archive.changes_before` for changes of H in
``[T - window, T]`` and proposes each as a hypothesis whose evidence is the masked diff excerpt. Scores: 0.9 for a
change noticed before the fault (it certainly came first), 0.6 for one noticed after it that may have come first,
+0.05 when the diff names the finding's subject (the interface that went down, the mount that filled). A verified
knowledge-base entry whose symptoms all match scores 1.0 and still ranks first; everything else ranks below.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from diag.model import Evidence

if TYPE_CHECKING:
    from diag.archive.store import Change
    from diag.incidents.knowledge import Facts, Hypothesis

log = logging.getLogger(__name__)

NAME = "config_archive"
SCORE_CERTAIN = 0.9
SCORE_POSSIBLE = 0.6
SUBJECT_BONUS = 0.05
MAX_CHANGES = 3


class ConfigChangeProvider:
    """Callable ``(facts) -> [Hypothesis]``; where the archive is and the window are set by :meth:`configure`."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.window = 3600.0
        self._lock = threading.Lock()

    def configure(self, root: Path, window: float) -> None:
        with self._lock:
            self.root, self.window = Path(root), float(window)

    def __call__(self, facts: Facts) -> list[Hypothesis]:
        root, window = self.root, self.window
        if root is None or not facts.host or not (root / "targets").is_dir():
            return []
        from diag.archive.store import Archive, ArchiveError

        when = facts.first_seen or time.time()
        try:
            changes = Archive(root).changes_before(facts.host, when, window)
        except ArchiveError:  # a host name the archive cannot hold: it has nothing for it
            return []
        return [hypothesis(c, facts, when) for c in changes[:MAX_CHANGES]]


def hypothesis(c: Change, facts: Facts, when: float) -> Hypothesis:
    """One change as a ranked hypothesis with its diff as evidence."""
    from diag.incidents.knowledge import Hypothesis

    score = SCORE_CERTAIN if c.before_fault else SCORE_POSSIBLE
    mins = max(0.0, when - c.noticed_at) / 60
    if c.before_fault:
        timing = f"noticed {mins:.0f} min before the fault, changed after {_hm(c.previous_at)}"
    else:
        timing = f"changed between {_hm(c.previous_at)} and {_hm(c.noticed_at)}: possibly before the fault"
    why = f"the archived {c.source} of {c.target} changed ({timing}; +{c.added} -{c.removed} lines)"
    if facts.subject and mentions(c.diff, facts.subject):
        score += SUBJECT_BONUS
        why += f"; the change mentions {facts.subject}"
    evidence = Evidence(
        "file",
        f"configuration diff {c.target}:{c.source} v{c.previous} -> v{c.version}",
        c.diff,
        {k: v for k, v in c.to_dict().items() if k != "diff"},
    )
    return Hypothesis(
        f"Configuration change on {c.target} ({c.source}, v{c.previous} -> v{c.version})",
        score,
        NAME,
        cause="config_change",
        why=why,
        instructions=f"Review the change: diag config diff {c.target}:{c.source} --from {c.previous} --to {c.version}",
        evidence=[evidence],
    )


def mentions(diff: str, subject: str) -> bool:
    """Does a changed line, or the section it sits in, name ``subject``? Sections are the unindented lines of
    a running config (``interface eth1`` holds `` shutdown``), as far as the diff's context shows them."""
    word = re.compile(rf"(?<![\w.-]){re.escape(subject)}(?![\w.-])")
    section = ""
    for line in diff.splitlines():
        if line.startswith(("+++", "---", "@@")):
            section = ""
            continue
        body = line[1:]
        if body and not body[0].isspace():
            section = body
        if line[:1] in "+-" and (word.search(body) or word.search(section)):
            return True
    return False


def _hm(ts: float) -> str:
    return time.strftime("%H:%M:%SZ", time.gmtime(ts))


PROVIDER = ConfigChangeProvider()


def register(root: Path, window: float) -> None:
    """Point the provider at ``root`` (``DATA/archive``) and add it to the incident engine's providers (once)."""
    from diag.incidents.knowledge import PROVIDERS

    PROVIDER.configure(root, window)
    if NAME not in PROVIDERS:
        PROVIDERS.add(NAME, PROVIDER)
