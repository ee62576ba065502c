"""A ticket filed by a person, as every intake (Redmine, RT, an IMAP mailbox) hands it to triage."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class HumanTicket:
    """What a person wrote, where, and who they are; ``text`` is already made safe by :mod:`diag.line1.text`."""

    desk: str  # the intake's name: redmine, rt, imap
    id: str  # the ticket's id in its system (for e-mail: the Message-ID)
    subject: str
    text: str  # the body as plain text (HTML converted, size capped)
    requester: str  # login or e-mail address of the person who filed it
    filed_at: float  # when the person filed it (Unix seconds, the ticket system's clock)
    url: str | None = None
    fields: dict[str, str] = field(default_factory=dict)  # custom fields, e.g. {"host": "web-03"}
    refused: str | None = None  # why the text may not drive automation (hostile, too long); None when fine

    @property
    def key(self) -> str:
        return f"{self.desk}:{self.id}"


@dataclass(slots=True)
class Reply:
    """A message added to a ticket after diag answered it (a reply of the requester reopens it)."""

    author: str
    text: str
    at: float
    by_requester: bool
