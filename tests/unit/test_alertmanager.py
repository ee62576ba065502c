"""The Alertmanager receiver's parts without a network: payload validation, the credential, the mapping of an alert
to a host, a playbook and a finding, the config section, and the POST route on the agent's App.

The webhook bodies are recorded from a real Alertmanager 0.25 (tests/fixtures/alertmanager/README.md).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest

from diag import config, inventory, yamlsrc
from diag.alertmanager import mapping
from diag.alertmanager.auth import Credential, Denied
from diag.alertmanager.payload import Alert, PayloadError, decode
from diag.secrets import SecretRef
from diag.wsgi import App, HTTPError, json_response, read_body

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "alertmanager"
FIRING = (FIXTURES / "firing.json").read_bytes()
RESOLVED = (FIXTURES / "resolved.json").read_bytes()


def _edit(**changes: Any) -> bytes:
    doc = json.loads(FIRING)
    for path, value in changes.items():
        target = doc
        keys = path.split("__")
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        if value is _DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return json.dumps(doc).encode()


_DELETE = object()


# ---- payload
def test_recorded_payloads_decode() -> None:
    msg = decode(FIRING)
    assert (msg.version, msg.status, msg.receiver, msg.truncatedAlerts) == ("4", "firing", "diag", 0)
    a = msg.alerts[0]
    assert (a.name, a.status, a.key, a.labels["mountpoint"]) == (
        "DiagFilesystemAlmostFull", "firing", "f1c9dd7e9c4ffc6c", "/srv/data",
    )  # fmt: skip
    assert a.ends is None  # Go's zero time means "no end yet"
    r = decode(RESOLVED).alerts[0]
    assert r.status == "resolved" and r.ends is not None and r.ends > r.startsAt
    assert r.key == a.key  # the same alert


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"[]", "Expected `object`, got `array`"),
        (_edit(version="3"), "unsupported payload version '3'"),
        (_edit(version=4), "Expected `str`, got `int` - at `$.version`"),
        (_edit(status="pending"), "- at `$.status`"),
        (_edit(alerts=[]), "without alerts"),
        (_edit(alerts__0__labels__severity=2), "- at `$.alerts[0].labels.severity`"),
        (_edit(alerts__0__labels__alertname=""), "alert without an alertname label - at `$.alerts[0].labels`"),
        (_edit(alerts__0__labels={"instance": "x"}), "alert without an alertname"),
        (_edit(alerts__0__labels__bad_name_ü="x"), "'bad_name_ü' is not a valid label name - at `$.alerts[0].labels`"),
        (_edit(alerts__0__startsAt="yesterday"), "Invalid RFC3339 encoded datetime - at `$.alerts[0].startsAt`"),
        (_edit(alerts__0__endsAt=_DELETE), "missing required field `endsAt` - at `$.alerts[0]`"),
        (_edit(groupKey=_DELETE), "missing required field `groupKey`"),
        (_edit(truncatedAlerts=-1), "must not be negative"),
        (_edit(commonLabels={"a-b": "x"}), "'a-b' is not a valid label name - at `$.commonLabels`"),
    ],
)
def test_malformed_payloads_are_refused_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as e:
        decode(body)
    assert reason in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_fields_are_ignored_for_newer_alertmanagers() -> None:
    msg = decode(_edit(someFutureField={"x": 1}, alerts__0__newThing=True))
    assert msg.alerts[0].name == "DiagFilesystemAlmostFull"


def test_missing_fingerprint_is_computed_from_the_labels() -> None:
    a = decode(_edit(alerts__0__fingerprint=_DELETE)).alerts[0]
    b = decode(_edit(alerts__0__fingerprint=_DELETE, alerts__0__annotations={"summary": "other"})).alerts[0]
    c = decode(_edit(alerts__0__fingerprint=_DELETE, alerts__0__labels__mountpoint="/other")).alerts[0]
    assert a.key == b.key != c.key and len(a.key) == 16


# ---- credential
def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_bearer_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGM_TOKEN", "tok-123456")
    cred = Credential(bearer=SecretRef("env:DGM_TOKEN"))
    cred.check("Bearer tok-123456")
    cred.check("bearer   tok-123456 ")
    for bad in (None, "", "Bearer", "Bearer tok-12345", "Bearer tok-1234567", "Basic dG9rLTEyMzQ1Ng==", "tok-123456"):
        with pytest.raises(Denied) as e:
            cred.check(bad)
        assert e.value.status == "401 Unauthorized" and e.value.challenge == "Bearer"
    monkeypatch.setenv("DGM_TOKEN", "rotated-token")  # read on every request: rotation needs no restart
    cred.check("Bearer rotated-token")
    monkeypatch.delenv("DGM_TOKEN")
    with pytest.raises(Denied) as e:
        cred.check("Bearer rotated-token")
    assert e.value.status.startswith("503") and "DGM_TOKEN" not in str(e.value)


def test_basic_auth(tmp_path: Path) -> None:
    pw = tmp_path / "pass"
    pw.write_text("pa:ss wörd\n")  # a trailing newline in a secret file is not part of the secret
    cred = Credential(basic_user="alertmanager", basic_password=SecretRef(f"file:{pw}"))
    cred.check(_basic("alertmanager", "pa:ss wörd"))
    for bad in (_basic("alertmanager", "pa:ss"), _basic("other", "pa:ss wörd"), "Basic !!!", "Basic " + "x" * 7):
        with pytest.raises(Denied) as e:
            cred.check(bad)
        assert e.value.status == "401 Unauthorized" and e.value.challenge and "Basic" in e.value.challenge
    with pytest.raises(Denied):
        cred.check("Bearer pa:ss wörd")  # the other scheme is not configured


def test_no_credential_configured_refuses_everything() -> None:
    with pytest.raises(Denied) as e:
        Credential().check("Bearer anything")
    assert e.value.status == "403 Forbidden"


# ---- mapping
INVENTORY = """\
hosts:
  web-03: {address: 10.231.4.2}
  db-1: {address: "fd00::5"}
  sw-1: {}
