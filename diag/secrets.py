"""Secrets by reference (``env:NAME``, ``file:PATH``) and a logging filter that masks revealed values.

A SecretRef prints as its reference, never as its value; every value that is revealed is remembered
so that :class:`MaskingFilter` can blank it from any log record, whoever formats it.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from diag.errors import SecretError

SCHEMES = ("env:", "file:")

_revealed: set[str] = set()
_lock = threading.Lock()


def is_reference(value: str) -> bool:
    return value.startswith(SCHEMES)


def unresolved(value: str) -> str | None:
    """Why the reference ``value`` cannot be read here (unset variable, unreadable file), or None when it can.

    The value itself is never read into memory beyond an open: ``diag inventory validate`` asks this of every
    reference so that it can say which secrets the machine lacks without revealing any.
    """
    scheme, _, name = value.partition(":")
    if scheme == "env" and value.startswith("env:"):
        return None if name in os.environ else f"{value}: environment variable {name} is not set here"
    if scheme == "file" and value.startswith("file:"):
        try:
            with Path(name).expanduser().open("rb"):
                return None
        except OSError as e:
            return f"{value}: cannot read the file here: {e.strerror}"
    return None


class SecretRef:
    """A reference to a secret; ``reveal()`` reads it when a connection needs it."""

    __slots__ = ("ref",)

    def __init__(self, ref: str) -> None:
        if not is_reference(ref):
            raise SecretError("secret must be a reference like env:NAME or file:PATH, not a literal value")
        self.ref = ref

    def __repr__(self) -> str:
        return f"SecretRef({self.ref!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and other.ref == self.ref

    def __hash__(self) -> int:
        return hash(self.ref)

    def reveal(self) -> str:
        scheme, _, name = self.ref.partition(":")
        if scheme == "env":
            value = os.environ.get(name)
            if value is None:
                raise SecretError(f"secret {self.ref}: environment variable {name} is not set")
        else:
            try:
                value = Path(name).expanduser().read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as e:
                raise SecretError(f"secret {self.ref}: cannot read file: {e.strerror}") from None
        remember(value)
        return value


def remember(value: str) -> None:
    """Register a secret value so that logs and evidence mask it."""
    if len(value) >= 4:  # masking very short strings would blank ordinary words
        with _lock:
            _revealed.add(value)


def mask(text: str) -> str:
    """Replace every revealed secret value in ``text`` with ``***``."""
    if not _revealed:
        return text
    for value in sorted(_revealed, key=len, reverse=True):
        if value in text:
            text = text.replace(value, "***")
    return text


class MaskingFilter(logging.Filter):
    """Masks revealed secrets in log records (message and arguments), as netmiko's SecretsFilter does."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _revealed:
            record.msg = mask(record.getMessage())
            record.args = None
        return True
