"""``diag config fetch|list|diff|show``: the configuration archive from the command line.

A TARGET is an inventory host (for ``fetch`` also a group, or ``all``); ``TARGET:SOURCE`` names one source, where
SOURCE is ``running-config`` or a file path (``web-03:/etc/fstab``). Exit status: ``fetch`` 0 when every source
was fetched (changed or not), 3 when one failed; ``diff`` 0 no differences, 1 differences, as diff(1) does;
2 for bad input (inventory, arguments) and 3 for what the archive does not hold, as everywhere in diag.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diag.cli.common import nonnegative_int

if TYPE_CHECKING:
    from diag.archive.settings import ArchiveSettings
    from diag.archive.store import Archive, FetchStatus, Version


def split_target(spec: str) -> tuple[str, str | None]:
    """``host``, ``host:/path`` or ``host:running-config`` -> (host, source or None)."""
    from diag.archive.store import RUNNING_CONFIG

    if ":/" in spec:
        target, _, path = spec.partition(":/")
        return target, "/" + path
    if spec.endswith(":" + RUNNING_CONFIG):
        return spec[: -len(RUNNING_CONFIG) - 1], RUNNING_CONFIG
    return spec, None


def _setup(args: argparse.Namespace) -> tuple[Archive, ArchiveSettings, Any]:
    """(archive under the data dir, archive settings, inventory or None) from --inventory/--data."""
    from diag.agent import daemon as agent
    from diag.archive.settings import ArchiveSettings
    from diag.archive.store import Archive
    from diag.cli.common import inventory_path

    cfg, inv = agent.load_config(inventory_path(args, required=args.command_needs_inventory), data=args.data)
    return Archive(cfg.data / "archive"), cfg.archive or ArchiveSettings(), inv


def _sources(archive: Archive, target: str, source: str | None) -> list[str]:
    from diag.archive.store import ArchiveError, check_source, check_target

    check_target(target)
    if source is not None:
        return [check_source(source)]
    found = archive.sources(target)
    if not found:
        raise ArchiveError(f"{target}: not in the archive (run 'diag config fetch {target}' first)")
    return found


def _one_source(archive: Archive, spec: str) -> tuple[str, str]:
    from diag.errors import ConfigError

    target, source = split_target(spec)
    sources = _sources(archive, target, source)
    if len(sources) > 1:
        raise ConfigError(
            f"{target} has {len(sources)} sources; name one: " + ", ".join(f"{target}:{s}" for s in sources)
        )
    return target, sources[0]


def cmd_fetch(args: argparse.Namespace) -> int:
    from diag.archive.fetch import DeviceSupport, Fetcher, plan
    from diag.archive.store import check_source
    from diag.errors import ConfigError, DiagError
    from diag.remote.ssh import SSHPool

    archive, settings, inv = _setup(args)
    if inv is None:
        raise ConfigError("diag config fetch needs an inventory: pass --inventory FILE")
    for path in args.file or []:
        try:
            check_source(path)
        except DiagError as e:
            raise ConfigError(f"--file: {e}") from None
    known = [Path(p) for p in args.known_hosts] if args.known_hosts else settings.known_hosts or None
    pool = SSHPool(
        known_hosts=known,
        tofu_store=archive.root.parent / "known_hosts.tofu",
        max_concurrency=settings.concurrency,
        hosts=inv.hosts,
    )
    devices = DeviceSupport(pool)
    try:
        jobs = plan(inv.select(args.targets), settings, devices.is_device, args.file or [])
        statuses = Fetcher(archive, settings, pool, devices.reader).run(jobs)
    finally:
        devices.close()
        pool.close_all()
    if args.json:
        json.dump([s.to_dict() for s in statuses], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _status_table(statuses, "nothing to fetch: no configured files or network devices among the targets")
    return 3 if any(not s.ok for s in statuses) else 0


def _status_table(statuses: list[FetchStatus], empty: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not statuses:
        console.print(empty)
        return
    table = Table("target", "source", "state", "version", "when", "reason", box=None)
    colour = {"new": "green", "changed": "yellow", "unchanged": "", "error": "red"}
    from diag.archive.store import iso

    for s in statuses:
        state = f"[{colour[s.state]}]{s.state}[/]" if colour[s.state] else s.state
        table.add_row(s.target, s.source, state, str(s.version or "-"), iso(s.at), s.reason or "")
    console.print(table)


def cmd_list(args: argparse.Namespace) -> int:
    archive, _, _ = _setup(args)
    if not args.target:
        return _list_all(archive, args.json)
    target, source = split_target(args.target)
    versions: list[Version] = []
    for src in _sources(archive, target, source):
        versions += archive.versions(target, src)
    if args.json:
        json.dump([v.to_dict() for v in versions], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    from diag.archive.store import iso

    table = Table("source", "version", "fetched", "lines", "bytes", "sha256", box=None)
    for v in versions:
        table.add_row(v.source, str(v.version), iso(v.fetched_at), str(v.lines), str(v.size), v.sha256[:12])
    Console().print(table)
    for src in _sources(archive, target, source):
        st = archive.status(target, src)
        if st is not None and not st.ok:
            print(f"{target}:{src}: the last fetch failed at {iso(st.at)}: {st.reason}", file=sys.stderr)
    return 0


def _list_all(archive: Archive, as_json: bool) -> int:
    rows: list[dict[str, Any]] = []
    for target in archive.targets():
        for src in archive.sources(target):
            versions = archive.versions(target, src)
            st = archive.status(target, src)
            rows.append(
                {
                    "target": target,
                    "source": src,
                    "versions": len(versions),
                    "latest": versions[-1].to_dict() if versions else None,
                    "status": st.to_dict() if st else None,
                }
            )
    if as_json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("target", "source", "versions", "latest", "last fetch", "reason", box=None)
    for r in rows:
        latest = r["latest"]["fetched_at_iso"] if r["latest"] else "-"
        last: dict[str, Any] = r["status"] or {}
        table.add_row(
            r["target"], r["source"], str(r["versions"]), latest, last.get("state", "-"), last.get("reason") or ""
        )
    Console().print(table if rows else "the archive is empty")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from diag.errors import ConfigError

    archive, _, _ = _setup(args)
    target, source = split_target(args.target)
    sources = _sources(archive, target, source)
    if len(sources) > 1 and (args.from_ is not None or args.to is not None):
        raise ConfigError(f"--from/--to need one source; name it: {', '.join(f'{target}:{s}' for s in sources)}")
    lines: list[str] = []
    for src in sources:
        versions = archive.versions(target, src)
        if not versions:
            continue
        new = archive.get(target, src, args.to)
        old = archive.get(target, src, args.from_) if args.from_ is not None else _before(versions, new)
        if old is None:
            continue  # one version only: nothing to compare yet
        lines += archive.diff(old, new, args.context)
    _print_diff(lines)
    return 1 if lines else 0


def _before(versions: list[Version], v: Version) -> Version | None:
    older = [x for x in versions if x.version < v.version]
    return older[-1] if older else None


def _print_diff(lines: list[str]) -> None:
    if not sys.stdout.isatty():
        for line in lines:
            sys.stdout.write(line + "\n")
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    for line in lines:
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        else:
            style = ""
        console.print(Text(line, style=style), soft_wrap=True)


def cmd_show(args: argparse.Namespace) -> int:
    archive, _, _ = _setup(args)
    target, source = _one_source(archive, args.target)
    v = archive.get(target, source, args.version)
    sys.stdout.write(archive.read(v))
    return 0


def add_commands(sub: Any) -> None:
    """Register ``diag config`` and its actions."""
    c = sub.add_parser("config", help="the configuration archive: fetch, list, diff and show versions")
    csub = c.add_subparsers(dest="action", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser, needs_inventory: bool = False) -> None:
        p.add_argument("--inventory", "-i", help="inventory file (default: ./inventory.yaml if present)")
        p.add_argument("--data", help="data directory (default: the inventory's agent.data, else ./.diag)")
        p.set_defaults(command_needs_inventory=needs_inventory)

    f = csub.add_parser("fetch", help="fetch running configs and configured files now; exit 3 if one failed")
    common(f, needs_inventory=True)
    f.add_argument("--file", action="append", metavar="PATH", help="also fetch this file from the targets (repeatable)")
    f.add_argument("--known-hosts", action="append", metavar="FILE", help="known_hosts file (repeatable)")
    f.add_argument("--json", action="store_true", help="print the fetch statuses as JSON")
    f.add_argument("targets", nargs="+", metavar="TARGET", help="host or group names ('all' for every host)")
    f.set_defaults(func=cmd_fetch)

    ls = csub.add_parser("list", help="archived targets, or the versions of one target")
    common(ls)
    ls.add_argument("--json", action="store_true")
    ls.add_argument("target", nargs="?", metavar="TARGET[:SOURCE]")
    ls.set_defaults(func=cmd_list)

    d = csub.add_parser(
        "diff",
        help="unified diff between two versions (default: the latest and the one before); exit 1 if they differ",
    )
    common(d)
    d.add_argument("--from", dest="from_", type=int, metavar="V", help="old version (negative: from the latest)")
    d.add_argument("--to", type=int, metavar="V", help="new version (default: the latest)")
    d.add_argument("--context", "-U", type=nonnegative_int, default=3, metavar="N", help="lines of context (default 3)")
    d.add_argument("target", metavar="TARGET[:SOURCE]")
    d.set_defaults(func=cmd_diff)

    s = csub.add_parser("show", help="print one stored version (default: the latest)")
    common(s)
    s.add_argument("--version", "-V", type=int, metavar="V", help="version number (negative: from the latest)")
    s.add_argument("target", metavar="TARGET[:SOURCE]")
    s.set_defaults(func=cmd_show)
