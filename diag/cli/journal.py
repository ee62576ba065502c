"""``diag journal [--since WHEN] [--json]`` (read the event journal) and ``diag journal verify`` (check its chain)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diag.cli.common import DEFAULT_DATA
from diag.errors import ConfigError
from diag.journal.period import parse_since


def _journal_path(args: argparse.Namespace) -> Path:
    from diag.journal import FILENAME

    path = Path(args.data) / FILENAME
    if not path.exists():
        raise ConfigError(f"{path}: no journal here (nothing was recorded with --data {args.data})")
    return path


def cmd_list(args: argparse.Namespace) -> int:
    from diag.journal import Journal

    with Journal(_journal_path(args)) as j:
        recs = j.query(
            since=parse_since(args.since) if args.since else None,
            action=args.action,
            actor=args.actor,
            target=args.target,
            limit=args.limit,
            newest_first=args.limit is not None,
        )
    if args.limit is not None:
        recs.reverse()  # the newest N, printed oldest first
    if args.json:
        json.dump([r.to_dict() for r in recs], sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    for r in recs:
        d = r.to_dict()
        extra = _short(r.details)
        line = f"{r.seq:>6} {d['time']} {r.actor:<20} {r.action:<18} {r.target:<20} {r.result}"
        print(line + ("  " + extra if extra else ""))
    return 0


def _short(details: dict[str, Any]) -> str:
    keys = ("playbook", "step", "command", "check", "summary", "job", "approval", "incident", "reason")
    parts = [f"{k}={details[k]}" for k in keys if details.get(k) not in (None, "")]
    text = " ".join(str(p) for p in parts).replace("\n", " ")
    return text if len(text) <= 160 else text[:157] + "..."


def cmd_verify(args: argparse.Namespace) -> int:
    from diag.journal import Journal

    with Journal(_journal_path(args)) as j:
        n, problems = j.verify()
        head = j.head()
    for p in problems:
        print(f"{args.data}/journal.db: {p}", file=sys.stderr)
    if problems:
        print(f"journal chain BROKEN: {len(problems)} problem(s) in {n} records", file=sys.stderr)
        return 1
    print(f"journal chain ok: {n} records, head {head}")
    return 0


def add_commands(sub: Any) -> None:
    """Register ``journal`` (list) and ``journal verify``."""
    p = sub.add_parser("journal", help="the event journal: who ran what, where, when, with what result")
    p.add_argument("--data", default=DEFAULT_DATA, help="data directory (default ./.diag)")
    p.add_argument("--since", help="only records since: 30m, 2h, 7d or an ISO date/time (UTC)")
    p.add_argument("--action", help="only this action or its family (check, command.sent, approval, login...)")
    p.add_argument("--actor", help="only records of this actor (cli:USER, token:NAME, ...)")
    p.add_argument("--target", help="only records about this target (host, job, incident ...)")
    p.add_argument("--limit", type=int, help="only the newest N records")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p.set_defaults(func=cmd_list)
    jsub = p.add_subparsers(dest="action_cmd", required=False, metavar="verify")
    v = jsub.add_parser("verify", help="check the hash chain; exit 1 naming each record that does not fit")
    # SUPPRESS: `diag journal --data X verify` keeps X (a subparser default would override it)
    v.add_argument("--data", default=argparse.SUPPRESS, help="data directory (default ./.diag)")
    v.set_defaults(func=cmd_verify)
