"""Binds the receiver to the incident engine of :mod:`diag.incidents`.

The agent hands the receiver its incident engine when ``agent.incidents`` is configured. Without it, an agent
configured with ``agent.alertmanager`` refuses to start with this one-line reason rather than accept alerts it
cannot turn into incidents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diag.errors import ConfigError

if TYPE_CHECKING:
    from diag.alertmanager.engine import IncidentSink
    from diag.config import AgentConfig


def build_sink(cfg: AgentConfig) -> IncidentSink:
    """The incident engine the receiver hands its findings to."""
    raise ConfigError("agent.alertmanager needs agent.incidents (the incident engine) configured as well")
