"""The contract between the incident outbox and a ticket system: what a ticket holds and what a backend does.

Every operation is keyed by the incident's fingerprint so that a retry after a crash finds the ticket it
created before instead of creating a second one (search before create). Backends raise
:class:`TicketUnavailable` for conditions worth retrying (connection refused, 5xx, timeouts) and
:class:`TicketRejected` for ones that a retry cannot fix (401, 422 with a reason); the outbox backs off on
the first and parks the delivery with the reason on the second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from diag.errors import DiagError
from diag.model import Severity
from diag.registry import Registry

log = logging.getLogger(__name__)


class TicketError(DiagError):
    """A ticket system did not do what was asked; the message names the backend and the target."""


class TicketUnavailable(TicketError):
    """Temporary: the ticket system is down, slow or overloaded. Retry later with backoff."""


class TicketRejected(TicketError):
    """Permanent: the ticket system refused the request (credentials, validation). Retrying will not help."""


@dataclass(slots=True)
class Attachment:
    """A file on the ticket, e.g. the full evidence bundle as JSON."""

    filename: str
    content: bytes
    content_type: str = "application/json"


@dataclass(slots=True)
class TicketDraft:
    """Everything a backend needs to open a ticket for one incident; already masked of secrets."""

    fingerprint: str
    subject: str
    #: Plain professional text (Markdown allowed): summary, host, first/last seen, classification, line,
    #: SLA due times, hypotheses, evidence excerpts and links.
    description: str
    host: str
    severity: Severity
    priority: str = "normal"  # low | normal | high | urgent
    line: str = "L1"  # L1 | L2 | L3
    classification: str = "atypical"  # typical | atypical
    attachments: list[Attachment] = field(default_factory=list)
    #: Extra backend-neutral fields (category, kb id, due times as ISO 8601) a backend may map.
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class TicketRef:
    """Where a ticket lives: the backend's name, its id there, and a link a person can open."""

    backend: str
    id: str
    url: str | None = None


class TicketBackend(Protocol):
    """What every ticket system offers to the outbox. All methods are safe to call again after a crash."""

    name: str

    def find(self, fingerprint: str) -> TicketRef | None:
        """The open or closed ticket carrying this fingerprint, or None. Must not return unrelated tickets."""
        ...

    def create(self, draft: TicketDraft) -> TicketRef:
        """Open a ticket. Callers run :meth:`find` first; backends that can, also guard against duplicates."""
        ...

    def add_note(self, ref: TicketRef, text: str, attachments: Sequence[Attachment] = ()) -> None:
        """Add a comment (a repeat, new evidence, an SLA breach, an escalation) to the ticket."""
        ...

    def close(self, ref: TicketRef, note: str) -> None:
        """Close the ticket with a note saying why (the verifying re-check that found it cleared)."""
        ...

    def reopen(self, ref: TicketRef, note: str) -> None:
        """Reopen a closed ticket because the condition came back within the reopen window."""
        ...


#: A factory builds a backend from its config section (secrets given by reference, already resolved by the caller
#: through :mod:`diag.secrets`).
BackendFactory = Callable[[Mapping[str, Any]], TicketBackend]

BACKENDS: Registry[BackendFactory] = Registry("ticket_backends")


def oldest(system: str, fingerprint: str, matches: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """Of the tickets a search found that really carry ``fingerprint`` (oldest first), the one to use.

    Two tickets for one fingerprint mean someone (or an older diag) created a duplicate: the oldest stays the
    incident's ticket, so notes keep landing where people already look, and the duplicate is said in the log.
    """
    if not matches:
        return None
    if len(matches) > 1:
        log.warning("%s: %d tickets carry fingerprint %s; using the oldest, #%s",
                    system, len(matches), fingerprint, matches[0]["id"])  # fmt: skip
    return matches[0]
