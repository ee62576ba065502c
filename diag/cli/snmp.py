"""``diag snmp get|walk|poll``: ask one SNMP agent from the command line.

The target is an inventory host (by name or address, with its credentials) or an address with the
credentials given as options. SNMP modules are imported inside the commands so ``diag --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from diag.cli.common import nonnegative_int, positive_int, seconds

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a walk command's start-up)
if TYPE_CHECKING:
    from typing import Any

    from diag.network.snmp.client import Target, Var


def add_commands(sub: Any) -> None:
    """Register ``snmp`` with its ``get``, ``walk`` and ``poll`` actions."""
    p = sub.add_parser("snmp", help="SNMP get, walk and profile poll of one device")
    ps = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def common(c: argparse.ArgumentParser) -> None:
        c.add_argument("--inventory", "-i", help="inventory file: take the target's SNMP settings from its host")
        c.add_argument("--version", "-v", dest="snmp_version", choices=["1", "2c", "3"], help="SNMP version")
        c.add_argument("--community", "-c", help="v1/v2c community (default: env DIAG_SNMP_COMMUNITY or public)")
        c.add_argument("--user", "-u", help="v3 user")
        c.add_argument("--auth-protocol", "-a", default=None, help="v3 auth protocol (SHA, MD5, SHA256...)")
        c.add_argument("--auth-key-env", metavar="VAR", help="v3 auth password from this environment variable")
        c.add_argument("--priv-protocol", "-x", default=None, help="v3 privacy protocol (AES, DES...)")
        c.add_argument("--priv-key-env", metavar="VAR", help="v3 privacy password from this environment variable")
        c.add_argument("--timeout", "-t", type=seconds, help="seconds per try (default 2)")
        c.add_argument("--retries", "-r", type=nonnegative_int, help="extra tries (default 1)")
        c.add_argument("--json", action="store_true", help="print JSON")
        c.add_argument("target", metavar="TARGET[:PORT]", help="address, host name or inventory host")

    g = ps.add_parser("get", help="GET one or more OIDs (numeric)")
    common(g)
    g.add_argument("oids", nargs="+", metavar="OID")
    g.set_defaults(func=cmd_get)
    w = ps.add_parser("walk", help="walk a subtree (GETBULK; GETNEXT with --no-bulk or v1)")
    common(w)
    w.add_argument("oid", metavar="OID")
    w.add_argument("--no-bulk", action="store_true", help="walk with GETNEXT")
    w.add_argument("--max-repetitions", type=positive_int, help="GETBULK max-repetitions to start with (default 100)")
    w.add_argument(
        "--no-check-increasing",
        "-Cc",
        dest="check_increasing",
        action="store_false",
        help="walk on when the agent answers OIDs out of order (net-snmp's -Cc); a repeated OID still ends it",
    )
    w.set_defaults(func=cmd_walk)
    o = ps.add_parser("poll", help="poll profiles and print metrics and findings")
    common(o)
    o.add_argument(
        "--profile",
        "-p",
        action="append",
        help="profile name or auto (repeatable; default: the inventory host's profiles, else auto)",
    )
    o.set_defaults(func=cmd_poll)
    ls = ps.add_parser("profiles", help="list the SNMP profiles")
    ls.set_defaults(func=cmd_profiles)


def _target(args: argparse.Namespace) -> Target:
    from diag.errors import ConfigError
    from diag.network.snmp.client import Target, parse_target, target_from_host

    try:
        name, port = parse_target(args.target, 0)
    except ValueError as e:
        raise ConfigError(f"{args.target}: {e}") from None
    target: Target | None = None
    inv_file = args.inventory or ("inventory.yaml" if os.path.exists("inventory.yaml") else None)
    if inv_file and _may_name(inv_file, name):
        from diag import inventory  # only then: loading it costs a third of a walk command's CPU

        inv = inventory.load(inv_file)
        host = inv.hosts.get(name) or next((h for h in inv.hosts.values() if h.address == name), None)
        if host is not None:
            target = target_from_host(host, port or None)
            args.host_profiles = list(host.snmp.get("profiles") or [])
    if target is None:
        target = Target(host=name, port=port or 161, community=os.environ.get("DIAG_SNMP_COMMUNITY", "public"))
    if args.snmp_version:
        target.version = args.snmp_version
    if args.community:
        target.community = args.community
    if args.user:
        target.user = args.user
        target.version = "3" if not args.snmp_version else target.version
    if args.auth_protocol:
        target.auth_protocol = args.auth_protocol
    if args.priv_protocol:
        target.priv_protocol = args.priv_protocol
    for opt, attr in ((args.auth_key_env, "auth_key"), (args.priv_key_env, "priv_key")):
        if opt:
            if opt not in os.environ:
                raise ConfigError(f"environment variable {opt} is not set")
            setattr(target, attr, os.environ[opt])
    if args.timeout is not None:
        target.timeout = args.timeout
    if args.retries is not None:
        target.retries = args.retries
    return target


def _may_name(inv_file: str, name: str) -> bool:
    """Whether the inventory file's text holds ``name`` at all (a host is named by its key, and its address is
    written in the file or is its name): when it does not, no host can match and the file is not parsed."""
    try:
        with open(inv_file, encoding="utf-8", errors="replace") as f:
            return name in f.read()
    except OSError:
        return True  # let the inventory loader say what is wrong with the file


def _check_oids(oids: list[str]) -> None:
    """Refuse an OID that is not one before anything is sent (a v3 session talks to the agent when it opens)."""
    from diag.errors import InvalidInput
    from diag.network.snmp import ber

    for oid in oids:
        try:
            ber.encode_oid(oid)
        except ber.BerError as e:
            raise InvalidInput(f"{e} (OIDs are numeric, e.g. 1.3.6.1.2.1.1)") from None


def _print_vars(vars: list[Var], as_json: bool) -> None:
    from diag.network.snmp.client import format_value

    if as_json:
        import json

        out = [
            {"oid": o, "type": t, "value": v.hex() if isinstance(v, bytes) else v, "text": format_value(t, v)}
            for o, t, v in vars
        ]
        json.dump(out, sys.stdout, indent=1)
        print()
        return
    for o, t, v in vars:
        print(f".{o} = {t}: {format_value(t, v)}")


def cmd_get(args: argparse.Namespace) -> int:
    from diag.network.snmp.client import open_session

    _check_oids(args.oids)
    target = _target(args)
    s = open_session(target)
    try:
        _print_vars(s.get(args.oids), args.json)
    finally:
        s.close()
    return 0


def cmd_walk(args: argparse.Namespace) -> int:
    """Print the walk as it arrives (text), or as one JSON list; exit 1 when the agent cut it short."""
    from diag.network.snmp import ber
    from diag.network.snmp.client import Walked, format_value, open_session

    _check_oids([args.oid])
    target = _target(args)
    if args.max_repetitions:
        target.max_repetitions = args.max_repetitions
    s = open_session(target)
    try:
        status: Walked[object] = Walked()
        root = s.encode_oid(args.oid)
        got: list[Var] = []
        count = 0
        names, decode, dotted, write = ber.TYPE_NAMES, ber.oid_decoder(), ber.oid_decoder("."), sys.stdout.write
        heads = {tag: f" = {name}: " for tag, name in names.items()}  # what stands between OID and value
        plain = {ber.INTEGER, ber.COUNTER32, ber.GAUGE32, ber.TIMETICKS, ber.COUNTER64, ber.OBJECT_ID, ber.IPADDRESS}
        # One request chain, the next request sent before an answer is printed. Split walks (parallel.py)
        # were measured slower here for a command: later subtrees wait in memory to be printed in order.
        chunks = s.walk_chunks(root, not args.no_bulk, args.check_increasing, status)
        for chunk in chunks:
            count += len(chunk)
            if args.json:
                got += [(decode(o), names[t], v) for o, t, v in chunk]
                continue
            # One write per answer, while the agent works on the next one. Numbers, OIDs and addresses are
            # printed as they are (ints and text already); strings, Opaque and NULLs go through format_value.
            write(
                "".join(
                    [
                        f"{dotted(o)}{heads[t]}{v}\n" if t in plain else f"{dotted(o)}{heads[t]}{format_value('', v)}\n"
                        for o, t, v in chunk
                    ]
                )
            )
        if status.disorder:  # every value came, but the agent's order did not hold: worth knowing, not a failure
            print(f"diag: warning: {status.disorder}", file=sys.stderr)
        if status.warning:
            print(f"diag: warning: {status.warning}", file=sys.stderr)
        elif not count:
            # Nothing under the OID: it may be a scalar instance; ask for it, as snmpwalk does.
            fallback = [v for v in s.get([args.oid]) if v[1] not in ("noSuchObject", "noSuchInstance")]
            if args.json:
                got = fallback
            else:
                _print_vars(fallback, False)
        if args.json:
            _print_vars(got, True)
    finally:
        s.close()
    return 1 if status.warning else 0


def cmd_poll(args: argparse.Namespace) -> int:
    import json

    from diag.exporters.exposition import encode_metrics
    from diag.network.snmp import profiles

    loaded = [profiles.load(n) for n in args.profile or ()]  # an unknown name is refused before the target is read
    target = _target(args)
    if not loaded:
        loaded = [profiles.load(n) for n in getattr(args, "host_profiles", None) or [profiles.AUTO]]
    result = profiles.poll(target, loaded)
    if args.json:
        doc = {
            "target": target.label,
            "metrics": [
                {"name": n, "labels": labels, "value": v} for m in result.metrics for n, labels, v in m.iter_samples()
            ],
            "findings": [f.to_dict() for f in result.findings],
        }
        json.dump(doc, sys.stdout, indent=1)
        print()
    else:
        sys.stdout.write(encode_metrics(result.metrics).decode())
        for f in result.findings:
            print(f"# {f.severity.upper()} {f.check}: {f.summary}")
    up = [v for m in result.metrics if m.name.endswith("_up") for _, v in m.samples]
    return 0 if up and all(up) else 1


def cmd_profiles(args: argparse.Namespace) -> int:
    from diag.network.snmp import profiles

    for name in profiles.profile_names():
        print(f"{name}: {profiles.load(name).spec.description}")
    return 0
