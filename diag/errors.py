"""The DiagError tree: every error a user can see is one of these, with a one-line message."""

from __future__ import annotations


class DiagError(Exception):
    """Base of all expected errors; str(err) is the one line shown to the user."""


class InvalidInput(DiagError):
    """A value the user gave is not valid (an argument, an option, an API field, a file): not a runtime failure.

    The library raises it where it checks what it is given (an OID, a URL, a port, a profile name), so every
    front door treats it alike: the command line exits 2 with the one line, the HTTP API answers 400.
    """


class ConfigError(InvalidInput):
    """A configuration, inventory or playbook file is invalid.

    ``problems`` holds every ``FILE:LINE: message`` found, so a validator can report all of them.
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__(self.problems[0] if self.problems else "invalid configuration")


class RegistryError(InvalidInput):
    """An unknown name was asked of a registry (probe, playbook, backend...): a name the user gave."""


class StoreUnavailable(DiagError):
    """The incident store cannot be used now (PostgreSQL down or restarting, SQLite busy or its disk full).

    A passing outage, not a fault of what was being stored: whoever holds work the store must take (an alert
    Alertmanager was told was accepted) keeps it and tries again; it must not drop it as a poisoned job.
    """


class ProbeError(DiagError):
    """A probe failed to collect; the scrape goes on without it."""


class NoData(DiagError):
    """The thing a probe looks at is absent here (no sensor, no systemd): not an error."""


class SecretError(DiagError):
    """A secret reference could not be resolved (missing variable or file)."""


class ConnectError(DiagError):
    """A host could not be reached or logged into."""


class Unreachable(ConnectError):
    """TCP connection refused, no route, or DNS failure."""


class AuthError(ConnectError):
    """The host refused our credentials."""


class HostKeyError(ConnectError):
    """The host key differs from known_hosts (or is revoked): status ``hostkey_mismatch``."""


class HostKeyUnknown(HostKeyError):
    """No key is known for the host and its policy does not trust one on first use: status ``hostkey_unknown``."""


class Timeout(ConnectError):
    """A connect, authentication or command exceeded its timeout."""
