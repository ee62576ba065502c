"""Load YAML fast, and still say ``FILE:LINE: message`` for any value that turns out to be wrong.

Two parsers, one job each (measured reason in docs/inventory.md):
- the fast path: rapidyaml parses and emits JSON, which ``json.loads`` reads. A 10,000-host inventory
  loads in about 0.1 s where PyYAML's C loader takes about 1 s.
- the line path: PyYAML composes the node tree, which knows the line of every node. It runs only
  when a line is needed (a validation problem) or the fast path cannot decide (duplicate keys,
  a parse error), so the common case never pays for it.

Scalars follow the YAML 1.2 core schema: only true/false are booleans, so ``yes`` stays a string.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from diag.errors import ConfigError

if TYPE_CHECKING:
    import yaml

PathKey = tuple[str | int, ...]

_BOOL = {"true": True, "false": False}

try:
    import ryml
except ImportError:  # pragma: no cover - a platform without rapidyaml wheels: the line path only
    ryml = None
#: Serialises two things that are not safe across threads (workers and pollers load files from many threads):
#: msgspec building a type's decoding info on its first use (a concurrent first use crashed with SIGSEGV here, in
#: msgspec 0.22), and the process-wide stderr silencing around rapidyaml. Loads are rare, so the lock costs nothing.
_LOCK = threading.RLock()

_INT = re.compile(r"[-+]?(0|[1-9][0-9_]*)$")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$")


@dataclass(slots=True)
class Doc:
    """A loaded YAML document: its data, the line of each path, and problems found while loading.

    ``lines`` is filled on first use from ``text`` (the line path), so a valid file never builds it.
    ``origins`` names where a value came from when it was not the file (``{("agent", "listen"): "--listen"}``):
    a problem under that path names the option, not a line of a file that does not hold the value.
    ``resolve_secrets`` False (``diag inventory validate`` away from the agent's machine): a section that reads its
    secrets at load records an unresolvable reference in ``warnings`` instead of ``problems``.
    """

    file: str
    data: Any
    text: str = ""
    problems: list[str] = field(default_factory=list)
    _lines: dict[PathKey, int] | None = None
    origins: dict[PathKey, str] = field(default_factory=dict)
    resolve_secrets: bool = True
    warnings: list[str] = field(default_factory=list)

    @property
    def lines(self) -> dict[PathKey, int]:
        if self._lines is None:
            self._lines = _compose(self.text, self.file).lines if self.text else {}
        return self._lines

    def where(self, path: PathKey) -> str:
        """``FILE:LINE`` of the value at ``path`` or of its nearest ancestor; the option when it came from one."""
        p = tuple(path)
        for i in range(len(p), 0, -1):
            if p[:i] in self.origins:
                return self.origins[p[:i]]
        while p and p not in self.lines:
            p = p[:-1]
        return f"{self.file}:{self.lines.get(p, 1)}"

    def problem(self, path: PathKey, message: str) -> None:
        self.problems.append(f"{self.where(path)}: {message}")

    def check_type(self, path: PathKey, value: Any, typ: Any, partial: bool = False) -> Any:
        """Convert ``value`` to ``typ`` with msgspec; on failure record every problem and return None.

        msgspec stops at the first error, so a host with a misspelt key and a bad port said only one of them.
        After each error the offending key is left out and the rest converted again, until it converts or the
        error is not a key's (a missing required key, a list item): every problem of the value in one run.
        ``partial``: return what converted without the offending keys (their defaults instead), so that the caller
        can check the rest (a playbook's steps despite an unknown top-level key); None when nothing converted.
        """
        failed = False
        removed: set[PathKey] = set()  # original paths left out, each already a problem
        kept: dict[PathKey, list[int]] = {}  # a list's original path -> the original indices still in ``value``
        for _ in range(_MAX_PROBLEMS_PER_VALUE):
            try:
                out = convert(value, typ)
            except msgspec.ValidationError as e:
                failed = True
                msg = str(e)
                sub = _msgspec_path(msg)  # a path in the reduced value
                unknown = re.search(r"unknown field `([^`]*)`", msg)
                if unknown:  # msgspec names the object; the offending key has its own line
                    sub = (*sub, unknown.group(1))
                orig = _original(sub, kept)
                missing = re.search(r"missing required field `([^`]*)`", msg)
                if missing and (*orig, missing.group(1)) in removed:
                    return None  # the key left out for its own problem: already said
                text = _msgspec_message(msg)
                # Name the offending key so "port: Expected int" reads on its own; a list item as "tags[2]" (two
                # items of one list on one line would otherwise read the same).
                key = sub[-1] if sub and isinstance(sub[-1], str) and not unknown else None
                if sub and isinstance(sub[-1], int) and len(sub) > 1 and isinstance(sub[-2], str) and not missing:
                    key = f"{sub[-2]}[{orig[-1]}]"
                self.problem((*path, *orig), f"{key}: {text}" if key else text)
                removed.add(orig)
                # Leave out the offending key, or the list item (a step, a check) the error is about; a missing
                # key of a mapping that is not a list item cannot be left out: stop there.
                cut = sub if sub and (not missing or isinstance(sub[-1], int)) else None
                reduced = _without(value, cut) if cut else None
                if reduced is None or cut is None:
                    return None
                if isinstance(cut[-1], int):
                    ocut = _original(cut, kept)
                    indices = kept.setdefault(ocut[:-1], list(range(len(_at(value, cut[:-1])))))
                    indices.remove(int(ocut[-1]))
                value = reduced
            else:
                return out if partial or not failed else None
        return None


#: Enough to report every mistake of one host or step; a bound, so that a pathological value cannot loop long.
_MAX_PROBLEMS_PER_VALUE = 20


def _without(value: Any, path: PathKey) -> Any:
    """A copy of ``value`` without the key or list item at ``path`` (copied only along the path), or None when
    there is none."""
    if not path:
        return None
    head, rest = path[0], path[1:]
    if isinstance(value, dict) and head in value:
        if not rest:
            return {k: v for k, v in value.items() if k != head}
        inner = _without(value[head], rest)
        return None if inner is None else {**value, head: inner}
    if isinstance(value, list) and isinstance(head, int) and 0 <= head < len(value):
        if not rest:
            return [*value[:head], *value[head + 1 :]]
        inner = _without(value[head], rest)
        return None if inner is None else [*value[:head], inner, *value[head + 1 :]]
    return None


def _at(value: Any, path: PathKey) -> Any:
    for p in path:
        value = value[p]
    return value


def _original(path: PathKey, kept: dict[PathKey, list[int]]) -> PathKey:
    """``path`` in the reduced value as a path in the original one (list items left out shift the indices)."""
    out: tuple[str | int, ...] = ()
    for p in path:
        if isinstance(p, int) and out in kept:
            p = kept[out][p]
        out = (*out, p)
    return out


def by_line(problems: list[str], file: str) -> list[str]:
    """``problems`` without repeats, those of options first, then the file's in the order of its lines.

    A file is checked section by section, so its problems come out of order; a reader fixes it top to bottom.
    """

    def key(problem: str) -> tuple[int, int]:
        if not problem.startswith(f"{file}:"):
            return (0, 0)
        number = problem[len(file) + 1 :].split(":", 1)[0]
        return (1, int(number)) if number.isdigit() else (1, 0)

    return sorted(dict.fromkeys(problems), key=key)


def convert(value: Any, typ: Any) -> Any:
    """``msgspec.convert`` (lax: "1" may become 1) that is safe to call from many threads at once."""
    with _LOCK:
        return msgspec.convert(value, typ, strict=False)


def _msgspec_path(msg: str) -> PathKey:
    # msgspec: "Expected `int`, got `str` - at `$.hosts[0].port`" ; path after "$"
    m = re.search(r" - at `\$(.*)`$", msg)
    if not m:
        return ()
    out: list[str | int] = []
    for name, idx, key in re.findall(r"\.([^.\[]+)|\[(\d+)\]|\[(\"[^\"]*\"|'[^']*')\]", m.group(1)):
        if name:
            out.append(name)
        elif idx:
            out.append(int(idx))
        else:
            out.append(key[1:-1])
    return tuple(out)


def _msgspec_message(msg: str) -> str:
    msg = re.sub(r" - at `\$.*`$", "", msg)
    msg = msg.replace("Object contains unknown field", "unknown key")
    return msg.replace("Object missing required field", "missing required key")


def _scalar(node: yaml.ScalarNode) -> Any:
    v = node.value
    if node.style:  # quoted: always a string
        return v
    tag = node.tag
    if tag.endswith(":str"):
        return v
    low = v.lower()
    if low in ("", "~", "null"):
        return None
    if low in _BOOL:
        return _BOOL[low]
    if _INT.match(v):
        return int(v.replace("_", ""))
    if _FLOAT.match(v) and any(c.isdigit() for c in v):
        return float(v.replace("_", ""))
    return v


def _build(node: yaml.Node, path: PathKey, doc: Doc, line: int | None = None) -> Any:
    # A mapping value is reported at its key's line, which is where a reader looks.
    doc.lines[path] = line if line is not None else node.start_mark.line + 1
    import yaml  # already loaded by _compose; a local name because the module does not import it at the top

    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return [_build(child, (*path, i), doc) for i, child in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                doc.problems.append(f"{doc.file}:{knode.start_mark.line + 1}: YAML merge keys (<<) are not supported")
                continue
            key = knode.value if isinstance(knode, yaml.ScalarNode) else str(knode.value)
            if key in out:
                doc.problems.append(
                    f"{doc.file}:{knode.start_mark.line + 1}: duplicate key {key!r} "
                    f"(first at line {doc.lines[(*path, key)]})"
                )
                continue
            out[key] = _build(vnode, (*path, key), doc, knode.start_mark.line + 1)
        return out
    return None  # pragma: no cover - aliases are resolved by the composer


class _Undecided(Exception):
    """The fast path cannot give a faithful answer; the line path must."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _Undecided("duplicate key")
    return d


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a moment.

    rapidyaml's C++ error handler prints ``line=3 col=1 ... ERROR: [parse] parse error`` and a source path
    to stderr before it throws, and the Python binding offers no way to replace it; the line path then
    reports the same error properly as ``FILE:LINE``. Callers hold ``_LOCK``; other threads' writes to
    stderr during the parse are lost, a price paid only while a file is parsed.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _fast(text: str) -> Any:
    if ryml is None:
        raise _Undecided("no rapidyaml")
    if "<<" in text or "&" in text or "!" in text:  # merge keys, anchors, tags: let PyYAML judge
        raise _Undecided("needs the full loader")
    try:
        with _LOCK, _quiet_stderr():  # two threads swapping fd 2 at once could leave it on /dev/null
            tree = ryml.parse_in_arena(text.encode("utf-8"))
        out = ryml.emit_json_malloc(tree, tree.root_id())
    except Exception as e:  # ryml raises its own exception types; the line path explains them
        raise _Undecided(str(e)) from None
    if not out or not out.strip():  # an empty or comment-only document
        return None
    try:
        return json.loads(out, object_pairs_hook=_unique_keys)
    except ValueError as e:
        raise _Undecided(str(e)) from None


def load_text(text: str, file: str) -> Doc:
    """Parse YAML text; a syntax error raises ConfigError naming ``file:line``."""
    try:
        return Doc(file, _fast(text), text)
    except _Undecided:
        doc = _compose(text, file)
        doc.text = text
        return doc


def _compose(text: str, file: str) -> Doc:
    # Imported here, not at the top: a valid file never needs PyYAML, and the agent's RSS budget is tight
    # (PyYAML and libyaml are ~1.5 MiB of it).
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the pure-Python one if built without libyaml
    try:
        node = yaml.compose(text, Loader=loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{file}:{line}: YAML syntax error: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{file}:1: YAML error: {e}") from None
    doc = Doc(file, None, _lines={})
    if node is not None:
        doc.data = _build(node, (), doc)
    return doc


def load_file(path: str | Path) -> Doc:
    """Read and parse a YAML file; an unreadable file raises ConfigError with the reason."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}:1: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}:1: not UTF-8 text: {e.reason}") from None
    return load_text(text, str(p))
