"""The receiver's own credential: a bearer token or HTTP basic auth, as Alertmanager's ``http_config`` sends them.

Secrets are references (``env:NAME``, ``file:PATH``) read on every check, so a rotated token file takes effect
without a restart. Comparison is constant-time (:func:`hmac.compare_digest` on the UTF-8 bytes), and the user
name and the password are both compared before the answer is decided, so timing tells nothing about which one
was wrong. With no credential configured, :class:`Credential` refuses everything: the endpoint is closed, not open.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging

from diag.errors import ConfigError, SecretError
from diag.secrets import SecretRef

log = logging.getLogger(__name__)


class Denied(Exception):
    """The request is not allowed; ``status`` is the HTTP status line, ``str()`` the reason told to the client."""

    def __init__(self, status: str, reason: str, challenge: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.challenge = status, challenge


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Credential:
    """What a request must carry: ``Authorization: Bearer TOKEN`` or ``Authorization: Basic ...`` (either one)."""

    def __init__(
        self,
        bearer: SecretRef | None = None,
        basic_user: str | None = None,
        basic_password: SecretRef | None = None,
        where: dict[str, str] | None = None,
    ) -> None:
        self.bearer = bearer
        self.basic_user = basic_user
        self.basic_password = basic_password
        self.where = where or {}  # "bearer"/"basic" -> FILE:LINE of the reference, for errors at start

    def ensure_readable(self) -> None:
        """Read every configured secret once (agent start): ConfigError with FILE:LINE for those that cannot be."""
        problems = []
        for key, ref in (("bearer", self.bearer), ("basic", self.basic_password)):
            if ref is None:
                continue
            try:
                ref.reveal()
            except SecretError as e:
                problems.append(f"{self.where.get(key, 'agent.alertmanager.auth')}: {e}")
        if problems:
            raise ConfigError(problems)

    @property
    def configured(self) -> bool:
        return self.bearer is not None or self.basic_password is not None

    def challenge(self) -> str:
        return "Bearer" if self.bearer is not None else 'Basic realm="diag", charset="UTF-8"'

    def check(self, header: str | None) -> None:
        """Return when ``header`` (the Authorization header) carries the credential; raise Denied otherwise."""
        if not self.configured:
            raise Denied("403 Forbidden", "no credential is configured for this endpoint, so it accepts nothing")
        if not header:
            raise Denied("401 Unauthorized", "credentials required", self.challenge())
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        try:
            if scheme.lower() == "bearer" and self.bearer is not None:
                if _same(value, self.bearer.reveal()):
                    return
            elif scheme.lower() == "basic" and self.basic_password is not None and self._basic_ok(value):
                return
        except SecretError as e:
            # Our side is broken, not the client's: say so without the reference's details to the client.
            log.error("alertmanager receiver: cannot read its credential: %s", e)
            reason = "the receiver's credential cannot be read; see the agent log"
            raise Denied("503 Service Unavailable", reason) from None
        raise Denied("401 Unauthorized", "invalid credentials", self.challenge())

    def _basic_ok(self, value: str) -> bool:
        assert self.basic_password is not None
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user_ok = _same(user, self.basic_user or "")
        password_ok = _same(password, self.basic_password.reveal())
        return bool(sep) and user_ok and password_ok
