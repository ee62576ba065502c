"""The playbook expression language: what it computes, and what it refuses (hostile input included)."""

from __future__ import annotations

from typing import Any

import pytest

from diag.remote.expr import ExprError, compile_expr, compile_template, format_value

SCOPE: dict[str, Any] = {
    "df": {"exit": 0, "parsed": [{"mount": "/", "use_pct": 97}, {"mount": "/boot", "use_pct": 12}]},
    "load": {"parsed": {"load5": 3.5, "cpus": 2}},
    "missing": None,
    "threshold": 90,
    "name": "nginx.service",
    "text": "Out of memory: Killed process 4121 (java)",
}


def ev(text: str, **extra: Any) -> Any:
    return compile_expr(text).evaluate({**SCOPE, **extra})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("load.parsed.load5 / load.parsed.cpus >= 1.5", True),
        ("1 < load.parsed.load5 < 3", False),
        ("df.exit == 0 and len(df.parsed) == 2", True),
        ("[r.mount for r in df.parsed if r.use_pct >= threshold]", ["/"]),
        ("any(r.use_pct > 95 for r in df.parsed)", True),
        ("max([r.use_pct for r in df.parsed])", 97),
        ("sum([r.use_pct for r in df.parsed]) / len(df.parsed)", 54.5),
        ("df.parsed[-1].mount", "/boot"),
        ("df.parsed[5]", None),
        ("df['parsed'][0]['mount']", "/"),
        ("'nginx' in name and lower(name) == 'nginx.service'", True),
        ("name not in ['sshd', 'cron']", True),
        ("match(r'\\.service$', name)", True),
        ("search(r'Killed process (\\d+)', text)", "4121"),
        ("search(r'process (?P<pid>\\d+) \\((?P<comm>\\w+)\\)', text).comm", "java"),
        ("int('85%') + int(' 12 ') + int('3.9')", 100),
        ("float('2.5 kB') * 2", 5.0),
        ("round(2 ** 10 / 3, 1)", 341.3),
        ("'yes' if threshold > 50 else 'no'", "yes"),
        ("split('a b  c')[1:]", ["b", "c"]),
        ("lines('x\\ny')", ["x", "y"]),
        ("default(missing, 'n/a')", "n/a"),
        ("not missing", True),
        ("missing is None and missing is null", True),
        ("true and not false", True),
        ("[(a, b) for a, b in [[1, 2], [3, 4]]]", [[1, 2], [3, 4]]),
    ],
)
def test_evaluates(text: str, expected: Any) -> None:
    assert ev(text, null=None, true=True, false=False) == expected


def test_missing_data_never_fires_a_threshold() -> None:
    assert ev("missing.use_pct >= 90") is False
    assert ev("missing.a.b.c") is None
    assert ev("missing.x / 2 > 1") is False
    assert ev("len(missing)") == 0
    assert ev("max(missing)") is None
    assert ev("df.parsed[0].nope < 3") is False


@pytest.mark.parametrize(
    "hostile",
    [
        "__import__('os').system('touch /tmp/pwned')",
        "().__class__.__bases__[0].__subclasses__()",
        "name.__class__",
        "df.__dict__",
        "_private",
        "open('/etc/shadow').read()",
        "eval('1')",
        "exec('x=1')",
        "name.upper()",
        "(lambda: 1)()",
        "[x for x in ()].__len__",
        "f'{name}'",
        "{'a': 1}",
        "{1, 2}",
        "(x := 1)",
        "getattr(name, 'upper')",
        "len(name, key=1)",
        "print(*df.parsed)",
    ],
)
def test_refuses_hostile_constructs_at_compile_time(hostile: str) -> None:
    with pytest.raises(ExprError):
        compile_expr(hostile)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9 ** 999999999", "exponent"),
        ("2 ** 100 ** 100", "exponent"),
        ("'a' * 10 ** 9", "repetition"),
        ("[1] * 1000000", "repetition"),
        (
            "(2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100)"
            " * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100)"
            " * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100)"
            " * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100)"
            " * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100)"
            " * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100) * (2 ** 100)",
            "bits",
        ),
        ("len([1 for a in big for b in big for c in big])", "iterations"),
        ("'%s' % name", "formatting"),
        ("1 / 0", "ZeroDivisionError"),
        ("int('abc')", "not a number"),
        ("name < 3", "cannot compare"),
        ("name.upper", "cannot read"),
        ("undefined_name", "unknown name"),
        ("len", "is a function"),
        ("match('(', name)", "bad regular expression"),
    ],
)
def test_evaluation_errors_are_one_line_expr_errors(text: str, message: str) -> None:
    with pytest.raises(ExprError) as e:
        ev(text, big=list(range(100)))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_compile_reports_syntax_errors_and_free_names() -> None:
    with pytest.raises(ExprError, match="syntax error"):
        compile_expr("df.parsed[")
    with pytest.raises(ExprError, match="raw strings"):
        compile_expr("match('\\d+', name)")
    with pytest.raises(ExprError, match="empty"):
        compile_expr("  ")
    with pytest.raises(ExprError, match="longer than"):
        compile_expr("1 + " * 2000 + "1")
    e = compile_expr("[r.mount for r in df.parsed if r.use_pct > threshold] and len(x)")
    assert e.names == frozenset({"df", "threshold", "x"})


def test_templates_render_values_and_survive_errors() -> None:
    t = compile_template("{{ df.parsed[0].mount }} is {{ df.parsed[0].use_pct }}% full ({{ 1/0 }})")
    assert t.render(SCOPE) == "/ is 97% full ({{ 1/0 }})"
    assert t.names == frozenset({"df"})
    assert format_value(93.50000001) == "93.5"
    assert format_value(4.0) == "4"
    assert format_value(["a", 1, None]) == "a, 1, -"
    assert format_value(True) == "true"
    with pytest.raises(ExprError):
        compile_template("{{ __import__('os') }}")
