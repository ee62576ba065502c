"""Diagnostic playbooks: the YAML model, its validation with FILE:LINE problems, and command rendering.

A playbook (``playbooks/NAME.yaml``) names the devices it applies to, declares variables with defaults, and
lists steps. A step runs one shell command, parses its output, and emits findings from checks written in the
safe expression language of :mod:`diag.remote.expr`. ``when:`` makes a step depend on earlier results.
See docs/playbooks.md for the reference; this module only loads and checks, :mod:`diag.remote.runner` runs.

Variables reach the shell only through :func:`shlex.quote`: a value such as ``;rm -rf /`` becomes one
harmless argument. Placeholders are ``{{ name }}`` (always a placeholder; an unknown name is a validation
problem) and ``{name}`` (a placeholder only for declared variables and ``host.FIELD``, so shell and awk
braces such as ``${HOME}`` or ``{print $1}`` stay literal).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from diag import yamlsrc
from diag.errors import ConfigError
from diag.model import Severity
from diag.remote import parsers, sh_join
from diag.remote import quote as shell_quote
from diag.remote.expr import Expr, ExprError, Template, compile_expr, compile_template

#: What a ``get:`` step may read from a network device's driver (records: diag/network/devices/getters.py).
GETTERS = ("interfaces", "neighbors", "bgp", "ospf", "routes", "health", "logs")
#: Host attributes a command or an expression may use as ``host.FIELD``.
HOST_FIELDS = ("name", "address", "port", "user", "device_type", "site")
#: Names every expression sees besides step ids and variables.
COMMON_NAMES = frozenset({"vars", "host", "true", "false", "null"})
#: Names a check sees about its own step.
STEP_NAMES = frozenset({"exit", "stdout", "stderr", "parsed", "timed_out"})
_RESERVED = COMMON_NAMES | STEP_NAMES | {"item", "step"}
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_CHECK_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_DOUBLE = re.compile(r"\{\{(.*?)\}\}", re.S)
_SINGLE = re.compile(r"(?<![{$])\{([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)?)\}(?!\})")
_PLACEHOLDER = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)?)\s*$")


class CheckSpec(msgspec.Struct, forbid_unknown_fields=True):
    check: str
    if_: str = msgspec.field(name="if")
    severity: Literal["info", "warning", "critical"]
    summary: str
    cause: str | None = None
    each: str | None = None
    subject: str | None = None
    evidence: list[str] = []


class StepSpec(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    run: str = ""
    get: str | None = None
    delay: float = 0
    description: str = ""
    sudo: bool = False
    timeout: float | None = None
    parse: parsers.ParseSpec | None = None
    when: str | None = None
    checks: list[CheckSpec] = []
    changes: bool = False


class AppliesTo(msgspec.Struct, forbid_unknown_fields=True):
    device_types: list[str] = []
    tags: list[str] = []


class VarSpec(msgspec.Struct, forbid_unknown_fields=True):
    default: Any = None
    description: str = ""
    required: bool = False


class PlaybookSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    steps: list[Any]  # each checked on its own, so that one bad step does not hide the problems of the others
    description: str = ""
    applies_to: AppliesTo = msgspec.field(default_factory=AppliesTo)
    vars: dict[str, Any] = {}
    facts: bool = False


@dataclass(frozen=True, slots=True)
class Command:
    """A command template: literal text and placeholders (``("var", name)`` or ``("host", field)``)."""

    parts: tuple[str | tuple[str, str], ...]

    def render(
        self, variables: Mapping[str, Any], host: Mapping[str, Any], quote_value: Callable[[Any], str] | None = None
    ) -> str:
        """The shell command with every value quoted; a list value becomes several quoted words.

        ``quote_value`` replaces shell quoting where the command is not for a shell (a network device CLI
        validates values instead: ``diag.network.devices.pool.cli_quote``).
        """
        q = quote_value or quote
        out: list[str] = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            kind, name = p
            value = variables.get(name) if kind == "var" else host.get(name)
            out.append(q(value))
        return "".join(out)


def quote(value: Any) -> str:
    """Shell-quote a variable value: None -> '', lists -> quoted words, everything else one word."""
    if value is None:
        return "''"
    if isinstance(value, list | tuple):
        return sh_join(value) if value else "''"
    return shell_quote(value)


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    cond: Expr
    severity: Severity
    summary: Template
    cause: str | None = None
    each: Expr | None = None
    subject: Template | None = None
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    command: Command
    run: str
    description: str = ""
    sudo: bool = False
    timeout: float | None = None
    parser: parsers.Parser | None = None
    parse_type: str | None = None
    when: Expr | None = None
    checks: tuple[Check, ...] = ()
    changes: bool = False
    get: str | None = None
    delay: float = 0


@dataclass(slots=True)
class Var:
    name: str
    default: Any = None
    description: str = ""
    required: bool = False


@dataclass(slots=True)
class Playbook:
    """A loaded, checked playbook, ready to run on any number of hosts."""

    name: str
    file: str
    steps: list[Step]
    description: str = ""
    device_types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    vars: dict[str, Var] = field(default_factory=dict)
    facts: bool = False

    def applies(self, device_type: str, tags: tuple[str, ...]) -> str | None:
        """None when the playbook is for this host, else the reason it is not."""
        if self.device_types and device_type not in self.device_types:
            return f"playbook {self.name} is for device types {', '.join(self.device_types)}, not {device_type}"
        if self.tags and not set(self.tags) & set(tags):
            return f"playbook {self.name} is for hosts tagged {', '.join(self.tags)}"
        return None

    def resolve_vars(self, overrides: Mapping[str, Any], host_vars: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults < the inventory host's vars < the caller's overrides; raise ConfigError for a missing one."""
        out: dict[str, Any] = {}
        for name, v in self.vars.items():
            if name in overrides:
                out[name] = coerce(v, overrides[name])
            elif host_vars and name in host_vars:
                out[name] = coerce(v, host_vars[name])
            elif v.required:
                raise ConfigError(
                    f"playbook {self.name}: variable {name!r} is required"
                    f"{' (' + v.description + ')' if v.description else ''}; pass --var {name}=VALUE"
                )
            else:
                out[name] = v.default
        return out


