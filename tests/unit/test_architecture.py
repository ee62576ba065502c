"""The layout's rules (docs/architecture.md): import-linter contracts, no import cycles, front doors in their place,
incident SQL only in diag/incidents/. Each rule is also shown to bite on a copy of the tree that breaks it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIAG = ROOT / "diag"
LINT = Path(sys.executable).with_name("lint-imports")
#: The incident store's tables (diag/incidents/store.py SCHEMA).
INCIDENT_TABLES = ("incidents", "events", "outbox", "silences", "counters")
_SQL = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+(" + "|".join(INCIDENT_TABLES) + r")\b")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_contracts_hold() -> None:
    p = _lint(ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 broken" in p.stdout


def test_a_broken_boundary_fails_the_contracts(tmp_path: Path) -> None:
    shutil.copytree(DIAG, tmp_path / "diag", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    # a collector that reaches into a front door: the kind of shortcut the layers exist to stop
    (tmp_path / "diag" / "probes" / "shortcut.py").write_text('"""A broken rule."""\n\nimport diag.cli.main\n')
    p = _lint(tmp_path)
    assert p.returncode != 0
    assert "diag.probes is not allowed to import diag.cli" in p.stdout


def test_no_import_cycles() -> None:
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "import_cycles.py"), "--all"], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout
    assert "no import cycles" in p.stdout


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path) -> None:
    shutil.copytree(DIAG, tmp_path / "diag", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "import_cycles.py", tmp_path / "scripts")
    errors = tmp_path / "diag" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom diag import inventory  # noqa\n")  # inventory imports errors
    p = subprocess.run([sys.executable, str(tmp_path / "scripts" / "import_cycles.py")], capture_output=True, text=True)
    assert p.returncode == 1
    assert "diag.errors" in p.stdout and "diag.inventory" in p.stdout


def test_command_modules_live_in_diag_cli() -> None:
    stray = [
        str(p.relative_to(ROOT))
        for p in DIAG.rglob("*.py")
        if (p.stem == "cli" or p.stem.startswith("cli_")) and DIAG / "cli" not in p.parents
    ]
    assert stray == []


def test_incident_sql_lives_in_diag_incidents() -> None:
    found = []
    for p in DIAG.rglob("*.py"):
        if DIAG / "incidents" in p.parents:
            continue
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if _SQL.search(line):
                found.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()}")
    assert found == []
    # and the pattern does see such SQL where it is allowed
    assert _SQL.search((DIAG / "incidents" / "store.py").read_text())


def test_every_top_level_module_is_placed_in_the_contracts() -> None:
    """A new package must be placed in the layers (library or front door) before the rules can guard it."""
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    library = next(c for c in cfg if c["name"].startswith("The library never imports"))
    placed = set(library["source_modules"]) | set(library["forbidden_modules"])
    top = {
        f"diag.{p.stem if p.is_file() else p.name}"
        for p in DIAG.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())
    }
    assert sorted(top - placed) == []
