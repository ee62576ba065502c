"""The e-mail desk does not answer robots: real Exim (SMTP) and Dovecot (IMAP) on loopback, ``diag line1 watch``.

A help-desk mailbox also receives mail no person wrote: a vacation notice that says only ``Precedence: bulk`` and
``X-Autoreply`` (no ``Auto-Submitted``), and an Exchange-style delivery report from ``postmaster@`` with a null
envelope sender (``multipart/report``). Answered, each reaches a robot that may answer again (a mail loop), and a
vacation notice from the requester would reopen her ticket. Both must be read and left alone; a person's mail sent
after them is answered (so the silence is the watcher's decision, not a stopped watcher).
"""

from __future__ import annotations

import imaplib
import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest

from diag.remote import facts
from tests.conftest import stop_process, wait_for
from tests.labs.imaplab import DovecotLab
from tests.labs.lab import Lab
from tests.labs.line1lab import (
    install_service,
    start_service,
    stop_service,
    write_catalogue,
    write_inventory,
    write_kb,
)
from tests.labs.smtplab import EximLab

pytestmark = pytest.mark.integration
DIAG = [str(Path(sys.executable).parent / "diag")]
DOMAIN = "diaglab.invalid"
DESK_PASSWORD = "desk-pass-5"


@pytest.fixture(scope="module")
def mail() -> Iterator[tuple[EximLab, DovecotLab]]:
    with EximLab(per_user=["desk", "ivanova", "postmaster", "petrov"]) as exim, \
            DovecotLab(exim, {"desk": DESK_PASSWORD}) as dovecot:
        yield exim, dovecot


def _deliver(exim: EximLab, raw: bytes, envelope_from: str) -> None:
    """As a mail server delivering to the desk would: ``envelope_from`` "" is the null sender of a bounce."""
    with smtplib.SMTP("127.0.0.1", exim.port, local_hostname="mx.diaglab.invalid", timeout=10) as s:
        s.starttls(context=ssl.create_default_context(cafile=exim.ca_file))
        s.sendmail(envelope_from, [f"desk@{DOMAIN}"], raw)


