"""``diag report``: support-quality figures for a period from the incident store, as HTML, CSV or JSON.

``--from``/``--to`` take dates or ISO times (UTC); the default period is the last 30 days up to now. The
per-engineer section needs ``--role lead`` (the API enforces the same with the token's role).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from diag.cli.common import number
from diag.errors import ConfigError


def _when(text: str, what: str) -> float:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        msg = f"--{what}: {text!r} is not a date or ISO 8601 time (e.g. 2026-11-01 or 2026-11-01T08:00Z)"
        raise ConfigError([msg]) from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def cmd_report(args: argparse.Namespace) -> int:
    from diag.cli.incidents import _settings, _store
    from diag.reports import data, figures, render

    end = _when(args.to, "to") if args.to else time.time()
    start = _when(args.from_, "from") if args.from_ else end - args.days * figures.DAY
    if start >= end:
        raise ConfigError([f"--from must be before --to ({render.iso(start)} >= {render.iso(end)})"])
    settings, inv = _settings(args)
    from diag.line1.ledger import FILENAME as LINE1_DB

    if not settings.database_url and not settings.db_path.exists() and (Path(settings.data) / LINE1_DB).exists():
        rows = []  # only line-1 automation ran here: the report has its section and empty incident figures
    else:
        store, settings = _store(args)
        try:
            rows = data.load(store, end)
        finally:
            store.close()
    if args.role == "lead" and settings.tickets.get("backend") == "redmine" and not args.no_tickets:
        # Per-engineer figures also count what people did in Redmine (who answered or took each ticket).
        from diag.incidents.service import make_backend
        from diag.reports.redmine import enrich

        enrich(rows, make_backend(settings))
    opts = figures.Options(
        start=start,
        end=end,
        role=args.role,
        groups={h.name: h.groups for h in inv.hosts.values()} if inv is not None else None,
        down_checks=frozenset(settings.down_checks),
        slo=args.slo,
    )
    if args.format == "csv":
        text = render.to_csv(rows, start, end)
    else:
        report = figures.compute(rows, opts)
        from diag.reports import line1

        people = line1.compute(Path(settings.data), start, end)  # tickets people filed (docs/line1.md)
        if people is not None:
            report["line1"] = people
        text = render.to_json(report) if args.format == "json" else render.to_html(report)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("report", help="support-quality report for a period (HTML, CSV, JSON)")
    p.add_argument("--inventory", "-i", help="inventory file (its agent: section; default ./inventory.yaml)")
    p.add_argument("--data", help="data directory (default: the inventory's agent.data, else ./.diag)")
    p.add_argument("--from", dest="from_", help="start (date or ISO time, UTC); default: --days before --to")
    p.add_argument("--to", help="end, exclusive (default: now)")
    p.add_argument(
        "--days",
        type=number(0.0, maximum=36600),
        default=30.0,
        help="period length when --from is not given (default 30, at most 36600)",
    )
    p.add_argument("--format", choices=["html", "csv", "json"], default="html")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.add_argument("--role", choices=["engineer", "lead"], default="engineer", help="lead adds per-engineer figures")
    p.add_argument("--no-tickets", action="store_true", help="with --role lead: do not read the ticket system")
    p.add_argument(
        "--slo",
        type=number(0.0, maximum=1.0),
        default=0.999,
        help="availability objective per host/service, above 0 and at most 1 (default 0.999)",
    )
    p.set_defaults(func=cmd_report)
