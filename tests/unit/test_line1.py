"""Line-1 building blocks without peers: ticket text safety, signatures, subject finding, the catalogue's gates."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from diag import yamlsrc
from diag.errors import ConfigError
from diag.incidents import knowledge
from diag.incidents.knowledge import KnowledgeBase
from diag.inventory import parse as parse_inventory
from diag.line1 import catalogue as catmod
from diag.line1 import note as notes
from diag.line1 import subject
from diag.line1 import text as ttext
from diag.line1.catalogue import Catalogue
from diag.remote import facts
from diag.services.triage import best_entry


def test_html_mail_becomes_visible_text_only() -> None:
    html = ("<html><head><title>x</title><style>p{color:red}</style></head><body><p>Не печатает&nbsp;принтер</p>"
            "<script>alert('$(rm -rf /)')</script><div>на h01</div></body></html>")
    text = ttext.html_to_text(html)
    assert text.splitlines() == ["Не печатает принтер", "на h01"]
    assert "alert" not in text and "color" not in text and "h01" in text


@pytest.mark.parametrize("body", [
    "printer on h01 $(touch /tmp/x)", "h01 `id`", "service={{ service }} please", "h01; rm -rf /",
    "curl http://x | sh", "h01 && sudo reboot", "ok\x00hidden", "path ${HOME}",
])
def test_hostile_text_is_refused(body: str) -> None:
    _, _, refused = ttext.prepare("can't print", body)
    assert refused and "never acts on" in refused


def test_ordinary_text_with_punctuation_passes() -> None:
    _, _, refused = ttext.prepare("Не печатает", "Добрый день! Принтер на h01 не печатает; очередь 3 задания (100%).")
    assert refused is None


def test_huge_body_is_refused_and_capped() -> None:
    _, text, refused = ttext.prepare("slow", "медленно " * 20000)
    assert refused and "too long" in refused and len(text) == ttext.MAX_TEXT


def test_signatures_pick_entries_in_russian_and_english() -> None:
    kb = KnowledgeBase.load()
    assert best_entry(kb, "Не печатает принтер с утра")[0].id in ("printing-spooler-stopped", "print-spool-full")
    assert best_entry(kb, "I can't print, the printer is not working")[0].id == "printing-spooler-stopped"
    assert best_entry(kb, "Не печатает: пишет нет места на диске, диск переполнен")[0].id == "print-spool-full"
    assert best_entry(kb, "1С очень медленно работает, всё тормозит")[0].id == "user-slow-server"
    assert best_entry(kb, "No network on my PC since the morning")[0].id == "user-no-network"
    assert best_entry(kb, "The coffee machine makes odd noises")[0] is None


def test_kb_intake_rules_are_checked_with_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "k.yaml"
    f.write_text(textwrap.dedent("""\
        entries:
          - id: unverified-change
            title: t
            match: {checks: [x]}
            cause: c
            intake:
              signatures: ['(unclosed']
              playbook: service-down
              change: restart-service
    """))
    with pytest.raises(ConfigError) as e:
        KnowledgeBase.load([f], shipped=False)
    text = "\n".join(e.value.problems)
    assert f"{f}:7: bad regex" in text
    assert "only a verified, typical entry may apply a standard change" in text
    assert "needs the standard answer" in text


INV = """\
groups:
  printers: {}
hosts:
  web-03: {address: 10.0.0.3}
  pc-ivanova: {address: 10.0.5.17, groups: [printers]}
  pc-petrov: {address: 10.0.5.18, groups: [printers]}
