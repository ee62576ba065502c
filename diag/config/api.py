"""``agent.api`` in the inventory: settings of the HTTP API and console, validated with FILE:LINE errors.

::

    agent:
      api:
        known_hosts: [/etc/diag/known_hosts]   # for checks started through the API (default ~/.ssh/known_hosts)
        max_body_bytes: 65536                  # larger request bodies are refused with 413
        session_idle: 1800                     # a console session unused this long ends (s); an open page renews it
        session_ttl: 28800                     # ... and ends this long after its login whatever its use (s)
        viewer_session_ttl: 604800             # the same cap for viewer tokens (a wallboard on a NOC screen)
        check_concurrency: 20                  # hosts a job works on at once
        job_workers: 2                         # jobs that run at once (more wait their turn)
        approval_ttl: 86400                    # a pending approval request expires after this (s)
        secure_cookies: false                  # true behind a TLS proxy that is not agent.http.trusted_proxy
        max_streams: 12                        # live event streams at once (each holds one of agent.http.threads)
        max_streams_per_session: 4             # ... of them one browser session (its tabs) may hold
        grafana_url: https://grafana/d/node?var-instance={host}   # the console's host page links to it
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from diag import yamlsrc


@dataclass(slots=True)
class ApiSettings:
    """``agent.api`` in the inventory (docs/api.md)."""

    known_hosts: list[Path] | None = None
    max_body_bytes: int = 64 * 1024
    session_ttl_s: float = 8 * 3600  # a session's absolute lifetime from login (engineer, lead, admin)
    session_idle_s: float = 1800.0  # a session not used (no request, no open live page) for this long ends
    viewer_session_ttl_s: float = 7 * 24 * 3600  # the absolute lifetime of a viewer's session (a wallboard)
    check_concurrency: int = 20
    job_workers: int = 2
    jobs_kept: int = 200
    approval_ttl_s: float = 24 * 3600  # a pending approval request expires after this
    secure_cookies: bool = False  # Secure on console cookies even over plain HTTP (a TLS proxy in front)
    max_streams: int = 12  # event streams open at once: each holds an HTTP worker (agent.http.threads) while open
    #: streams one console session may hold: a browser opens at most 6 HTTP/1.1 connections to one host, and
    #: a tab whose page fetch waits behind its own other tabs' streams would hang; beyond it a tab polls
    max_streams_per_session: int = 4
    #: a Grafana dashboard for a host, ``{host}`` replaced by its name (the console's host page links to it)
    grafana_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ApiSpec(msgspec.Struct, forbid_unknown_fields=True):
    known_hosts: list[str] | None = None
    max_body_bytes: int = 64 * 1024
    session_ttl: float = 8 * 3600
    session_idle: float = 1800.0
    viewer_session_ttl: float = 7 * 24 * 3600
    check_concurrency: int = 20
    job_workers: int = 2
    jobs_kept: int = 200
    approval_ttl: float = 24 * 3600
    secure_cookies: bool = False
    max_streams: int = 12
    max_streams_per_session: int = 4
    grafana_url: str | None = None


def build(doc: yamlsrc.Doc, raw: Any, base: tuple[str, ...] = ("agent", "api")) -> ApiSettings | None:
    spec = doc.check_type(base, raw if raw is not None else {}, ApiSpec)
    if spec is None:
        return None
    for name in ("check_concurrency", "job_workers", "jobs_kept", "max_streams", "max_streams_per_session"):
        if getattr(spec, name) < 1:
            doc.problem((*base, name), f"{name} must be at least 1")
    if not 1024 <= spec.max_body_bytes <= 64 << 20:
        doc.problem((*base, "max_body_bytes"), "max_body_bytes must be between 1024 and 67108864")
    if spec.approval_ttl < 60:
        doc.problem((*base, "approval_ttl"), "approval_ttl must be at least 60 seconds")
    if spec.grafana_url is not None and not spec.grafana_url.startswith(("https://", "http://")):
        doc.problem((*base, "grafana_url"), "grafana_url must be an http:// or https:// address")
    # short values are allowed (the tests use seconds); a console needs a few seconds between its requests
    for name in ("session_ttl", "session_idle", "viewer_session_ttl"):
        if not 5 <= getattr(spec, name) <= 366 * 86400:  # also refuses .inf and .nan (a cookie's max-age is an int)
            doc.problem((*base, name), f"{name} must be between 5 seconds and 366 days (31622400)")
    if spec.session_idle > spec.session_ttl:
        doc.problem((*base, "session_idle"), "session_idle must not be longer than session_ttl")
    return ApiSettings(
        known_hosts=[Path(p) for p in spec.known_hosts] if spec.known_hosts is not None else None,
        max_body_bytes=spec.max_body_bytes,
        session_ttl_s=spec.session_ttl,
        session_idle_s=spec.session_idle,
        viewer_session_ttl_s=spec.viewer_session_ttl,
        check_concurrency=spec.check_concurrency,
        job_workers=spec.job_workers,
        jobs_kept=spec.jobs_kept,
        approval_ttl_s=spec.approval_ttl,
        secure_cookies=spec.secure_cookies,
        max_streams=spec.max_streams,
        max_streams_per_session=spec.max_streams_per_session,
        grafana_url=spec.grafana_url,
    )
