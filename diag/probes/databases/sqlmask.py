"""Mask the literals of an SQL statement before it goes into evidence: ``WHERE card = '4111...'`` -> ``= ?``.

Query text in pg_stat_activity / the processlist carries whatever the application put in it (names, card
numbers, tokens). Like pg_stat_statements' normalisation, every string, number, hex/bit literal and
dollar-quoted body becomes ``?``; identifiers, keywords and comments' structure stay so the engineer still sees
which statement it is. One compiled regex, a single pass: a few microseconds per statement (a full SQL parser
such as sqlparse would be a new dependency for the one job of finding literals).
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"""
    (?P<comment>--[^\n]*|/\*.*?(?:\*/|$))                         # comments: kept, but their text is blanked
  | (?P<dollar>\$\$.*?(?:\$\$|$)|\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)\$.*?(?:\$(?P=tag)\$|$))   # $$..$$, $f$..$f$
  | (?P<string>[EeBbXxNn]?'(?:[^'\\]|\\.|'')*(?:'|$))              # '..', E'..', X'..', N'..' ('' and \' escapes)
  | (?P<dquote>"(?:[^"\\]|\\.|"")*(?:"|$))                        # "..": an identifier in PostgreSQL, a string in MySQL
  | (?P<btick>`[^`]*(?:`|$))                                      # `identifier` (MySQL)
  | (?P<param>\$\d+)                                              # $1: a bind parameter, no literal in it
  | (?P<number>(?<![\w.])(?:0x[0-9A-Fa-f]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)(?![\w]))
    """,
    re.VERBOSE | re.DOTALL,
)


def mask_sql(sql: str | None, limit: int = 300, double_quoted_strings: bool = False) -> str:
    """``sql`` with every literal replaced by ``?`` and whitespace squeezed, at most ``limit`` characters.

    ``double_quoted_strings``: MySQL (without ANSI_QUOTES) reads ``"x"`` as a string, so it is masked too.
    """
    if not sql:
        return ""

    def repl(m: re.Match[str]) -> str:
        kind = m.lastgroup
        if kind == "comment":
            return "/* */" if m.group().startswith("/*") else "--"
        if kind in ("dollar", "string", "number"):
            return "?"
        if kind == "dquote":
            return "?" if double_quoted_strings else m.group()
        return m.group()  # backtick identifiers and $1 parameters

    text = " ".join(_TOKEN.sub(repl, sql).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
