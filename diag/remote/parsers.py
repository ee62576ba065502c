"""Output parsers for playbook steps: regex, json, kv, columns and textfsm, each with validated options.

A step's ``parse:`` is one of the tagged structs below (``type:`` picks it; unknown options are refused
with FILE:LINE by the playbook loader). :func:`prepare` checks the options once when the playbook loads
(regex compiles, the TextFSM template parses) and returns a function ``text -> value`` that the runner calls
for each host. Parsed values are plain data (dicts, lists, str, int, float, None) so expressions and
JSON output can use them unchanged. ``types:`` converts named fields (``int``, ``float`` accept "85%"
and give null for "-", which df prints for filesystems without inodes).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import msgspec

from diag.errors import DiagError

FieldType = Literal["int", "float", "str", "bool"]
Parser = Callable[[str], Any]


class ParseError(DiagError):
    """Output could not be parsed (bad JSON, a TextFSM error); a step error, not a crash."""


class OptionsError(DiagError):
    """A parser's options are wrong (bad regex, unreadable template): a playbook validation problem."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class RegexParse(msgspec.Struct, tag="regex", tag_field="type", forbid_unknown_fields=True):
    """Named groups of the first match (a mapping, null when nothing matches), or of every match (``all``)."""

    pattern: str
    all: bool = False
    flags: list[Literal["ignorecase", "multiline", "dotall"]] = []
    types: dict[str, FieldType] = {}


class JsonParse(msgspec.Struct, tag="json", tag_field="type", forbid_unknown_fields=True):
    """The document, or the part a JMESPath expression selects (``path: items[0].name``)."""

    path: str | None = None


class KvParse(msgspec.Struct, tag="kv", tag_field="type", forbid_unknown_fields=True):
    """``key<separator>value`` lines (os-release, sysctl, /proc/meminfo); other lines and ``#`` comments skipped."""

    separator: str = "="
    strip_quotes: bool = True
    lowercase_keys: bool = False
    types: dict[str, FieldType] = {}


class ColumnsParse(msgspec.Struct, tag="columns", tag_field="type", forbid_unknown_fields=True):
    """A table: one mapping per row.

    Column names come from ``names`` or from the header row (``header: true``, lowercased, non-alphanumerics
    as ``_``). ``split: whitespace`` splits on runs of blanks, the last column taking the rest of the line when
    ``names`` are given (mount points with spaces); ``split: fixed`` cuts at the header's column starts.
    """

    header: bool = True
    names: list[str] = []
    split: Literal["whitespace", "fixed"] = "whitespace"
    skip: int = 0
    types: dict[str, FieldType] = {}


class TextfsmParse(msgspec.Struct, tag="textfsm", tag_field="type", forbid_unknown_fields=True):
    """A TextFSM template (``template:`` a file next to the playbook, or ``template_text:`` inline): rows."""

    template: str | None = None
    template_text: str | None = None
    types: dict[str, FieldType] = {}


ParseSpec = RegexParse | JsonParse | KvParse | ColumnsParse | TextfsmParse
PARSER_TYPES = ("regex", "json", "kv", "columns", "textfsm")


_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def _convert(value: Any, typ: FieldType) -> Any:
    """Convert one field; numbers are read from the start of the text ("85%", "12345 kB"), else null ("-")."""
    if value is None or typ == "str":
        return value
    s = str(value).strip()
    if typ == "bool":
        return s.lower() in ("1", "yes", "true", "on", "y")
    m = _NUMBER.match(s)
    if not m:
        return None  # "-" and the like: missing data, not an error
    f = float(m.group(0))
    if typ == "float":
        return f
    return int(m.group(0)) if m.group(0).lstrip("+-").isdigit() else int(f)


def _apply_types(row: dict[str, Any], types: dict[str, FieldType]) -> dict[str, Any]:
    for k, t in types.items():
        if k in row:
            row[k] = _convert(row[k], t)
    return row


def _regex(spec: RegexParse) -> Parser:
    flags = 0
    for f in spec.flags:
        flags |= {"ignorecase": re.I, "multiline": re.M, "dotall": re.S}[f]
    try:
        rx = re.compile(spec.pattern, flags)
    except re.error as e:
        raise OptionsError("pattern", f"bad regular expression: {e}") from None
    if not rx.groupindex:
        raise OptionsError("pattern", "the pattern needs named groups, e.g. (?P<load1>[0-9.]+)")
    unknown = set(spec.types) - set(rx.groupindex)
    if unknown:
        raise OptionsError("types", f"types names groups the pattern does not have: {', '.join(sorted(unknown))}")

    def parse(text: str) -> Any:
        if spec.all:
            return [_apply_types(m.groupdict(), spec.types) for m in rx.finditer(text)]
        m = rx.search(text)
        return _apply_types(m.groupdict(), spec.types) if m else None

    return parse


