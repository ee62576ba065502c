"""E-mail ticket backend (SMTP): the ticket is a mail thread, one per fingerprint, threaded by Message-ID.

::

    email:
      host: smtp.example.org
      port: 587
      security: starttls                 # starttls (default) | tls (SMTPS, port 465) | none
      username: diag
      password: file:/etc/diag/smtp.pass
      from: diag@example.org
      to: [support@example.org]

The opening message has the Message-ID ``<diag.FP@DOMAIN>``: derived from the fingerprint, so a retry after a
crash sends the *same* Message-ID and mail clients and ticket gateways can drop the copy. Notes, closing and
reopening reply to it (``In-Reply-To`` and ``References`` = that Message-ID) with Message-IDs derived from the
fingerprint, the event and the text, so they thread under the ticket in any mail client, and every subject
carries the tag ``[diag:FP]`` that e-mail-driven ticket systems key on. Mail cannot be searched: ``find``
returns None. With ``security: starttls`` a server that does not offer STARTTLS is refused rather than sent
the evidence (and the password) in clear.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Literal

import msgspec

from diag.errors import ConfigError
from diag.exporters.tickets import text as tx
from diag.exporters.tickets.base import (
    BACKENDS,
    Attachment,
    TicketDraft,
    TicketRef,
    TicketRejected,
    TicketUnavailable,
)
from diag.exporters.tickets.options import parse, secret

log = logging.getLogger(__name__)

NAME = "email"


class Options(msgspec.Struct, forbid_unknown_fields=True, rename={"from_addr": "from"}):
    host: str
    from_addr: str
    to: list[str]
    port: int = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = None
    cc: list[str] = []
    #: the right-hand side of Message-IDs and the EHLO name; default: the domain of ``from``
    domain: str | None = None
    subject_tag: str = "diag"
    timeout: float = 10.0
    ca_file: str | None = None
    verify_tls: bool = True


def _digest(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _smtp_code_error(what: str, code: int, message: bytes | str) -> Exception:
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    detail = f"{what}: SMTP {code} {' '.join(text.split())}"[:400]
    # 4xx is the server's "try again later"; 5xx is final
    return TicketUnavailable(detail) if 400 <= code < 500 else TicketRejected(detail)


class EmailBackend:
    """The :class:`~diag.exporters.tickets.base.TicketBackend` that mails tickets."""

    name = NAME

    def __init__(self, options: Options) -> None:
        if not options.to:
            raise TicketRejected("ticket backend email: 'to' needs at least one address")
        if options.username and options.security == "none":
            # AUTH PLAIN/LOGIN over a clear connection hands the password to anyone on the path
            raise ConfigError("ticket backend email: username/password need security: starttls or tls")
        self.options = options
        self._password = secret(NAME, "password", options.password)
        self.domain = options.domain or options.from_addr.rpartition("@")[2] or "localhost"

    # ---- the TicketBackend protocol ----
    def find(self, fingerprint: str) -> TicketRef | None:
        return None  # a mailbox cannot be searched from here; the Message-ID lets receivers drop a resend

    def create(self, draft: TicketDraft) -> TicketRef:
        msg = self._message("open", draft.fingerprint, self._root_id(draft.fingerprint), None)
        msg["Subject"] = f"{self._tag(draft.fingerprint)} {tx.one_line(draft.subject)}"
        msg["X-Diag-Host"] = tx.one_line(draft.host)
        msg["X-Diag-Severity"] = str(draft.severity)
        msg["X-Diag-Priority"] = draft.priority
        msg["X-Diag-Line"] = draft.line
        msg["X-Diag-Classification"] = draft.classification
        self._body(msg, draft.description)
        self._attach(msg, draft.attachments)
        self._send(msg, f"open {draft.fingerprint}")
        return TicketRef(NAME, draft.fingerprint, None)

    def add_note(self, ref: TicketRef, text: str, attachments: Sequence[Attachment] = ()) -> None:
        self._reply(ref, "note", "", text, attachments)

    def close(self, ref: TicketRef, note: str) -> None:
        self._reply(ref, "close", "Closed: ", note, ())

    def reopen(self, ref: TicketRef, note: str) -> None:
        self._reply(ref, "reopen", "Reopened: ", note, ())

    # ---- helpers ----
    def _reply(self, ref: TicketRef, event: str, prefix: str, text: str, attachments: Sequence[Attachment]) -> None:
        fingerprint = ref.id
        msg_id = f"<diag.{fingerprint}.{event}.{_digest(text)}@{self.domain}>"
        msg = self._message(event, fingerprint, msg_id, self._root_id(fingerprint))
        plain = tx.md_plain(text)
        first_line = next((tx.one_line(line) for line in plain.splitlines() if line.strip()), event)
        msg["Subject"] = f"Re: {self._tag(fingerprint)} {prefix}{first_line[:120]}"
        self._body(msg, text)
        self._attach(msg, attachments)
        self._send(msg, f"{event} {fingerprint}")

    def _message(self, event: str, fingerprint: str, msg_id: str, parent: str | None) -> EmailMessage:
        o = self.options
        msg = EmailMessage()
        msg["From"] = o.from_addr
        msg["To"] = ", ".join(o.to)
        if o.cc:
            msg["Cc"] = ", ".join(o.cc)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = msg_id
        if parent:
            msg["In-Reply-To"] = parent
            msg["References"] = parent
        msg["X-Diag-Fingerprint"] = fingerprint
        msg["X-Diag-Event"] = event
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to diag
        return msg

    @staticmethod
    def _body(msg: EmailMessage, markdown: str) -> None:
        """A text part (the Markdown's escapes taken out) and an HTML part in which all of it is escaped text."""
        plain = tx.md_plain(markdown)
        msg.set_content(plain)
        msg.add_alternative(
            '<!DOCTYPE html><html><body><pre style="white-space: pre-wrap; font-family: monospace">'
            f"{tx.html(plain)}</pre></body></html>",
            subtype="html",
        )

    @staticmethod
    def _attach(msg: EmailMessage, attachments: Sequence[Attachment]) -> None:
        for a in attachments:
            maintype, _, subtype = a.content_type.partition("/")
            msg.add_attachment(a.content, maintype=maintype or "application", subtype=subtype or "octet-stream",
                               filename=a.filename)

    def _root_id(self, fingerprint: str) -> str:
        return f"<diag.{fingerprint}@{self.domain}>"

    def _tag(self, fingerprint: str) -> str:
        return f"[{self.options.subject_tag}:{fingerprint}]"

    def _tls(self) -> ssl.SSLContext:
        o = self.options
        ctx = ssl.create_default_context(cafile=o.ca_file)
        if not o.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _send(self, msg: EmailMessage, what: str) -> None:
        o = self.options
        where = f"email {what} via {o.host}:{o.port}"
        recipients = [*o.to, *o.cc]
        try:
            # local_hostname given: smtplib would otherwise ask the resolver for this host's FQDN
            if o.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(o.host, o.port, local_hostname=self.domain, timeout=o.timeout,
                                                      context=self._tls())
            else:
                smtp = smtplib.SMTP(o.host, o.port, local_hostname=self.domain, timeout=o.timeout)
            with smtp:
                smtp.ehlo()
                if o.security == "starttls":
                    if not smtp.has_extn("starttls"):
                        raise TicketRejected(f"{where}: the server does not offer STARTTLS (security: starttls)")
                    smtp.starttls(context=self._tls())
                    smtp.ehlo()
                if o.username:
                    smtp.login(o.username, self._password or "")
                refused = smtp.send_message(msg, from_addr=o.from_addr, to_addrs=recipients)
        except smtplib.SMTPAuthenticationError as e:
            raise TicketRejected(f"{where}: login as {o.username!r} refused: SMTP {e.smtp_code}") from None
        except smtplib.SMTPRecipientsRefused as e:
            code, reply = min(e.recipients.values())  # all refused: retry if any refusal was temporary
            raise _smtp_code_error(f"{where}: every recipient refused", code, reply) from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError, smtplib.SMTPHeloError) as e:
            raise _smtp_code_error(where, e.smtp_code, e.smtp_error) from None
        except smtplib.SMTPNotSupportedError as e:
            raise TicketRejected(f"{where}: {e}") from None
        except smtplib.SMTPResponseException as e:
            raise _smtp_code_error(where, e.smtp_code, e.smtp_error) from None
        except ssl.SSLCertVerificationError as e:
            raise TicketRejected(f"{where}: TLS certificate not trusted: {e.verify_message}") from None
        except (smtplib.SMTPException, OSError) as e:  # refused, reset, timeout, disconnect, TLS failure
            raise TicketUnavailable(f"{where}: {e or type(e).__name__}") from None
        if refused:
            log.warning("%s: some recipients refused: %s", where, ", ".join(sorted(refused)))
        log.info("email: sent %s (%s)", msg["Message-ID"], what)


@BACKENDS.register(NAME)
def factory(config: Mapping[str, Any]) -> EmailBackend:
    return EmailBackend(parse(NAME, config, Options))