"""


def test_subject_from_field_text_address_and_facts_inventory(tmp_path: Path) -> None:
    inv = parse_inventory(yamlsrc.load_text(INV, "inv.yaml"))
    found = subject.find(inv, "x", "y", "", {"host": "web-03"})
    assert found and [h.name for h in found.hosts] == ["web-03"] and "field" in found.how
    found = subject.find(inv, "x", "y", "", {"host": "printers"})
    assert found and {h.name for h in found.hosts} == {"pc-ivanova", "pc-petrov"}
    found = subject.find(inv, "Сайт на WEB-03 не открывается.", "", "", {})
    assert found and [h.name for h in found.hosts] == ["web-03"]
    found = subject.find(inv, "slow", "the machine 10.0.5.18, please check", "", {})
    assert found and [h.name for h in found.hosts] == ["pc-petrov"]
    # nothing in the text: the requester's own workstation from the facts inventory
    assert subject.find(inv, "не печатает", "помогите", "ivanova@corp.example", {}, data_dir=tmp_path) is None
    facts.save(tmp_path, "pc-ivanova", "facts", {"users": [{"login": "ivanova"}, {"login": "root"}]})
    facts.save(tmp_path, "pc-petrov", "facts", {"users": [{"login": "petrov"}]})
    found = subject.find(inv, "не печатает", "помогите", "Мария <ivanova@corp.example>", {}, data_dir=tmp_path)
    assert found and [h.name for h in found.hosts] == ["pc-ivanova"] and "facts" in found.how
    # a made-up name is never returned: the text selects among inventory names only
    assert subject.find(inv, "x", "web-03;rm -rf / and web-99", "", {}).hosts[0].name == "web-03"  # type: ignore[union-attr]
    assert subject.find(inv, "x", "web-99 $(id)", "", {}) is None


CAT = """\
changes:
  - id: restart-x
    title: t
    description: d
    groups: [printers]
    params: {service: {allowed: [cups]}}
    precheck: {run: "! systemctl is-active {{ service }}"}
    action: {run: "systemctl restart {{ service }}"}
    verify: {run: "systemctl is-active {{ service }}"}
    windows: [{days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00"}]
    rate_limit: {max: 2, per: 1h}
  - id: bad
    title: t
    description: d
    params: {dir: {}}
    precheck: {run: "true {{ nope }}"}
    action: {run: "true"}
    verify: {run: "true"}
    windows: []
    rate_limit: {max: 0, per: 1h}
"""


def test_catalogue_validation_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(CAT)
    with pytest.raises(ConfigError) as e:
        Catalogue.load([f], shipped=False)
    text = "\n".join(e.value.problems)
    assert f"{f}:12: a standard change needs hosts or groups" in text
    assert "needs at least one maintenance window" in text and "rate_limit needs max >= 1" in text
    assert "needs allowed values or a pattern" in text and "nope" in text


def test_catalogue_gates_scope_params_windows() -> None:
    doc = yamlsrc.load_text(CAT.split("  - id: bad")[0], "c.yaml")
    changes = catmod.parse(doc)
    assert not doc.problems, doc.problems
    c = changes[0]
    assert c.in_scope("pc-1", ["printers"]) and not c.in_scope("web-03", ["web"])
    assert c.check_params({"service": "cups"}) is None
    assert "not among the allowed" in (c.check_params({"service": "cups; rm -rf /"}) or "")
    assert "missing" in (c.check_params({}) or "")
    assert "not one the change" in (c.check_params({"service": "cups", "x": "1"}) or "")
    monday_noon = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert c.window_open(monday_noon)
    assert not c.window_open(datetime(2026, 12, 7, 19, 0, tzinfo=UTC))
    assert not c.window_open(datetime(2026, 12, 6, 12, 0, tzinfo=UTC))  # a Sunday
    # the parameter reaches the shell quoted, whatever it is (allowed values are checked before anyway)
    rendered = c.steps["action"].steps[0].command.render({"service": "a b;c"}, {})
    assert rendered == "systemctl restart 'a b;c'"


def test_shipped_catalogue_and_kb_agree() -> None:
    cat = Catalogue.load()
    kb = KnowledgeBase.load()
    for e in kb.entries:
        if e.intake and e.intake.change:
            c = cat.get(e.intake.change)
            assert c is not None, e.id
            assert c.check_params(e.intake.params) is None, e.id


def test_note_language_and_masking() -> None:
    assert notes.language("Не печатает принтер на h01") == "ru"
    assert notes.language("can't print on h01") == "en"
    text = notes.compose("ru", [notes.say("ru", "received")], ["- token=abc123secret on h01, ivanova@corp.example"])
    assert text.startswith("Здравствуйте!") and "abc123secret" not in text and "ivanova@corp.example" not in text
    assert knowledge.IntakeSpec  # the KB format carries the intake block


class _MustNotRun:
    """A check backend that fails the test if anything would run on a host (the gates refuse before that)."""

    def run_check(self, *a: object, **kw: object) -> None:
        raise AssertionError("a refused standard change ran a command")


def test_gates_refuse_unknown_paused_rate_limited_and_journal(tmp_path: Path) -> None:
    from diag.inventory import Host
    from diag.line1.ledger import Ledger
    from diag.services.standard_change import StandardChanges

    doc = yamlsrc.load_text(CAT.split("  - id: bad")[0], "c.yaml")
    cat = Catalogue(catmod.parse(doc))
    ledger = Ledger(tmp_path)
    noon = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    sc = StandardChanges(cat, ledger, _MustNotRun(), tmp_path, clock=lambda: noon)  # type: ignore[arg-type]
    pc = Host("pc-1", "10.0.5.1", groups=("printers",))
    assert "not in the catalogue" in sc.apply("format-disk", pc, {}).reason
    ledger.pause("restart-x", "lead.petrova", "vendor visit")
    assert "paused by lead.petrova" in sc.apply("restart-x", pc, {"service": "cups"}).reason
    assert ledger.resume("restart-x")
    # two applications that ran something in the last hour: the third is refused by the rate limit
    for _ in range(2):
        ledger.applied(None, "kb", "restart-x", "pc-1", {"service": "cups"}, "verified", "ok", {}, {})
    app = sc.apply("restart-x", pc, {"service": "cups"}, kb_entry="printing")
    assert app.result == "refused" and "ran 2 times on pc-1" in app.reason
    # refusals are journaled with who asked (KB entry / catalogue entry)
    from diag.journal import open_journal

    recs = [r for r in open_journal(tmp_path).query(limit=100) if r.action == "change.refused"]
    assert len(recs) == 3 and any(r.actor == "line1:printing/restart-x" for r in recs)
    assert [a["result"] for a in ledger.applications()].count("refused") == 3


class _RecordingDesk:
    """A test double of a desk (no ticket system needed for these paths): hands out tickets, records answers."""

    name = "fake"

    def __init__(self, tickets: list[object], fail: Exception | None = None) -> None:
        self.tickets = tickets
        self.fail = fail
        self.answers: list[tuple[str, object]] = []

    def poll(self, seen: object) -> list[object]:
        if self.fail is not None:
            raise self.fail
        return self.tickets

    def respond(self, ticket_id: str, note: object) -> None:
        self.answers.append((ticket_id, note))

    def replies(self, ticket_id: str, since: float) -> list[object]:
        return []


def test_triage_never_raises_and_answers_plainly_when_automation_stops(tmp_path: Path) -> None:
    from diag.line1.ledger import Ledger
    from diag.line1.model import HumanTicket
    from diag.services.standard_change import StandardChanges
    from diag.services.triage import Triage

    kbf = tmp_path / "kb.yaml"
    kbf.write_text(textwrap.dedent("""\
        entries:
          - id: printing
            title: printing
            match: {checks: [x]}
            cause: c
            intake: {signatures: ['не\\s+печата'], playbook: no-such-playbook}
    """))
    inv = parse_inventory(yamlsrc.load_text(INV, "inv.yaml"))
    ledger = Ledger(tmp_path)
    backend = _MustNotRun()
    triage = Triage(inv, KnowledgeBase.load([kbf], shipped=False), StandardChanges(Catalogue(), ledger, backend,  # type: ignore[arg-type]
                    tmp_path), ledger, backend, tmp_path)  # type: ignore[arg-type]
    # a desk that answers garbage: logged in one line, no exception
    assert triage.poll(_RecordingDesk([], fail=KeyError("issues"))) == []  # type: ignore[arg-type]
    t = HumanTicket("fake", "1", "Не печатает", "не печатает на web-03", "ivanova", 1.0)
    desk = _RecordingDesk([t])
    [outcome] = triage.poll(desk)  # type: ignore[arg-type]
    assert outcome.state == "escalated" and outcome.line == "L2" and "no-such-playbook" in outcome.reason
    [(tid, note)] = desk.answers
    assert tid == "1" and note.state == "escalated"  # type: ignore[attr-defined]
    assert "Автоматическую проверку" in note.text and "Traceback" not in note.text  # type: ignore[attr-defined]
    assert triage.poll(desk) == []  # answered once: never twice


@pytest.mark.parametrize("text", [
    "Принтер не печатает", "Документы висят в очереди печати", "Ошибка печати на принтере", "Печать не проходит",
    "My printer won't print", "the printer is offline again", "jobs stuck in the print queue",
])
def test_people_word_printing_problems_many_ways(text: str) -> None:
    entry, hits = best_entry(KnowledgeBase.load(), text)
    assert entry is not None and entry.id in ("printing-spooler-stopped", "print-spool-full"), (text, hits)


def test_mail_bodies_in_russian_charsets_html_only_and_attachments_only() -> None:
    import email
    import email.policy
    from email.message import EmailMessage

    from diag.line1.intake.imap import _body

    def parse(raw: bytes) -> EmailMessage:
        m = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(m, EmailMessage)
        return m

    koi8 = (b"Content-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            + "Не печатает принтер".encode("koi8-r"))
    assert _body(parse(koi8)) == ("Не печатает принтер", False)
    cp = (b"Content-Type: text/plain; charset=windows-1251\r\nContent-Transfer-Encoding: base64\r\n\r\n"
          + __import__("base64").b64encode("Нет сети".encode("cp1251")))
    assert _body(parse(cp))[0].strip() == "Нет сети"
    bad = b"Content-Type: text/plain; charset=x-unknown-9\r\n\r\nhello"
    assert "hello" in _body(parse(bad))[0]
    html = EmailMessage()
    html.set_content("<p>can't print</p>", subtype="html")
    assert _body(html) == ("<p>can't print</p>\n", True)
    only = EmailMessage()
    only.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="scan.pdf")
    assert _body(only) == ("", False)


def test_agent_line1_section_problems_are_file_and_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    f = tmp_path / "inventory.yaml"
    f.write_text(textwrap.dedent("""\
        hosts:
          web-03: {address: 10.0.0.3}
        agent:
          line1:
            interval: soon
            desks:
              jira: {url: x}
              redmine: {url: http://x, api_key: file:/k, projekt: 3}
              imap: {host: x, username: u, password: file:/p}
    """))
    diag = str(Path(sys.executable).parent / "diag")
    p = subprocess.run([diag, "inventory", "validate", str(f)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    lines = (p.stdout + p.stderr).splitlines()
    for want in (f"{f}:5: duration 'soon'", f"{f}:7: unknown desk 'jira'", f"{f}:8: unknown key `projekt`",
                 f"{f}:9: missing required key `smtp`"):
        assert any(line.startswith(want) for line in lines), (want, lines)


def test_a_ticket_left_by_a_killed_watcher_is_taken_again_later(tmp_path: Path) -> None:
    import sqlite3

    from diag.line1.ledger import FILENAME, Ledger

    a, b = Ledger(tmp_path), Ledger(tmp_path)  # two watchers (the agent's and a CLI one) on one data directory
    assert a.register("redmine:5", "redmine", "5", "s", "p", 1.0)
    assert not b.register("redmine:5", "redmine", "5", "s", "p", 1.0) and b.seen("redmine:5")
    # the first watcher was killed before answering: ten minutes later the ticket is free again
    with sqlite3.connect(tmp_path / FILENAME) as db:
        db.execute("UPDATE tickets SET seen_at = seen_at - 601 WHERE key = 'redmine:5'")
    assert not b.seen("redmine:5") and b.register("redmine:5", "redmine", "5", "s", "p", 1.0)
    # an answered ticket never is
    b.responded("redmine:5")
    with sqlite3.connect(tmp_path / FILENAME) as db:
        db.execute("UPDATE tickets SET seen_at = seen_at - 601 WHERE key = 'redmine:5'")
    assert b.seen("redmine:5") and not a.register("redmine:5", "redmine", "5", "s", "p", 1.0)


@pytest.mark.parametrize(
    ("headers", "sender", "robot"),
    [
        ({}, "ivanova@x.invalid", False),
        ({"Auto-Submitted": "no"}, "ivanova@x.invalid", False),
        ({"Precedence": "first-class"}, "ivanova@x.invalid", False),
        ({"Auto-Submitted": "auto-replied"}, "ivanova@x.invalid", True),
        ({"Precedence": "Bulk"}, "ivanova@x.invalid", True),
        ({"Precedence": "junk"}, "ivanova@x.invalid", True),
        ({"X-Autoreply": "yes"}, "ivanova@x.invalid", True),
        ({"X-Autorespond": "x"}, "ivanova@x.invalid", True),
        ({"Return-Path": "<>"}, "ivanova@x.invalid", True),
        ({}, "postmaster@x.invalid", True),
        ({}, "mailer-daemon@x.invalid", True),
        ({"Content-Type": 'multipart/report; report-type=delivery-status; boundary="b"'}, "a@x.invalid", True),
    ],
)
def test_email_desk_knows_robots_mail(headers: dict[str, str], sender: str, robot: bool) -> None:
    import email
    import email.policy

    from diag.line1.intake.imap import automatic

    raw = "".join(f"{k}: {v}\r\n" for k, v in {"From": sender, **headers}.items()) + "\r\nhello\r\n"
    msg = email.message_from_string(raw, policy=email.policy.default)
    assert automatic(msg, sender) is robot  # type: ignore[arg-type]
