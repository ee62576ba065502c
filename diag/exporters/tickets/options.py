"""Config of a ticket backend: validate its section against the backend's msgspec ``Options`` and reveal secrets.

Every backend module declares ``Options`` (a msgspec Struct, unknown keys refused) so the incident config loader
can check a section with ``yamlsrc.Doc.check_type`` and report FILE:LINE; the factory calls :func:`parse` again
on the plain mapping it is given. Secrets are accepted only as references (``env:NAME``, ``file:PATH``, or a
:class:`~diag.secrets.SecretRef`), never as literal values, so a key cannot end up in a config file or a log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

import msgspec

from diag import yamlsrc
from diag.errors import ConfigError, SecretError
from diag.secrets import SecretRef, is_reference

T = TypeVar("T")


def parse(backend: str, config: Mapping[str, Any], spec: type[T]) -> T:
    """``config`` as ``spec``; ConfigError naming the backend and the key on a wrong or unknown key."""
    raw = {k: (v.ref if isinstance(v, SecretRef) else v) for k, v in config.items()}
    try:
        return cast(T, yamlsrc.convert(raw, spec))  # thread-safe first use of the type
    except msgspec.ValidationError as e:
        raise ConfigError(f"ticket backend {backend}: {e}") from None


def secret(backend: str, key: str, value: str | None) -> str | None:
    """Reveal the secret behind a reference; a literal value is a ConfigError (it would sit in a config file)."""
    if value is None or value == "":
        return None
    if not is_reference(value):
        raise ConfigError(f"ticket backend {backend}: {key} must be a reference like env:NAME or file:PATH")
    try:
        return SecretRef(value).reveal()
    except SecretError as e:
        raise SecretError(f"ticket backend {backend}: {key}: {e}") from None
