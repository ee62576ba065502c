"""The agent's own settings: the ``agent:`` section of the inventory file, validated with file:line errors.

::

    agent:
      listen: 127.0.0.1:9847
      data: .diag
      log_format: text           # or json
      paths: {procfs: /proc, sysfs: /sys, rootfs: /}
      probes:
        filesystem: {interval: 30, warning_percent: 85}
        smart: {enabled: false}
        reach: {interval: 60, checks: [{type: tcp, target: db-1, port: 5432}]}
      traps: {listen: ["0.0.0.0:9162"], communities: [env:TRAP_COMMUNITY]}   # diag.network.traps.config
      snmp_poll: {interval: 60, concurrency: 32}   # inventory hosts with snmp.profiles
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from diag import yamlsrc
from diag.errors import ConfigError
from diag.probes import Paths, ProbeOptions, load_all, probes

if TYPE_CHECKING:
    from diag.archive.settings import ArchiveSettings

DEFAULT_PORT = 9847
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"


class PathsSpec(msgspec.Struct, forbid_unknown_fields=True):
    procfs: str = "/proc"
    sysfs: str = "/sys"
    rootfs: str = "/"


class SnmpPollSpec(msgspec.Struct, forbid_unknown_fields=True):
    """The SNMP poller of inventory devices with ``snmp.profiles`` (on whenever there are such devices)."""

    enabled: bool = True
    interval: float = 60.0
    concurrency: int = 32


class HttpSpec(msgspec.Struct, forbid_unknown_fields=True):
    """The agent's HTTP server (diag.httpserver.Limits, docs/agent.md)."""

    threads: int = 16
    connection_limit: int = 256
    per_client: int = 32
    read_timeout: float = 10.0
    idle_timeout: float = 30.0
    trusted_proxy: str | None = None


class AgentSpec(msgspec.Struct, forbid_unknown_fields=True):
    listen: str = DEFAULT_LISTEN
    data: str = ".diag"
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    hostname: str | None = None
    probe_workers: int = 8
    paths: PathsSpec = msgspec.field(default_factory=PathsSpec)
    probes: dict[str, dict[str, object]] = {}
    alertmanager: dict[str, object] | None = None  # diag.alertmanager.config validates it
    incidents: dict[str, object] | None = None  # diag.incidents.settings validates it
    archive: dict[str, object] | None = None  # the configuration archive, validated by diag.archive.settings
    api: dict[str, object] | None = None  # diag.config.api validates it
    traps: dict[str, object] | None = None  # diag.network.traps.config validates it
    line1: dict[str, object] | None = None  # diag.line1.settings validates it (docs/line1.md)
    snmp_poll: SnmpPollSpec = msgspec.field(default_factory=SnmpPollSpec)
    http: HttpSpec = msgspec.field(default_factory=HttpSpec)
    journal: dict[str, object] | None = None  # diag.journal.settings validates it


