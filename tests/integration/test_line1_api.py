"""The catalogue of standard changes and their applications over the API and the console of a real ``diag agent``.

Anyone with a token reads the catalogue and each application with its evidence before and after; only a lead may
pause or resume an entry (a viewer's try is 403 and journaled), and a pause is journaled with who and why; the
console page shows the same and its pause form needs the session's CSRF token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from diag.line1.ledger import Ledger
from tests.labs.apienv import ApiEnv, api_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiEnv]:
    with api_env(None, tmp_path_factory.mktemp("api-line1")) as e:
        yield e


def _login(env: ApiEnv, who: str) -> httpx.Client:
    c = httpx.Client(base_url=env.url, timeout=30)
    page = c.get("/ui/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = c.post("/ui/login", data={"csrf": csrf, "token": env.tokens[who]}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return c


def test_catalogue_applications_and_a_leads_pause_switch(env: ApiEnv) -> None:
    ledger = Ledger(env.data)
    app_id = ledger.applied("redmine:7", "printing-spooler-stopped", "restart-print-spooler", "pc-1",
                            {"service": "cups"}, "verified", "applied and verified",
                            {"precheck": {"command": "! systemctl is-active --quiet 'cups'", "exit_status": 0}},
                            {"verify": {"command": "systemctl is-active --quiet 'cups'", "exit_status": 0}})
    ledger.close()
    viewer, lead = env.client("viewer"), env.client("lead1")
    assert httpx.get(env.url + "/api/v1/line1/changes").status_code == 401
    changes = viewer.get("/api/v1/line1/changes").json()
    spooler = next(c for c in changes if c["id"] == "restart-print-spooler")
    assert spooler["paused"] is None and spooler["params"]["service"]["allowed"] == ["cups", "cups.service"]
    apps = viewer.get("/api/v1/line1/applications", params={"change": "restart-print-spooler"}).json()
    assert [a["id"] for a in apps] == [app_id]
    one = viewer.get(f"/api/v1/line1/applications/{app_id}").json()
    assert one["before"]["precheck"]["exit_status"] == 0 and one["after"]["verify"]["exit_status"] == 0
    assert viewer.get("/api/v1/line1/applications/99999").status_code == 404
    assert viewer.get("/api/v1/line1/applications/%C2%B9").status_code == 404

    # only a lead pauses; the refusal and the pause are journaled
    r = viewer.post("/api/v1/line1/changes/restart-print-spooler/pause", json={"comment": "x"})
    assert r.status_code == 403
    assert any(j["details"].get("what") == "line1.pause" for j in env.journal("access.denied"))
    assert lead.post("/api/v1/line1/changes/no-such-change/pause", json={}).status_code == 404
    r = lead.post("/api/v1/line1/changes/restart-print-spooler/pause", json={"comment": "printer vendor visit"})
    assert r.status_code == 200 and r.json()["paused"]["reason"] == "printer vendor visit"
    assert Ledger(env.data).paused()["restart-print-spooler"]["by"] == r.json()["paused"]["by"]
    [rec] = [j for j in env.journal("change.pause") if j["target"] == "restart-print-spooler"]
    assert rec["details"]["reason"] == "printer vendor visit"

    # the console shows the catalogue, the pause, and the application's evidence; the form needs CSRF
    c = _login(env, "lead1")
    page = c.get("/ui/line1")
    assert page.status_code == 200 and "restart-print-spooler" in page.text and "printer vendor visit" in page.text
    detail = c.get(f"/ui/line1/applications/{app_id}").text
    assert "Evidence before" in detail and "systemctl is-active" in detail
    r = c.post("/ui/line1/changes/restart-print-spooler/resume", data={"reason": "x"}, follow_redirects=False)
    assert r.status_code == 403
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = c.post("/ui/line1/changes/restart-print-spooler/resume", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert "restart-print-spooler" not in Ledger(env.data).paused()
    v = _login(env, "viewer")
    vpage = v.get("/ui/line1").text
    assert "Pause</button>" not in vpage  # no switch for a viewer


def test_standard_changes_pages_have_no_serious_accessibility_violation(env: ApiEnv) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.labs.browser import axe, chromium, serious

    ledger = Ledger(env.data)
    app_id = ledger.applied(None, "print-spool-full", "clear-print-spool", "pc-2", {"dir": "/var/spool/cups/tmp"},
                            "rolled_back", "the verifying check failed; rolled back", {"precheck": {}}, {"verify": {}})
    ledger.close()
    driver = chromium()
    try:
        driver.get(env.url + "/ui/login")
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "token")))
        driver.find_element(By.ID, "token").send_keys(env.tokens["lead1"])
        driver.find_element(By.ID, "login").click()
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.TAG_NAME, "main")))
        problems = {}
        for path in ("/ui/line1", f"/ui/line1/applications/{app_id}"):
            driver.get(env.url + path)
            assert driver.find_elements(By.TAG_NAME, "main"), path
            if bad := serious(axe(driver)):
                problems[path] = bad
        assert not problems, problems
    finally:
        driver.quit()
