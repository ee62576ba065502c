"""The ``diag`` command line: parse arguments, call the library, render the answer, set the exit status.

Bad input (a bad argument or option, an invalid file: InvalidInput, ConfigError) prints one line per problem on
stderr and exits 2; a failure at run time (DiagError: unreachable, refused, timed out) prints one line and exits 3
unless the command documents its own status; a traceback is a bug.
Modules that only some commands need (json, pathlib, typing, the command modules) are imported inside them:
``diag snmp walk`` is compared with net-snmp's C tools, and every import is start-up CPU (docs/snmp.md).
"""

from __future__ import annotations

import argparse
import os
import sys

from diag import __version__
from diag.cli.common import DEFAULT_INVENTORY, inventory_path, load_inventory
from diag.errors import ConfigError, DiagError, InvalidInput

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

    Command = Callable[[argparse.Namespace], int]


def cmd_agent(args: argparse.Namespace) -> int:
    from diag import logs
    from diag.agent import daemon as agent

    cfg, inv = agent.load_config(inventory_path(args), args.listen, args.data)
    # Logging is set up before the probes are built, so that what they log at start is in the chosen format.
    logs.setup(args.log_level or cfg.log_level, args.log_format or cfg.log_format)
    try:
        daemon = agent.Agent(cfg, inv)
    except OSError as e:  # the port is taken, the data directory cannot be made: one line, not a traceback
        raise DiagError(f"{e.filename or cfg.listen}: cannot start the agent: {e.strerror or e}") from None
    daemon.serve_forever()
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    import json

    from diag.agent import daemon as agent
    from diag.probes.runner import ProbeRunner

    a_cfg, _ = agent.load_config(inventory_path(args), data=args.data)  # no Agent: its port may be taken
    unknown = sorted(set(args.only or ()) - set(a_cfg.probes))
    if unknown:
        raise ConfigError(f"--only {unknown[0]}: no such probe (known: {', '.join(sorted(a_cfg.probes))})")
    runner = ProbeRunner(a_cfg, only=args.only or None)
    states = runner.run_all()
    runner.shutdown()
    if args.json:
        out = {
            "host": runner.hostname,
            "probes": [
                {
                    "probe": s.name,
                    "success": s.success,
                    "no_data": s.no_data,
                    "error": s.error,
                    "duration_s": round(s.duration_s, 4),
                    "samples": [
                        {"name": name, "labels": labels, "value": value}
                        for m in s.result.metrics
                        for name, labels, value in m.iter_samples()
                    ],
                    "findings": [f.to_dict() for f in s.result.findings],
                }
                for s in states.values()
            ],
        }
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from diag.cli.render_probe import probe_table

        probe_table(states)
    worst = max((_rank(f.severity) for s in states.values() for f in s.result.findings), default=0)
    return worst


def _rank(sev: str) -> int:
    return {"info": 0, "warning": 1, "critical": 2}[sev]


def cmd_inventory_validate(args: argparse.Namespace) -> int:
    """Exit 0 when the file is valid, 2 with every problem as a ``FILE:LINE: message`` line otherwise.

    Secrets are the machine's, not the file's: a reference that cannot be read here (an unset ``env:`` variable,
    a missing ``file:``) is a ``FILE:LINE: warning:`` line and does not make the file invalid, so a file can be
    checked on a laptop or in CI. ``--secrets`` makes them problems, for a check on the agent's own machine.
    """
    from pathlib import Path

    from diag.config import whole

    if not Path(args.file).is_file():
        raise ConfigError(f"{args.file}:1: cannot read: no such file")
    loaded = whole.load(args.file, resolve_secrets=False)  # raises ConfigError with every problem
    if args.secrets and loaded.warnings:
        raise ConfigError([w.replace(": warning: ", ": ", 1) for w in loaded.warnings])
    for line in loaded.warnings:
        print(line, file=sys.stderr)
    print(f"{args.file}: ok" + (f" ({len(loaded.warnings)} warnings)" if loaded.warnings else ""))
    return 0


def cmd_inventory_list(args: argparse.Namespace) -> int:
    import json

    inv = load_inventory(inventory_path(args, required=True) or DEFAULT_INVENTORY)
    hosts = inv.select(args.targets) if args.targets else list(inv.hosts.values())
    if args.json:
        rows: list[dict[str, Any]] = [h.public() for h in hosts]
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("host", "address", "type", "groups", "parents", box=None)
    for h in hosts:
        table.add_row(h.name, f"{h.address}:{h.port}", h.device_type, ",".join(h.groups), ",".join(h.parents))
    Console().print(table)
    return 0


