"""What the SNMP client and its v3 framing share: the errors, the Target, the value type.

Kept apart from ``client.py`` so that ``v3.py`` (imported by the client for v3 sessions only) needs
nothing of the client.
"""

from __future__ import annotations

from diag.errors import AuthError, DiagError, InvalidInput, Timeout

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: a walk command's start-up (docs/snmp.md)
if TYPE_CHECKING:
    from typing import Any

    from diag.inventory import Host

#: One value: (numeric OID without leading dot, type name as in ber.TYPE_NAMES, value).
Var = tuple[str, str, "Any"]

MAX_REPETITIONS = 100  # net-snmp's default is 10; 100 was the fastest on ifTable (docs/snmp.md)
MIN_REPETITIONS = 1


class SnmpError(DiagError):
    """An SNMP request failed; the message names host:port."""


class SnmpTimeout(SnmpError, Timeout):
    """No (valid) answer within timeout and retries."""


class SnmpAuthError(SnmpError, AuthError):
    """v3 authentication or privacy failed (wrong user, password or protocol)."""


class SnmpInputError(SnmpError, InvalidInput):
    """What was asked cannot be asked (not an OID, a v3 target without a user, an unknown protocol).

    InvalidInput, so the command line exits 2 and not 3 (nothing failed at run time); and an SnmpError, so a
    poll that meets it reports it as a finding of that device instead of stopping.
    """


class SnmpCredentialError(SnmpAuthError, InvalidInput):
    """v3 credentials that cannot work, known before anything is sent (unknown protocol, password too short)."""


class Target:
    """Where and how to ask: address, port, version and credentials (secrets already revealed).

    A plain class, not a dataclass: ``dataclasses`` imports ``inspect``, a fifth of a walk command's
    start-up, and the repr here leaves the secrets out.
    """

    __slots__ = _FIELDS = (
        "host", "port", "version", "community", "user", "auth_protocol", "auth_key", "priv_protocol",
        "priv_key", "context", "timeout", "retries", "max_repetitions", "name",
    )  # fmt: skip

    def __init__(
        self,
        host: str,
        port: int = 161,
        version: str = "2c",
        community: str = "public",
        user: str = "",
        auth_protocol: str = "SHA",
        auth_key: str = "",
        priv_protocol: str = "AES",
        priv_key: str = "",
        context: str = "",
        timeout: float = 2.0,
        retries: int = 1,
        max_repetitions: int = MAX_REPETITIONS,
        name: str = "",
    ) -> None:
        self.host, self.port, self.version, self.community = host, port, version, community
        self.user, self.auth_protocol, self.auth_key = user, auth_protocol, auth_key
        self.priv_protocol, self.priv_key, self.context = priv_protocol, priv_key, context
        self.timeout, self.retries, self.max_repetitions, self.name = timeout, retries, max_repetitions, name

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Target):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass was

    def __repr__(self) -> str:
        return f"Target({self.label}, version={self.version!r}, user={self.user!r}, name={self.name!r})"

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}" if ":" not in self.host else f"[{self.host}]:{self.port}"

    @property
    def security_level(self) -> str:
        if self.priv_key:
            return "authPriv"
        return "authNoPriv" if self.auth_key else "noAuthNoPriv"


def parse_target(text: str, default_port: int = 161) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` -> (host, port); ValueError on a bad port."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, port = text.split(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad port in {text!r}")
        return host, int(port)
    return text, default_port


def target_from_host(host: Host, port: int | None = None) -> Target:
    """A Target from an inventory host's resolved ``snmp:`` settings (secret references revealed here)."""
    s = host.snmp

    def secret(key: str) -> str:
        ref = host.snmp_secret(key)
        return ref.reveal() if ref is not None else str(s.get(key) or "")

    return Target(
        host=host.address,
        port=port or int(s.get("port") or 161),
        version=str(s.get("version") or "2c"),
        community=secret("community") or "public",
        user=str(s.get("user") or ""),
        auth_protocol=str(s.get("auth_protocol") or "SHA"),
        auth_key=secret("auth_key"),
        priv_protocol=str(s.get("priv_protocol") or "AES"),
        priv_key=secret("priv_key"),
        context=str(s.get("context") or ""),
        timeout=float(s.get("timeout") or 2.0),
        retries=int(s["retries"]) if s.get("retries") is not None else 1,
        name=host.name,
    )
