"""diag: infrastructure monitoring and remote-diagnostics agent."""

from __future__ import annotations

__version__ = "0.1.0"
