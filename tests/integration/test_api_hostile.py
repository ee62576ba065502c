"""Hostile input against a real ``diag agent``: schemathesis over the OpenAPI document, oversized and malformed
bodies, Alertmanager notifications without the webhook's own credential, and a journal edited behind the
agent's back.

The agent here has no hosts (a check can never reach a machine, whatever schemathesis sends); the lab tests
(test_api_lab.py) cover checks on real hosts.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.labs.apienv import AM_PASSWORD, AM_TOKEN, ApiEnv, api_env

pytestmark = pytest.mark.integration

AM_PATH = "/api/v1/alertmanager"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiEnv]:
    with api_env(None, tmp_path_factory.mktemp("api-hostile")) as e:
        yield e


def test_schemathesis_finds_no_server_error_and_no_contract_break(env: ApiEnv, tmp_path: Path) -> None:
    schema = env.client("admin").get("/api/openapi.json")
    assert schema.status_code == 200
    (tmp_path / "openapi.json").write_bytes(schema.content)
    # 413 (a body over the agent's limit) is a refusal too: schemathesis' default list of refusals lacks it
    (tmp_path / "schemathesis.toml").write_text(
        '[checks.negative_data_rejection]\n'
        'expected-statuses = ["400", "401", "403", "404", "405", "409", "413", "415", "422"]\n'
    )
    st = Path(sys.executable).with_name("schemathesis")
    # DIAG_SCHEMATHESIS_MAX_TIME=330 makes this the long run of the closing notes (fuzzing until the time is spent)
    budget = os.environ.get("DIAG_SCHEMATHESIS_MAX_TIME", "")
    longer = ["--max-time", budget, "--max-examples", "150"] if budget.isdigit() else ["--max-examples", "25"]
    if os.environ.get("DIAG_SCHEMATHESIS_SEED", "").isdigit():  # repeat a run whose seed a failure printed
        longer += ["--seed", os.environ["DIAG_SCHEMATHESIS_SEED"]]
    # One worker: with two, hypothesis parses lambda sources with `ast` in two threads at once, and CPython 3.11's
    # AST constructor keeps its recursion depth per interpreter, not per thread: a spurious SystemError "AST
    # constructor recursion depth mismatch" (CPython gh-106905) failed 1 run in 8 here, reported as a Runtime Error.
    p = subprocess.run(
        [str(st), "run", str(tmp_path / "openapi.json"), "--url", env.url,
         "-H", f"Authorization: Bearer {env.tokens['admin']}",
         "--checks", "all", *longer, "--workers", "1", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=500 + (int(budget) if budget.isdigit() else 0),
    )  # fmt: skip
    out = p.stdout
    tail = out[-3000:]
    if p.returncode:
        # the first section that says what went wrong (failures, or errors such as a network error) and the summary
        starts = [i for i in (out.find("=== FAILURES"), out.find("=== ERRORS")) if i >= 0]
        tail = out[min(starts, default=max(len(out) - 6000, 0)) :][:6000] + "\n" + "\n".join(out.splitlines()[-12:])
    print(tail)
    assert p.returncode == 0, tail
    assert "generated" in p.stdout
    # the agent is still alive and answering after all of it
    assert env.client("viewer").get("/api/v1/whoami").status_code == 200
    assert env.proc.poll() is None
    assert "Traceback" not in env.log.read_text()


def test_oversized_and_malformed_bodies_are_refused(env: ApiEnv) -> None:
    e = env.client("admin")
    big = b'{"playbook": "facts", "targets": ["' + b"x" * 20000 + b'"]}'  # the env's limit is 16 KiB
    r = e.post("/api/v1/checks", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    # also when the client lies about the length before sending anything: refused from the header
    import socket

    with socket.create_connection(("127.0.0.1", env.port), timeout=10) as s:
        s.sendall(
            f"POST /api/v1/checks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {env.tokens['admin']}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n".encode()
        )
        head = s.recv(4096).decode(errors="replace")
    assert head.startswith("HTTP/1.0 413") or head.startswith("HTTP/1.1 413"), head
    # the console's forms have the same limit
    assert httpx.post(env.url + "/ui/login", content=b"a" * 20000,
                      headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 413  # fmt: skip
    # found by schemathesis: "¹" passes str.isdigit() and int() refuses it; it must be a 404, not a 500
    assert e.post("/api/v1/incidents/%C2%B9/acknowledge").status_code == 404
    for body, ctype, status in (
        (b"{not json", "application/json", 400),
        (b'{"playbook": 1, "targets": []}', "application/json", 400),
        (b'{"playbook": "facts", "targets": ["all"], "extra": 1}', "application/json", 400),
        (b'{"playbook": "facts", "targets": ["all"]}', "text/plain", 415),
        (b'{"playbook": "facts", "targets": ["all"]}', "application/json", 422),  # no hosts in this inventory
    ):
        r = e.post("/api/v1/checks", content=body, headers={"Content-Type": ctype})
        assert r.status_code == status, (body, r.text)
        assert "error" in r.json()


def test_a_forged_or_replayed_webhook_without_the_credential_is_refused(env: ApiEnv) -> None:
    """The Alertmanager webhook on the real agent takes only its own credential (bearer or basic)."""
    url = env.url + AM_PATH
    body = json.dumps(
        {"version": "4", "status": "firing", "receiver": "diag", "groupKey": "{}:{}", "groupLabels": {},
         "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "truncatedAlerts": 0,
         "alerts": [{"status": "firing", "labels": {"alertname": "X", "instance": "nowhere"}, "annotations": {},
                     "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                     "generatorURL": "", "fingerprint": "abc"}]}
    ).encode()  # fmt: skip
    good = {"Authorization": f"Bearer {AM_TOKEN}", "Content-Type": "application/json"}
    accepted = httpx.post(url, content=body, headers=good)
    assert accepted.status_code == 202, accepted.text  # the credential is what decides, not the payload
    refused = [
        {"Content-Type": "application/json"},  # a replay of the same notification, without the credential
        {**good, "Authorization": "Bearer am-secret-" + "8" * 24},  # forged bearer
        {**good, "Authorization": f"Bearer {env.tokens['admin']}"},  # an API token does not open the webhook
        {**good, "Authorization": "Basic " + base64.b64encode(b"am:guess").decode()},  # wrong password
        {**good, "Authorization": "Basic " + base64.b64encode(f"admin:{AM_PASSWORD}".encode()).decode()},  # user
    ]
    for headers in refused:
        r = httpx.post(url, content=body, headers=headers)
        assert r.status_code == 401, (headers.get("Authorization"), r.text)
    ok_basic = {**good, "Authorization": "Basic " + base64.b64encode(f"am:{AM_PASSWORD}".encode()).decode()}
    assert httpx.post(url, content=body, headers=ok_basic).status_code == 202


def test_a_request_framed_twice_closes_the_connection(env: ApiEnv) -> None:
    """Content-Length and Transfer-Encoding both (RFC 9112 6.3): the agent answers it, then MUST close, so that bytes a
    proxy in front counted as that request's body are never served as a request of their own (request smuggling)."""
    import socket

    smuggled = f"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {env.tokens['viewer']}\r\n\r\n"
    body = "0\r\n\r\n" + smuggled  # a proxy framing by Content-Length forwards all of it as one request's body
    head = (
        "POST /api/v1/checks HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {env.tokens['admin']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    out, closed = b"", False
    with socket.create_connection(("127.0.0.1", env.port), timeout=30) as s:
        s.sendall((head + body).encode())
        try:
            while chunk := s.recv(65536):
                out += chunk
            closed = True  # the agent closed the connection after its answer
        except TimeoutError:
            pass  # still open 30 s later: kept alive for more requests
    answers = [line for line in out.decode(errors="replace").split("\r\n") if line.startswith("HTTP/1.")]
    assert b'"role":"viewer"' not in out, out[:2000]  # the smuggled request was not served
    assert len(answers) == 1 and " 400 " in answers[0], out[:2000]
    assert closed, out[:2000]
    # an honest chunked request on a kept-alive connection still works
    r = env.client("admin").post(
        "/api/v1/checks", content=iter([b'{"playbook": "facts",', b' "targets": ["all"]}']),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert r.status_code == 422, r.text  # no hosts in this inventory: read whole, then refused


def test_an_edited_journal_record_is_detected_and_named(env: ApiEnv) -> None:
    env.client("viewer").post("/api/v1/checks", json={"playbook": "facts", "targets": ["all"]})  # 403: journaled
    ok = env.diag("journal", "verify", "--data", str(env.data))
    assert ok.returncode == 0 and "journal chain ok" in ok.stdout, ok.stderr
    records = env.journal()
    victim = next(r for r in records if r["action"] == "access.denied")
    db = sqlite3.connect(env.data / "journal.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE journal SET actor = 'token:admin' WHERE seq = ?", (victim["seq"],))
    # someone with write access to the file drops the guard and rewrites who did it
    db.execute("DROP TRIGGER journal_no_update")
    db.execute("UPDATE journal SET actor = 'token:admin' WHERE seq = ?", (victim["seq"],))
    db.commit()
    db.close()
    bad = env.diag("journal", "verify", "--data", str(env.data))
    assert bad.returncode == 1
    assert f"record {victim['seq']}: its content does not match its hash" in bad.stderr
    assert "BROKEN" in bad.stderr
    verify = env.client("lead1").get("/api/v1/journal/verify").json()
    assert verify["ok"] is False and any(p.startswith(f"record {victim['seq']}:") for p in verify["problems"])


def _raw(port: int, request: bytes, source: str = "127.0.0.1") -> str:
    """Send a raw request; the status line and headers of the answer."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace")


def test_an_anonymous_post_without_a_body_is_401_not_411(env: ApiEnv) -> None:
    for path in ("/api/v1/checks", "/api/v1/approvals/x/approve", "/api/v1/nowhere"):
        head = _raw(env.port, f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert head.startswith("HTTP/1.1 401"), head
        assert "www-authenticate: bearer" in head.lower()
    # a body larger than any route takes is refused from its header, before the server buffers any of it
    big = "POST /api/v1/checks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n"
    assert _raw(env.port, big.encode()).startswith("HTTP/1.1 413")
    # with a token and no Content-Length the server framed an empty body: the body's own checks answer
    r = env.client("admin").post("/api/v1/kb/x/verify")
    assert r.status_code in (404, 409), r.text


def test_a_login_form_from_another_origin_is_refused_and_journaled(env: ApiEnv) -> None:
    import re

    c = httpx.Client(base_url=env.url, timeout=30)
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text).group(1)  # type: ignore[union-attr]
    form = {"csrf": csrf, "token": env.tokens["viewer"]}
    for bad in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Referer": "http://evil.example/x"}):
        r = c.post("/ui/login", data=form, headers=bad, follow_redirects=False)
        assert r.status_code == 403, (bad, r.text)
    denied = [r for r in env.journal("access.denied") if r["details"].get("reason") == "cross-origin form"]
    assert len(denied) >= 3 and denied[0]["target"] == "/ui/login"
    r = c.post("/ui/login", data=form, headers={"Origin": env.url}, follow_redirects=False)
    assert r.status_code == 303, r.text  # the console's own origin, with the double-submit cookie: logged in


def test_session_cookies_are_secure_behind_a_trusted_tls_proxy(tmp_path: Path) -> None:
    from tests.conftest import DIAG, free_port, owns_port, stop_process, wait_for
    from tests.labs.apienv import PORTS

    inv = tmp_path / "inventory.yaml"
    inv.write_text("hosts: {}\nagent:\n  http: {trusted_proxy: 127.0.0.1}\n  api: {}\n")
    port = free_port(PORTS)
    log = tmp_path / "agent.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [DIAG, "agent", "--inventory", str(inv), "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "d")],
            stdin=subprocess.DEVNULL, stdout=err, stderr=err,
        )  # fmt: skip
    try:
        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30, what="the agent")
        assert owns_port(proc.pid, port), f"port {port}: the agent answering is not ours"

        def cookie(source: str, proto: str | None) -> str:
            fwd = f"X-Forwarded-Proto: {proto}\r\n" if proto else ""
            req = f"GET /ui/login HTTP/1.1\r\nHost: diag.example\r\n{fwd}Connection: close\r\n\r\n"
            head = _raw(port, req.encode(), source)
            return next(line for line in head.split("\r\n") if line.lower().startswith("set-cookie:"))

        assert "; secure" in cookie("127.0.0.1", "https").lower()  # the TLS proxy says the client spoke HTTPS
        assert "; secure" not in cookie("127.0.0.1", None).lower()
        assert "; secure" not in cookie("127.0.0.3", "https").lower()  # anyone else's header is not believed
    finally:
        stop_process(proc)
    assert "Traceback" not in log.read_text()
