"""Redis key names of one scale-out deployment, and the namespace that keeps two deployments on one Redis apart.

Everything a deployment keeps in Redis is named here: diag's own keys (results, attempts, the scheduler's lock,
fences and audit, the SNMP fleet state) and, through kombu's ``global_keyprefix`` (see :mod:`diag.distributed.app`),
the broker's queues, bindings and unacknowledged messages. With a namespace ``N`` every one of them starts with
``N:``, so two deployments that share a Redis database never take each other's tasks, results or restores.
The empty namespace is the layout of earlier releases (keys start with ``diag:``), so existing deployments keep
their keys.
"""

from __future__ import annotations

import os
import re

from diag.errors import ConfigError

#: Letters, digits, ``_ . -``; no ``:`` (the separator) and no spaces, so a key never needs quoting.
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

LEADER = "diag:scheduler:leader"
FIRINGS = "diag:scheduler:firings"  # audit trail of firings (capped), read by tests and `diag scheduler`
SNMP_LATEST = "diag:snmp:latest"  # device -> {"at": time, "result": ...}, rendered by a fleet exporter


def namespace(value: str | None) -> str:
    """``--namespace`` or $DIAG_NAMESPACE, checked; '' when neither is set (the default deployment)."""
    v = value if value is not None else os.environ.get("DIAG_NAMESPACE", "")
    if v and not _NAMESPACE.fullmatch(v):
        raise ConfigError(f"--namespace {v!r}: use 1-64 letters, digits, '_', '.' or '-' (no ':'), starting alnum")
    return v


def prefix(ns: str) -> str:
    """What every key of namespace ``ns`` starts with before diag's own name ('' for the default namespace)."""
    return f"{ns}:" if ns else ""


def key(ns: str, name: str) -> str:
    return prefix(ns) + name


def results(run_id: str, ns: str = "") -> str:
    return key(ns, f"diag:run:{run_id}:results")


def attempts(run_id: str, ns: str = "") -> str:
    return key(ns, f"diag:run:{run_id}:attempts")


def events(run_id: str, ns: str = "") -> str:
    return key(ns, f"diag:run:{run_id}:events")


def fired(job: str, slot: int, ns: str = "") -> str:
    return key(ns, f"diag:fired:{job}:{slot}")


def snmp_state(host: str, ns: str = "") -> str:
    return key(ns, f"diag:snmp:state:{host}")
