"""The metric names a PromQL expression reads, for tests that check rules and dashboards against a live scrape.

A small tokenizer rather than a parser: no maintained Python PromQL parser exists (the PyPI ones build queries,
they do not read them), and promtool has no command that lists an expression's selectors. It drops string
literals, label matchers, range/subquery brackets and grouping clauses (by, without, on, ignoring, group_left,
group_right), then keeps each identifier that is not a function or aggregation (followed by "("), a keyword, a
number or a Grafana variable ($x, ${x}, [$__rate_interval]).
"""

from __future__ import annotations

import re

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENT = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
KEYWORDS = frozenset(
    [
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
        "start",
        "end",
    ]
)


def metric_names(expr: str) -> set[str]:
    """Every metric name ``expr`` selects (``{__name__="x"}`` selectors are not supported and raise)."""
    if "__name__" in expr:
        raise ValueError(f"__name__ selectors are not supported: {expr}")
    text = _STRING.sub('""', expr)
    text = _VARIABLE.sub("1", text)
    text = _MATCHERS.sub("", text)
    text = _BRACKETS.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for m in _IDENT.finditer(text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        if re.fullmatch(r"[eE]\d*|0x[0-9a-fA-F]+", word):  # 1e3 splits as "1" "e3"; hex numbers
            continue
        names.add(word)
    return names
