"""The e-mail desk: mail to the help-desk mailbox (IMAP) is a ticket; answers go back to the sender by SMTP.

A new (unseen) message is a person's ticket; its id is a digest of its Message-ID. It is marked seen once diag
answered it, so a message the answer could not be sent for is read again on the next poll. The answer is a reply
(``In-Reply-To``/``References`` the person's message, subject ``Re: [line1:ID] ...``) with the evidence attached and
``X-Line1-Classification``/``-Line``/``-Respond-By``/``-KB`` headers; an atypical ticket is also forwarded to the
line-2 address (``line2``) with the person's message and the evidence (the context package). A message that answers
one of diag's (its ``In-Reply-To``/``References`` name a ``<line1.ID...>`` Message-ID, or its subject carries the tag)
is a reply to that ticket, not a new one; from the requester after a resolution it reopens the ticket. Mail diag
sent itself, auto-replies (``Auto-Submitted``, ``Precedence: bulk``, ``X-Autoreply``...) and bounces (null sender,
MAILER-DAEMON or postmaster, ``multipart/report``) are skipped: answering a robot can start a mail loop.
HTML-only mail is read as its visible text.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import hashlib
import imaplib
import logging
import re
import ssl
import threading
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, parseaddr, parsedate_to_datetime
from typing import Any, Literal

import msgspec

from diag.errors import ConfigError
from diag.exporters.tickets.base import TicketRejected, TicketUnavailable
from diag.exporters.tickets.email import EmailBackend
from diag.exporters.tickets.email import Options as SmtpOptions
from diag.exporters.tickets.options import parse, secret
from diag.line1 import text as ttext
from diag.line1.model import HumanTicket, Reply
from diag.line1.note import Note

log = logging.getLogger(__name__)
NAME = "imap"
_OURS = re.compile(r"<line1\.([0-9a-f]{16})\.")


class SmtpSpec(msgspec.Struct, forbid_unknown_fields=True, rename={"from_addr": "from"}):
    host: str
    from_addr: str
    port: int = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = None
    domain: str | None = None
    timeout: float = 10.0
    ca_file: str | None = None
    verify_tls: bool = True


class Options(msgspec.Struct, forbid_unknown_fields=True):
    host: str
    username: str
    password: str  # a reference: env:NAME or file:PATH
    smtp: SmtpSpec
    port: int = 143
    security: Literal["starttls", "tls", "none"] = "starttls"
    mailbox: str = "INBOX"
    line2: list[str] = []  # where atypical tickets are forwarded with the context package
    subject_tag: str = "line1"
    timeout: float = 10.0
    ca_file: str | None = None
    verify_tls: bool = True
    max_text: int = ttext.MAX_TEXT
    max_message: int = 4 * 1024 * 1024  # bytes of one message fetched; bigger ones are refused unread


#: ``Precedence`` values of mail no responder should answer (RFC 3834 section 2 and common practice: vacation(1),
#: Exim's autoreply examples, RT): list and bulk mail, and other robots' auto-replies.
_PRECEDENCE = ("bulk", "junk", "list", "auto_reply")
#: Sender local parts of delivery reports: Exim/Postfix send bounces as MAILER-DAEMON, Exchange as postmaster.
_REPORTERS = ("mailer-daemon", "postmaster")


def automatic(msg: EmailMessage, sender: str) -> bool:
    """Is ``msg`` written by a machine (auto-reply, bounce, delivery or read report) rather than a person?

    ``Auto-Submitted`` other than ``no`` (RFC 3834) is not enough on its own: many vacation responders send only
    ``Precedence: bulk`` or ``X-Autoreply``, and a delivery report is known by its null envelope sender (the
    ``Return-Path: <>`` the delivering server adds), its sender or its ``multipart/report`` type. Answering one
    of them reaches a robot that may answer again (a loop), or reopens a ticket on a vacation notice.
    """
    if str(msg.get("Auto-Submitted", "no")).strip().lower() != "no":
        return True
    if str(msg.get("Return-Path", "")).strip() == "<>" or msg.get_content_type() == "multipart/report":
        return True
    if str(msg.get("Precedence", "")).strip().lower() in _PRECEDENCE:
        return True
    if msg.get("X-Autoreply") is not None or msg.get("X-Autorespond") is not None:
        return True
    local = sender.partition("@")[0]
    return local in _REPORTERS or "mailer-daemon" in local


def _tid(message_id: str) -> str:
    return hashlib.sha256(message_id.strip().encode()).hexdigest()[:16]


def _body(msg: EmailMessage) -> tuple[str, bool]:
    """The text the person wrote: text/plain preferred, else HTML (then converted); attachments are not read."""
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return "", False
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset or a broken transfer encoding
        content = part.get_payload(decode=True) or b""
        content = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
    return str(content), part.get_content_subtype() == "html"


class ImapDesk:
    """Reads the help-desk mailbox and answers by mail."""

    name = NAME

    def __init__(self, options: Options) -> None:
        if options.security == "none":
            log.warning("imap desk %s: security none sends the mailbox password in clear", options.host)
        self.options = options
        self._password = secret(NAME, "password", options.password) or ""
        s = options.smtp
        self._smtp = SmtpOptions(host=s.host, from_addr=s.from_addr, to=["-"], port=s.port, security=s.security,
                                 username=s.username, password=s.password, domain=s.domain, timeout=s.timeout,
                                 ca_file=s.ca_file, verify_tls=s.verify_tls)
        self.domain = s.domain or s.from_addr.rpartition("@")[2] or "localhost"
        self._known: dict[str, dict[str, str]] = {}  # ticket id -> requester, subject, message id, uid
        #: the watcher's ledger row of a ticket by id (set by diag.services.triage.build): who filed it
        self.ledger_row: Callable[[str], Mapping[str, Any] | None] | None = None
        self._replies: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()

    # ---- IMAP
    def _connect(self) -> imaplib.IMAP4:
        o = self.options
        where = f"imap {o.host}:{o.port}"
        try:
            ctx = ssl.create_default_context(cafile=o.ca_file)
            if not o.verify_tls:
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            if o.security == "tls":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(o.host, o.port, ssl_context=ctx, timeout=o.timeout)
            else:
                conn = imaplib.IMAP4(o.host, o.port, timeout=o.timeout)
                if o.security == "starttls":
                    conn.starttls(ctx)
            conn.login(o.username, self._password)
            typ, _ = conn.select(o.mailbox)
            if typ != "OK":
                raise TicketRejected(f"{where}: no mailbox {o.mailbox!r}")
            return conn
        except ssl.SSLCertVerificationError as e:
            raise TicketRejected(f"{where}: TLS certificate not trusted: {e.verify_message}") from None
        except imaplib.IMAP4.error as e:
            raise TicketRejected(f"{where}: {' '.join(str(e).split())[:200]} (user {o.username!r})") from None
        except OSError as e:
            raise TicketUnavailable(f"{where}: {e or type(e).__name__}") from None

    def poll(self, seen: Callable[[str], bool]) -> list[HumanTicket]:
        o = self.options
        conn = self._connect()
        out: list[HumanTicket] = []
        try:
            typ, data = conn.uid("SEARCH", None, "UNSEEN")  # type: ignore[arg-type]
            uids = [u.decode() for u in data[0].split()] if typ == "OK" and data and data[0] else []
            for uid in uids:
                typ, sized = conn.uid("FETCH", uid, "(RFC822.SIZE)")
                m = re.search(rb"RFC822\.SIZE (\d+)", sized[0] if sized and isinstance(sized[0], bytes) else b"")
                if m and int(m.group(1)) > o.max_message:
                    head = self._fetch(conn, uid, "BODY.PEEK[HEADER]")
                    t = self._ticket(uid, head, seen, refused=f"the message is larger than "
                                                               f"{o.max_message // 1048576} MiB")
                    if t:
                        out.append(t)
                    continue
                msg = self._fetch(conn, uid, "BODY.PEEK[]")
                if msg is None:
                    continue
                t = self._ticket(uid, msg, seen)
                if t is not None:
                    out.append(t)
        except (imaplib.IMAP4.error, OSError) as e:
            raise TicketUnavailable(f"imap {o.host}:{o.port}: {e}") from None
        finally:
            _logout(conn)
        return out

    @staticmethod
    def _fetch(conn: imaplib.IMAP4, uid: str, what: str) -> EmailMessage | None:
        typ, data = conn.uid("FETCH", uid, f"({what})")
        raw = next((d[1] for d in data or () if isinstance(d, tuple)), None)
        if typ != "OK" or not isinstance(raw, bytes):
            return None
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        return msg if isinstance(msg, EmailMessage) else None

    def _ticket(self, uid: str, msg: EmailMessage | None, seen: Callable[[str], bool],
                refused: str | None = None) -> HumanTicket | None:
        if msg is None:
            return None
        o = self.options
        sender = parseaddr(str(msg.get("From", "")))[1].lower()
        message_id = str(msg.get("Message-ID", "")).strip() or f"<uid-{uid}@{o.host}>"
        subject = str(msg.get("Subject", ""))
        if sender == self._smtp.from_addr.lower() or not sender or automatic(msg, sender):
            self._mark_seen(uid)
            return None  # our own mail, auto-replies, bounces: answering them can start a mail loop
        refs = f"{msg.get('In-Reply-To', '')} {msg.get('References', '')}"
        ours = _OURS.search(refs) or re.search(rf"\[{re.escape(o.subject_tag)}:([0-9a-f]{{16}})\]", subject)
        body, is_html = _body(msg) if refused is None else ("", False)
        if ours:
            tid = ours.group(1)
            text = ttext.html_to_text(body) if is_html else body
            # who filed it: from memory, or after a restart from the watcher's ledger; never the one who replies
            # (anyone holding the tag would reopen the ticket and be sent its answers)
            known = self._known.get(tid) or self._recall(tid, message_id)
            by_requester = bool(known) and known.get("requester") == sender
            with self._lock:
                self._replies.setdefault(tid, []).append(Reply(sender, text[:2000], _date(msg), by_requester))
                if known:
                    self._known.setdefault(tid, known)
            self._mark_seen(uid)
            return None
        tid = _tid(message_id)
        if seen(tid):  # answered before, but marking it seen did not stick
            self._mark_seen(uid)
            return None
        subject, text, why = ttext.prepare(subject, body, is_html=is_html, limit=o.max_text)
        with self._lock:
            self._known[tid] = {"requester": sender, "subject": subject, "message_id": message_id, "uid": uid,
                                "text": text[:20000]}
        return HumanTicket(NAME, tid, subject, text, sender, _date(msg), None, {}, refused or why)

    def _recall(self, tid: str, message_id: str) -> dict[str, str]:
        """What the ledger knows of ticket ``tid`` (this desk's memory is gone after a restart); {} if nothing."""
        row = self.ledger_row(tid) if self.ledger_row is not None else None
        if not row:
            return {}
        return {"requester": str(row["requester"]), "subject": str(row["subject"]), "message_id": message_id}

    def _mark_seen(self, uid: str) -> None:
        try:
            conn = self._connect()
        except (TicketRejected, TicketUnavailable) as e:
            log.warning("imap: cannot mark message %s seen: %s", uid, e)
            return
        try:
            conn.uid("STORE", uid, "+FLAGS", "(\\Seen)")
        finally:
            _logout(conn)

    # ---- answers
    def respond(self, ticket_id: str, note: Note) -> None:
        known = self._known.get(ticket_id)
        if known is None:
            raise TicketRejected(f"imap: ticket {ticket_id} is not known to this desk (restarted since it came in)")
        msg = EmailMessage()
        msg["From"] = self._smtp.from_addr
        msg["To"] = known["requester"]
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        n = len(self._replies.get(ticket_id, ())) + int(known.get("answers", "0"))
        msg["Message-ID"] = f"<line1.{ticket_id}.{note.state}.{n}@{self.domain}>"
        msg["In-Reply-To"] = known["message_id"]
        msg["References"] = known["message_id"]
        subject = re.sub(r"^(re:\s*)+", "", known["subject"], flags=re.I)
        msg["Subject"] = f"Re: [{self.options.subject_tag}:{ticket_id}] {subject}"[:250]
        msg["X-Line1-Classification"] = note.classification
        msg["X-Line1-Line"] = note.line
        msg["X-Line1-State"] = note.state
        if note.due_iso:
            msg["X-Line1-Respond-By"] = note.due_iso
        if note.kb_entry:
            msg["X-Line1-KB"] = note.kb_entry
        msg["Auto-Submitted"] = "auto-replied"  # RFC 3834: no vacation replies to this
        msg.set_content(note.text)
        EmailBackend._attach(msg, note.attachments)
        self._send(msg, [known["requester"]], f"answer {ticket_id}")
        known["answers"] = str(int(known.get("answers", "0")) + 1)
        if "uid" in known:
            self._mark_seen(known.pop("uid"))
        if note.line != "L1" and self.options.line2 and note.state in ("escalated", "reopened"):
            fwd = EmailMessage()
            fwd["From"] = self._smtp.from_addr
            fwd["To"] = ", ".join(self.options.line2)
            fwd["Date"] = formatdate(localtime=False, usegmt=True)
            fwd["Message-ID"] = f"<line1.{ticket_id}.line2.{n}@{self.domain}>"
            fwd["Subject"] = f"[{self.options.subject_tag}:{ticket_id}] line 2: {subject}"[:250]
            fwd["Reply-To"] = known["requester"]
            fwd["Auto-Submitted"] = "auto-generated"
            fwd.set_content(f"{note.text}\n\n--- the request as {known['requester']} wrote it ---\n"
                            f"{known.get('text', '')}")
            EmailBackend._attach(fwd, note.attachments)
            self._send(fwd, list(self.options.line2), f"forward {ticket_id} to line 2")

    def _send(self, msg: EmailMessage, to: list[str], what: str) -> None:
        opts = msgspec.structs.replace(self._smtp, to=to)
        try:
            EmailBackend(opts)._send(msg, what)
        except ConfigError as e:
            raise TicketRejected(str(e)) from None

    def replies(self, ticket_id: str, since: float) -> list[Reply]:
        with self._lock:
            return [r for r in self._replies.pop(ticket_id, []) if r.at >= since - 1]


def _date(msg: EmailMessage) -> float:
    import time

    try:
        return parsedate_to_datetime(str(msg.get("Date"))).timestamp()
    except (TypeError, ValueError, IndexError):
        return time.time()


def _logout(conn: imaplib.IMAP4) -> None:
    with contextlib.suppress(imaplib.IMAP4.error, OSError):  # the answer is sent; a failed goodbye changes nothing
        conn.logout()


def factory(config: Mapping[str, Any]) -> ImapDesk:
    o = parse("line1 imap desk", config, Options)
    if o.smtp.username and o.smtp.security == "none":
        raise ConfigError("line1 imap desk: smtp username/password need security: starttls or tls")
    return ImapDesk(o)