def cmd_inventory_detect(args: argparse.Namespace) -> int:
    """Find each target's platform with netmiko's SSH autodetection over diag's verified SSH; say what to write.

    Exit 0: every target's platform has a driver; 1: some platform was not recognised or has no driver in diag;
    3: some target could not be logged into (unreachable, authentication, host key).
    """
    import json
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from diag import inventory
    from diag.errors import ConnectError
    from diag.network.devices.detect import Detection, detect
    from diag.remote import host_status

    inv = load_inventory(inventory_path(args, required=True) or DEFAULT_INVENTORY)
    hosts = inv.select(args.targets)
    known_hosts = [Path(p) for p in args.known_hosts] if args.known_hosts else None
    data = Path(args.data) if args.data else None

    def one(h: inventory.Host) -> Detection | tuple[str, str, str]:
        try:
            return detect(h, known_hosts, data)
        except ConnectError as e:
            return (h.name, host_status(e), " ".join(str(e).split()))

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(hosts)))) as ex:
        results = list(ex.map(one, hosts))
    rc = 0
    rows: list[dict[str, Any]] = []
    for r in results:
        if isinstance(r, Detection):
            rows.append(r.to_dict())
            if not args.json:
                print(r.advice())
            rc = max(rc, 0 if r.device_type else 1)
        else:
            name, status, error = r
            rows.append({"host": name, "device_type": None, "status": status, "error": error})
            if not args.json:
                print(f"{name}: {status}: {error}", file=sys.stderr)
            rc = 3
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return rc


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line (``diag net port: argument port: ...``), exit status 2.

    argparse prints the whole usage block before the error; a script reading stderr, or a person with a long
    command, wants the one line that says which argument is wrong and how to get help.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


#: Commands whose parser alone is built when they are asked for: ``diag snmp walk`` is compared with
#: net-snmp's C tools (bench/snmp_walk.py), and the other command modules' imports cost ~40 ms of its start.
_ALONE = {"snmp": "diag.cli.snmp"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; only ``command``'s when it is one of :data:`_ALONE` (same options and help)."""
    import importlib

    p = Parser(prog="diag", description="Infrastructure monitoring and remote diagnostics.")
    p.add_argument("--version", action="version", version=f"diag {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command in _ALONE:
        importlib.import_module(_ALONE[command]).add_commands(sub)
        return p

    a = sub.add_parser("agent", help="run the monitoring daemon (/metrics, probes, scheduler)")
    a.add_argument("--inventory", "-i", help=f"inventory file (default: ./{DEFAULT_INVENTORY} if present)")
    a.add_argument("--listen", help="HOST:PORT to serve on (default 127.0.0.1:9847)")
    a.add_argument("--data", help="data directory (default ./.diag)")
    a.add_argument("--log-format", choices=["text", "json"])
    a.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    a.set_defaults(func=cmd_agent)

    pr = sub.add_parser("probe", help="run the local probes once and print samples and findings")
    pr.add_argument("--inventory", "-i")
    pr.add_argument("--data", help="data directory (default ./.diag)")
    pr.add_argument("--json", action="store_true", help="print one JSON document")
    pr.add_argument("--only", action="append", metavar="PROBE", help="run only this probe (repeatable)")
    pr.set_defaults(func=cmd_probe)

    inv = sub.add_parser("inventory", help="validate or list the inventory")
    isub = inv.add_subparsers(dest="action", required=True, metavar="ACTION")
    v = isub.add_parser("validate", help="check FILE; exit 2 with FILE:LINE: message lines on errors")
    v.add_argument("file")
    v.add_argument(
        "--secrets",
        action="store_true",
        help="also require every env:/file: secret reference to be readable here (on the agent's machine)",
    )
    v.set_defaults(func=cmd_inventory_validate)
    ls = isub.add_parser("list", help="list resolved hosts")
    ls.add_argument("--inventory", "-i")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("targets", nargs="*", help="host or group names")
    ls.set_defaults(func=cmd_inventory_list)
    dt = isub.add_parser(
        "detect", help="find each target's platform (netmiko SSH autodetect, host keys verified); say its device_type"
    )
    dt.add_argument("--inventory", "-i")
    dt.add_argument("--known-hosts", action="append", metavar="FILE", help="known_hosts file (repeatable)")
    dt.add_argument("--data", help="data directory (its known_hosts.tofu serves hostkey_policy: tofu)")
    dt.add_argument("--json", action="store_true")
    dt.add_argument("targets", nargs="+", help="host or group names (credentials and address from the inventory)")
    dt.set_defaults(func=cmd_inventory_detect)

    for modname in _EXTENSION_MODULES:
        importlib.import_module(modname).add_commands(sub)
    return p


#: The command modules of diag/cli/ that add subcommands (``add_commands(subparsers)``); each keeps heavy imports
#: inside its commands so that ``diag --help`` stays fast. A missing one is an ImportError, never skipped.
_EXTENSION_MODULES = [
    "diag.cli.check",
    "diag.cli.snmp",
    "diag.cli.reach",
    "diag.cli.traps",
    "diag.cli.archive",
    "diag.cli.incidents",
    "diag.cli.journal",
    "diag.cli.api",
    "diag.cli.report",
    "diag.cli.distributed",
    "diag.cli.line1",
]


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    try:
        status = int(args.func(args))
        sys.stdout.flush()  # inside the try: a reader that went away (`| head`) is handled below
        return status
    except BrokenPipeError:
        # `diag journal | head`: the reader has all it wanted. Point stdout at /dev/null so the interpreter's
        # final flush does not raise again, and exit as a process killed by SIGPIPE would (128 + 13).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except ConfigError as e:
        for line in e.problems:
            print(line, file=sys.stderr)
        return 2
    except InvalidInput as e:  # an argument the library refused (an OID, a URL, a profile name): not a failure
        print(f"diag: {e}", file=sys.stderr)
        return 2
    except DiagError as e:
        print(f"diag: {e}", file=sys.stderr)
        return 3
    except OSError as e:
        # A file or directory the command needs cannot be used (an output path in a missing directory, a --data
        # that cannot be created): a failure at run time, said in one line naming the file, not a traceback.
        where = f"{e.filename}: " if e.filename else ""
        print(f"diag: {where}{e.strerror or e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
