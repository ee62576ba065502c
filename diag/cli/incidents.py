"""``diag incidents list|show|ack|retry|silence|deliver`` and ``diag kb validate|list``.

``list`` and ``show ID`` read the incident database in the data directory (``--data``, else the inventory's
``agent.data``, else ``./.diag``); ``--json`` prints one JSON document (contract in DESIGN.md). ``deliver``
runs the outbox once to the end (what the agent does in the background), e.g. after a ticket-system outage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diag.cli.common import positive_int, seconds
from diag.errors import InvalidInput


def _settings(args: argparse.Namespace) -> Any:
    from diag.agent import daemon as agent
    from diag.cli.common import inventory_path
    from diag.incidents.settings import from_mapping

    cfg, inv = agent.load_config(inventory_path(args), data=getattr(args, "data", None))
    settings = cfg.incidents if cfg.incidents is not None else from_mapping({}, cfg.data)
    if getattr(args, "data", None):
        settings.data = Path(args.data)
    return settings, inv


def _store(args: argparse.Namespace) -> Any:
    from diag.incidents.stores import open_store

    settings, _ = _settings(args)
    if not settings.database_url and not settings.db_path.exists():
        raise InvalidInput(f"{settings.db_path}: no incident database here (is --data right?)")
    return open_store(settings), settings


def _local_ticket(settings: Any, ticket_id: str | None) -> dict[str, Any] | None:
    if ticket_id is None or settings.tickets.get("backend", "local") != "local":
        return None
    from diag.exporters.tickets.local import LocalTickets

    path = Path(settings.tickets.get("path") or settings.data / "tickets.sqlite")
    if not path.exists():
        return None
    lt = LocalTickets(path)
    try:
        return lt.ticket(int(ticket_id))
    finally:
        lt.close_db()


def cmd_list(args: argparse.Namespace) -> int:
    from diag.incidents.store import ACTIVE_STATES

    store, _ = _store(args)
    states = None if args.all else (args.state or list(ACTIVE_STATES))
    rows = store.query(states, args.limit)
    if args.json:
        json.dump({"incidents": [i.to_dict() for i in rows]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    from diag.incidents.bundle import when

    table = Table("id", "state", "sev", "line", "class", "host", "check", "summary", "last seen", "ticket", box=None)
    for i in rows:
        ticket = f"{i.ticket_backend}#{i.ticket_id}" if i.ticket_id else "-"
        state = i.state + (" flapping" if i.doc.get("flapping") else "")
        table.add_row(
            str(i.id), state, i.severity, i.line, i.classification, i.host, i.check_id, i.summary[:60],
            when(i.last_seen), ticket,
        )  # fmt: skip
    Console().print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    store, settings = _store(args)
    inc = store.get(args.id)
    if inc is None:
        raise InvalidInput(f"no incident {args.id}")
    events = store.events(inc.id)
    intents = store.intents(inc.id)
    ticket = _local_ticket(settings, inc.ticket_id)
    if args.json:
        doc = {
            "incident": inc.to_dict(),
            "events": [e.to_dict() for e in events],
            "outbox": [
                {"id": o.id, "action": o.action, "state": o.state, "attempts": o.attempts, "last_error": o.last_error}
                for o in intents
            ],
            "ticket": ticket,
        }
        json.dump(doc, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    from diag.incidents.bundle import when

    print(f"incident {inc.id}: {inc.summary}")
    for k in ("state", "host", "check_id", "subject", "severity", "classification", "line", "priority", "occurrences"):
        print(f"  {k:15} {getattr(inc, k)}")
    for k in ("first_seen", "last_seen", "opened_at", "acked_at", "resolved_at", "respond_due", "resolve_due"):
        print(f"  {k:15} {when(getattr(inc, k))}")
    if inc.ticket_id:
        print(f"  {'ticket':15} {inc.ticket_backend}#{inc.ticket_id} {inc.ticket_url or ''}")
    if inc.doc.get("impact"):
        print(f"  {'impact':15} {', '.join(inc.doc['impact'])}")
    kb = inc.doc.get("kb")
    if kb:
        print(f"  {'kb':15} {kb['id']} ({kb['title']})")
    for i, h in enumerate(inc.doc.get("hypotheses") or [], 1):
        print(f"  hypothesis {i}: {h['title']} (score {h['score']}): {h['why']}")
    print("journal:")
    for e in events:
        print(f"  {when(e.at)}  {e.actor:12} {e.kind:14} {e.text}")
    pending = [o for o in intents if o.state != "done"]
    for o in pending:
        print(f"  outbox: {o.action} {o.state} after {o.attempts} attempt(s): {o.last_error or ''}")
    return 0


def _service(args: argparse.Namespace) -> Any:
    from diag.incidents.service import IncidentService

    settings, inv = _settings(args)
    return IncidentService(settings, inv.hosts if inv else {})


def cmd_ack(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        inc = svc.engine.acknowledge(args.id, args.by)
    print(f"incident {inc.id} acknowledged by {args.by}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        n = svc.outbox.retry(args.id)
    print(f"incident {args.id}: {n} parked deliveries queued again")
    return 0


def cmd_silence(args: argparse.Namespace) -> int:
    from diag.incidents.durations import parse_duration

    try:
        seconds = parse_duration(args.duration)
    except ValueError as e:
        raise InvalidInput(f"--for: {e}") from None
    with _service(args) as svc:
        sid = svc.engine.silence(args.host or [], args.check or [], seconds, args.reason, args.by)
    print(f"silence {sid} until {seconds:g} s from now")
    return 0


def cmd_deliver(args: argparse.Namespace) -> int:
    """Run the outbox until nothing is due (or --timeout); exit 1 when deliveries remain."""
    with _service(args) as svc:
        ok = svc.outbox.drain(args.timeout)
        depth = svc.store.outbox_depth()
        print(json.dumps({"drained": ok, "outbox": depth, "last_error": svc.outbox.last_error}))
    return 0 if ok else 1


def cmd_kb_validate(args: argparse.Namespace) -> int:
    from diag.incidents.knowledge import KnowledgeBase

    kb = KnowledgeBase.load([Path(p) for p in args.paths], shipped=not args.paths)
    print(f"{len(kb.entries)} entries: ok")
    return 0


def cmd_kb_list(args: argparse.Namespace) -> int:
    from diag.incidents.knowledge import KnowledgeBase

    kb = KnowledgeBase.load([Path(p) for p in args.paths])
    if args.json:
        json.dump([e.summary() for e in kb.entries], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for e in kb.entries:
        flags = ("typical" if e.typical else "atypical") + (", verified" if e.verified else ", NOT verified")
        print(f"{e.id:28} {e.line} {e.priority:7} {flags:24} {e.title}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inventory", "-i", help="inventory file (its agent: section; default ./inventory.yaml)")
    p.add_argument("--data", help="data directory (default: the inventory's agent.data, else ./.diag)")


def add_commands(sub: Any) -> None:
    p = sub.add_parser("incidents", help="browse and handle incidents (and the embedded ticket store)")
    s = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = s.add_parser("list", help="live incidents (--all: also resolved)")
    _common(ls)
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--all", action="store_true", help="include resolved and discarded incidents")
    ls.add_argument("--state", action="append", help="only this state (repeatable)")
    ls.add_argument("--limit", type=positive_int, default=1000)
    ls.set_defaults(func=cmd_list)
    sh = s.add_parser("show", help="one incident with its journal, deliveries and (local) ticket")
    _common(sh)
    sh.add_argument("id", type=positive_int)
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_show)
    ack = s.add_parser("ack", help="acknowledge an incident (stops its respond clock)")
    _common(ack)
    ack.add_argument("id", type=positive_int)
    ack.add_argument("--by", required=True, help="who takes it")
    ack.set_defaults(func=cmd_ack)
    rt = s.add_parser("retry", help="queue an incident's parked deliveries again")
    _common(rt)
    rt.add_argument("id", type=positive_int)
    rt.set_defaults(func=cmd_retry)
    si = s.add_parser("silence", help="hold back opening incidents for hosts/checks for a while (recorded)")
    _common(si)
    si.add_argument("--host", action="append")
    si.add_argument("--check", action="append")
    si.add_argument("--for", dest="duration", required=True, help="e.g. 30m, 2h")
    si.add_argument("--reason", required=True)
    si.add_argument("--by", required=True)
    si.set_defaults(func=cmd_silence)
    dv = s.add_parser("deliver", help="deliver what the outbox holds now, then exit")
    _common(dv)
    dv.add_argument("--timeout", type=seconds, default=60.0)
    dv.set_defaults(func=cmd_deliver)

    kb = sub.add_parser("kb", help="the knowledge base: validate or list entries")
    ks = kb.add_subparsers(dest="action", required=True, metavar="ACTION")
    kv = ks.add_parser("validate", help="check files/dirs (default: the shipped KB); exit 2 with FILE:LINE lines")
    kv.add_argument("paths", nargs="*")
    kv.set_defaults(func=cmd_kb_validate)
    kl = ks.add_parser("list", help="the shipped entries and those in PATHS")
    kl.add_argument("paths", nargs="*")
    kl.add_argument("--json", action="store_true")
    kl.set_defaults(func=cmd_kb_list)