def _from_ivanova(message_id: str, subject: str, body: str, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Мария Иванова <ivanova@{DOMAIN}>"
    msg["To"] = f"desk@{DOMAIN}"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg["Date"] = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    for k, v in headers.items():
        msg[k.replace("_", "-")] = v
    msg.set_content(body)
    return msg.as_bytes()


def _vacation(message_id: str) -> bytes:
    """A vacation notice as many responders send it: no Auto-Submitted, only Precedence and X-Autoreply."""
    return _from_ivanova(message_id, "Out of office: принтер не работает",
                         "I am away until Monday. Принтер не работает? Call the help desk.",
                         Precedence="bulk", X_Autoreply="yes")  # fmt: skip


def _bounce(message_id: str) -> bytes:
    """The shape of an Exchange non-delivery report (From postmaster@, a delivery-status part)."""
    return (
        f"From: Microsoft Outlook <postmaster@{DOMAIN}>\r\n"
        f"To: desk@{DOMAIN}\r\n"
        "Subject: Undeliverable: printer not working\r\n"
        f"Message-ID: {message_id}\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "Delivery has failed to these recipients: nobody@elsewhere.invalid. The printer is not working.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.diaglab.invalid\r\n\r\nFinal-Recipient: rfc822; nobody@elsewhere.invalid\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n"
        "--b1--\r\n"
    ).encode()


def _person(message_id: str) -> bytes:
    return _from_ivanova(message_id, "Projector", "The projector in room 4 shows a blue picture.")


def _seen(dovecot: DovecotLab, message_ids: list[str]) -> bool:
    """Has the watcher read (and marked) every one of these messages?"""
    conn = imaplib.IMAP4("127.0.0.1", dovecot.port, timeout=10)
    try:
        conn.starttls(ssl.create_default_context(cafile=dovecot.ca_file))
        conn.login("desk", DESK_PASSWORD)
        conn.select("INBOX", readonly=True)
        for mid in message_ids:
            typ, data = conn.search(None, "HEADER", "Message-ID", mid, "SEEN")
            if typ != "OK" or not data or not data[0]:
                return False
        return True
    finally:
        conn.logout()


def _desk_inventory(lab: Lab, exim: EximLab, dovecot: DovecotLab, tmp_path: Path) -> Path:
    """The lab's inventory with the e-mail desk on the ``desk`` mailbox, the lab's KB and catalogue (print service)."""
    spool = str(lab.dir / "spool")
    kb = write_kb(tmp_path / "kb", spool)
    cat = write_catalogue(tmp_path / "changes", install_service(lab), spool, hosts=["h01"])
    pw = tmp_path / "imap.pass"
    pw.write_text(DESK_PASSWORD + "\n")
    pw.chmod(0o600)
    desk = {"host": "127.0.0.1", "port": dovecot.port, "security": "starttls", "username": "desk",
            "password": f"file:{pw}", "ca_file": dovecot.ca_file,
            "smtp": {"host": "127.0.0.1", "port": exim.port, "security": "starttls", "from": f"desk@{DOMAIN}",
                     "ca_file": exim.ca_file, "domain": DOMAIN}}
    return write_inventory(lab, tmp_path / "inventory.yaml", tmp_path / "data", kb, cat, {"imap": desk})


def _watch(inv: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*DIAG, "line1", "watch", "--inventory", str(inv), "--interval", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(watcher: subprocess.Popen[str]) -> str:
    """Stop the watcher by its PID; its stderr (printed), which must hold no traceback."""
    stop_process(watcher)
    out, err = watcher.communicate(timeout=10)
    print(out[-3000:], err[-3000:])
    assert "Traceback" not in err
    return err


def test_auto_replies_and_bounces_are_not_answered(mail: tuple[EximLab, DovecotLab], make_lab: Any,
                                                    tmp_path: Path) -> None:
    exim, dovecot = mail
    lab: Lab = make_lab(1)
    inv = _desk_inventory(lab, exim, dovecot, tmp_path)
    vacation_id, bounce_id, person_id = (make_msgid(domain=DOMAIN) for _ in range(3))
    _deliver(exim, _vacation(vacation_id), f"ivanova@{DOMAIN}")
    _deliver(exim, _bounce(bounce_id), "")
    wait_for(lambda: len(exim.messages("desk")) == 2, timeout=60, what="both robots' mail in the desk's mailbox")
    watcher = _watch(inv)
    try:
        _deliver(exim, _person(person_id), f"ivanova@{DOMAIN}")
        # the person is answered, and the robots' mail was read: what the watcher decided about it is final
        wait_for(lambda: watcher.poll() is not None or any(
            person_id in str(m.get("In-Reply-To", "")) for m in exim.messages("ivanova")),
            timeout=120, what="the answer to the person")
        assert watcher.poll() is None, "the watcher exited"
        wait_for(lambda: _seen(dovecot, [vacation_id, bounce_id]), timeout=60, what="the robots' mail read")
    finally:
        _stop(watcher)
    robots = {vacation_id, bounce_id}
    answered = [m for user in ("ivanova", "postmaster") for m in exim.messages(user)
                if str(m.get("In-Reply-To", "")).strip() in robots]
    assert answered == [], [(m["To"], m["Subject"]) for m in answered]
    ledger = subprocess.run([*DIAG, "line1", "tickets", "--inventory", str(inv), "--json"], capture_output=True,
                            text=True, timeout=60)
    assert ledger.returncode == 0, ledger.stderr
    assert "Projector" in ledger.stdout, ledger.stdout
    assert "Out of office" not in ledger.stdout and "Undeliverable" not in ledger.stdout, ledger.stdout


def test_after_a_restart_only_the_requester_reopens(mail: tuple[EximLab, DovecotLab], make_lab: Any,
                                                    tmp_path: Path) -> None:
    """The desk keeps its tickets in memory; after the watcher restarts, who filed a resolved ticket comes from the
    ledger: a reply by someone else who holds the ticket's tag (a colleague in copy) reopens nothing and is sent
    nothing; the requester's own reply reopens it and the answer goes to her."""
    exim, dovecot = mail
    lab: Lab = make_lab(1)
    inv = _desk_inventory(lab, exim, dovecot, tmp_path)
    start_service(lab, "h01")
    stop_service(lab, "h01")  # the fault: h01's print service is stopped
    facts.save(tmp_path / "data", "h01", "facts", {"users": [{"login": "ivanova"}]})
    first_id = make_msgid(domain=DOMAIN)
    watcher = _watch(inv)
    try:
        _deliver(exim, _from_ivanova(first_id, "Не печатает принтер", "Не печатает принтер с утра."),
                 f"ivanova@{DOMAIN}")  # fmt: skip

        def resolution() -> EmailMessage | None:
            return next((m for m in exim.messages("ivanova")
                         if first_id in str(m.get("References", "")) and m["X-Line1-State"] == "resolved"), None)

        wait_for(lambda: watcher.poll() is not None or resolution() is not None, timeout=120, what="resolution")
        assert watcher.poll() is None, "the watcher exited"
    finally:
        _stop(watcher)
    done = resolution()
    assert done is not None
    # a colleague answers diag's mail (the tag and References of the ticket) while the watcher is down
    colleague_id = make_msgid(domain=DOMAIN)
    reply = EmailMessage()
    reply["From"] = f"petrov@{DOMAIN}"
    reply["To"] = f"desk@{DOMAIN}"
    reply["Subject"] = "Re: " + str(done["Subject"]).removeprefix("Re: ")
    reply["Message-ID"] = colleague_id
    reply["In-Reply-To"] = reply["References"] = str(done["Message-ID"])
    reply.set_content("Still broken for me too, reopen please.")
    _deliver(exim, reply.as_bytes(), f"petrov@{DOMAIN}")
    watcher = _watch(inv)
    try:
        wait_for(lambda: watcher.poll() is not None or _seen(dovecot, [colleague_id]), timeout=90,
                 what="the colleague's reply read")  # fmt: skip
        own_id = make_msgid(domain=DOMAIN)
        own = _from_ivanova(own_id, reply["Subject"], "Всё равно не печатает.",
                            In_Reply_To=str(done["Message-ID"]), References=str(done["Message-ID"]))  # fmt: skip
        _deliver(exim, own, f"ivanova@{DOMAIN}")

        def reopened() -> list[EmailMessage]:
            return [m for user in ("ivanova", "petrov") for m in exim.messages(user)
                    if m["X-Line1-State"] == "reopened"]

        wait_for(lambda: watcher.poll() is not None or bool(reopened()), timeout=90, what="the reopening answer")
        assert watcher.poll() is None, "the watcher exited"
    finally:
        _stop(watcher)
    assert [m["To"] for m in reopened()] == [f"ivanova@{DOMAIN}"], [(m["To"], m["Subject"]) for m in reopened()]
    assert exim.messages("petrov") == []
