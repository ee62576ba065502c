"""The HTTP API and the console from outside, against a real ``diag agent`` and real sshd hosts (tests/labs/lab.py).

Access control (no token, viewer, engineer outside their groups or playbooks, CSRF), a check started over
the API whose result is the ``diag check --json`` document of the same check on the CLI, live progress as
server-sent events, the approval flow proven on a lab host (a changing step never runs before a second lead
approves), the journal trail of all of it, and the console driven in headless Chromium (screenshots saved).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.labs.apienv import CHANGE_PLAYBOOK, ApiEnv, api_env
from tests.labs.browser import chromium
from tests.labs.lab import Lab

pytestmark = pytest.mark.integration

ARTIFACTS = Path(os.environ.get("DIAG_TEST_ARTIFACTS", "test-artifacts")).resolve()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    lb = Lab(2)
    try:
        lb.start()
        yield lb
    finally:
        lb.close()


@pytest.fixture(scope="module")
def full_mount(lab: Lab) -> str:
    """A 4 MiB tmpfs private to h01, filled: disk-full finds it."""
    mnt = lab.mount_tmpfs("h01", "4M")
    lab.fill("h01", mnt)
    return str(mnt)


@pytest.fixture(scope="module")
def env(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiEnv]:
    with api_env(lab, tmp_path_factory.mktemp("api")) as e:
        yield e


@pytest.fixture(scope="module")
def marker_dir(lab: Lab) -> Path:
    d = lab.dir / "markers"
    d.mkdir(exist_ok=True)
    d.chmod(0o777)  # the lab user creates the markers
    return d


def sse_events(client: httpx.Client, path: str, last_id: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, event, data) of every event until the stream ends (after ``done``)."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    headers = {"Last-Event-ID": last_id} if last_id else {}
    with client.stream("GET", path, headers=headers, timeout=120) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        ev: dict[str, str] = {}
        for line in r.iter_lines():
            if line == "":
                if "event" in ev:
                    out.append((ev.get("id", ""), ev["event"], json.loads(ev["data"])))
                ev = {}
            elif not line.startswith(":"):
                k, _, v = line.partition(": ")
                ev[k] = v
    return out


def shape(v: Any) -> Any:
    """The structure of a JSON value: dict keys (recursively), list item shapes, value types."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in sorted(v.items()) if k not in ("parsed",)}
    if isinstance(v, list):
        return [shape(x) for x in v[:1]]
    return type(v).__name__ if v is not None else None


# ---- access control


