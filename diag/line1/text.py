"""Ticket text made safe to read: HTML to plain text, a size cap, and a screen for text that looks like commands.

A person's ticket only ever *selects* a knowledge-base entry and an inventory host; it never becomes a playbook
variable or part of a command (docs/line1.md). The screen below is a second line of defence: a ticket whose
text looks like an attempt to smuggle commands or template placeholders into diag is not automated at all
and goes to line 2 with a plain refusal, so nobody has to reason about what a clever string might do.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

MAX_TEXT = 64 * 1024  # characters of a ticket body that automation reads; longer tickets go to a person

_HOSTILE = [
    (re.compile(r"\$\(|`[^`\n]*`|\$\{[^}]*\}"), "shell command substitution"),
    (re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S), "template placeholders"),
    (re.compile(r"(?:;|&&|\|\|)\s*(?:rm|curl|wget|sh|bash|nc|python\d?|perl|chmod|chown|dd|mkfs|kill|sudo|touch)\b"),
     "chained shell commands"),
    (re.compile(r"\|\s*(?:sh|bash|zsh|python\d?|perl)\b"), "a pipe into a shell"),
    (re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"), "control characters"),
]


class _Text(HTMLParser):
    """Collects the visible text of an HTML mail: scripts, styles and the head are dropped, blocks become lines."""

    _SKIP = frozenset({"script", "style", "head", "title", "template"})
    _BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self.skip:
            self.skip -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """The visible text of an HTML document (entities decoded), whitespace tidied per line."""
    p = _Text()
    p.feed(markup)
    p.close()
    text = html.unescape("".join(p.parts))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


def prepare(subject: str, body: str, *, is_html: bool = False, limit: int = MAX_TEXT) -> tuple[str, str, str | None]:
    """(subject, text, refusal): the text automation may read, and why it may not when it may not."""
    text = html_to_text(body) if is_html else body
    subject = " ".join(subject.split())[:500]
    if len(text) > limit or len(body) > 16 * limit:
        size = f"{limit // 1024} KiB"
        return subject, text[:limit], f"the request is longer than {size}, too long to handle automatically"
    reason = screen(subject + "\n" + text)
    return subject, text, reason


def screen(text: str) -> str | None:
    """None for ordinary text; else what in it looks like an attempt to run something."""
    for rx, what in _HOSTILE:
        if rx.search(text):
            return f"the request contains {what}, which automation never acts on"
    return None