"""


@pytest.fixture
def index(tmp_path: Path) -> mapping.HostIndex:
    p = tmp_path / "inventory.yaml"
    p.write_text(INVENTORY)
    return mapping.HostIndex(inventory.load(str(p)).hosts)


def _alert(**labels: str) -> Alert:
    return decode(_edit(alerts__0__labels={"alertname": "X", **labels})).alerts[0]


@pytest.mark.parametrize(
    ("labels", "host", "name"),
    [
        ({"instance": "10.231.4.2:20352"}, "web-03", "web-03"),  # by address, port stripped
        ({"instance": "web-03:9847"}, "web-03", "web-03"),  # by name
        ({"instance": "[fd00:0::5]:9847"}, "db-1", "db-1"),  # IPv6, in any spelling
        ({"instance": "fd00::5"}, "db-1", "db-1"),
        ({"instance": "127.0.0.1:9847", "host": "sw-1"}, "sw-1", "sw-1"),  # the next label when instance is unknown
        ({"instance": "nowhere:9847"}, None, "nowhere"),  # filed under the label's value
        ({"job": "x"}, None, "unknown"),
    ],
)
def test_alert_to_inventory_host(index: mapping.HostIndex, labels: dict[str, str], host: str | None, name: str) -> None:
    h, n = mapping.resolve_host(_alert(**labels), index, ["instance", "host"])
    assert (h.name if h else None, n) == (host, name)


def test_host_label_order_is_configurable(index: mapping.HostIndex) -> None:
    a = _alert(instance="web-03:9847", host="sw-1")
    assert mapping.resolve_host(a, index, ["host", "instance"])[1] == "sw-1"


def test_incident_finding_is_one_per_alert_with_the_diagnosis_inside() -> None:
    from diag.model import Evidence, Finding

    a = decode(FIRING).alerts[0]
    diag_findings = [
        Finding("largest_dirs", "info", "largest under /srv/data: ...", "/srv/data", "disk_full"),
        Finding("disk_full", "critical", "/srv/data (tmpfs) is 97% full", "/srv/data", "disk_full"),
    ]
    ev = [Evidence("command", "df -Pk /srv/data", "Filesystem ...")]
    f = mapping.incident_finding(a, "web-03", "http://am:9093", diag_findings, ev, "disk-full")
    assert (f.check, f.host, f.severity, f.cause) == ("DiagFilesystemAlmostFull", "web-03", "critical", "disk_full")
    # instance/job/severity are not the alert's identity: relabelling or a new severity keeps the incident
    assert f.subject == "device=tmpfs, fstype=tmpfs, mountpoint=/srv/data"
    assert f.summary == "/srv/data on 10.231.4.2:20352 is 97% full; diagnosis: /srv/data (tmpfs) is 97% full"
    assert [e.kind for e in f.evidence] == ["alert", "text", "command"]
    assert "[critical] disk_full" in f.evidence[1].text.splitlines()[0]
    assert f.labels == {
        "source": "alertmanager", "alertname": "DiagFilesystemAlmostFull",
        "alert_fingerprint": "f1c9dd7e9c4ffc6c", "playbook": "disk-full",
        "generator_url": "http://127.0.0.1:20353/graph?g0.expr=x",
    }  # fmt: skip
    other = _alert(alertname="DiagFilesystemAlmostFull", instance="x:1", severity="warning", mountpoint="/srv/data",
                   device="tmpfs", fstype="tmpfs")  # fmt: skip
    same = mapping.incident_finding(other, "web-03", "", [], [], None)
    assert same.fingerprint == f.fingerprint and same.severity == "warning"


def test_playbook_vars_come_from_labels_and_constants() -> None:
    from diag.alertmanager.config import Route
    from diag.remote import playbook as pbmod

    route = Route(pbmod.load(pbmod.find("disk-full")), {"top": 5}, {"path": "mountpoint"})
    assert mapping.playbook_vars(route, decode(FIRING).alerts[0]) == {"top": 5, "path": "/srv/data"}
    assert mapping.playbook_vars(route, _alert()) == {"top": 5}  # label absent: the playbook's default


# ---- config
def _agent_cfg(tmp_path: Path, section: str) -> config.AgentConfig:
    p = tmp_path / "inventory.yaml"
    p.write_text("hosts: {}\nagent:\n  alertmanager:\n" + "".join(f"    {line}\n" for line in section.splitlines()))
    inv = inventory.load(str(p))
    return config.build(inv.doc, inv.agent)


def test_config_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGM_TOKEN", "tok-123456")
    cfg = _agent_cfg(
        tmp_path,
        "auth: {bearer_token: env:DGM_TOKEN}\n"
        "playbooks:\n"
        "  DiagFilesystemAlmostFull: {playbook: disk-full, vars_from_labels: {path: mountpoint}, vars: {top: 5}}\n"
        "  DiagHighLoad: high-load\n"
        "workers: 2\n",
    )
    rc = cfg.alertmanager
    assert rc is not None and rc.credential.configured and rc.workers == 2
    assert rc.routes["DiagHighLoad"].playbook.name == "high-load"
    assert rc.routes["DiagFilesystemAlmostFull"].vars_from_labels == {"path": "mountpoint"}
    assert rc.host_labels == ["instance", "host"] and rc.default_route is None
    assert config.build(None, {}).alertmanager is None  # not configured: nothing is imported or mounted


def test_config_problems_name_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diag.errors import ConfigError

    monkeypatch.delenv("DGM_MISSING", raising=False)
    with pytest.raises(ConfigError) as e:
        _agent_cfg(
            tmp_path,
            "auth: {bearer_token: literal-token}\n"
            "playbooks:\n"
            "  A: no-such-playbook\n"
            "  B: {playbook: disk-full, vars_from_labels: {nope: mountpoint}}\n"
            "workers: 0\n",
        )
    inv = str(tmp_path / "inventory.yaml")
    problems = e.value.problems
    assert f"{inv}:4: must be a reference (env:NAME or file:PATH), not a literal secret" in problems
    assert any(p.startswith(f"{inv}:6: no playbook named 'no-such-playbook'") for p in problems)
    assert f"{inv}:7: playbook disk-full has no variable 'nope' (has: path, depth, top, scan_seconds, warning_pct, " \
           "deleted_open_mib_warning)" in problems  # fmt: skip
    assert f"{inv}:8: workers must be at least 1" in problems
    # A secret that is not there is not the file's fault: validation passes, the agent's start stops with FILE:LINE.
    cfg = _agent_cfg(tmp_path, "auth: {bearer_token: env:DGM_MISSING}\n")
    from diag.alertmanager import mount

    with pytest.raises(ConfigError) as e:
        mount(App(), cfg, None, sink=_GatedEngine())
    assert e.value.problems == [f"{inv}:4: secret env:DGM_MISSING: environment variable DGM_MISSING is not set"]
    with pytest.raises(ConfigError) as e:
        _agent_cfg(tmp_path, "auth: {}\nhost_label: instance\n")
    assert e.value.problems == [f"{inv}:5: unknown key `host_label`"]
    with pytest.raises(ConfigError) as e:
        _agent_cfg(tmp_path, "auth: {}\n")
    assert e.value.problems == [f"{inv}:4: auth needs bearer_token or basic (without one the endpoint accepts nothing)"]


# ---- HTTP: POST support in diag.wsgi and the receiver's route
def _call(app: App, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
          length: str | None = None) -> tuple[str, dict[str, str], dict[str, Any]]:  # fmt: skip
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(body)) if length is None else length,
        "wsgi.input": io.BytesIO(body),
    }
    for k, v in (headers or {}).items():
        key = k.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE",) else "HTTP_" + key] = v
    got: dict[str, Any] = {}

    def start_response(status: str, hdrs: list[tuple[str, str]]) -> None:
        got["status"], got["headers"] = status, dict(hdrs)

    out = b"".join(app(environ, start_response))
    return got["status"], got["headers"], json.loads(out) if out else {}


def test_post_route_and_body_limit() -> None:
    app = App()
    seen: list[bytes] = []

    def echo(environ: dict[str, Any]) -> Any:
        seen.append(read_body(environ, 1024))
        return json_response({"n": len(seen[-1])})

    app.route("/p", echo, methods=("POST",))
    app.route("/g", lambda e: json_response({}))
    assert _call(app, "POST", "/p", b"x" * 1024)[:3:2] == ("200 OK", {"n": 1024})
    status, _, body = _call(app, "POST", "/p", b"x" * 1025)
    assert status.startswith("413") and "1025 bytes is over the limit of 1024" in body["error"]
    assert _call(app, "POST", "/p", b"x", length="")[0].startswith("411")
    assert _call(app, "POST", "/p", b"xx", length="5")[0].startswith("400")  # body shorter than it said
    status, headers, _ = _call(app, "GET", "/p")
    assert status.startswith("405") and headers["Allow"] == "POST"
    assert _call(app, "POST", "/g")[0].startswith("405")  # GET routes stay GET-only

    def teapot(environ: dict[str, Any]) -> Any:
        raise HTTPError("418 I'm a teapot", "short and stout", [("X-Why", "test")])

    app.route("/t", teapot, methods=("POST",))
    status, headers, body = _call(app, "POST", "/t")
    assert (status, headers["X-Why"], body) == ("418 I'm a teapot", "test", {"error": "short and stout"})


class _RecordingReceiver:
    """Stands in for the Receiver behind the HTTP handler here: records what it was handed (a fake, named so)."""

    def __init__(self, busy: bool = False) -> None:
        self.messages: list[Any] = []
        self.busy = busy
        self.counts: dict[tuple[str, str], int] = {}
        self.records: list[tuple[str, str, str]] = []

    def count(self, family: str, label: str) -> None:
        self.counts[(family, label)] = self.counts.get((family, label), 0) + 1

    def record(self, action: str, target: str, result: str, details: dict[str, Any], actor: str = "") -> None:
        self.records.append((actor, action, result))

    def handle(self, msg: Any) -> dict[str, Any]:
        from diag.alertmanager.receiver import Busy

        if self.busy:
            raise Busy("42 alerts are waiting")
        self.messages.append(msg)
        return {"accepted": len(msg.alerts), "pending": 1}


def test_receiver_route_checks_size_auth_type_and_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    from diag.alertmanager import PATH
    from diag.alertmanager.http import handler

    monkeypatch.setenv("DGM_TOKEN", "tok-123456")
    rec = _RecordingReceiver()
    app = App()
    app.route(PATH, handler(rec, Credential(bearer=SecretRef("env:DGM_TOKEN")), 4096), methods=("POST",))  # type: ignore[arg-type]
    good = {"Authorization": "Bearer tok-123456", "Content-Type": "application/json"}

    status, _, body = _call(app, "POST", PATH, FIRING, good)
    assert (status, body) == ("202 Accepted", {"status": "accepted", "accepted": 1, "pending": 1})
    assert rec.messages[0].alerts[0].name == "DiagFilesystemAlmostFull"

    status, headers, body = _call(app, "POST", PATH, FIRING, {**good, "Authorization": "Bearer wrong"})
    assert (status, headers["WWW-Authenticate"], body["error"]) == ("401 Unauthorized", "Bearer", "invalid credentials")
    assert _call(app, "POST", PATH, FIRING, {"Content-Type": "application/json"})[0] == "401 Unauthorized"
    status, _, body = _call(app, "POST", PATH, FIRING, {**good, "Content-Type": "text/plain"})
    assert status.startswith("415") and "text/plain" in body["error"]
    status, _, body = _call(app, "POST", PATH, _edit(version="5"), good)
    assert status == "400 Bad Request" and "version '5'" in body["error"]
    status, _, body = _call(app, "POST", PATH, b" " * 5000, good)
    assert status.startswith("413")
    assert len(rec.messages) == 1  # nothing refused reached the receiver
    assert rec.counts == {("notifications", "denied"): 2, ("notifications", "bad_payload"): 2}
    assert rec.records == [("remote:?", "login.failed", "401")] * 2  # journaled like any refused login

    app.route(PATH, handler(_RecordingReceiver(busy=True), Credential(bearer=SecretRef("env:DGM_TOKEN")), 4096),  # type: ignore[arg-type]
              methods=("POST",))  # fmt: skip
    status, headers, body = _call(app, "POST", PATH, FIRING, good)
    assert status.startswith("503") and headers["Retry-After"] == "30" and "42 alerts" in body["error"]


def test_unconfigured_endpoint_is_closed() -> None:
    from diag.alertmanager import PATH, mount

    app = App()
    assert mount(app, config.build(None, {}), None) is None
    status, _, body = _call(
        app, "POST", PATH, FIRING, {"Authorization": "Bearer x", "Content-Type": "application/json"}
    )
    assert status == "403 Forbidden" and "not configured" in body["error"]


def test_doc_lines_for_the_yaml_of_the_section(tmp_path: Path) -> None:
    # yamlsrc gives the line of a key inside agent.alertmanager (the config errors above rely on it)
    p = tmp_path / "x.yaml"
    p.write_text("agent:\n  alertmanager:\n    workers: 0\n")
    doc = yamlsrc.load_file(p)
    assert doc.where(("agent", "alertmanager", "workers")) == f"{p}:3"


def test_the_documented_configuration_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mapping example in docs/alertmanager.md loads as it stands (with its token file present)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "alertmanager.md").read_text()
    block = text.split("## Mapping", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    token = tmp_path / "token"
    token.write_text("t0ken-value\n")
    p = tmp_path / "inventory.yaml"
    p.write_text("hosts: {}\n" + block.replace("/etc/diag/alertmanager.token", str(token)))
    inv = inventory.load(str(p))
    rc = config.build(inv.doc, inv.agent).alertmanager
    assert rc is not None and set(rc.routes) == {
        "DiagFilesystemAlmostFull", "DiagFilesystemInodesAlmostFull", "DiagHighLoad", "DiagSystemdUnitFailed",
        "DiagMemoryLow",
    }  # fmt: skip
    assert rc.prometheus_url is None or rc.prometheus_url.startswith("http")
    # every alertname the shipped rules define is mapped, except the agent's own health
    rules = (Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules" / "diag-alerts.yml").read_text()
    names = {line.split(":", 1)[1].strip() for line in rules.splitlines() if line.strip().startswith("- alert:")}
    assert names - set(rc.routes) == {"DiagAgentDown", "DiagProbeFailing"}


class _GatedEngine:
    """A fake incident engine (named so) whose ingest waits for a gate: lets a test stop the receiver mid-work."""

    def __init__(self) -> None:
        import threading

        self.gate = threading.Event()
        self.started = threading.Event()
        self.seen: list[str] = []

    def ingest(self, source: str, findings: Any, *, now: float | None = None) -> str:
        self.started.set()
        self.gate.wait(10)
        self.seen.extend(f.labels["alert_fingerprint"] for f in findings)
        return "recorded"

    def resolve(self, source: str, fingerprint: str, verify: Any, evidence: Any) -> str:
        return "not used"


def test_accepted_alerts_survive_a_stop_and_are_resumed_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from diag.alertmanager.receiver import Receiver

    monkeypatch.setenv("DGM_TOKEN", "tok-123456")
    cfg = _agent_cfg(tmp_path, "auth: {bearer_token: env:DGM_TOKEN}\nworkers: 1\n").alertmanager
    assert cfg is not None
    doc = json.loads(FIRING)
    doc["alerts"] = [
        {**doc["alerts"][0], "fingerprint": f"fp{i}", "labels": {"alertname": "A", "n": str(i)}} for i in range(3)
    ]
    engine = _GatedEngine()
    r = Receiver(cfg, {}, engine, tmp_path / "data")
    assert r.handle(decode(json.dumps(doc).encode())) == {"accepted": 3, "pending": 3}
    assert engine.started.wait(10)  # the first alert is being worked on, the other two wait
    closer = threading.Thread(target=r.close)
    closer.start()
    engine.gate.set()
    closer.join(10)
    assert engine.seen == ["fp0"]  # the one in progress was finished; the rest stayed on disk

    again = _GatedEngine()
    again.gate.set()
    r2 = Receiver(cfg, {}, again, tmp_path / "data")
    assert r2.wait_idle(10)
    assert again.seen == ["fp1", "fp2"]
    r2.close()
    r3 = Receiver(cfg, {}, _GatedEngine(), tmp_path / "data")
    assert r3.store.pending() == [] and r3.status()["pending"] == 0  # done jobs are not replayed
    assert r.status()["alerts_firing"] == 3 and r.status()["notifications_accepted"] == 1
    r3.close()


def test_playbook_from_config_then_knowledge_base_then_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """alertname -> playbook: the config's `playbooks` first, else the verified KB entry's remediation playbook."""
    from diag.alertmanager.receiver import Receiver
    from diag.incidents.knowledge import KnowledgeBase

    class WithKB(_GatedEngine):  # the receiver reads only `kb` of the engine here
        kb = KnowledgeBase.load()

    monkeypatch.setenv("DGM_TOKEN", "tok-123456")
    cfg = _agent_cfg(tmp_path, "auth: {bearer_token: env:DGM_TOKEN}\nplaybooks: {DiagHighLoad: linux-baseline}\n")
    rc = cfg.alertmanager
    assert rc is not None
    r = Receiver(rc, {}, WithKB(), tmp_path / "data")
    try:
        full = _alert(alertname="DiagFilesystemAlmostFull", mountpoint="/srv")
        full = decode(
            _edit(alerts__0__labels=dict(full.labels), alerts__0__annotations={"summary": "/srv is 97% full"})
        ).alerts[0]
        route = r.route(full)
        assert route is not None and route.playbook.name == "disk-full"
        assert mapping.playbook_vars(route, full) == {"path": "/srv"}  # path from mountpoint (kb_vars_from_labels)
        unit = _alert(alertname="DiagSystemdUnitFailed", unit="nginx.service")
        unit = decode(_edit(alerts__0__labels=dict(unit.labels))).alerts[0]
        route = r.route(unit)
        assert route is not None and route.playbook.name == "service-down"
        assert mapping.playbook_vars(route, unit) == {"service": "nginx.service"}
        assert r.route(_alert(alertname="DiagHighLoad")).playbook.name == "linux-baseline"  # type: ignore[union-attr]
        assert r.route(_alert(alertname="SomethingNobodyKnows")) is None
    finally:
        r.close()


def test_a_damped_alert_opens_on_time_even_across_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine stores a damped alert's due time: it opens without a repeat from Alertmanager, also when the
    agent stopped before open_after ran out (a flap, resolved within open_after, is the engine's test)."""
    import time

    from diag.alertmanager.receiver import Receiver
    from diag.incidents.service import IncidentService
    from diag.incidents.settings import from_mapping

    monkeypatch.setenv("DGM_TOKEN", "tok-123456")
    cfg = _agent_cfg(tmp_path, "auth: {bearer_token: env:DGM_TOKEN}\n").alertmanager
    assert cfg is not None
    data = tmp_path / "data"
    settings = from_mapping({"open_after": 0.5, "close_after": 0, "tick": 0.2}, data)
    svc = IncidentService(settings, {})
    r = Receiver(cfg, {}, svc.engine, data)
    r.handle(decode(FIRING))
    assert r.wait_idle(10)
    (inc,) = svc.store.query()
    assert inc.state == "pending" and inc.doc["open_due"] == pytest.approx(inc.first_seen + 0.5)
    r.close()  # a clean stop before open_after ran out: nothing of it lives in memory only
    svc.close()
    time.sleep(0.6)

    svc = IncidentService(settings, {})
    r = Receiver(cfg, {}, svc.engine, data)
    try:
        svc.start()
        deadline = time.monotonic() + 10
        while svc.store.get(inc.id).state != "open" and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.05)
        opened = svc.store.get(inc.id)
        assert opened is not None and opened.state == "open" and "open_due" not in opened.doc
        assert [e.kind for e in svc.store.events(inc.id)][:2] == ["registered", "opened"]
    finally:
        r.close()
        svc.close()


