"""Rendering of ``diag check`` with rich: live progress on stderr while hosts run, then the summary and findings.

Kept out of :mod:`diag.remote` so that the library (and the agent) never import rich.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from diag.model import SEVERITY_RANK

if TYPE_CHECKING:
    from diag.model import HostResult, RunReport

_SEV_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
_STATUS_STYLE = {"ok": "green", "findings": "yellow"}
EXCERPT_LINES = 12


class LiveProgress:
    """A progress callback for :func:`diag.remote.runner.run_check` that draws on stderr (a TTY)."""

    def __init__(self, total: int, console: Console | None = None) -> None:
        self.total = total
        self.console = console or Console(stderr=True)
        self.lock = threading.Lock()
        self.running: dict[str, float] = {}
        self.done = 0
        self.failed = 0
        self.t0 = time.monotonic()
        self.live = Live(console=self.console, refresh_per_second=8, transient=True, get_renderable=self.render)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def __call__(self, event: str, host: str, result: HostResult | None) -> None:
        from diag.model import UNCHECKED

        with self.lock:
            if event == "start":
                self.running[host] = time.monotonic()
            else:
                self.running.pop(host, None)
                self.done += 1
                if result is not None and result.status in UNCHECKED:
                    self.failed += 1

    def render(self) -> Group:
        now = time.monotonic()
        with self.lock:
            slow = sorted(self.running.items(), key=lambda kv: kv[1])[:5]
            done, failed, running = self.done, self.failed, len(self.running)
        width = 30
        filled = int(width * done / self.total) if self.total else width
        bar = Text("[" + "#" * filled + "-" * (width - filled) + "] ", style="cyan")
        bar.append(f"{done}/{self.total} hosts done")
        if failed:
            bar.append(f", {failed} could not be checked", style="red")
        bar.append(f", {running} running, {now - self.t0:.1f} s")
        lines: list[Any] = [bar]
        if slow:
            lines.append(Text("slowest: " + ", ".join(f"{h} ({now - t:.1f} s)" for h, t in slow), style="dim"))
        return Group(*lines)


def _excerpt(text: str, subject: str) -> str:
    """The lines that show the problem: the header and the lines naming the subject, else the first lines."""
    lines = text.splitlines()
    if subject and len(lines) > EXCERPT_LINES:
        hits = [ln for ln in lines[1:] if subject in ln.split() or ln.rstrip().endswith(" " + subject)]
        if hits:
            return "\n".join([lines[0], *hits[: EXCERPT_LINES - 1]])
    if len(lines) > EXCERPT_LINES:
        return "\n".join([*lines[:EXCERPT_LINES], f"... ({len(lines) - EXCERPT_LINES} more lines)"])
    return "\n".join(lines)


def summary(report: RunReport, console: Console | None = None) -> None:
    """The table of hosts, then each finding with its evidence excerpts, then hosts that could not be checked."""
    console = console or Console()
    if report.skipped and not report.results:
        # The playbook applies to none of the targets (a cisco_ios playbook on a juniper_junos device): nothing was
        # checked, so one refusal line per host and exit 3, not an empty table and "no findings".
        for s in report.skipped:
            console.print(Text(f"{s['host']}: refused: {s['reason']}", style="bold red"), soft_wrap=True)
        return
    table = Table("host", "status", "worst", "findings", "duration", box=None, title=f"playbook {report.playbook}")
    for r in report.results:
        worst = r.worst
        truncated = any(s.truncated for s in r.steps)
        table.add_row(
            r.host,
            Text(r.status + (" (output cut)" if truncated else ""), style=_STATUS_STYLE.get(r.status, "bold red")),
            Text(worst or "-", style=_SEV_STYLE.get(worst or "", "")),
            str(len(r.findings)),
            f"{r.duration_s:.2f} s",
        )
    console.print(table)
    for s in report.skipped:
        console.print(f"[dim]{s['host']}: skipped: {s['reason']}")
    for r in report.results:  # a step whose commands the device's software lacks: said, not a finding
        for st in r.steps:
            if st.status == "skipped" and (st.reason or "").startswith("not applicable"):
                console.print(Text(f"{r.host}: step {st.id} {st.reason}", "dim"))
    findings = [(r.host, f) for r in report.results for f in r.findings]
    findings.sort(key=lambda hf: (-SEVERITY_RANK[hf[1].severity], hf[0]))
    for host, f in findings:
        console.print()
        head = Text()
        head.append(f"{f.severity.upper()} ", style=_SEV_STYLE[f.severity])
        head.append(f"{host}: {f.summary}", style="bold")
        head.append(f"  [{f.check}{', cause ' + f.cause if f.cause else ''}]", style="dim")
        console.print(head)
        for ev in f.evidence:
            exit_status = ev.data.get("exit_status")
            lines = ev.title.strip().splitlines() or [""]
            title = lines[0] + (f"  ... (step {ev.data.get('step')}, {len(lines)} lines)" if len(lines) > 1 else "")
            console.print(Text(f"  $ {title}   (exit {exit_status}, {ev.data.get('duration_s', 0):.2f} s)", "dim"))
            body = _excerpt(ev.text, f.subject)
            if body.strip():
                console.print(Text("    " + body.replace("\n", "\n    ")))
    cut = [(r.host, s) for r in report.results for s in r.steps if s.truncated]
    if cut:
        console.print()
        for host, step in cut:
            console.print(
                Text(
                    f"{host}: output of step {step.id} cut at the limit: kept {step.bytes_kept} of "
                    f"{step.bytes_sent} bytes",
                    "yellow",
                )
            )
    bad = [r for r in report.results if r.error]
    if bad:
        console.print()
        for r in bad:
            console.print(Text(f"{r.host}: {r.status}: {r.error}", style=_STATUS_STYLE.get(r.status, "red")))
    approvals = [(r.host, s) for r in report.results for s in r.steps if s.status == "needs_approval"]
    if approvals:
        console.print()
        for host, step in approvals:
            console.print(
                Text(f"{host}: step {step.id} not run: needs approval (--allow-changes): {step.command}", "yellow")
            )
    if not findings and not bad:
        console.print("[green]no findings")
