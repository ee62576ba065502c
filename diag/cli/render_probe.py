"""Human-readable rendering with rich for the CLI (kept apart so the agent never imports rich)."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

from diag.probes.runner import ProbeState

_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}


def probe_table(states: Mapping[str, ProbeState]) -> None:
    console = Console()
    table = Table("probe", "status", "samples", "time", "note", box=None)
    for s in sorted(states.values(), key=lambda s: s.name):
        status = "[green]ok" if s.success and not s.no_data else "[dim]no data" if s.no_data else "[red]failed"
        table.add_row(s.name, status, str(s.result.sample_count), f"{s.duration_s * 1000:.1f} ms", s.error or "")
    console.print(table)
    findings = [f for s in states.values() for f in s.result.findings]
    if not findings:
        console.print("[green]no findings")
        return
    ft = Table("severity", "check", "subject", "summary", box=None)
    for f in sorted(findings, key=lambda f: {"critical": 0, "warning": 1, "info": 2}[f.severity]):
        ft.add_row(f"[{_STYLE[f.severity]}]{f.severity}", f.check, f.subject, f.summary)
    console.print(ft)