def test_a_full_queue_refuses_the_notification_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """More alerts than max_pending: 503 for the whole notification (Alertmanager retries it), nothing half-taken."""
    from diag.alertmanager.receiver import Busy, Receiver

    monkeypatch.setenv("DGM_TOKEN", "tok-123456")
    cfg = _agent_cfg(tmp_path, "auth: {bearer_token: env:DGM_TOKEN}\nmax_pending: 2\nworkers: 1\n").alertmanager
    assert cfg is not None
    engine = _GatedEngine()
    r = Receiver(cfg, {}, engine, tmp_path / "data")
    try:
        doc = json.loads(FIRING)
        doc["alerts"] = [
            {**doc["alerts"][0], "fingerprint": f"q{i}", "labels": {"alertname": f"A{i}"}} for i in range(2)
        ]
        assert r.handle(decode(json.dumps(doc).encode()))["pending"] == 2
        with pytest.raises(Busy, match="2 alerts are waiting"):
            r.handle(decode(FIRING))
        assert len(r.store.pending()) == 2  # the refused one was not stored either
        assert r.status()["notifications_busy"] == 1
        engine.gate.set()
        assert r.wait_idle(10) and r.handle(decode(FIRING))["accepted"] == 1  # room again
        assert r.wait_idle(10)
    finally:
        engine.gate.set()
        r.close()


