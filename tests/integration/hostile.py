"""A hostile alert for the ticket backends' text-safety tests: labels and annotations written by an attacker.

:func:`file_ticket` sends it the whole way diag does (the Alertmanager mapping, the incident engine, the bundle,
the outbox) into a real backend, opens the ticket and adds a "seen again" note; each backend's test then reads
the real ticket back with the lab's own client and checks it with :func:`assert_markdown_safe` (Markdown
targets: Redmine) or :func:`assert_plain_safe` (text/plain targets: RT, e-mail, the webhook's JSON).
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
from markdown_it import MarkdownIt

from diag.alertmanager import mapping
from diag.alertmanager.payload import Alert
from diag.exporters.tickets.base import TicketBackend
from diag.incidents.service import IncidentService
from diag.incidents.settings import from_mapping
from diag.model import Evidence

SCRIPT = "<script>alert('pwned')</script>"
IMG = '<img src=x onerror="alert(1)">'
SUMMARY = f"{SCRIPT} disk 100% full \x00nul \u202egnp.exe ``` [click](javascript:alert(1)) &#x202E; **bold**"
DESCRIPTION = "| a | b |\n|---|---|\n# not a heading\n" + IMG
LABELS = {
    "alertname": "DiagFilesystemAlmostFull",
    "instance": "web<b>|01:9100",  # no inventory host: the label's value becomes the incident's host
    "mountpoint": f"/srv|x {IMG}",
    "team": "ops\u202e\u2066evil\x07",
    "severity": "critical",
}
OUTPUT = "Filesystem 1K-blocks Used\n```\n</pre><script>alert(2)</script>\n/dev/sdb1 1000 1000 100% /srv"
#: What must never reach a ticket system: NUL and the other controls (but tab and newline), bidi and invisible
#: format characters.
FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def hostile_alert() -> Alert:
    return msgspec.convert(
        {
            "status": "firing",
            "labels": LABELS,
            "annotations": {"summary": SUMMARY, "description": DESCRIPTION},
            "startsAt": "2026-12-07T03:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom:9090/graph?g0.expr=x",
            "fingerprint": "hostile0000000001",
        },
        Alert,
    )


def file_ticket(backend: TicketBackend, data: Path) -> IncidentService:
    """Open an incident for the hostile alert and note a repeat; delivered to ``backend``. The caller closes it."""
    alert = hostile_alert()
    ev = Evidence("command", "df -Pk /srv|x <b>", OUTPUT, {"step": "df"})
    host = LABELS["instance"].rsplit(":", 1)[0]
    finding = mapping.incident_finding(alert, host, "http://am:9093", [], [ev], "disk-full")
    svc = IncidentService(from_mapping({"open_after": 0, "tickets": {"backend": "local"}}, data), backend=backend)
    svc.engine.ingest("alertmanager", [finding])
    svc.engine.ingest("alertmanager", [finding])  # a repeat: a note with the evidence
    assert svc.outbox.drain(60), svc.outbox.last_error
    assert svc.store.outbox_depth() == {}
    return svc


def assert_clean(value: object) -> None:
    """No control or bidi character in any string of a decoded JSON document."""
    if isinstance(value, str):
        assert not FORBIDDEN.search(value), repr(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            assert_clean(k)
            assert_clean(v)
    elif isinstance(value, list):
        for v in value:
            assert_clean(v)


def assert_plain_safe(text: str) -> None:
    """A text/plain target: no control or bidi characters; the values are there as text, markup and all."""
    text = text.replace("\r\n", "\n")  # how Redmine and mail store line ends: theirs, not what diag sent
    assert not FORBIDDEN.search(text), repr(FORBIDDEN.search(text))
    assert "<U+202E>" in text  # shown, not obeyed


def assert_markdown_safe(text: str) -> None:
    """A Markdown target: rendered as CommonMark (+ tables), nothing from the alert is markup."""
    text = text.replace("\r\n", "\n")  # how Redmine stores line ends
    assert not FORBIDDEN.search(text), repr(FORBIDDEN.search(text))
    rendered = MarkdownIt("commonmark").enable("table").render(text)
    assert "<script" not in rendered and "<img" not in rendered and "<b>" not in rendered, rendered
    assert "javascript:" not in re.sub(r"(?s)<code>.*?</code>", "", rendered).replace(
        "[click](javascript:alert(1))", ""
    ), rendered  # as text, never as a link
    assert 'href="javascript' not in rendered
    for row in re.findall(r"(?s)<tr>(.*?)</tr>", rendered):  # no value adds or ends a table cell
        assert len(re.findall(r"<t[dh][ >]", row)) == 2, row
    assert "<h1>" not in rendered  # "# not a heading" stays text
    assert "&lt;script&gt;" in rendered  # the text is still there, to be read
