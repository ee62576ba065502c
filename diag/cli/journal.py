"""``diag journal [--since WHEN] [--json]`` (read the event journal), ``diag journal verify [--key K] [--anchor F]``
(check its chain, its key and its external anchors), ``diag journal key new FILE`` and ``diag journal anchor``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diag.cli.common import DEFAULT_DATA, positive_int
from diag.errors import ConfigError, DiagError
from diag.journal.period import parse_since


def _journal_path(args: argparse.Namespace) -> Path:
    from diag.journal import FILENAME

    path = Path(args.data) / FILENAME
    if not path.exists():
        raise ConfigError(f"{path}: no journal here (nothing was recorded with --data {args.data})")
    return path


def cmd_list(args: argparse.Namespace) -> int:
    from diag.journal import Journal

    with Journal(_journal_path(args), verify_only=True) as j:
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


def _key_ref(value: str | None) -> str | None:
    """``--key``: a reference (file:PATH, env:NAME) or a plain path."""
    if value is None or value.startswith(("file:", "env:")):
        return value
    return f"file:{value}"


def cmd_verify(args: argparse.Namespace) -> int:
    from diag.journal import load_key
    from diag.journal.anchor import check, parse

    key_ref = _key_ref(args.key)
    try:
        key = load_key(key_ref) if key_ref else None
    except DiagError as e:  # the key named by --key (or $DIAG_JOURNAL_KEY) is the user's input: exit 2
        raise ConfigError(f"--key: {e}") from None
    anchors = []
    for a in args.anchor or []:
        try:
            anchors += parse(Path(a))
        except OSError as e:
            raise ConfigError(f"{a}: cannot read the anchor file: {e.strerror}") from None
        if not anchors:
            raise ConfigError(f"{a}: no diag-journal-anchor line in it")
    # Opened with the given key when there is one: a journal keyed with another key is refused (exit 3).
    with _open_plain(args) as j:
        n, problems = j.verify(key)
        problems += check(j, anchors)
        head_seq, head = j.head_record()
        keyed = j.keyed_from is not None
    for p in problems:
        print(f"{args.data}/journal.db: {p}", file=sys.stderr)
    if problems:
        print(f"journal chain BROKEN: {len(problems)} problem(s) in {n} records", file=sys.stderr)
        return 1
    extra = ("; keyed" if keyed else "; not keyed") + (f"; {len(anchors)} anchor(s) match" if anchors else "")
    print(f"journal chain ok: {n} records, head {head_seq} {head}{extra}")
    return 0


def _open_plain(args: argparse.Namespace) -> Any:
    """The journal file for reading and verifying: its own key reference is used only when it can be read."""
    from diag.journal import Journal

    return Journal(_journal_path(args), verify_only=True)


def cmd_key_new(args: argparse.Namespace) -> int:
    import os
    import secrets

    path = Path(args.file)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    except OSError as e:
        raise ConfigError(f"{path}: cannot create the key file: {e.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    print(f"journal key written to {path} (mode 0400); set agent.journal.key: file:{path.resolve()}")
    return 0


def cmd_anchor(args: argparse.Namespace) -> int:
    from diag.journal import Journal
    from diag.journal.anchor import line, write

    with Journal(_journal_path(args), verify_only=True) as j:
        text = line(j)
    try:
        write(args.to, text)
    except OSError as e:
        raise ConfigError(f"{args.to}: cannot append the anchor: {e.strerror}") from None
    print(text)
    return 0


def add_commands(sub: Any) -> None:
    """Register ``journal`` (list) and ``journal verify``."""
    p = sub.add_parser("journal", help="the event journal: who ran what, where, when, with what result")
    p.add_argument("--data", default=DEFAULT_DATA, help="data directory (default ./.diag)")
    p.add_argument("--since", help="only records since: 30m, 2h, 7d or an ISO date/time (UTC)")
    p.add_argument("--action", help="only this action or its family (check, command.sent, approval, login...)")
    p.add_argument("--actor", help="only records of this actor (cli:USER, token:NAME, ...)")
    p.add_argument("--target", help="only records about this target (host, job, incident ...)")
    p.add_argument("--limit", type=positive_int, help="only the newest N records")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p.set_defaults(func=cmd_list)
    jsub = p.add_subparsers(dest="action_cmd", required=False, metavar="verify|key|anchor")
    v = jsub.add_parser("verify", help="check the hash chain; exit 1 naming each record that does not fit")
    # SUPPRESS: `diag journal --data X verify` keeps X (a subparser default would override it)
    v.add_argument("--data", default=argparse.SUPPRESS, help="data directory (default ./.diag)")
    v.add_argument("--key", help="the journal's key (file:PATH, env:NAME or a path): checks keyed records with it")
    v.add_argument(
        "--anchor", action="append", metavar="FILE", help="a file with anchor lines (sink file or syslog export)"
    )
    v.set_defaults(func=cmd_verify)
    k = jsub.add_parser("key", help="make a journal key: `diag journal key new FILE`")
    k.add_argument("key_cmd", choices=["new"])
    k.add_argument("file", help="where to write it (outside the data directory)")
    k.set_defaults(func=cmd_key_new)
    an = jsub.add_parser("anchor", help="append the journal's head to an anchor sink now (a file or syslog)")
    an.add_argument("--data", default=argparse.SUPPRESS, help="data directory (default ./.diag)")
    an.add_argument("--to", required=True, help="an anchor file (on another mount) or 'syslog'")
    an.set_defaults(func=cmd_anchor)