def coerce(var: Var, value: Any) -> Any:
    """A ``--var`` string converted to the type of the variable's default (list: comma-separated)."""
    if not isinstance(value, str):
        return value
    d = var.default
    try:
        if isinstance(d, bool):
            if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "yes", "1")
        if isinstance(d, int):
            return int(value)
        if isinstance(d, float):
            return float(value)
    except ValueError:
        kind = {"bool": "true or false", "int": "an integer", "float": "a number"}[type(d).__name__]
        raise ConfigError(f"--var {var.name}: {value!r} is not {kind}") from None
    if isinstance(d, list):
        return [x.strip() for x in value.split(",") if x.strip()]
    return value


def parse_var_args(items: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` from the command line; the value may hold anything, including ``=`` and ``;``."""
    out: dict[str, str] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not _IDENT.match(k.strip()):
            raise ConfigError(f"--var {item!r}: expected NAME=VALUE")
        out[k.strip()] = v
    return out


class _Loader:
    """Builds a Playbook from a Doc, recording every problem with its FILE:LINE."""

    def __init__(self, doc: yamlsrc.Doc, base: Path | None) -> None:
        self.doc = doc
        self.base = base

    def expr(self, path: yamlsrc.PathKey, text: str, allowed: set[str], what: str) -> Expr | None:
        try:
            e = compile_expr(text)
        except ExprError as err:
            self.doc.problem(path, f"{what}: {err}")
            return None
        self._names(path, e.names, allowed, what)
        return e

    def template(self, path: yamlsrc.PathKey, text: str, allowed: set[str], what: str) -> Template | None:
        try:
            t = compile_template(text)
        except ExprError as err:
            self.doc.problem(path, f"{what}: {err}")
            return None
        self._names(path, t.names, allowed, what)
        return t

    def _names(self, path: yamlsrc.PathKey, names: frozenset[str], allowed: set[str], what: str) -> None:
        for n in sorted(names - allowed):
            self.doc.problem(path, f"{what}: unknown name {n!r} (not an earlier step, a variable or a built-in)")

    def command(self, path: yamlsrc.PathKey, text: str, variables: set[str]) -> Command:
        parts: list[str | tuple[str, str]] = []

        def ref(name: str, strict: bool) -> tuple[str, str] | None:
            if name.startswith("host."):
                fld = name[5:]
                if fld in HOST_FIELDS:
                    return ("host", fld)
                if strict:
                    self.doc.problem(path, f"run: unknown host field {fld!r} (known: {', '.join(HOST_FIELDS)})")
                return None
            if name.startswith("vars."):
                name = name[5:]
            if name in variables:
                return ("var", name)
            if strict:
                self.doc.problem(path, f"run: unknown variable {name!r}; declare it under vars:")
            return None

        pos = 0
        for m in _DOUBLE.finditer(text):
            self._singles(text[pos : m.start()], parts, ref)
            inner = _PLACEHOLDER.match(m.group(1))
            if not inner:
                self.doc.problem(path, f"run: {{{{{m.group(1)}}}}} must name a variable or host.FIELD, nothing else")
            else:
                r = ref(inner.group(1), True)
                if r:
                    parts.append(r)
            pos = m.end()
        self._singles(text[pos:], parts, ref)
        return Command(tuple(parts))

    @staticmethod
    def _singles(text: str, parts: list[str | tuple[str, str]], ref: Any) -> None:
        pos = 0
        for m in _SINGLE.finditer(text):
            r = ref(m.group(1), False)
            if r is None:
                continue  # shell/awk braces: literal
            parts.append(text[pos : m.start()])
            parts.append(r)
            pos = m.end()
        parts.append(text[pos:])

    def build(self) -> Playbook | None:
        doc = self.doc
        if not isinstance(doc.data, dict):
            doc.problem((), "a playbook is a mapping with name, description, vars and steps")
            return None
        # partial: a bad top-level key is reported with the problems of the steps, not instead of them
        spec = doc.check_type((), doc.data, PlaybookSpec, partial=True)
        if spec is None:
            return None
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", spec.name):
            doc.problem(("name",), f"name {spec.name!r} may only hold letters, digits and _.-")

        variables: dict[str, Var] = {}
        for vname, raw in spec.vars.items():
            path: yamlsrc.PathKey = ("vars", vname)
            if not _IDENT.match(vname) or vname in _RESERVED:
                doc.problem(path, f"variable name {vname!r} must be an identifier and not one of {sorted(_RESERVED)}")
                continue
            if isinstance(raw, dict):
                vs = doc.check_type(path, raw, VarSpec)
                if vs is None:
                    variables[vname] = Var(vname)  # still declared: its uses must not cascade into more problems
                    continue
                if vs.required and vs.default is not None:
                    doc.problem(path, f"variable {vname!r}: required and a default exclude each other")
                variables[vname] = Var(vname, vs.default, vs.description, vs.required)
            else:
                variables[vname] = Var(vname, raw)
        var_names = set(variables)

        steps: list[Step] = []
        seen: dict[str, int] = {}
        check_ids: dict[str, str] = {}
        for i, raw_step in enumerate(spec.steps):
            path = ("steps", i)
            s = doc.check_type(path, raw_step, StepSpec)
            if s is None:
                continue
            if not _IDENT.match(s.id) or s.id in _RESERVED or s.id in var_names:
                doc.problem(
                    (*path, "id"),
                    f"step id {s.id!r} must be an identifier, not a variable name nor one of {sorted(_RESERVED)}",
                )
            if s.id in seen:
                doc.problem((*path, "id"), f"duplicate step id {s.id!r} (first is step {seen[s.id] + 1})")
            earlier = set(seen)
            seen.setdefault(s.id, i)
            if s.changes and not s.description.strip():
                doc.problem(
                    (*path, "changes"),
                    f"step {s.id!r} changes the host: say what it changes in description: (the approver reads it)",
                )
            if s.timeout is not None and s.timeout <= 0:
                doc.problem((*path, "timeout"), "timeout must be a positive number of seconds")
            if (s.get is None) == (not s.run.strip()):
                doc.problem(path, f"step {s.id!r}: give either run: (a command) or get: (device records), not both")
            if s.get is not None:
                if s.get not in GETTERS:
                    doc.problem((*path, "get"), f"get: {s.get!r} is not one of {', '.join(GETTERS)}")
                if s.parse is not None or s.sudo or s.changes:
                    doc.problem(path, f"step {s.id!r}: get: gives records already; no parse:, sudo: or changes:")
            if not 0 <= s.delay <= 300:
                doc.problem((*path, "delay"), "delay must be between 0 and 300 seconds")
            base_names = earlier | var_names | COMMON_NAMES
            when = self.expr((*path, "when"), s.when, base_names, "when") if s.when is not None else None
            command = self.command((*path, "run"), s.run, var_names)
            parser = None
            if s.parse is not None:
                try:
                    parser = parsers.prepare(s.parse, self.base)
                except parsers.OptionsError as e:
                    doc.problem((*path, "parse", e.field), f"parse ({type(s.parse).__struct_config__.tag}): {e}")
            checks: list[Check] = []
            for j, c in enumerate(s.checks):
                cpath = (*path, "checks", j)
                if not _CHECK_ID.match(c.check):
                    doc.problem((*cpath, "check"), f"check id {c.check!r} may only hold letters, digits and _.-")
                if c.check in check_ids:
                    doc.problem(
                        (*cpath, "check"), f"duplicate check id {c.check!r} (first in step {check_ids[c.check]})"
                    )
                check_ids.setdefault(c.check, s.id)
                names = base_names | STEP_NAMES | {s.id}
                each = self.expr((*cpath, "each"), c.each, names, "each") if c.each is not None else None
                if each is not None:
                    names = names | {"item"}
                cond = self.expr((*cpath, "if"), c.if_, names, "if")
                summary = self.template((*cpath, "summary"), c.summary, names, "summary")
                subject = self.template((*cpath, "subject"), c.subject, names, "subject") if c.subject else None
                for k, ev in enumerate(c.evidence):
                    if ev not in earlier and ev != s.id:
                        doc.problem((*cpath, "evidence", k), f"evidence: {ev!r} is not this or an earlier step")
                if cond is not None and summary is not None:
                    checks.append(Check(c.check, cond, c.severity, summary, c.cause, each, subject, tuple(c.evidence)))
            steps.append(
                Step(
                    id=s.id,
                    command=command,
                    run=s.run,
                    description=s.description,
                    sudo=s.sudo,
                    timeout=s.timeout,
                    parser=parser,
                    parse_type=type(s.parse).__struct_config__.tag if s.parse is not None else None,
                    when=when,
                    checks=tuple(checks),
                    changes=s.changes,
                    get=s.get,
                    delay=s.delay,
                )
            )
        if not spec.steps:
            doc.problem(("steps",), "a playbook needs at least one step")
        if doc.problems:
            return None
        return Playbook(
            name=spec.name,
            file=doc.file,
            steps=steps,
            description=spec.description,
            device_types=tuple(spec.applies_to.device_types),
            tags=tuple(spec.applies_to.tags),
            vars=variables,
            facts=spec.facts,
        )


def parse(doc: yamlsrc.Doc, base: Path | None = None) -> Playbook:
    """Validate a loaded document; raise ConfigError listing every ``FILE:LINE: message``."""
    pb = _Loader(doc, base).build()
    if pb is None or doc.problems:
        raise ConfigError(yamlsrc.by_line(doc.problems, doc.file) or [f"{doc.file}:1: invalid playbook"])
    return pb


def load(path: str | Path) -> Playbook:
    """Load and validate a playbook file."""
    p = Path(path)
    return parse(yamlsrc.load_file(p), p.parent)


def search_path(cwd: Path | None = None) -> list[Path]:
    """Where playbooks are looked up, in order: ./playbooks, then the shipped ones.

    The shipped playbooks live in the repository's ``playbooks/`` (next to the ``diag`` package in a checkout
    or an editable install) and are installed as data files under ``<prefix>/share/diag/playbooks``.
    """
    dirs = [(cwd or Path.cwd()) / "playbooks"]
    repo = Path(__file__).resolve().parent.parent.parent / "playbooks"
    for d in (repo, Path(sys.prefix) / "share" / "diag" / "playbooks"):
        if d.is_dir() and d.resolve() not in {x.resolve() for x in dirs if x.is_dir()}:
            dirs.append(d)
    return dirs


def available(cwd: Path | None = None) -> dict[str, Path]:
    """Playbook name (file stem) -> file; an earlier directory wins."""
    out: dict[str, Path] = {}
    for d in search_path(cwd):
        if d.is_dir():
            for f in sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")):
                out.setdefault(f.stem, f)
    return out


def find(name_or_file: str, cwd: Path | None = None) -> Path:
    """A playbook file by path or by name; ConfigError lists the known names otherwise."""
    p = Path(name_or_file)
    if p.suffix in (".yaml", ".yml") or "/" in name_or_file:
        if not p.is_file():
            raise ConfigError(f"{name_or_file}: no such playbook file")
        return p
    known = available(cwd)
    if name_or_file in known:
        return known[name_or_file]
    where = ", ".join(str(d) for d in search_path(cwd))
    raise ConfigError(
        f"no playbook named {name_or_file!r} (looked in {where}); known: {', '.join(sorted(known)) or 'none'}"
    )
