"""Text that is safe for its target: what an alert, a device or a host said is data, never markup or control.

Alert labels and annotations, command output and device names are written by whoever controls the alert rule,
the device or the host. Before any of it reaches a ticket system:

- :func:`clean` drops NUL and the other C0/C1 control characters (a PostgreSQL-backed tracker answers 5xx to a
  NUL, which would hold every later delivery), keeping tab and newline, and shows the Unicode bidirectional and
  invisible format characters (U+202E RIGHT-TO-LEFT OVERRIDE and its kin, which can make ``exe.txt`` read as
  ``txt.exe``) as a visible ``<U+202E>``;
- :func:`md_inline` makes a value plain text in Markdown (CommonMark, as Redmine, GitLab and most trackers read
  it): ``<script>`` stays text, ``|`` cannot end a table cell, ``[x](javascript:...)`` is no link;
- :func:`md_code` fences a block with a fence longer than any backtick run inside it, so output cannot close
  its code block and go on as markup;
- :func:`html` escapes for an HTML body (the e-mail backend's HTML part).

Plain-text targets (RT's text/plain, the e-mail's text part, the webhook's JSON, subjects) get :func:`clean`:
JSON encoding and the target's own text rendering do the rest, and markup escapes would only be noise there.
"""

from __future__ import annotations

import html as _html
import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: Bidirectional controls and invisible format characters: shown, not obeyed.
_FORMAT = re.compile(r"[\u061c\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\u3164\ufeff\ufff9-\ufffb]")
#: What makes markup in the middle of a CommonMark line: emphasis, code, links and images (``[``), raw HTML and
#: autolinks (``<``), entities (``&``), table cells (``|``), strikethrough (``~``). ``_`` only at a word's edge
#: (inside a word, as in ``disk_full``, it is no emphasis); ``>`` ``#`` ``-`` ``+`` and digits only at a line's
#: start (see :data:`_LINE_START`).
_MD_SPECIAL = re.compile(r"([\\`*\[\]<|~&]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_LINE_START = re.compile(r"^(\s*)([>#+=-]|\d+[.)])")
_BACKTICKS = re.compile(r"`+")


def clean(text: str) -> str:
    """No control characters but tab and newline; bidi and invisible format characters made visible."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _FORMAT.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)
    # Other format characters (category Cf) that the list above does not name are shown the same way.
    if any(unicodedata.category(ch) == "Cf" for ch in text):
        text = "".join(f"<U+{ord(ch):04X}>" if unicodedata.category(ch) == "Cf" else ch for ch in text)
    return text


def one_line(text: str) -> str:
    """:func:`clean`, on one line (subjects, header fields)."""
    return " ".join(clean(text).split())


def md_inline(text: str) -> str:
    """A value as literal text inside a Markdown paragraph or table cell (one line)."""
    return _MD_SPECIAL.sub(r"\\\1", one_line(text))


def md_code(text: str, info: str = "") -> str:
    """A fenced code block that its content cannot close (CommonMark: a longer fence is needed to end it)."""
    body = clean(text)
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{body}\n{fence}"


def html(text: str) -> str:
    """:func:`clean`, then escaped for HTML text and attribute values."""
    return _html.escape(clean(text), quote=True)


def md_text(text: str) -> str:
    """Prose (several lines) as literal Markdown text: each line escaped as by :func:`md_inline`."""
    return "\n".join(_LINE_START.sub(_line_start, _MD_SPECIAL.sub(r"\\\1", line)) for line in clean(text).split("\n"))


def _line_start(m: re.Match[str]) -> str:
    mark = m.group(2)
    return m.group(1) + (mark[:-1] + "\\" + mark[-1] if mark[0].isdigit() else "\\" + mark)


_FENCE = re.compile(r"^(`{3,})")
_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def md_plain(text: str) -> str:
    """The Markdown diag writes, for a plain-text target (RT's text/plain, an e-mail's text part): the backslash
    escapes outside code blocks are taken out again, so the reader sees the value as it was (cleaned)."""
    out = []
    fence = ""
    for line in clean(text).split("\n"):
        m = _FENCE.match(line)
        if fence:
            if m and len(m.group(1)) >= len(fence) and not line[len(m.group(1)) :].strip():
                fence = ""
            out.append(line)
        elif m:
            fence = m.group(1)
            out.append(line)
        else:
            out.append(_ESCAPED.sub(r"\1", line))
    return "\n".join(out)
