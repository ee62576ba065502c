"""Ticket backends: one file per ticket system, each idempotent on the incident's fingerprint.

A backend module registers a factory in :data:`diag.exporters.tickets.base.BACKENDS` under its name
(``local``, ``redmine``, ``rt``, ``webhook``, ``email``); the incident outbox looks it up by that name.
:func:`build` imports a built-in backend's module on demand, so the agent only loads the one it uses.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from typing import Any

from diag.exporters.tickets.base import BACKENDS, TicketBackend

BUILTIN = ("local", "redmine", "rt", "webhook", "email")


def build(name: str, config: Mapping[str, Any]) -> TicketBackend:
    """The backend ``name`` configured from its config section (ConfigError/SecretError on a bad one)."""
    module = f"diag.exporters.tickets.{name}"
    if name in BUILTIN and name not in BACKENDS and importlib.util.find_spec(module) is not None:
        importlib.import_module(module)
    return BACKENDS.get(name)(config)
