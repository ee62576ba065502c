"""``diag line1 watch|tickets|changes|applications|pause|resume``: the line-1 automation from the command line.

``watch`` polls the desks of ``agent.line1`` (once with ``--once``) and triages every new ticket; the rest read
and steer the ledger (``DATA/line1.db``): the catalogue, each application with its evidence, a lead's pause.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from diag.cli.common import positive_int, seconds_or_zero
from diag.errors import ConfigError


def _setup(args: argparse.Namespace) -> tuple[Any, Any, Path]:
    from diag.agent import daemon as agent
    from diag.cli.common import inventory_path

    cfg, inv = agent.load_config(inventory_path(args), data=getattr(args, "data", None))
    if cfg.line1 is None or inv is None:
        raise ConfigError(f"{args.inventory or 'inventory.yaml'}: no agent.line1 section (docs/line1.md)")
    return cfg.line1, inv, cfg.data


def _data(args: argparse.Namespace) -> Path:
    from diag.agent import daemon as agent
    from diag.cli.common import inventory_path

    cfg, _ = agent.load_config(inventory_path(args), data=getattr(args, "data", None))
    return Path(cfg.data)


def cmd_watch(args: argparse.Namespace) -> int:
    from diag.services.triage import from_settings

    settings, inv, data = _setup(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    line1 = from_settings(settings, inv, data)
    interval = args.interval if args.interval else line1.interval
    # SIGTERM (a service manager stopping it) lets the ticket in hand be finished and recorded first: an answer
    # sent but not recorded would be sent again by the next watcher
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        while not stop.is_set():
            for o in line1.poll_once():
                print(json.dumps({"ticket": o.key, "state": o.state, "classification": o.classification,
                                  "line": o.line, "kb_entry": o.kb_entry, "hosts": o.hosts,
                                  "reason": o.reason}, ensure_ascii=False), flush=True)
            if args.once:
                return 0
            stop.wait(interval)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        line1.close()


def cmd_changes_list(args: argparse.Namespace) -> int:
    from diag.line1.catalogue import Catalogue
    from diag.line1.ledger import Ledger

    settings, _, data = _setup(args)
    cat = Catalogue.load(settings.changes, shipped=settings.shipped_changes)
    paused = Ledger(data).paused()
    rows = [{**c.summary(), "paused": paused.get(c.id)} for c in cat.changes.values()]
    if args.json:
        print(json.dumps({"changes": rows}, indent=1, ensure_ascii=False))
    else:
        for r in rows:
            state = f"PAUSED by {r['paused']['by']}" if r["paused"] else "active"
            print(f"{r['id']:24} {state:20} {r['title']}  [{'; '.join(r['windows'])}]")
    return 0


def cmd_changes_validate(args: argparse.Namespace) -> int:
    from diag.line1.catalogue import Catalogue

    paths = [Path(p) for p in args.paths]
    cat = Catalogue.load(paths, shipped=not paths)
    print(f"{len(cat.changes)} standard changes: ok")
    return 0


def cmd_applications(args: argparse.Namespace) -> int:
    from diag.line1.ledger import Ledger

    rows = Ledger(_data(args)).applications(args.change, args.limit)
    if args.json:
        print(json.dumps({"applications": rows}, indent=1, ensure_ascii=False, default=str))
    else:
        for a in rows:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(a["ts"]))
            print(f"#{a['id']:<5} {when} {a['change_id']:20} {a['host']:16} {a['result']:16} {a['reason']}")
    return 0


def cmd_tickets(args: argparse.Namespace) -> int:
    from diag.line1.ledger import Ledger

    rows = Ledger(_data(args)).tickets()
    if args.json:
        print(json.dumps({"tickets": rows}, indent=1, ensure_ascii=False))
    else:
        for t in rows:
            print(f"{t['key']:24} {t['state']:10} {t['classification'] or '-':9} {t['line'] or '-':3} "
                  f"{t['kb_entry'] or '-':24} {t['subject'][:60]}")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    from diag.journal import open_journal
    from diag.line1.ledger import Ledger

    data = _data(args)
    led = Ledger(data)
    if args.command_name == "pause":
        led.pause(args.change, args.by, args.reason or "")
    elif not led.resume(args.change):
        print(f"standard change {args.change} was not paused", file=sys.stderr)
        return 1
    open_journal(data).append(f"cli:{args.by}", f"change.{args.command_name}", args.change, "ok",
                              {"reason": args.reason or ""})
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("line1", help="line-1 automation: triage people's tickets, standard changes")
    s = p.add_subparsers(dest="line1_cmd", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--inventory", "-i")
        q.add_argument("--data")

    w = s.add_parser("watch", help="poll the desks of agent.line1 and triage new tickets")
    common(w)
    w.add_argument("--once", action="store_true", help="poll each desk once, then exit")
    w.add_argument(
        "--interval", type=seconds_or_zero, default=0.0, help="seconds between polls (default: agent.line1)"
    )
    w.set_defaults(func=cmd_watch)
    t = s.add_parser("tickets", help="people's tickets seen and what triage did")
    common(t)
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_tickets)
    c = s.add_parser("changes", help="the catalogue of standard changes")
    cs = c.add_subparsers(dest="changes_cmd", required=True)
    cl = cs.add_parser("list")
    common(cl)
    cl.add_argument("--json", action="store_true")
    cl.set_defaults(func=cmd_changes_list)
    cv = cs.add_parser("validate", help="check catalogue files; FILE:LINE errors, exit 2")
    cv.add_argument("paths", nargs="*")
    cv.set_defaults(func=cmd_changes_validate)
    a = s.add_parser("applications", help="standard changes applied, with their results")
    common(a)
    a.add_argument("--change")
    a.add_argument("--limit", type=positive_int, default=50)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_applications)
    for name in ("pause", "resume"):
        q = s.add_parser(name, help=f"{name} a standard change (a lead's switch)")
        common(q)
        q.add_argument("change")
        q.add_argument("--by", required=True)
        q.add_argument("--reason")
        q.set_defaults(func=cmd_pause, command_name=name)
