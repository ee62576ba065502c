"""The safe expression language of playbooks (``when:``, a check's ``if:``/``each:``, ``{{ }}`` in summaries).

Playbook text is never handed to ``eval``: it is parsed with :mod:`ast` and the tree is walked by a small
interpreter that knows only a whitelist of node types. There is no attribute access on Python objects at
all: ``a.b`` reads the key ``b`` of a mapping, so dunders, methods and modules are out of reach by
construction (names starting with ``_`` are refused as well, to make that obvious). The only callables
are the functions in :data:`FUNCTIONS`. Sizes are bounded: exponents, string/list repetition, integer
width and comprehension iterations, so a hostile playbook cannot hang or exhaust the controller.

Missing data is not an error: ``a.b`` where ``a`` is null or has no ``b`` gives null, arithmetic with
null gives null, and ordering comparisons with null are false. A check on output that a host could not
produce (a tool is missing) therefore does not fire, instead of failing the whole host. Everything else
that goes wrong while evaluating (``int('x')``, ``1/0``) raises :class:`ExprError` with a one-line message.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from diag.errors import DiagError

MAX_TEXT = 4000  # characters of one expression
MAX_EXPONENT = 100
MAX_INT_BITS = 4096
MAX_SEQUENCE = 100_000  # items or characters a computed string/list may hold
MAX_ITERATIONS = 100_000  # total loop turns of the comprehensions of one evaluation


class ExprError(DiagError):
    """An expression is invalid (at load time) or failed (at run time); the message is one line."""


def _number(x: Any, fn: str) -> float | int:
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise ExprError(f"{fn}() needs a number, got {_type(x)}")
    return x


_LEADING_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def _leading(x: str, fn: str) -> float:
    """The number a text starts with: "85%" -> 85, "12345 kB" -> 12345 (command output often carries units)."""
    m = _LEADING_NUMBER.match(x)
    if not m:
        raise ExprError(f"{fn}(): not a number: {x[:40]!r}")
    return float(m.group(0))


def _to_int(x: Any) -> int | None:
    """int() that also reads "85%", "12345 kB" and "12.0", and gives null for null (missing data)."""
    if x is None:
        return None
    if isinstance(x, str):
        s = x.strip()
        return int(s) if s.lstrip("+-").isdigit() else int(_leading(s, "int"))
    if isinstance(x, bool | int):
        return int(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ExprError("int(): not a finite number")
        return int(x)
    raise ExprError(f"int() of {_type(x)}")


def _to_float(x: Any) -> float | None:
    if x is None:
        return None
    if isinstance(x, str):
        return _leading(x, "float")
    if isinstance(x, bool | int | float):
        return float(x)
    raise ExprError(f"float() of {_type(x)}")


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ExprError(f"bad regular expression {pattern!r}: {e}") from None


def _match(pattern: Any, s: Any) -> bool:
    """True when the regex ``pattern`` is found anywhere in ``s`` (null never matches)."""
    if s is None:
        return False
    if not isinstance(pattern, str) or not isinstance(s, str):
        raise ExprError("match(regex, text) needs two strings")
    return _regex(pattern).search(s) is not None


def _search(pattern: Any, s: Any) -> Any:
    """The first match of ``pattern`` in ``s``: its named groups as a mapping, else group 1, else the match."""
    if s is None:
        return None
    if not isinstance(pattern, str) or not isinstance(s, str):
        raise ExprError("search(regex, text) needs two strings")
    m = _regex(pattern).search(s)
    if m is None:
        return None
    if m.re.groupindex:
        return m.groupdict()
    return m.group(1) if m.re.groups else m.group(0)


def _str_fn(name: str, fn: Callable[[str], Any]) -> Callable[[Any], Any]:
    def wrapped(s: Any) -> Any:
        if s is None:
            return None
        if not isinstance(s, str):
            raise ExprError(f"{name}() needs a string, got {_type(s)}")
        return fn(s)

    return wrapped


def _split(s: Any, sep: Any = None) -> list[str] | None:
    if s is None:
        return None
    if not isinstance(s, str) or not (sep is None or isinstance(sep, str)) or sep == "":
        raise ExprError("split(text[, separator]) needs strings")
    return s.split(sep)


def _default(x: Any, d: Any) -> Any:
    return d if x is None else x


def _iterable(x: Any, fn: str) -> Iterable[Any]:
    if x is None:
        return []
    if isinstance(x, list | tuple | str):
        return x
    if isinstance(x, Mapping):
        return list(x)
    raise ExprError(f"{fn}() needs a list, got {_type(x)}")


def _agg(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        items = list(_iterable(args[0], name)) if len(args) == 1 else list(args)
        items = [i for i in items if i is not None]  # missing values do not count
        if not items:
            return None if name in ("max", "min") else fn([])
        try:
            return fn(items)
        except TypeError as e:
            raise ExprError(f"{name}(): {e}") from None

    return wrapped


def _len(x: Any) -> int:
    if x is None:
        return 0
    if isinstance(x, str | list | tuple | Mapping):
        return len(x)
    raise ExprError(f"len() of {_type(x)}")


def _round(x: Any, digits: Any = 0) -> Any:
    if x is None:
        return None
    return round(_number(x, "round"), int(_number(digits, "round")))


def _abs(x: Any) -> Any:
    return None if x is None else abs(_number(x, "abs"))


def _sorted(x: Any) -> list[Any]:
    try:
        return sorted(_iterable(x, "sorted"))
    except TypeError as e:
        raise ExprError(f"sorted(): {e}") from None


def _keys(x: Any) -> list[Any]:
    if x is None:
        return []
    if not isinstance(x, Mapping):
        raise ExprError(f"keys() of {_type(x)}")
    return list(x)


def _values(x: Any) -> list[Any]:
    if x is None:
        return []
    if not isinstance(x, Mapping):
        raise ExprError(f"values() of {_type(x)}")
    return list(x.values())


def _str(x: Any) -> str:
    return "" if x is None else format_value(x)


#: The only callables an expression can reach.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": _len,
    "int": _to_int,
    "float": _to_float,
    "str": _str,
    "bool": bool,
    "abs": _abs,
    "round": _round,
    "min": _agg("min", min),
    "max": _agg("max", max),
    "sum": _agg("sum", sum),
    "any": _agg("any", any),
    "all": _agg("all", all),
    "sorted": _sorted,
    "keys": _keys,
    "values": _values,
    "lower": _str_fn("lower", str.lower),
    "upper": _str_fn("upper", str.upper),
    "strip": _str_fn("strip", str.strip),
    "lines": _str_fn("lines", str.splitlines),
    "split": _split,
    "match": _match,
    "search": _search,
    "default": _default,
}


def _type(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, Mapping):
        return "mapping"
    return type(x).__name__


_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_ORDER: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.BinOp,
    *_BINOPS,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    *_ORDER,
    ast.In,
    ast.NotIn,
    ast.Is,
    ast.IsNot,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Store,
    ast.Attribute,
    ast.Subscript,
    ast.Slice,
    ast.List,
    ast.Tuple,
    ast.Call,
    ast.IfExp,
    ast.ListComp,
    ast.GeneratorExp,
    ast.comprehension,
)


@dataclass(frozen=True, slots=True)
class Expr:
    """A checked expression: its text, its tree, and the free names it reads (to validate them early)."""

    text: str
    tree: ast.Expression
    names: frozenset[str]

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        """Evaluate against ``scope`` (name -> plain data); any failure is an ExprError with one line."""
        try:
            return _Eval(scope).ev(self.tree.body)
        except ExprError as e:
            raise ExprError(f"{self.text!r}: {e}") from None
        except (ArithmeticError, TypeError, ValueError, RecursionError) as e:
            # Python's own message ("unsupported operand type(s)...") is clear enough once it names the expression
            raise ExprError(f"{self.text!r}: {type(e).__name__}: {e}") from None

    def truth(self, scope: Mapping[str, Any]) -> bool:
        return bool(self.evaluate(scope))


def compile_expr(text: str) -> Expr:
    """Parse and check an expression; raise ExprError naming the construct that is not allowed."""
    if not isinstance(text, str) or not text.strip():
        raise ExprError("empty expression")
    if len(text) > MAX_TEXT:
        raise ExprError(f"expression longer than {MAX_TEXT} characters")
    try:
        with warnings.catch_warnings():
            # "\d" in a plain string literal is a warning today and an error in future Pythons: refuse it now
            warnings.simplefilter("error")
            tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        if "escape sequence" in str(e.msg):
            raise ExprError(f"{e.msg} in {text!r}: write regular expressions as raw strings, r'...'") from None
        raise ExprError(f"syntax error in {text!r}: {e.msg} (column {e.offset})") from None
    except (ValueError, RecursionError, MemoryError) as e:  # NUL bytes, absurd nesting
        raise ExprError(f"cannot parse {text[:60]!r}: {type(e).__name__}") from None
    bound: set[str] = set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ExprError(f"{_describe(node)} is not allowed in expressions: {text!r}")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExprError(f"names starting with '_' are not allowed: .{node.attr} in {text!r}")
        if isinstance(node, ast.Name):
            if node.id.startswith("_"):
                raise ExprError(f"names starting with '_' are not allowed: {node.id} in {text!r}")
            if isinstance(node.ctx, ast.Store):
                bound.add(node.id)
            else:
                names.add(node.id)
        if isinstance(node, ast.Constant) and not (node.value is None or isinstance(node.value, str | int | float)):
            raise ExprError(f"constant {node.value!r} is not allowed in {text!r}")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                what = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
                raise ExprError(f"unknown function {what!r} in {text!r} (known: {', '.join(sorted(FUNCTIONS))})")
            if node.keywords:
                raise ExprError(f"keyword arguments are not allowed in {text!r}")
            if any(isinstance(a, ast.Starred) for a in node.args):
                raise ExprError(f"*args is not allowed in {text!r}")
        if isinstance(node, ast.comprehension):
            if node.is_async:
                raise ExprError(f"async comprehension in {text!r}")
            targets = node.target.elts if isinstance(node.target, ast.Tuple) else [node.target]
            if not all(isinstance(t, ast.Name) for t in targets):
                raise ExprError(f"a comprehension may only bind plain names in {text!r}")
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    free = {n for n in names if n not in bound and not (n in calls and n in FUNCTIONS)}
    return Expr(text.strip(), tree, frozenset(free))


def _describe(node: ast.AST) -> str:
    kinds = {
        ast.Lambda: "lambda",
        ast.NamedExpr: "assignment (:=)",
        ast.JoinedStr: "an f-string",
        ast.Dict: "a dict literal",
        ast.Set: "a set literal",
        ast.DictComp: "a dict comprehension",
        ast.SetComp: "a set comprehension",
        ast.Starred: "*unpacking",
        ast.Await: "await",
        ast.Yield: "yield",
    }
    return kinds.get(type(node), type(node).__name__)


class _Eval:
    """One evaluation: the scope stack (comprehension variables shadow the outer scope) and the loop budget."""

    __slots__ = ("budget", "scope")

    def __init__(self, scope: Mapping[str, Any]) -> None:
        self.scope: Mapping[str, Any] = scope
        self.budget = MAX_ITERATIONS

    def ev(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in self.scope:
                return self.scope[node.id]
            if node.id in FUNCTIONS:
                raise ExprError(f"{node.id} is a function; call it as {node.id}(...)")
            raise ExprError(f"unknown name {node.id!r}")
        if isinstance(node, ast.Attribute):
            base = self.ev(node.value)
            if base is not None and not isinstance(base, Mapping):
                raise ExprError(f"cannot read .{node.attr} of a {_type(base)}")
            return _item(base, node.attr)
        if isinstance(node, ast.Subscript):
            base = self.ev(node.value)
            if isinstance(node.slice, ast.Slice):
                if base is None:
                    return None
                if not isinstance(base, list | tuple | str):
                    raise ExprError(f"cannot slice a {_type(base)}")
                lo, hi, st = (
                    None if x is None else self.ev(x) for x in (node.slice.lower, node.slice.upper, node.slice.step)
                )
                return base[slice(lo, hi, st)]
            return _item(base, self.ev(node.slice))
        if isinstance(node, ast.Compare):
            left = self.ev(node.left)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = self.ev(comp)
                if not _compare(op, left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.BoolOp):
            value: Any = None
            for v in node.values:
                value = self.ev(v)
                if isinstance(node.op, ast.And) and not value:
                    return value
                if isinstance(node.op, ast.Or) and value:
                    return value
            return value
        if isinstance(node, ast.UnaryOp):
            v = self.ev(node.operand)
            if isinstance(node.op, ast.Not):
                return not v
            if v is None:
                return None
            _number(v, "unary " + ("-" if isinstance(node.op, ast.USub) else "+"))
            return -v if isinstance(node.op, ast.USub) else +v
        if isinstance(node, ast.BinOp):
            return _binop(type(node.op), self.ev(node.left), self.ev(node.right))
        if isinstance(node, ast.IfExp):
            return self.ev(node.body) if self.ev(node.test) else self.ev(node.orelse)
        if isinstance(node, ast.List | ast.Tuple):
            return [self.ev(e) for e in node.elts]
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            args = [self.ev(a) for a in node.args]
            try:
                return FUNCTIONS[node.func.id](*args)
            except ExprError:
                raise
            except TypeError as e:  # wrong number of arguments
                raise ExprError(f"{node.func.id}(): {e}") from None
        if isinstance(node, ast.ListComp | ast.GeneratorExp):
            out: list[Any] = []
            self._comp(node.generators, 0, node.elt, out)
            return out
        raise ExprError(f"{_describe(node)} is not allowed")  # pragma: no cover - compile_expr refuses it

    def _comp(self, gens: list[ast.comprehension], i: int, elt: ast.expr, out: list[Any]) -> None:
        if i == len(gens):
            out.append(self.ev(elt))
            return
        gen = gens[i]
        outer = self.scope
        try:
            for item in _iterable(self.ev(gen.iter), "for"):
                self.budget -= 1
                if self.budget < 0:
                    raise ExprError(f"more than {MAX_ITERATIONS} loop iterations")
                self.scope = {**outer, **_bind(gen.target, item)}
                if all(self.ev(cond) for cond in gen.ifs):
                    self._comp(gens, i + 1, elt, out)
        finally:
            self.scope = outer


def _bind(target: ast.expr, item: Any) -> dict[str, Any]:
    if isinstance(target, ast.Name):
        return {target.id: item}
    assert isinstance(target, ast.Tuple)
    names = [t.id for t in target.elts if isinstance(t, ast.Name)]
    if not isinstance(item, list | tuple) or len(item) != len(names):
        raise ExprError(f"cannot unpack {_type(item)} into {len(names)} names")
    return dict(zip(names, item, strict=True))


def _item(base: Any, key: Any) -> Any:
    """``base.key`` / ``base[key]``: mappings and sequences only; missing -> null."""
    if base is None:
        return None
    if isinstance(base, Mapping):
        return base.get(key) if isinstance(key, str | int) else None
    if isinstance(base, list | tuple | str):
        if isinstance(key, bool) or not isinstance(key, int):
            raise ExprError(f"a {_type(base)} is indexed by a number, not {key!r}")
        return base[key] if -len(base) <= key < len(base) else None
    raise ExprError(f"cannot read {key!r} of a {_type(base)}")


def _compare(op: ast.cmpop, left: Any, right: Any) -> bool:
    if isinstance(op, ast.Eq):
        return bool(left == right)
    if isinstance(op, ast.NotEq):
        return bool(left != right)
    if isinstance(op, ast.Is):
        return left is right if right is None or left is None else left == right
    if isinstance(op, ast.IsNot):
        return left is not right if right is None or left is None else left != right
    if isinstance(op, ast.In | ast.NotIn):
        if right is None:
            found = False
        elif isinstance(right, str):
            if not isinstance(left, str):
                raise ExprError(f"'in <string>' needs a string on the left, got {_type(left)}")
            found = left in right
        elif isinstance(right, list | tuple | Mapping):
            found = left in right
        else:
            raise ExprError(f"'in' needs a list, string or mapping on the right, got {_type(right)}")
        return found if isinstance(op, ast.In) else not found
    if left is None or right is None:  # missing data never crosses a threshold
        return False
    try:
        return bool(_ORDER[type(op)](left, right))
    except TypeError:
        raise ExprError(f"cannot compare {_type(left)} {left!r:.30} with {_type(right)} {right!r:.30}") from None


def _binop(op: type[ast.operator], a: Any, b: Any) -> Any:
    if a is None or b is None:  # missing data stays missing (as NULL in SQL), and so never crosses a threshold
        return None
    if op is ast.Pow:
        _number(a, "**")
        _number(b, "**")
        if abs(b) > MAX_EXPONENT:
            raise ExprError(f"exponent {b} is larger than {MAX_EXPONENT}")
    if op is ast.Mult and (isinstance(a, str | list) or isinstance(b, str | list)):
        seq, n = (a, b) if isinstance(a, str | list) else (b, a)
        if isinstance(n, int) and len(seq) * max(n, 0) > MAX_SEQUENCE:
            raise ExprError(f"repetition longer than {MAX_SEQUENCE}")
    if op is ast.Mod and isinstance(a, str):
        raise ExprError("'%' formatting of strings is not supported; use {{ }} in summaries")
    if op is ast.Add and isinstance(a, str | list) and isinstance(b, str | list) and len(a) + len(b) > MAX_SEQUENCE:
        raise ExprError(f"result longer than {MAX_SEQUENCE}")
    out = _BINOPS[op](a, b)
    if isinstance(out, int) and out.bit_length() > MAX_INT_BITS:
        raise ExprError(f"number larger than {MAX_INT_BITS} bits")
    return out


def format_value(v: Any) -> str:
    """A value as a human reads it in a summary: 93.5, not 93.50000001; lists comma-separated."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.2f}".rstrip("0").rstrip(".")
    if isinstance(v, list | tuple):
        return ", ".join(format_value(x) for x in v)
    return str(v)


_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.S)


@dataclass(frozen=True, slots=True)
class Template:
    """Text with ``{{ expression }}`` parts, e.g. a finding's summary. Rendering never raises."""

    parts: tuple[str | Expr, ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(n for p in self.parts if isinstance(p, Expr) for n in p.names)

    def render(self, scope: Mapping[str, Any]) -> str:
        out: list[str] = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            try:
                out.append(format_value(p.evaluate(scope)))
            except ExprError:
                out.append(f"{{{{ {p.text} }}}}")  # a summary is still worth showing without one value
        return "".join(out)


def compile_template(text: str) -> Template:
    """Split ``text`` into literal parts and expressions; raise ExprError for a bad expression."""
    parts: list[str | Expr] = []
    pos = 0
    for m in _TEMPLATE.finditer(text):
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        parts.append(compile_expr(m.group(1)))
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    return Template(tuple(parts))