def test_without_a_token_everything_but_metrics_and_healthz_is_closed(env: ApiEnv) -> None:
    anon = env.client()
    assert anon.get("/metrics").status_code == 200
    assert anon.get("/healthz").status_code == 200
    for path in ("/api/v1/whoami", "/api/openapi.json", "/api/v1/inventory/hosts", "/api/v1/no-such-thing"):
        r = anon.get(path)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
    assert anon.post("/api/v1/checks", json={"playbook": "facts", "targets": ["h01"]}).status_code == 401
    r = anon.get("/ui/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    # a live page's own refresh is not sent to the login form (whose answer would replace the login cookie)
    assert anon.get("/ui/", headers={"X-Diag-Live": "1"}, follow_redirects=False).status_code == 401
    assert anon.get("/ui/checks/x/events").status_code == 401
    # a wrong token: 401, and a login failure in the journal with the token's public id only
    forged = env.tokens["viewer"][:-4] + "AAAA"
    r = anon.get("/api/v1/whoami", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    failures = env.journal("login.failed")
    assert failures and failures[-1]["target"] == "/api/v1/whoami"
    assert forged.split("_", 2)[2] not in json.dumps(failures)
    assert failures[-1]["details"]["token"] == "_".join(forged.split("_", 2)[:2]) + "_..."


def test_a_viewer_reads_but_cannot_start_a_check(env: ApiEnv) -> None:
    v = env.client("viewer")
    assert v.get("/api/v1/whoami").json() == {"name": "viewer", "role": "viewer", "groups": ["*"], "playbooks": ["*"]}
    assert {h["name"] for h in v.get("/api/v1/inventory/hosts").json()} == {"h01", "h02"}
    assert "disk-full" in {p["name"] for p in v.get("/api/v1/playbooks").json()}
    r = v.post("/api/v1/checks", json={"playbook": "facts", "targets": ["h01"]})
    assert r.status_code == 403 and "engineer" in r.json()["error"]
    assert v.get("/api/v1/journal").status_code == 403  # the journal is for leads
    denied = env.journal("access.denied")
    assert any(d["actor"] == "token:viewer" and d["details"]["what"] == "check.start" for d in denied)


def test_an_engineer_outside_their_groups_or_playbooks_is_refused(env: ApiEnv) -> None:
    e = env.client("eng-web")
    r = e.post("/api/v1/checks", json={"playbook": "facts", "targets": ["h02"]})
    assert r.status_code == 403 and "h02" in r.json()["error"]
    r = e.post("/api/v1/checks", json={"playbook": "facts", "targets": ["lab"]})  # the group holds h02 too
    assert r.status_code == 403
    r = e.post("/api/v1/checks", json={"playbook": "linux-baseline", "targets": ["h01"]})
    assert r.status_code == 403 and "linux-baseline" in r.json()["error"]
    assert e.post("/api/v1/checks", json={"playbook": "../../etc/passwd", "targets": ["h01"]}).status_code == 404
    assert e.post("/api/v1/checks", json={"playbook": "facts", "targets": ["nosuch"]}).status_code == 422


# ---- a check over the API


def test_a_check_streams_progress_and_returns_the_cli_json(env: ApiEnv, lab: Lab, full_mount: str) -> None:
    e = env.client("eng-web")
    r = e.post("/api/v1/checks", json={"playbook": "disk-full", "targets": ["web"], "vars": {"path": full_mount}})
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert r.json()["status"] == "started" and job["hosts"] == ["h01"]
    events = sse_events(e, job["links"]["events"])
    names = [n for _, n, _ in events]
    assert names == ["start", "host", "done"], names
    host = events[1][2]
    assert host["host"] == "h01" and host["status"] == "findings"
    assert any(f["check"] == "disk_full" and f["subject"] == full_mount for f in host["findings"])
    assert events[2][2]["exit_status"] == 2
    # reconnecting with Last-Event-ID replays only what came after
    assert [n for _, n, _ in sse_events(e, job["links"]["events"], last_id="2")] == ["done"]

    api_doc = e.get(job["links"]["result"]).json()
    cli = env.diag(
        "check", "--json", "-i", str(env.dir / "inventory.yaml"), "--known-hosts", str(lab.known_hosts),
        "--data", str(env.data), "-p", "disk-full", "--var", f"path={full_mount}", "h01",
    )  # fmt: skip
    cli_doc = json.loads(cli.stdout)
    assert cli.returncode == 2 == api_doc["exit_status"]
    assert shape(api_doc) == shape(cli_doc)
    for doc in (api_doc, cli_doc):
        assert doc["playbook"] == "disk-full"
    assert [(f["check"], f["subject"], f["severity"]) for f in api_doc["results"][0]["findings"]] == [
        (f["check"], f["subject"], f["severity"]) for f in cli_doc["results"][0]["findings"]
    ]

    trail = [r for r in env.journal() if r["details"].get("job") == job["id"]]
    actions = [r["action"] for r in trail]
    assert actions[0] == "check.started" and actions[-1] == "check.finished"
    assert {"command.sent", "finding", "check.host"} <= set(actions)
    assert all(r["actor"] == "token:eng-web" for r in trail)
    sent = [r for r in trail if r["action"] == "command.sent"]
    assert any(r["details"]["command"].startswith("df -Pk") and r["target"] == "h01" for r in sent)
    # the CLI run is journaled too, as the local user
    assert any(r["action"] == "check.finished" and r["actor"].startswith("cli:") for r in env.journal("check"))


# ---- approval flow


def test_a_changing_step_runs_only_after_another_lead_approves(env: ApiEnv, marker_dir: Path) -> None:
    eng, lead1, lead2 = env.client("eng-web"), env.client("lead1"), env.client("lead2")
    marker = marker_dir / "changed-by-api"
    body = {"playbook": "change-marker", "targets": ["h01"], "vars": {"marker": str(marker)}}

    # read-only: runs now, the changing step is held back and the host is not touched
    r = eng.post("/api/v1/checks", json={**body, "read_only": True})
    assert r.status_code == 202 and r.json()["status"] == "started"
    sse_events(eng, r.json()["job"]["links"]["events"])
    res = eng.get(r.json()["job"]["links"]["result"]).json()
    steps = {s["id"]: s["status"] for s in res["results"][0]["steps"]}
    assert steps == {"look": "ok", "touch": "needs_approval"}
    assert not marker.exists()

    # the real request: nothing runs, a request waits
    r = eng.post("/api/v1/checks", json=body)
    assert r.status_code == 202 and r.json()["status"] == "needs_approval", r.text
    a1 = r.json()["approval"]
    assert a1["state"] == "pending" and a1["changing_steps"] == ["touch"]
    assert a1["vars"] == {"marker": str(marker)}
    assert a1["commands"] == [{"host": "h01", "step": "touch", "command": f"touch {marker}", "sudo": False,
                               "when": None, "error": None}]  # fmt: skip
    assert eng.post(f"/api/v1/approvals/{a1['id']}/approve", json={"comment": "mine"}).status_code == 403
    r = lead1.post(f"/api/v1/approvals/{a1['id']}/reject", json={"comment": "not in a maintenance window"})
    assert r.status_code == 200 and r.json()["approval"]["state"] == "rejected" and r.json()["job"] is None
    assert lead2.post(f"/api/v1/approvals/{a1['id']}/approve", json={"comment": "x"}).status_code == 409  # once
    assert not marker.exists()

    # a lead's own request needs another lead
    r = lead1.post("/api/v1/checks", json=body)
    a2 = r.json()["approval"]
    r = lead1.post(f"/api/v1/approvals/{a2['id']}/approve", json={"comment": "my own"})
    assert r.status_code == 403 and "requested" in r.json()["error"]
    for blank in ({}, {"comment": ""}, {"comment": "   "}):  # a decision needs a reason in the journal
        assert lead2.post(f"/api/v1/approvals/{a2['id']}/approve", json=blank).status_code == 400
    assert not marker.exists()
    r = lead2.post(f"/api/v1/approvals/{a2['id']}/approve", json={"comment": "ok"})
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    assert job["allow_changes"] is True and job["approval"] == a2["id"] and job["actor"] == "token:lead1"
    sse_events(lead2, job["links"]["events"])
    res = lead2.get(job["links"]["result"]).json()
    assert {s["id"]: s["status"] for s in res["results"][0]["steps"]} == {"look": "ok", "touch": "ok"}
    assert marker.exists()  # created by the lab host's sshd session, as the lab user
    assert lead2.get(f"/api/v1/approvals/{a2['id']}").json()["job"] == job["id"]

    j = {r["action"]: r for r in env.journal("approval")}
    assert j["approval.rejected"]["actor"] == "token:lead1"
    assert j["approval.approved"]["actor"] == "token:lead2"
    assert j["approval.approved"]["details"]["requester"] == "token:lead1"
    touched = [r for r in env.journal("command.sent") if r["details"].get("step") == "touch"]
    assert len(touched) == 1 and touched[0]["details"]["job"] == job["id"]
    held = [r for r in env.journal("command.held") if r["details"].get("step") == "touch"]
    assert held, "the read-only run's held step is journaled"
    # the journal API (a lead) shows the same, and its chain is intact
    assert lead1.get("/api/v1/journal", params={"action": "approval"}).status_code == 200
    assert lead1.get("/api/v1/journal/verify").json()["ok"] is True


def test_approval_after_revoke_or_narrowing_is_refused_and_journaled(env: ApiEnv, marker_dir: Path) -> None:
    """The requester's token is checked again when a lead decides; the CLI cancels what no longer fits."""
    lead2 = env.client("lead2")
    made = {}
    for name in ("eng3", "eng5"):
        p = env.diag("api", "token", "add", name, "--role", "engineer", "--groups", "web",
                     "--playbooks", "change-marker", "--data", str(env.data))  # fmt: skip
        assert p.returncode == 0, p.stderr
        made[name] = p.stdout.strip()
    ids = {}
    for name, token in made.items():
        marker = marker_dir / f"after-{name}"
        c = httpx.Client(base_url=env.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        body = {"playbook": "change-marker", "targets": ["h01"], "vars": {"marker": str(marker)}}
        r = c.post("/api/v1/checks", json=body)
        assert r.status_code == 202 and r.json()["status"] == "needs_approval", r.text
        ids[name] = r.json()["approval"]["id"]
    revoke = env.diag("api", "token", "revoke", "eng3", "--data", str(env.data))
    assert revoke.returncode == 0 and f"approval request {ids['eng3']}" in revoke.stdout, revoke.stdout
    narrow = env.diag("api", "token", "scope", "eng5", "--groups", "db", "--data", str(env.data))
    assert narrow.returncode == 0 and f"approval request {ids['eng5']}" in narrow.stdout, narrow.stdout
    for name, aid in ids.items():
        r = lead2.post(f"/api/v1/approvals/{aid}/approve", json={"comment": "approving after the change"})
        assert r.status_code == 409 and "cancelled" in r.json()["error"], r.text
        assert lead2.get(f"/api/v1/approvals/{aid}").json()["state"] == "cancelled"
        assert not (marker_dir / f"after-{name}").exists()
    cancelled = {r["details"]["approval"]: r for r in env.journal("approval.cancelled")}
    assert "revoked" in cancelled[ids["eng3"]]["details"]["reason"]
    assert "no longer in the groups" in cancelled[ids["eng5"]]["details"]["reason"]
    assert not [r for r in env.journal("check.started") if r["actor"] in ("token:eng3", "token:eng5")]


def _changing_request(env: ApiEnv, playbook: str, token: str, marker: Path) -> tuple[Path, httpx.Client, str]:
    """A copy of the changing test playbook named ``playbook``, an engineer ``token`` granted only it, and that
    engineer's request to run it on h01 (pending): the playbook's file, the engineer's client, the request's id."""
    book = env.dir / "playbooks" / f"{playbook}.yaml"
    book.write_text(CHANGE_PLAYBOOK.replace("name: change-marker", f"name: {playbook}"))
    p = env.diag("api", "token", "add", token, "--role", "engineer", "--groups", "web",
                 "--playbooks", playbook, "--data", str(env.data))  # fmt: skip
    assert p.returncode == 0, p.stderr
    eng = httpx.Client(base_url=env.url, headers={"Authorization": f"Bearer {p.stdout.strip()}"}, timeout=30)
    r = eng.post("/api/v1/checks", json={"playbook": playbook, "targets": ["h01"], "vars": {"marker": str(marker)}})
    assert r.status_code == 202 and r.json()["status"] == "needs_approval", r.text
    return book, eng, str(r.json()["approval"]["id"])


def test_approval_of_a_playbook_edited_after_the_request_runs_nothing(env: ApiEnv, marker_dir: Path) -> None:
    """The lead approves the commands the request showed; a playbook edited on the agent's disk meanwhile (read
    again when the lead decides) must not run its new commands under that approval: cancelled, journaled, 409."""
    marker = marker_dir / "edited"
    book, _, aid = _changing_request(env, "change-edited", "eng7", marker)
    shown = env.client("lead2").get(f"/api/v1/approvals/{aid}").json()["commands"]
    assert [c["command"] for c in shown] == [f"touch {marker}"], shown
    # the changing step now does something else than what the lead is shown
    book.write_text(book.read_text().replace("run: touch {{ marker }}", "run: touch {{ marker }}-unapproved"))
    r = env.client("lead2").post(f"/api/v1/approvals/{aid}/approve", json={"comment": "looks harmless"})
    assert r.status_code == 409 and "not those shown" in r.json()["error"], r.text
    assert env.client("lead2").get(f"/api/v1/approvals/{aid}").json()["state"] == "cancelled"
    assert not [r for r in env.journal("check.started") if r["actor"] == "token:eng7"]
    assert not (marker_dir / "edited-unapproved").exists() and not marker.exists()
    cancelled = [r for r in env.journal("approval.cancelled") if r["details"]["approval"] == aid]
    assert cancelled and "not those shown" in cancelled[0]["details"]["reason"]


def test_a_request_whose_playbook_was_removed_can_still_be_closed(env: ApiEnv, marker_dir: Path) -> None:
    """A playbook removed from the agent's disk while a request for it waits: a lead's decision closes the request
    (cancelled, journaled, 409) instead of a 404 that left it pending, undecidable, until it expired."""
    book, eng8, aid = _changing_request(env, "change-gone", "eng8", marker_dir / "gone")
    book.unlink()
    # the requester cannot close it either way; a viewer is refused before anything is said about it
    assert eng8.post(f"/api/v1/approvals/{aid}/reject", json={"comment": "mine"}).status_code == 403
    assert env.client("viewer").post(f"/api/v1/approvals/{aid}/reject", json={"comment": "x"}).status_code == 403
    r = env.client("lead2").post(f"/api/v1/approvals/{aid}/reject", json={"comment": "the playbook is gone"})
    assert r.status_code == 409 and "cancelled" in r.json()["error"] and "change-gone" in r.json()["error"], r.text
    assert env.client("lead2").get(f"/api/v1/approvals/{aid}").json()["state"] == "cancelled"
    assert [r for r in env.journal("approval.cancelled") if r["details"]["approval"] == aid]
    assert not (marker_dir / "gone").exists()


# ---- console


def _login(env: ApiEnv, who: str) -> httpx.Client:
    c = httpx.Client(base_url=env.url, timeout=30)
    page = c.get("/ui/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = c.post("/ui/login", data={"csrf": csrf, "token": env.tokens[who]}, follow_redirects=False)
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    return c


def test_console_forms_need_the_sessions_csrf_token(env: ApiEnv) -> None:
    c = _login(env, "eng-web")
    page = c.get("/ui/checks")
    assert page.status_code == 200 and "content-security-policy" in page.headers
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    form = {"playbook": "facts", "targets": "h01"}
    assert c.post("/ui/checks", data=form, follow_redirects=False).status_code == 403
    assert c.post("/ui/checks", data={**form, "csrf": "x" * len(csrf)}, follow_redirects=False).status_code == 403
    r = c.post("/ui/checks", data={**form, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/checks/")
    # the bearer API does not take the console's cookie
    assert c.get("/api/v1/whoami").status_code == 401


def test_console_in_chromium_login_run_a_check_and_see_its_findings(
    env: ApiEnv, full_mount: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver = chromium()
    wait = WebDriverWait(driver, 60)
    try:

        def shot(name: str) -> None:
            path = ARTIFACTS / f"console-{name}.png"
            driver.save_screenshot(str(path))
            with capsys.disabled():  # the path is printed even when the test passes
                print(f"\nscreenshot: {path}")

        driver.get(env.url + "/ui/")
        wait.until(ec.presence_of_element_located((By.ID, "token")))
        assert driver.current_url.endswith("/ui/login")
        driver.find_element(By.ID, "token").send_keys("diag_00000000_" + "x" * 43)
        driver.find_element(By.ID, "login").click()
        wait.until(ec.presence_of_element_located((By.ID, "login-error")))
        shot("login-refused")
        driver.find_element(By.ID, "token").send_keys(env.tokens["eng-web"])
        driver.find_element(By.ID, "login").click()
        wait.until(ec.presence_of_element_located((By.ID, "hosts")))
        assert "eng-web" in driver.find_element(By.TAG_NAME, "header").text
        shot("hosts")

        driver.get(env.url + "/ui/checks")
        Select(driver.find_element(By.ID, "playbook")).select_by_value("disk-full")
        driver.find_element(By.ID, "targets").send_keys("h01")
        driver.find_element(By.NAME, "vars").send_keys(f"path={full_mount}")
        driver.find_element(By.ID, "run").click()
        wait.until(ec.presence_of_element_located((By.ID, "results")))
        wait.until(lambda d: d.find_element(By.ID, "state").get_attribute("data-state") == "done")
        section = driver.find_element(By.CSS_SELECTOR, "section.host[data-host='h01']")
        assert "findings" in section.find_element(By.CSS_SELECTOR, ".st").text
        texts = [f.text for f in section.find_elements(By.CSS_SELECTOR, ".finding")]
        assert any(full_mount in t and "critical" in t for t in texts), texts
        shot("check-live")

        # The live pages below swap their regions when something changes (the incident's events, its ticket): an
        # element found and then read or clicked may be gone, so each is found again when that happens.
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        live = WebDriverWait(driver, 60, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))

        # the host overview now shows h01's last check, worst first
        driver.get(env.url + "/ui/")
        row = "//table[@id='hosts']//tr[td//strong[text()='h01']]"
        live.until(lambda d: "findings" in (t := d.find_element(By.XPATH, row).text) and "critical" in t)
        shot("hosts-after-check")

        # the finding is an incident: open it from the list, see its evidence and its ticket
        driver.get(env.url + "/ui/incidents")
        xpath = f"//table[@id='incidents']//tr[td/a[text()='h01']]//a[contains(., '{full_mount}')]"
        shot("incidents")
        live.until(lambda d: d.find_element(By.XPATH, xpath).click() or True)
        wait.until(ec.presence_of_element_located((By.ID, "evidence")))
        live.until(lambda d: "df -Pk" in d.find_element(By.ID, "evidence").text)
        live.until(lambda d: d.find_element(By.ID, "incident-state").text == "open")

        def ticket_delivered(d: Any) -> bool:
            if "not delivered" not in d.find_element(By.ID, "ticket").text:
                return True
            d.refresh()
            return False

        WebDriverWait(
            driver, 60, poll_frequency=1, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
        ).until(ticket_delivered)
        shot("incident")
    finally:
        driver.quit()
    failures = [r for r in env.journal("login.failed") if r["details"].get("via") == "console"]
    assert failures, "the console's refused login is journaled"


def test_console_approvals_show_variables_and_rendered_commands_in_chromium(
    env: ApiEnv, marker_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    marker = marker_dir / "asked-in-console"
    r = env.client("eng-web").post(
        "/api/v1/checks", json={"playbook": "change-marker", "targets": ["h01"], "vars": {"marker": str(marker)}}
    )
    aid = r.json()["approval"]["id"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver = chromium()
    wait = WebDriverWait(driver, 60)
    try:
        driver.get(env.url + "/ui/login")
        wait.until(ec.presence_of_element_located((By.ID, "token")))
        driver.find_element(By.ID, "token").send_keys(env.tokens["lead1"])
        driver.find_element(By.ID, "login").click()
        wait.until(ec.presence_of_element_located((By.ID, "hosts")))
        driver.get(env.url + "/ui/approvals")
        section = wait.until(ec.presence_of_element_located((By.ID, aid)))
        commands = [e.text for e in section.find_elements(By.CSS_SELECTOR, "pre.command")]
        assert commands == [f"touch {marker}"], commands  # what will run, with the variable filled in
        assert f"marker={marker}" in section.find_element(By.CSS_SELECTOR, "td.vars").text
        assert "token:eng-web" in section.text and "h01" in section.text
        path = ARTIFACTS / "console-approval.png"
        driver.save_screenshot(str(path))
        with capsys.disabled():
            print(f"\nscreenshot: {path}")
        # no comment: the browser does not send the form (and the server would refuse it)
        driver.find_element(By.ID, f"approve-{aid}").click()
        assert env.client("lead1").get(f"/api/v1/approvals/{aid}").json()["state"] == "pending"
        driver.find_element(By.ID, f"comment-{aid}").send_keys("no change window today")
        driver.find_element(By.ID, f"reject-{aid}").click()
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        gone = (NoSuchElementException, StaleElementReferenceException)  # the page is being replaced
        reloaded = WebDriverWait(driver, 60, ignored_exceptions=gone)
        reloaded.until(lambda d: d.find_element(By.ID, aid).get_attribute("data-state") == "rejected")
    finally:
        driver.quit()
    a = env.client("lead1").get(f"/api/v1/approvals/{aid}").json()
    assert a["state"] == "rejected" and a["comment"] == "no change window today" and a["decided_by"] == "token:lead1"
    assert not marker.exists()


# ---- incidents and knowledge base over the API (runs last: it empties h01's full filesystem)


def test_incident_work_resolve_with_recheck_and_kb_proposal(env: ApiEnv, lab: Lab, full_mount: str) -> None:
    v, e, lead = env.client("viewer"), env.client("eng-web"), env.client("lead1")
    incs = [i for i in v.get("/api/v1/incidents", params={"host": "h01"}).json() if i["subject"] == full_mount]
    assert len(incs) == 1, "two checks of the same condition are one incident"
    iid = incs[0]["id"]
    inc = v.get(f"/api/v1/incidents/{iid}").json()
    assert inc["state"] == "open" and inc["check"] == "disk_full" and inc["severity"] == "critical"
    assert any("df -Pk" in ev["title"] for ev in inc["evidence"])
    assert inc["sla_left_s"] is not None and inc["sla_clock"] == "respond"
    assert v.get("/api/v1/incidents", params={"severity": "warning", "host": "h01"}).json() == [
        i for i in v.get("/api/v1/incidents", params={"host": "h01"}).json() if i["severity"] == "warning"
    ]
    assert v.post(f"/api/v1/incidents/{iid}/acknowledge").status_code == 403  # a viewer only reads
    assert e.post(f"/api/v1/incidents/{iid}/acknowledge").json()["acked_at"] is not None
    assert e.post(f"/api/v1/incidents/{iid}/assign", json={"assignee": "ivanov"}).json()["assignee"] == "ivanov"
    assert e.post(f"/api/v1/incidents/{iid}/note", json={"text": "logs rotate at 03:00"}).status_code == 200
    # resolving re-checks first: the filesystem is still full, so it stays open
    r = e.post(f"/api/v1/incidents/{iid}/resolve", json={"comment": "cleaned"})
    assert r.status_code == 200 and r.json()["state"] != "resolved", r.json()["outcome"]
    assert e.post("/api/v1/kb", json={"incident": iid}).status_code == 409  # only resolved incidents
    lab.exec("h01", ["rm", "-f", f"{full_mount}/fill"])
    r = e.post(f"/api/v1/incidents/{iid}/resolve", json={"comment": "removed the fill file"})
    assert r.status_code == 200 and r.json()["state"] == "resolved", r.json()
    kinds = [ev["kind"] for ev in r.json()["events"]]
    assert {"acknowledged", "assigned", "note", "resolved"} <= set(kinds)

    r = e.post("/api/v1/kb", json={"incident": iid, "title": "Test tmpfs filled", "instructions": "rm the fill file",
                                   "typical": True})  # fmt: skip
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["proposed"] and not entry["verified"]
    assert e.post(f"/api/v1/kb/{entry['id']}/verify").status_code == 403  # a lead verifies
    r = lead.post(f"/api/v1/kb/{entry['id']}/verify")
    assert r.status_code == 200 and r.json()["verified"] and r.json()["verified_by"] == "token:lead1"
    assert {x["id"]: x["verified"] for x in v.get("/api/v1/kb").json()}[entry["id"]] is True

    # all of it is in the journal, with the hash chain intact
    actions = {r["action"] for r in env.journal() if r["target"] in (f"incident:{iid}", f"kb:{entry['id']}")}
    assert {"incident.opened", "incident.acknowledged", "incident.assigned", "incident.note", "incident.resolved",
            "kb.proposed", "kb.verified"} <= actions, actions  # fmt: skip
    assert "incident.ticket" in {r["action"] for r in env.journal("incident")}  # the delivery to the ticket store
    assert env.diag("journal", "verify", "--data", str(env.data)).returncode == 0

    # a lead sees the support-quality report (diag.reports) over the same store; an engineer does not
    assert e.get("/api/v1/reports").status_code == 403
    rep = lead.get("/api/v1/reports", params={"days": 1}).json()
    assert rep["totals"]["incidents"] >= 1 and rep["totals"]["resolved"] >= 1
    page = _login(env, "lead1").get("/ui/reports", params={"days": 1})
    assert page.status_code == 200 and 'id="main"' in page.text  # inside the console's layout
    charts = re.findall(r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', page.text)
    assert charts and all(base64.b64decode(c).lstrip().startswith(b"<svg") for c in charts)
    csp = page.headers["content-security-policy"]
    assert "img-src 'self' data:" in csp and "unsafe-inline" not in csp and "script-src" not in csp
    assert "<script>" not in page.text  # the charts are images: their script never runs, nothing inline is allowed
