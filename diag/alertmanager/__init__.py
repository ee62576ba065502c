"""The Alertmanager receiver: webhook v4 alerts in, diagnosis over SSH, incidents and tickets out.

See docs/alertmanager.md.

Nothing here is imported by ``diag agent`` unless ``agent.alertmanager`` is configured.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from diag.errors import ConfigError

if TYPE_CHECKING:
    from diag.alertmanager.config import ReceiverConfig
    from diag.alertmanager.receiver import Receiver
    from diag.inventory import Inventory
    from diag.wsgi import App

#: Where Alertmanager posts (``webhook_configs: url: http://HOST:9847/api/v1/alertmanager``).
PATH = "/api/v1/alertmanager"


class AgentSettings(Protocol):
    """What mounting needs of the agent's configuration (:class:`diag.config.AgentConfig` has it)."""

    @property
    def alertmanager(self) -> ReceiverConfig | None: ...

    @property
    def data(self) -> Path: ...


def mount(app: App, cfg: AgentSettings, inv: Inventory | None, sink: Any = None) -> Receiver | None:
    """Mount the receiver on the agent's App: a working endpoint when configured, a closed one otherwise."""
    if cfg.alertmanager is None:
        from diag.alertmanager.http import closed

        app.route(PATH, closed, methods=("POST",))
        return None
    from diag.alertmanager.http import handler
    from diag.alertmanager.receiver import Receiver

    if sink is None:  # the agent hands over its incident engine when agent.incidents is configured
        raise ConfigError("agent.alertmanager needs agent.incidents (the incident engine) configured as well")
    rc = cfg.alertmanager
    rc.credential.ensure_readable()  # a missing secret stops the agent at start, with FILE:LINE
    receiver = Receiver(rc, inv.hosts if inv else {}, sink, cfg.data)
    app.route(PATH, handler(receiver, rc.credential, rc.max_body_bytes), methods=("POST",))
    return receiver