def _json(spec: JsonParse) -> Parser:
    compiled: Any = None
    if spec.path:
        import jmespath
        import jmespath.exceptions

        try:
            compiled = jmespath.compile(spec.path)
        except jmespath.exceptions.JMESPathError as e:
            raise OptionsError("path", f"bad JMESPath expression {spec.path!r}: {str(e).splitlines()[0]}") from None

    def parse(text: str) -> Any:
        if not text.strip():
            return None
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise ParseError(f"output is not JSON: {e}") from None
        return compiled.search(doc) if compiled is not None else doc

    return parse


def _kv(spec: KvParse) -> Parser:
    if not spec.separator:
        raise OptionsError("separator", "separator must not be empty")

    def parse(text: str) -> Any:
        out: dict[str, Any] = {}
        for line in text.splitlines():
            s = line.strip()
            if not s or s.startswith("#") or spec.separator not in s:
                continue
            k, _, v = s.partition(spec.separator)
            k, v = k.strip(), v.strip()
            if spec.strip_quotes and len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                v = v[1:-1]
            out[k.lower() if spec.lowercase_keys else k] = v
        return _apply_types(out, spec.types)

    return parse


_NONWORD = re.compile(r"[^0-9A-Za-z]+")


def _column_name(h: str) -> str:
    return _NONWORD.sub("_", h.strip()).strip("_").lower() or "col"


def _columns(spec: ColumnsParse) -> Parser:
    if spec.split == "fixed" and not spec.header:
        raise OptionsError("split", "split: fixed needs header: true (column starts come from the header)")
    if not spec.header and not spec.names:
        raise OptionsError("names", "without a header row, give the column names in names:")

    def parse(text: str) -> Any:
        lines = [line for line in text.splitlines()[spec.skip :] if line.strip()]
        if not lines:
            return []
        rows: list[dict[str, Any]] = []
        if spec.split == "fixed":
            header = lines[0]
            starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]
            names = spec.names or [_column_name(m.group(0)) for m in re.finditer(r"\S+(?: \S+)*", header)]
            if len(names) != len(starts):
                raise ParseError(f"{len(names)} names for {len(starts)} header columns: {header.strip()[:80]!r}")
            for line in lines[1:]:
                cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
                rows.append(_apply_types(dict(zip(names, cells, strict=True)), spec.types))
            return rows
        body = lines[1:] if spec.header else lines
        if spec.names:
            names = spec.names
            for line in body:
                cells = line.split(None, len(names) - 1)
                cells += [""] * (len(names) - len(cells))
                rows.append(_apply_types(dict(zip(names, cells, strict=True)), spec.types))
        else:
            names = [_column_name(h) for h in lines[0].split()]
            for line in body:
                cells = line.split(None, len(names) - 1)
                cells += [""] * (len(names) - len(cells))
                rows.append(_apply_types(dict(zip(names, cells, strict=True)), spec.types))
        return rows

    return parse


def _textfsm(spec: TextfsmParse, base: Path | None) -> Parser:
    import textfsm

    if (spec.template is None) == (spec.template_text is None):
        raise OptionsError("template", "give exactly one of template (a file) or template_text (inline)")
    if spec.template is not None:
        path = Path(spec.template)
        if not path.is_absolute() and base is not None:
            path = base / path
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as e:
            raise OptionsError("template", f"cannot read TextFSM template {path}: {e.strerror}") from None
    else:
        source = spec.template_text or ""
    try:
        textfsm.TextFSM(io.StringIO(source))
    except textfsm.TextFSMTemplateError as e:
        raise OptionsError("template", f"bad TextFSM template: {e}") from None

    def parse(text: str) -> Any:
        # A TextFSM object keeps state between ParseText calls: one per parse, from the checked source.
        fsm = textfsm.TextFSM(io.StringIO(source))
        try:
            table = fsm.ParseText(text)
        except textfsm.TextFSMError as e:
            raise ParseError(f"TextFSM: {e}") from None
        names = [h.lower() for h in fsm.header]
        return [_apply_types(dict(zip(names, row, strict=True)), spec.types) for row in table]

    return parse


def prepare(spec: ParseSpec, base: Path | None = None) -> Parser:
    """Check ``spec`` and return the parse function (``base``: the playbook's folder, for template files)."""
    if isinstance(spec, RegexParse):
        return _regex(spec)
    if isinstance(spec, JsonParse):
        return _json(spec)
    if isinstance(spec, KvParse):
        return _kv(spec)
    if isinstance(spec, ColumnsParse):
        return _columns(spec)
    return _textfsm(spec, base)