@dataclass(slots=True)
class AgentConfig:
    listen: str
    data: Path
    log_format: str
    log_level: str
    hostname: str | None
    probe_workers: int
    paths: Paths
    probes: dict[str, ProbeOptions] = field(default_factory=dict)
    alertmanager: Any = None  # diag.alertmanager.config.ReceiverConfig when configured
    incidents: Any = None  # diag.incidents.settings.Settings when configured
    archive: ArchiveSettings | None = None  # None: no scheduled configuration fetches
    api: Any = None  # diag.config.api.ApiSettings when agent.api is given
    traps: Any = None  # diag.network.traps.config.TrapConfig when configured
    snmp_poll: SnmpPollSpec = field(default_factory=SnmpPollSpec)
    http: Any = None  # diag.httpserver.Limits
    journal: Any = None  # diag.journal.settings.JournalSettings when agent.journal is given
    line1: Any = None  # diag.line1.settings.Settings when configured


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); ValueError with the reason."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen address {value!r} must be HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def build(doc: yamlsrc.Doc | None, raw: dict[str, object] | None) -> AgentConfig:
    """Validate the agent section and every probe's options; ConfigError lists all problems."""
    load_all()
    raw = raw or {}
    if doc is None:
        doc = yamlsrc.Doc("<defaults>", {"agent": raw})
    spec = doc.check_type(("agent",), raw, AgentSpec) or AgentSpec()
    try:
        parse_listen(spec.listen)
    except ValueError as e:
        doc.problem(("agent", "listen"), str(e))
    options: dict[str, ProbeOptions] = {}
    for name in spec.probes:
        if name not in probes:
            doc.problem(("agent", "probes", name), f"unknown probe {name!r}; known: {', '.join(probes.names())}")
    for name in probes.names():
        cls = probes.get(name)
        opts = doc.check_type(("agent", "probes", name), spec.probes.get(name) or {}, cls.Options)
        if opts is not None:
            if opts.interval <= 0 or opts.timeout <= 0:
                doc.problem(("agent", "probes", name), "interval and timeout must be positive")
            for key, message in opts.problems():
                doc.problem(("agent", "probes", name, key), f"{name}: {message}")
            options[name] = opts
    receiver = None
    if spec.alertmanager is not None:
        from diag.alertmanager.config import build as build_receiver  # only when configured

        receiver = build_receiver(doc, spec.alertmanager)  # its problems join doc.problems
    data = Path(spec.data)
    incidents = None
    if spec.incidents is not None:
        from diag.incidents.settings import build as build_incidents  # only when configured

        incidents = build_incidents(doc, spec.incidents, data)  # its problems join doc.problems
    archive = None
    if spec.archive is not None:
        from diag.archive import settings as archive_settings

        try:
            archive = archive_settings.parse(doc, spec.archive, archive_settings.names_in(doc))
        except ConfigError as e:  # reported with the others just below
            doc.problems.extend(p for p in e.problems if p not in doc.problems)
    api = None
    if spec.api is not None:
        from diag.config.api import build as build_api  # only when configured

        api = build_api(doc, spec.api)
    traps = None
    if spec.traps is not None:
        from diag.network.traps.config import build as build_traps  # only when configured

        traps = build_traps(doc, spec.traps)  # its problems join doc.problems
    line1 = None
    if spec.line1 is not None:
        from diag.line1 import settings as line1_settings  # only when configured

        try:
            line1 = line1_settings.from_doc(doc, spec.line1)
        except ConfigError as e:
            doc.problems.extend(p for p in e.problems if p not in doc.problems)
    if spec.snmp_poll.interval <= 0 or spec.snmp_poll.concurrency < 1:
        doc.problem(("agent", "snmp_poll"), "interval must be positive and concurrency at least 1")
    http = _http(doc, spec.http)
    api = _stream_workers(doc, api, spec.api, http.threads)
    journal = None
    if spec.journal is not None:
        from diag.journal.settings import build as build_journal  # only when configured

        journal = build_journal(doc, spec.journal, data)
    if doc.problems:
        raise ConfigError(doc.problems)
    return AgentConfig(
        listen=spec.listen,
        data=data,
        log_format=spec.log_format,
        log_level=spec.log_level,
        hostname=spec.hostname,
        probe_workers=spec.probe_workers,
        paths=Paths(Path(spec.paths.procfs), Path(spec.paths.sysfs), Path(spec.paths.rootfs), data / "state"),
        probes=options,
        alertmanager=receiver,
        incidents=incidents,
        archive=archive,
        api=api,
        traps=traps,
        snmp_poll=spec.snmp_poll,
        http=http,
        journal=journal,
        line1=line1,
    )


def _stream_workers(doc: yamlsrc.Doc, api: Any, raw_api: Any, threads: int) -> Any:
    """Event streams each hold one of the HTTP workers while open: at least two workers stay for everything else
    (/metrics, the webhook, page loads). A cap left at its default follows a smaller ``agent.http.threads``;
    one written in the inventory that leaves fewer than two is a problem."""
    import dataclasses

    from diag.config.api import ApiSettings

    room = max(1, threads - 2)
    written = isinstance(raw_api, dict) and "max_streams" in raw_api
    settings = api if api is not None else ApiSettings()
    if settings.max_streams <= room:
        return api
    if written:
        doc.problem(
            ("agent", "api", "max_streams"),
            f"max_streams {settings.max_streams} leaves fewer than 2 of agent.http.threads ({threads}) for other"
            " requests; lower it or raise agent.http.threads",
        )
        return api
    return dataclasses.replace(settings, max_streams=room)


def _http(doc: yamlsrc.Doc, spec: HttpSpec) -> Any:
    from diag.httpserver import Limits

    for name in ("threads", "connection_limit", "per_client"):
        if getattr(spec, name) < 1:
            doc.problem(("agent", "http", name), f"{name} must be at least 1")
    if spec.threads > 64 or spec.connection_limit > 10000:
        doc.problem(("agent", "http"), "threads must be at most 64 and connection_limit at most 10000")
    if spec.read_timeout <= 0 or spec.idle_timeout <= 0:
        doc.problem(("agent", "http"), "read_timeout and idle_timeout must be positive")
    return Limits(
        threads=spec.threads,
        connection_limit=spec.connection_limit,
        per_client=spec.per_client,
        read_timeout=spec.read_timeout,
        idle_timeout=spec.idle_timeout,
        trusted_proxy=spec.trusted_proxy,
    )
