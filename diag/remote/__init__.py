"""Remote diagnostics over SSH: the connection pool (``diag.remote.ssh``), playbooks and their runner.

This package module holds only the shell-quoting helpers and the error-to-status mapping, so that playbook
code and the runner can use them without importing paramiko. Every value that goes into a remote command
line (host names, variables, paths) passes through :func:`quote`; the command template itself is trusted
playbook text.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import TYPE_CHECKING

from diag.errors import AuthError, HostKeyError, HostKeyUnknown, Timeout, Unreachable
from diag.model import HostStatus

if TYPE_CHECKING:
    from diag.inventory import Host

__all__ = ["host_status", "quote", "sh_join", "sudo_wrap"]


def quote(value: object) -> str:
    """One shell word that expands to exactly ``str(value)`` (``shlex.quote``): ``;rm -rf /`` stays a string."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return shlex.quote(str(value))


def sh_join(argv: Iterable[object]) -> str:
    """A command line from separate arguments, each quoted."""
    return " ".join(quote(a) for a in argv)


def sudo_wrap(command: str) -> str:
    """Run ``command`` (a shell command line) as root via sudo, never prompting (``-n``): fails fast instead."""
    return f"sudo -n -- sh -c {quote(command)}"


def where(host: Host) -> str:
    """``address:port (name)``: how every message names a host."""
    target = f"[{host.address}]:{host.port}" if ":" in host.address else f"{host.address}:{host.port}"
    return target if host.name == host.address else f"{target} ({host.name})"


def host_status(exc: BaseException) -> HostStatus:
    """The ``diag check`` status for an exception raised while working on a host (a lost connection: ``error``)."""
    if isinstance(exc, HostKeyUnknown):  # never seen: not the same alarm as a key that changed
        return "hostkey_unknown"
    if isinstance(exc, HostKeyError):
        return "hostkey_mismatch"
    if isinstance(exc, AuthError):
        return "auth_failed"
    if isinstance(exc, Unreachable):
        return "unreachable"
    if isinstance(exc, Timeout):
        return "timeout"
    return "error"
