"""Subcommands for remote diagnostics: ``diag check``, ``diag playbook list|show|validate``, ``diag facts``.

``diag.cli.main`` calls :func:`add_commands`; everything heavy (paramiko, rich, the runner) is imported inside the
command functions so that ``diag --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diag.cli.common import DEFAULT_DATA, positive_int, seconds

if TYPE_CHECKING:
    from diag.model import RunReport


def cmd_check(args: argparse.Namespace) -> int:
    from diag.cli.common import DEFAULT_INVENTORY, inventory_path, load_inventory
    from diag.errors import ConfigError
    from diag.remote import playbook as pbmod
    from diag.services.backends import LocalBackend, ssh_pool

    inv_path = inventory_path(args, required=True) or DEFAULT_INVENTORY
    inv = load_inventory(inv_path)
    hosts = inv.select(args.targets)
    pb_path = pbmod.find(args.playbook)
    pb = pbmod.load(pb_path)
    overrides = pbmod.parse_var_args(args.var or [])
    unknown = sorted(set(overrides) - set(pb.vars))
    if unknown:
        has = ", ".join(pb.vars)
        raise ConfigError([f"--var {u}: playbook {pb.name} has no such variable (has: {has})" for u in unknown])
    problems: list[ConfigError] = []
    for h in hosts:  # a missing or mistyped variable is the caller's mistake: say so once, before connecting
        try:
            pb.resolve_vars(overrides, h.vars)
        except ConfigError as e:
            problems.append(e)
    if hosts and len(problems) == len(hosts):
        raise problems[0]
    if args.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")

    data = Path(args.data)
    from diag.journal import local_actor, open_journal
    from diag.services import check as svc

    req = svc.CheckRequest(pb, hosts, overrides, args.allow_changes, list(args.targets), local_actor())
    observers: list[svc.Observer] = [svc.JournalObserver(open_journal(data)), svc.FactsObserver(data)]
    if args.backend == "celery":  # the hosts are checked by `diag worker` processes (docs/distributed.md)
        from diag.cli.distributed import redis_url
        from diag.distributed import keys
        from diag.distributed.backend import BrokerLost, CeleryBackend

        ns = keys.namespace(args.namespace)
        celery = CeleryBackend(redis_url(args.redis), inv_path, pb_path, timeout_s=args.timeout, namespace=ns)
        try:
            report = svc.run(req, celery, observers)
        except BrokerLost as e:  # print what was recorded, then main() prints the one `diag:` line, exit 3
            _report(args, e.report)
            raise
        return _report(args, report)
    known_hosts = [Path(p) for p in args.known_hosts] if args.known_hosts else None
    backend = LocalBackend.over(ssh_pool(data, inv.hosts, known_hosts, args.concurrency), hosts)
    try:
        if not args.json and sys.stderr.isatty():
            from diag.cli.render_check import LiveProgress

            with LiveProgress(len(hosts)) as live:
                report = svc.run(req, backend, [*observers, svc.ProgressObserver(live)])
        else:
            report = svc.run(req, backend, observers)
    finally:
        backend.close()
    return _report(args, report)


def _report(args: argparse.Namespace, report: RunReport) -> int:
    """Print the report (JSON contract or summary table) and return the Nagios exit status."""
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        from diag.cli.render_check import summary

        summary(report)
    return report.exit_code()


def cmd_playbook_list(args: argparse.Namespace) -> int:
    from diag.errors import ConfigError
    from diag.remote import playbook as pbmod

    rows: list[dict[str, Any]] = []
    for name, path in pbmod.available().items():
        try:
            pb = pbmod.load(path)
            desc = pb.description.strip().splitlines()[0] if pb.description.strip() else ""
            rows.append({"name": name, "file": str(path), "steps": len(pb.steps), "description": desc})
        except ConfigError as e:
            rows.append({"name": name, "file": str(path), "steps": None, "description": f"INVALID: {e}"})
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("playbook", "steps", "description", box=None)
    for r in rows:
        table.add_row(r["name"], str(r["steps"] or "-"), r["description"])
    Console().print(table)
    return 0


def cmd_playbook_show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from diag.remote import playbook as pbmod

    pb = pbmod.load(pbmod.find(args.name))
    c = Console()
    c.print(f"[bold]{escape(pb.name)}[/]  ({escape(pb.file)})")
    if pb.description:
        c.print(escape(pb.description.rstrip()))
    if pb.device_types or pb.tags:
        c.print(f"applies to: device types {', '.join(pb.device_types) or 'any'}; tags {', '.join(pb.tags) or 'any'}")
    if pb.vars:
        c.print("\n[bold]variables[/] (override with --var NAME=VALUE)")
        for v in pb.vars.values():
            default = "required" if v.required else f"default {v.default!r}"
            c.print(f"  {v.name}: {escape(default)}{'  - ' + escape(v.description) if v.description else ''}")
    c.print("\n[bold]steps[/]")
    for i, s in enumerate(pb.steps, 1):
        flags = [x for x, on in (("sudo", s.sudo), ("CHANGES THE HOST", s.changes)) if on]
        c.print(f"  {i}. [bold]{s.id}[/]{' [' + ', '.join(flags) + ']' if flags else ''}: {escape(s.description)}")
        c.print(f"     $ {escape(s.run.strip())}", highlight=False)
        if s.when is not None:
            c.print(f"     when: {escape(s.when.text)}")
        if s.parse_type:
            c.print(f"     parse: {s.parse_type}")
        for ch in s.checks:
            c.print(f"     - {ch.severity} [bold]{ch.id}[/] if {escape(ch.cond.text)}")
    return 0


def cmd_playbook_validate(args: argparse.Namespace) -> int:
    from diag.errors import ConfigError
    from diag.remote import playbook as pbmod

    bad = False
    for f in args.files:
        try:
            pb = pbmod.load(f)
        except ConfigError as e:
            bad = True
            for line in e.problems:
                print(line, file=sys.stderr)
            continue
        print(f"{f}: ok ({pb.name}, {len(pb.steps)} steps)")
    return 2 if bad else 0


def cmd_facts_show(args: argparse.Namespace) -> int:
    from diag.errors import ConfigError
    from diag.remote import facts

    data = Path(args.data)
    doc = facts.latest(data, args.host)
    if doc is None:
        raise ConfigError(
            f"no facts for {args.host} in {data / 'facts'}; collect them with: diag check -p facts {args.host}"
        )
    hist = facts.history(data, args.host)
    if args.json:
        out = {**doc, "summary": facts.summary(doc), "history": [p.name for p in hist]}
        json.dump(out, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console

    c = Console()
    for k, v in facts.summary(doc).items():
        c.print(f"{k:>13}: {v if v is not None else '-'}", highlight=False)
    c.print(f"{'collections':>13}: {len(hist)} ({hist[0].stem} .. {hist[-1].stem})", highlight=False)
    if len(hist) > 1:
        prev = json.loads(hist[-2].read_text(encoding="utf-8"))
        changes = facts.diff(prev, doc)
        c.print(f"{'since last':>13}: {json.dumps(changes) if changes else 'no change'}", highlight=False)
    return 0


def cmd_facts_list(args: argparse.Namespace) -> int:
    from diag.remote import facts

    data = Path(args.data)
    rows = [facts.summary(d) for h in facts.hosts(data) if (d := facts.latest(data, h)) is not None]
    if args.json:
        json.dump(rows, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    cols = ["host", "os", "kernel", "model", "serial", "cpus", "memory_kib", "packages", "collected_at"]
    table = Table(*cols, box=None)
    for r in rows:
        table.add_row(*(str(r.get(k) if r.get(k) is not None else "-") for k in cols))
    Console().print(table)
    return 0


def add_commands(sub: Any) -> None:
    """Register ``check``, ``playbook`` and ``facts`` on the ``diag`` subparsers."""
    c = sub.add_parser("check", help="run a diagnostic playbook on hosts or groups over SSH")
    c.add_argument("--inventory", "-i", help="inventory file (default: ./inventory.yaml)")
    c.add_argument("--playbook", "-p", required=True, help="playbook name (./playbooks, then shipped) or file")
    c.add_argument("--json", action="store_true", help="print one JSON document (the DESIGN.md contract)")
    c.add_argument("--var", action="append", metavar="NAME=VALUE", help="set a playbook variable (repeatable)")
    c.add_argument("--allow-changes", action="store_true", help="also run steps marked changes: true")
    c.add_argument("--concurrency", type=positive_int, default=50, help="hosts worked on at once (default 50)")
    c.add_argument(
        "--known-hosts",
        action="append",
        metavar="FILE",
        help="known_hosts file (repeatable; default ~/.ssh/known_hosts)",
    )
    c.add_argument("--data", default=DEFAULT_DATA, help="data directory: TOFU host keys, facts (default ./.diag)")
    c.add_argument(
        "--backend",
        choices=("local", "celery"),
        default="local",
        help="where hosts are checked: this process (default) or `diag worker` processes via Redis",
    )
    c.add_argument("--redis", help="with --backend celery: broker URL or env:NAME (default $DIAG_REDIS_URL)")
    c.add_argument(
        "--timeout",
        type=seconds,
        default=3600.0,
        help="with --backend celery: seconds to wait for all hosts",
    )
    c.add_argument("--namespace", help="with --backend celery: the deployment's namespace (default $DIAG_NAMESPACE)")
    c.add_argument("targets", nargs="+", metavar="TARGET", help="host or group names ('all' for every host)")
    c.set_defaults(func=cmd_check)

    p = sub.add_parser("playbook", help="list, show or validate diagnostic playbooks")
    psub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = psub.add_parser("list", help="playbooks found in ./playbooks and the shipped ones")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_playbook_list)
    sh = psub.add_parser("show", help="variables, steps, commands and checks of a playbook")
    sh.add_argument("name", help="playbook name or file")
    sh.set_defaults(func=cmd_playbook_show)
    v = psub.add_parser("validate", help="check FILEs; exit 2 with FILE:LINE: message lines on errors")
    v.add_argument("files", nargs="+", metavar="FILE")
    v.set_defaults(func=cmd_playbook_validate)

    f = sub.add_parser("facts", help="the asset inventory collected by 'diag check -p facts'")
    fsub = f.add_subparsers(dest="action", required=True, metavar="ACTION")
    fs = fsub.add_parser("show", help="the latest facts of a host and what changed since the previous collection")
    fs.add_argument("host")
    fs.add_argument("--json", action="store_true")
    fs.add_argument("--data", default=DEFAULT_DATA)
    fs.set_defaults(func=cmd_facts_show)
    fl = fsub.add_parser("list", help="one line per host with collected facts")
    fl.add_argument("--json", action="store_true")
    fl.add_argument("--data", default=DEFAULT_DATA)
    fl.set_defaults(func=cmd_facts_list)
