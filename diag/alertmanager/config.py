"""The receiver's settings: ``agent.alertmanager`` in the inventory, validated with FILE:LINE errors.

::

    agent:
      alertmanager:
        auth:
          bearer_token: env:DIAG_ALERTMANAGER_TOKEN          # and/or
          basic: {username: alertmanager, password: file:/etc/diag/alertmanager.pass}
        host_labels: [instance, host]      # first label whose value (port stripped) names an inventory host
        playbooks:                          # alertname -> the diagnosis to run
          DiagFilesystemAlmostFull: {playbook: disk-full, vars_from_labels: {path: mountpoint}}
          HostHighLoad: high-load
        default_playbook: null              # for alerts nothing else maps (null: register without diagnosis)
        workers: 4                          # diagnoses run at once
        rediagnose_after: 300               # a repeat older than this runs the playbook again (s)
        prometheus_url: http://127.0.0.1:9090   # re-checks alerts that have no playbook (their rule's expression)

Playbook names are resolved here, at start, so a typo is a config error and not a silent alert later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from diag import yamlsrc
from diag.alertmanager.auth import Credential
from diag.errors import ConfigError
from diag.secrets import SecretRef, is_reference

if TYPE_CHECKING:
    from diag.remote.playbook import Playbook

PATH = "/api/v1/alertmanager"
DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: about a thousand alerts in one notification


class BasicAuthSpec(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str


class AuthSpec(msgspec.Struct, forbid_unknown_fields=True):
    bearer_token: str | None = None
    basic: BasicAuthSpec | None = None


class RouteSpec(msgspec.Struct, forbid_unknown_fields=True):
    playbook: str
    vars: dict[str, str | int | float | bool] = {}
    #: playbook variable -> alert label whose value it takes (shell-quoted in commands like every variable)
    vars_from_labels: dict[str, str] = {}


class AlertmanagerSpec(msgspec.Struct, forbid_unknown_fields=True):
    auth: AuthSpec | None = None
    host_labels: list[str] = msgspec.field(default_factory=lambda: ["instance", "host"])
    playbooks: dict[str, RouteSpec | str] = {}
    default_playbook: str | None = None
    workers: int = 4
    max_pending: int = 1000
    max_body_bytes: int = DEFAULT_MAX_BODY
    rediagnose_after: float = 300.0
    known_hosts: list[str] = []
    prometheus_url: str | None = None
    #: for playbooks found through the knowledge base: playbook variable -> alert label (same names always map)
    kb_vars_from_labels: dict[str, str] = msgspec.field(
        default_factory=lambda: {"path": "mountpoint", "service": "unit"}
    )


@dataclass(slots=True)
class Route:
    """The diagnosis for one alertname: a playbook file and how its variables are filled."""

    playbook: Playbook
    vars: dict[str, Any] = field(default_factory=dict)
    vars_from_labels: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ReceiverConfig:
    credential: Credential
    host_labels: list[str]
    routes: dict[str, Route]
    default_route: Route | None
    workers: int = 4
    max_pending: int = 1000
    max_body_bytes: int = DEFAULT_MAX_BODY
    rediagnose_after: float = 300.0
    known_hosts: list[str] = field(default_factory=list)
    #: where alerts without a playbook are re-checked (their rule's expression evaluated again); None: not at all
    prometheus_url: str | None = None
    kb_vars_from_labels: dict[str, str] = field(default_factory=dict)


def build(doc: yamlsrc.Doc, raw: Any, base: tuple[str, ...] = ("agent", "alertmanager")) -> ReceiverConfig | None:
    """Validate the section; its problems go to ``doc.problems`` (FILE:LINE each) and then the answer is None."""
    from diag.remote import playbook as pbmod  # only when the receiver is configured

    start = len(doc.problems)
    spec = doc.check_type(base, raw if raw is not None else {}, AlertmanagerSpec)
    if spec is None:
        return None
    credential = Credential()
    if spec.auth is not None:
        credential = _credential(doc, (*base, "auth"), spec.auth)
    for name, value in (("workers", spec.workers), ("max_pending", spec.max_pending)):
        if value < 1:
            doc.problem((*base, name), f"{name} must be at least 1")
    if spec.max_body_bytes < 1024:
        doc.problem((*base, "max_body_bytes"), "max_body_bytes must be at least 1024")
    if spec.rediagnose_after < 0:
        doc.problem((*base, "rediagnose_after"), "rediagnose_after must not be negative")
    if spec.prometheus_url is not None and not spec.prometheus_url.startswith(("http://", "https://")):
        doc.problem((*base, "prometheus_url"), "prometheus_url must be an http:// or https:// URL")
    if not spec.host_labels:
        doc.problem((*base, "host_labels"), "host_labels needs at least one label name")

    def route(path: tuple[str | int, ...], value: RouteSpec | str) -> Route | None:
        r = RouteSpec(playbook=value) if isinstance(value, str) else value
        try:
            pb = pbmod.load(pbmod.find(r.playbook))
        except ConfigError as e:
            doc.problem(path, e.problems[0])
            return None
        unknown = sorted((set(r.vars) | set(r.vars_from_labels)) - set(pb.vars))
        if unknown:
            has = ", ".join(pb.vars) or "none"
            doc.problem(path, f"playbook {pb.name} has no variable {unknown[0]!r} (has: {has})")
            return None
        return Route(pb, dict(r.vars), dict(r.vars_from_labels))

    routes: dict[str, Route] = {}
    for alertname, value in spec.playbooks.items():
        r = route((*base, "playbooks", alertname), value)
        if r is not None:
            routes[alertname] = r
    default = route((*base, "default_playbook"), spec.default_playbook) if spec.default_playbook else None
    if len(doc.problems) > start:
        return None
    return ReceiverConfig(
        credential=credential,
        host_labels=list(spec.host_labels),
        routes=routes,
        default_route=default,
        workers=spec.workers,
        max_pending=spec.max_pending,
        max_body_bytes=spec.max_body_bytes,
        rediagnose_after=spec.rediagnose_after,
        known_hosts=list(spec.known_hosts),
        prometheus_url=spec.prometheus_url,
        kb_vars_from_labels=dict(spec.kb_vars_from_labels),
    )


def _credential(doc: yamlsrc.Doc, path: tuple[str, ...], auth: AuthSpec) -> Credential:
    def ref(where: tuple[str, ...], value: str) -> SecretRef | None:
        if not is_reference(value):
            doc.problem(where, "must be a reference (env:NAME or file:PATH), not a literal secret")
            return None
        # Not read here: validating the file (diag inventory validate) needs no secrets. The agent reads it at start
        # (Credential.ensure_readable, FILE:LINE on failure) and again on every request.
        return SecretRef(value)

    bearer = ref((*path, "bearer_token"), auth.bearer_token) if auth.bearer_token is not None else None
    user = password = None
    where: dict[str, str] = {}
    if bearer is not None:
        where["bearer"] = doc.where((*path, "bearer_token"))
    if auth.basic is not None:
        user = auth.basic.username
        password = ref((*path, "basic", "password"), auth.basic.password)
        where["basic"] = doc.where((*path, "basic", "password"))
    if auth.bearer_token is None and auth.basic is None:
        doc.problem(path, "auth needs bearer_token or basic (without one the endpoint accepts nothing)")
    return Credential(bearer, user, password, where)