def test_a_failing_engine_is_tried_again_and_the_alert_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The engine failing (database busy, say) is tried again with backoff; the job leaves the disk only when done."""
    from diag.alertmanager import receiver as receiver_mod
    from diag.alertmanager.receiver import Receiver

    class Flaky(_GatedEngine):  # a fake engine (named so) that fails twice, then works
        calls = 0

        def ingest(self, source: str, findings: Any, *, now: float | None = None) -> str:
            Flaky.calls += 1
            if Flaky.calls <= 2:
                raise RuntimeError("database is locked")
            self.seen.extend(f.labels["alert_fingerprint"] for f in findings)
            return "recorded"

    monkeypatch.setenv("DGM_TOKEN", "tok-123456")
    cfg = _agent_cfg(tmp_path, "auth: {bearer_token: env:DGM_TOKEN}\n").alertmanager
    assert cfg is not None
    engine = Flaky()
    r = Receiver(cfg, {}, engine, tmp_path / "data")
    try:
        r.handle(decode(FIRING))
        assert r.wait_idle(20)
        assert Flaky.calls == 3 and engine.seen == ["f1c9dd7e9c4ffc6c"] and r.store.pending() == []
        assert "attempt 1 failed (RuntimeError: database is locked); trying again in 1 s" in caplog.text
    finally:
        r.close()
    monkeypatch.setattr(receiver_mod, "ATTEMPTS", 1)  # and one that never works is given up, not retried forever
    Flaky.calls = -100
    r = Receiver(cfg, {}, Flaky(), tmp_path / "data2")
    try:
        r.handle(decode(FIRING))
        assert r.wait_idle(20) and r.store.pending() == []
        assert "giving up after 1 attempts" in caplog.text
    finally:
        r.close()
    # Stopping while a failing job waits for its next attempt leaves it on disk for the next start.
    import time

    from diag.alertmanager.queue import JobStore

    monkeypatch.setattr(receiver_mod, "ATTEMPTS", 5)
    Flaky.calls = -100
    r = Receiver(cfg, {}, Flaky(), tmp_path / "data3")
    r.handle(decode(FIRING))
    deadline = time.monotonic() + 10
    while Flaky.calls == -100 and time.monotonic() < deadline:
        time.sleep(0.02)
    r.close()  # interrupts the backoff: had it run on, the attempts would end in "giving up" and the job be gone
    left = JobStore(tmp_path / "data3" / "alertmanager.sqlite")
    assert [a.key for _, a, *_ in left.pending()] == ["f1c9dd7e9c4ffc6c"]
    left.close()


def test_a_queue_that_cannot_be_written_refuses_the_notification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver's own queue locked (or its disk full): the alerts are not on disk, so they are not accepted:
    Busy (503 with Retry-After, which Alertmanager retries), not a 500 with a traceback; nothing half-queued."""
    import sqlite3

    from diag.alertmanager.receiver import Busy, Receiver

    monkeypatch.setenv("DGM_TOKEN", "tok-123456")
    cfg = _agent_cfg(tmp_path, "auth: {bearer_token: env:DGM_TOKEN}\n").alertmanager
    assert cfg is not None
    engine = _GatedEngine()
    engine.gate.set()
    r = Receiver(cfg, {}, engine, tmp_path / "data")
    r.store._db.execute("PRAGMA busy_timeout = 50")  # the queue waits 5 s for a lock; the test does not
    other = sqlite3.connect(tmp_path / "data" / "alertmanager.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the queue's database
    try:
        with pytest.raises(Busy, match=r"cannot queue the alerts in .*alertmanager\.sqlite: database is locked"):
            r.handle(decode(FIRING))
        assert r.status()["pending"] == 0 and r.status().get("notifications_accepted") is None
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert r.handle(decode(FIRING)) == {"accepted": 1, "pending": 1}  # the retry, once the lock is gone
    assert r.wait_idle(10) and len(engine.seen) == 1
    r.close()
