"""``diag api token add|list|revoke|scope``: manage the API's tokens (stored hashed in DATA/api.db)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diag.cli.common import DEFAULT_DATA


def _store(args: argparse.Namespace) -> Any:
    from diag.api.tokens import TokenStore

    return TokenStore(Path(args.data))


def _split(values: list[str] | None) -> list[str]:
    return [v for item in values or [] for v in item.split(",") if v.strip()] or ["*"]


def cmd_add(args: argparse.Namespace) -> int:
    from diag.journal import local_actor, record

    store = _store(args)
    groups, playbooks = _split(args.groups), _split(args.playbooks)
    token = store.add(args.name, args.role, groups, playbooks)
    record(
        Path(args.data),
        local_actor(),
        "token.added",
        f"token:{args.name}",
        "ok",
        {"role": args.role, "groups": groups, "playbooks": playbooks},
    )
    print(token)
    print(
        f"token {args.name!r} ({args.role}; groups {','.join(groups)}; playbooks {','.join(playbooks)}): "
        "shown once, stored only as a hash",
        file=sys.stderr,
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = [
        {
            "id": t.id,
            "name": t.name,
            "role": t.role,
            "groups": t.groups,
            "playbooks": t.playbooks,
            "created": t.created,
            "revoked": t.revoked,
        }
        for t in _store(args).list()
    ]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for r in rows:
        state = "revoked" if r["revoked"] else "active"
        print(
            f"{r['id']}  {r['name']:<20} {r['role']:<9} {state:<8} groups={','.join(r['groups'])} "
            f"playbooks={','.join(r['playbooks'])}"
        )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from diag.errors import ConfigError
    from diag.journal import local_actor, record

    store = _store(args)
    before = store.by_name(args.name)
    if not store.revoke(args.name):
        raise ConfigError(f"no active token named {args.name!r}")
    record(Path(args.data), local_actor(), "token.revoked", f"token:{args.name}", "ok")
    print(f"token {args.name!r} revoked")
    _cancel_pending(args, store, before.token_id if before else None)
    return 0


def cmd_scope(args: argparse.Namespace) -> int:
    """Change a token's role or scope; its pending approval requests that no longer fit are cancelled."""
    from diag.errors import ConfigError
    from diag.journal import local_actor, record

    if args.role is None and args.groups is None and args.playbooks is None:
        raise ConfigError("give --role, --groups or --playbooks")
    store = _store(args)
    p = store.change(
        args.name,
        args.role,
        _split(args.groups) if args.groups is not None else None,
        _split(args.playbooks) if args.playbooks is not None else None,
    )
    record(
        Path(args.data),
        local_actor(),
        "token.changed",
        f"token:{p.name}",
        "ok",
        {"role": p.role, "groups": list(p.groups), "playbooks": list(p.playbooks)},
    )
    print(f"token {p.name!r}: {p.role}; groups {','.join(p.groups)}; playbooks {','.join(p.playbooks)}")
    _cancel_pending(args, store, p.token_id)
    return 0


def _cancel_pending(args: argparse.Namespace, store: Any, token_id: str | None) -> None:
    """Pending approval requests of the token that it may no longer make are cancelled now, journaled."""
    from diag.api.approvals import ApprovalStore, cancel_unfit
    from diag.journal import local_actor, open_journal

    approvals = ApprovalStore(Path(args.data))
    try:
        for a, why in cancel_unfit(approvals, store, open_journal(Path(args.data)), local_actor(), token_id):
            print(f"approval request {a.id} ({a.playbook} on {','.join(a.targets)}) cancelled: {why}")
    finally:
        approvals.close()


def add_commands(sub: Any) -> None:
    """Register ``api token add|list|revoke``."""
    from diag.api.tokens import ROLES

    p = sub.add_parser("api", help="the HTTP API: tokens and roles")
    psub = p.add_subparsers(dest="api_cmd", required=True, metavar="ACTION")
    t = psub.add_parser("token", help="add, list or revoke API tokens")
    tsub = t.add_subparsers(dest="token_cmd", required=True, metavar="ACTION")
    a = tsub.add_parser("add", help="create a token and print it (once)")
    a.add_argument("name", help="who holds it (a person or a system)")
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--groups", action="append", metavar="G[,G]", help="host groups it may act on (default: all)")
    a.add_argument("--playbooks", action="append", metavar="P[,P]", help="playbooks it may run (default: all)")
    a.set_defaults(func=cmd_add)
    ls = tsub.add_parser("list", help="the tokens (never their secrets)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    r = tsub.add_parser("revoke", help="revoke a token by name or id (takes effect at once)")
    r.add_argument("name")
    r.set_defaults(func=cmd_revoke)
    sc = tsub.add_parser("scope", help="change a token's role or scope (pending requests that no longer fit end)")
    sc.add_argument("name")
    sc.add_argument("--role", choices=ROLES)
    sc.add_argument("--groups", action="append", metavar="G[,G]", help="host groups it may act on ('*': all)")
    sc.add_argument("--playbooks", action="append", metavar="P[,P]", help="playbooks it may run ('*': all)")
    sc.set_defaults(func=cmd_scope)
    for q in (a, ls, r, sc):
        q.add_argument("--data", default=DEFAULT_DATA, help="the agent's data directory (default ./.diag)")
