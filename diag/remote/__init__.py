"""Remote diagnostics over SSH: the connection pool (``diag.remote.ssh``), playbooks and their runner.

This package module holds only the shell-quoting helpers, so that playbook code can quote without importing
paramiko. Every value that goes into a remote command line (host names, variables, paths) passes through
:func:`quote`; the command template itself is trusted playbook text.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

__all__ = ["quote", "sh_join", "sudo_wrap"]


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
