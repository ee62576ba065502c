"""``diag traps listen``: receive SNMP traps and informs in the foreground and print each one as it arrives.

Settings come from ``--config FILE`` (an inventory file: its ``agent.traps`` section, and its hosts to name
the sender) and from options; secrets only by reference or from environment variables. SIGINT and
SIGTERM stop it cleanly (exit 0), with the received/rejected counts on stderr.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diag.network.traps.events import TrapEvent


def add_commands(sub: Any) -> None:
    """Register ``traps listen``."""
    p = sub.add_parser("traps", help="SNMP trap and inform receiver")
    ps = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = ps.add_parser("listen", help="receive traps and informs and print each as it arrives")
    ls.add_argument("--config", "--inventory", "-i", dest="config", help="inventory file with an agent.traps section")
    ls.add_argument(
        "--listen", action="append", metavar="HOST:PORT", help="UDP address (repeatable; default 0.0.0.0:9162)"
    )
    ls.add_argument("--json", action="store_true", help="one JSON object per trap per line")
    ls.add_argument("--community-env", action="append", metavar="VAR", help="accept the community in $VAR (v1/v2c)")
    ls.add_argument("--user", "-u", help="accept SNMPv3 notifications from this USM user")
    ls.add_argument("--auth-protocol", "-a", help="v3 auth protocol (MD5, SHA, SHA-256, ... ; default SHA)")
    ls.add_argument("--auth-key-env", metavar="VAR", help="v3 auth password from this environment variable")
    ls.add_argument(
        "--priv-protocol", "-x",
        help="v3 privacy protocol (AES, AES-192, AES-256, AES-192-C, AES-256-C, DES; default AES)",
    )  # fmt: skip
    ls.add_argument("--priv-key-env", metavar="VAR", help="v3 privacy password from this environment variable")
    ls.add_argument("--data", help="directory to keep the receiver's SNMPv3 engine ID and boot count in")
    ls.set_defaults(func=cmd_listen)


def _settings(args: argparse.Namespace) -> tuple[Any, Any]:
    """(TrapConfig, Inventory or None) from --config and the options (ConfigError with FILE:LINE)."""
    from diag import inventory, yamlsrc
    from diag.errors import ConfigError, InvalidInput
    from diag.network.traps import config as trapconfig

    # A protocol without its password (or without --user) would be left out silently: the receiver would then
    # listen, and reject every notification of that user as "unknown" with nothing said about why.
    for opt, proto, key_opt, key in (
        ("--auth-protocol", args.auth_protocol, "--auth-key-env", args.auth_key_env),
        ("--priv-protocol", args.priv_protocol, "--priv-key-env", args.priv_key_env),
    ):
        if (proto or key) and not args.user:
            raise InvalidInput(f"{opt if proto else key_opt} needs --user (the SNMPv3 user it is for)")
        if proto and not key:
            raise InvalidInput(f"{opt} {proto}: needs {key_opt} (the variable holding the password)")
    inv = None
    raw: dict[str, Any] = {}
    doc = None
    if args.config:
        inv = inventory.load(args.config)
        raw = dict(inv.agent.get("traps") or {})
        doc = inv.doc
    base = ("agent", "traps")
    origins: dict[tuple[str | int, ...], str] = {}  # a problem in a value given as an option names the option
    if args.listen:
        raw["listen"] = list(args.listen)
        origins[(*base, "listen")] = "--listen"
    if args.community_env:
        first = len(raw.get("communities", []))
        raw["communities"] = [*raw.get("communities", []), *(f"env:{v}" for v in args.community_env)]
        origins |= {(*base, "communities", first + i): "--community-env" for i in range(len(args.community_env))}
    if args.user:
        origins[(*base, "users", len(raw.get("users", [])))] = f"--user {args.user}"
        user: dict[str, Any] = {"name": args.user}
        if args.auth_key_env:
            user |= {"auth_protocol": args.auth_protocol or "SHA", "auth_key": f"env:{args.auth_key_env}"}
        if args.priv_key_env:
            user |= {"priv_protocol": args.priv_protocol or "AES", "priv_key": f"env:{args.priv_key_env}"}
        raw["users"] = [*raw.get("users", []), user]
    if doc is None or args.listen or args.community_env or args.user:
        # Options change the section: check it as a whole, its problems named after the options.
        doc = yamlsrc.Doc(args.config or "<options>", {"agent": {"traps": raw}}, doc.text if doc else "")
        doc.origins = origins
    cfg = trapconfig.build(doc, raw)
    if cfg is None:
        raise ConfigError(doc.problems)
    return cfg, inv


def _print_event(event: TrapEvent, as_json: bool, severities: dict[str, Any]) -> None:
    findings = event.findings(severities)
    if as_json:
        doc = event.to_dict() | {"findings": [f.to_dict() | {"host": f.host} for f in findings]}
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()
        return
    import time

    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    colour = {"critical": "red", "warning": "yellow", "info": "cyan"}
    stamp = time.strftime("%H:%M:%S", time.localtime(event.received_at))
    who = f"user {event.user}" if event.user else f"v{event.version}"
    for f in findings:
        console.print(
            f"{stamp} [bold]{escape(event.host)}[/] {escape(event.source)}:{event.port} {who} {event.kind} "
            f"[{colour[f.severity]}]{f.severity}[/] {escape(event.trap)} {escape(f.summary)}"
        )
    for oid, type_name, value in event.varbinds:
        console.print(f"    .{oid} = {type_name}: {escape(value)}")


def cmd_listen(args: argparse.Namespace) -> int:
    from diag import logs
    from diag.errors import DiagError
    from diag.network.traps import config as trapconfig
    from diag.network.traps.receiver import TrapReceiver

    logs.setup("warning", "text")
    cfg, inv = _settings(args)
    from pathlib import Path

    engine = trapconfig.engine_identity(cfg, Path(args.data) if args.data else None)
    lock = threading.Lock()

    def on_event(event: TrapEvent) -> None:
        with lock:
            _print_event(event, args.json, cfg.severities)

    receiver = TrapReceiver(cfg, inv, on_event=on_event, engine=engine)
    try:
        bound = receiver.bind()
    except OSError as e:
        raise DiagError(str(e.strerror or e)) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    receiver.start()
    where = ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in bound)
    print(f"listening for SNMP traps on udp {where} (engine ID {engine[0].hex()}); Ctrl-C stops", file=sys.stderr)
    while not stop.wait(0.5):  # a timed wait, so the signal handler runs whichever thread got the signal
        pass
    receiver.stop()
    got = sum(receiver.received.values())
    refused = {k: v for k, v in receiver.rejected.items() if v}
    detail = f" ({', '.join(f'{k} {v}' for k, v in refused.items())})" if refused else ""
    print(f"received {got} notifications, rejected {sum(refused.values())}{detail}", file=sys.stderr)
    return 0
