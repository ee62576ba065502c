"""Intakes: where people's tickets come from (Redmine, RT, an IMAP mailbox), one module each, built by name."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

BUILTIN = ("redmine", "rt", "imap")


def build(name: str, config: Mapping[str, Any]) -> Any:
    """The desk ``name`` built from its config section (ConfigError on a bad one)."""
    from diag.errors import ConfigError

    if name not in BUILTIN:
        raise ConfigError(f"line1: unknown desk {name!r}; known: {', '.join(BUILTIN)}")
    module = importlib.import_module(f"diag.line1.intake.{name}")
    return module.factory(config)
