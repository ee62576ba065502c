"""The console as a NOC uses it, in headless Chromium, against a real ``diag agent`` with realistic data.

The agent runs on a data directory written by tests/labs/consoledata.py (50 hosts, 30 open incidents, a week of
resolved ones, checks, facts, approvals) inside a private mount namespace with a 2 MiB tmpfs that only it sees,
its filesystem probe watching it. The tests fill the tmpfs: the probe opens an incident, which must appear on an
Incidents page and a wallboard that were already open, without a reload; an acknowledgement in one browser shows
in the other; the SLA countdown moves between two screenshots; a check lists every target at once (queued,
running, done); and axe-core (vendored, tests/vendor/axe-core) finds no serious or critical violation on any
page. Every page is screenshotted to test-artifacts/console-live-*.png (paths printed).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from diag import config
from tests.conftest import DIAG, free_port, owns_port, stop_process, wait_for
from tests.labs.browser import axe, chromium, serious
from tests.labs.consoledata import SERVERS, Seeded, seed

pytestmark = pytest.mark.integration

ARTIFACTS = Path(os.environ.get("DIAG_TEST_ARTIFACTS", "test-artifacts")).resolve()
PORTS = range(20620, 20640)
DEAD_PORTS = range(20640, 20660)  # the inventory's SSH port: nothing, or a listener that never speaks SSH
WEB = [h for h in SERVERS if h.startswith("web-")]
#: agent.api.max_streams of the board: the polling test holds every slot itself, so few (the default is 12 of
#: agent.http.threads 16). Not 4: two browsers' pages and the pages they just left (a left page's slot is freed at
#: the server's next write, up to 10 s later) fill 4, and a page over the cap polls instead of the stream the first
#: test waits for.
MAX_STREAMS = 6
#: (incident id, row text) of every incident row on a page, read in one step
ROWS = "return [...document.querySelectorAll('tr[data-incident]')].map((r) => [r.dataset.incident, r.textContent])"


@dataclass
class Board:
    seeded: Seeded
    url: str
    mnt: Path
    proc: subprocess.Popen[bytes]

    def fill(self) -> None:
        cmd = f'dd if=/dev/zero of="{self.mnt}/fill" bs=64k 2>/dev/null; sync; true'
        subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "--", "sh", "-c", cmd], check=True)

    def api(self, path: str) -> Any:
        token = self.seeded.tokens["admin"]
        r = httpx.get(self.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()


def probes_section(mnt: Path) -> str:
    lines = ["  probes:"]
    for name in config.build(None, {}).probes:
        # only our tmpfs: other tests on this machine may leave full filesystems of their own in sight
        only = {"interval": 0.5, "mountpoints_exclude": f"^(?!{re.escape(str(mnt))}$)"}
        keep = {"interval": 2}
        opts = only if name == "filesystem" else keep if name in ("load", "memory", "cpu") else {"enabled": False}
        lines.append(f"    {name}: {json.dumps(opts)}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    base = tmp_path_factory.mktemp("console-live")
    mnt = base / "c20-fs"
    mnt.mkdir()
    dead = free_port(DEAD_PORTS)
    # one session may hold every stream here (the polling test takes them all with one client); the default
    # allows a session 4 (tests/integration/test_console_allday.py)
    api = f"max_body_bytes: 16384, check_concurrency: 4, max_streams: {MAX_STREAMS}"
    api += f", max_streams_per_session: {MAX_STREAMS}"
    extra = probes_section(mnt) + f"  api: {{{api}}}\n"
    seeded = seed(base, dead, "")
    # the agent section is the seed's plus the probes; check_concurrency 4 so a check shows queued targets
    text = seeded.inventory.read_text().replace("  api: {max_body_bytes: 16384}\n", extra)
    seeded.inventory.write_text(text)
    port = free_port(PORTS)
    log = base / "agent.log"
    script = 'mount -t tmpfs -o size=2M c20-tmpfs "$1" && shift && exec "$@"'
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(mnt)]
    argv += [DIAG, "agent", "--inventory", str(seeded.inventory), "--listen", f"127.0.0.1:{port}"]
    with ExitStack() as stack:
        # web hosts accept TCP on the SSH port and never answer: their checks run until connect_timeout
        for i, name in enumerate(SERVERS):
            if name in WEB:
                s = socket.socket()
                s.bind((f"127.0.21.{i + 1}", dead))
                s.listen(8)
                stack.callback(s.close)
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=base)
        b = Board(seeded, f"http://127.0.0.1:{port}", mnt, proc)
        try:

            def up() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"diag agent exited with {proc.returncode}:\n{log.read_text()}")
                try:
                    return httpx.get(b.url + "/healthz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(up, timeout=30, what="the agent")
            assert owns_port(proc.pid, port), f"port {port}: the agent answering is not ours"
            yield b
        finally:
            stop_process(proc)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def switch_user(driver: Any, board: Board, who: str) -> None:
    """Log in as someone else in this browser. The open page leaves first: a live page whose cookies were deleted
    refreshes itself on the next change (every probe run here), follows the redirect to the login form, and that
    answer's new login cookie replaced the one of the form being filled in ("the login form expired")."""
    driver.get("about:blank")
    driver.delete_all_cookies()
    login(driver, board, who)


def login(driver: Any, board: Board, who: str) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(board.url + "/ui/login")
    WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "token")))
    driver.find_element(By.ID, "token").send_keys(board.seeded.tokens[who])
    driver.find_element(By.ID, "login").click()
    try:
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "hosts")))
    except TimeoutException:  # say where the browser is and what it shows, not only that it waited
        text = driver.execute_script("return document.body ? document.body.innerText : ''") or ""
        pytest.fail(f"login as {who}: no hosts page after 30 s; at {driver.current_url}: {text[:500]!r}")


@pytest.fixture(scope="module")
def browsers(board: Board) -> Iterator[dict[str, Any]]:
    """Two browsers: an engineer at a desk (petrov) and the NOC's screen (noc-wall, a viewer)."""
    out: dict[str, Any] = {}
    try:
        out["desk"] = chromium()
        out["noc"] = chromium()
        login(out["desk"], board, "petrov")
        login(out["noc"], board, "noc-wall")
        yield out
    finally:
        for d in out.values():
            d.quit()


def shot(driver: Any, name: str, capsys: pytest.CaptureFixture[str]) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"console-live-{name}.png"
    driver.save_screenshot(str(path))
    with capsys.disabled():  # the path is printed even when the test passes
        print(f"\nscreenshot: {path}")
    return path


def text_of(driver: Any, css: str) -> str | None:
    """An element's text read in one step (live regions are replaced under the test's feet)."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e && e.textContent;", css)


def attrs(driver: Any, css: str, attr: str) -> list[str | None]:
    """An attribute of every element matching ``css``, read in one step (a live region swapped between finding an
    element and reading it made the element stale)."""
    js = "return [...document.querySelectorAll(arguments[0])].map((e) => e.getAttribute(arguments[1]))"
    return list(driver.execute_script(js, css, attr))


def texts(driver: Any, css: str) -> list[str]:
    """The text of every element matching ``css``, read in one step."""
    return list(
        driver.execute_script("return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent)", css)
    )


def click(driver: Any, element_id: str) -> None:
    """Click an element by id; found again if a live region was swapped under it before the click landed."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def clicked(d: Any) -> bool:
        d.find_element(By.ID, element_id).click()
        return True

    WebDriverWait(driver, 30, ignored_exceptions=[StaleElementReferenceException]).until(clicked)


def no_reload_marker(driver: Any) -> None:
    driver.execute_script("window.__noReload = 20;")


def still_same_page(driver: Any) -> bool:
    return bool(driver.execute_script("return window.__noReload === 20;"))


def wait_feed(driver: Any, *how: str) -> None:
    """Wait until the page hears of changes (console.js sets body[data-feed] when its event stream says hello,
    or when it falls back to polling): a change made before that would not reach it, whatever a sleep assumed."""
    from selenium.webdriver.support.ui import WebDriverWait

    js = "return document.body.dataset.feed || ''"
    WebDriverWait(driver, 30, poll_frequency=0.1).until(lambda d: d.execute_script(js) in how)


# ---- live updates


def test_a_probe_incident_appears_on_open_incidents_page_and_wallboard_without_reload(
    board: Board, browsers: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    desk, noc = browsers["desk"], browsers["noc"]
    desk.get(board.url + "/ui/incidents")
    noc.get(board.url + "/ui/wall")
    for d in (desk, noc):
        WebDriverWait(d, 30).until(lambda x: x.find_elements(By.CSS_SELECTOR, "tr[data-incident]"))
        no_reload_marker(d)
    before = {i["id"] for i in board.api("/api/v1/incidents")}
    shot(noc, "wall-before", capsys)
    for d in (desk, noc):
        wait_feed(d, "stream")
    board.fill()

    def new_incident() -> dict[str, Any] | None:
        mine = [i for i in board.api("/api/v1/incidents") if i["id"] not in before and str(board.mnt) in i["summary"]]
        return mine[0] if mine else None

    inc = wait_for(new_incident, timeout=60, interval=0.1, what="the probe's incident")
    opened = inc["opened_at"] or inc["first_seen"]
    seen: dict[str, float] = {}
    sel = f"tr[data-incident='{inc['id']}']"

    def on_both(_: Any) -> bool:
        for name, d in (("incidents page", desk), ("wallboard", noc)):
            if name not in seen and d.find_elements(By.CSS_SELECTOR, sel):
                seen[name] = time.time()
        return len(seen) == 2

    WebDriverWait(desk, 30, poll_frequency=0.1).until(on_both)
    assert still_same_page(desk) and still_same_page(noc), "a page was reloaded"
    assert str(board.mnt) in (text_of(desk, sel) or "")
    with capsys.disabled():
        for name, t in seen.items():
            print(f"\nincident {inc['id']} on the {name} {t - opened:.2f} s after the engine opened it")
    shot(desk, "incidents-live", capsys)
    shot(noc, "wall-live", capsys)


def test_acknowledging_in_one_browser_updates_the_other(
    board: Board, browsers: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    desk, noc = browsers["desk"], browsers["noc"]
    noc.get(board.url + "/ui/wall")
    WebDriverWait(noc, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-incident]"))
    target = {"id": next(i for i, text in noc.execute_script(ROWS) if "(ack)" not in text)}
    sel = f"tr[data-incident='{target['id']}'] td.state"
    no_reload_marker(noc)
    desk.get(board.url + f"/ui/incidents/{target['id']}")
    wait_feed(noc, "stream")
    t0 = time.time()
    click(desk, "ack")
    WebDriverWait(noc, 30, poll_frequency=0.1).until(lambda d: "(ack)" in (text_of(d, sel) or ""))
    assert still_same_page(noc)
    with capsys.disabled():
        print(f"\nacknowledgement on the wallboard {time.time() - t0:.2f} s after the click")
    assert any(e["kind"] == "acknowledged" for e in board.api(f"/api/v1/incidents/{target['id']}")["events"])


def test_the_sla_countdown_moves_between_two_screenshots(
    board: Board, browsers: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    desk = browsers["desk"]
    desk.get(board.url + "/ui/incidents")
    js = "return [...document.querySelectorAll('#incidents .sla[data-left]')].map((e) => [e.textContent, e.className])"
    a = shot(desk, "sla-1", capsys).read_bytes()
    first = desk.execute_script(js)  # read after the screenshot: never older than what it shows
    assert first, "no SLA clock on the incidents page"
    # the countdown only goes down: once its text moved past what was read, the screen differs from shot 1
    WebDriverWait(desk, 30, poll_frequency=0.2).until(
        lambda d: [t for t, _ in d.execute_script(js)] != [t for t, _ in first]
    )
    second = desk.execute_script(js)
    b = shot(desk, "sla-2", capsys).read_bytes()
    assert [t for t, _ in first] != [t for t, _ in second] and a != b
    levels = {c for _, c in second}
    assert any("sla-breached" in x for x in levels) and any("sla-soon" in x for x in levels), levels


def test_a_check_lists_every_target_at_once_queued_running_done(
    board: Board, browsers: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    desk = browsers["desk"]
    desk.get(board.url + "/ui/checks")
    Select(desk.find_element(By.ID, "playbook")).select_by_value("linux-baseline")
    desk.find_element(By.ID, "targets").send_keys("web")
    desk.find_element(By.ID, "run").click()
    WebDriverWait(desk, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#targets tr[data-host]"))
    assert sorted(attrs(desk, "#targets tr[data-host]", "data-host")) == sorted(WEB)
    phases: set[str] = set()

    def some_running(d: Any) -> bool:
        js = "return [...document.querySelectorAll('#targets tr')].map((r) => r.dataset.phase)"
        phases.update(d.execute_script(js))
        return "running" in phases and "queued" in phases

    WebDriverWait(desk, 30, poll_frequency=0.1).until(some_running)
    shot(desk, "check-running", capsys)
    WebDriverWait(desk, 120).until(lambda d: attrs(d, "#state", "data-state") == ["done"])
    final = set(attrs(desk, "#targets tr[data-host]", "data-phase"))
    assert final == {"done"}, final
    assert all(t.strip().endswith(" s") for t in texts(desk, "#targets td.elapsed"))
    shot(desk, "check-done", capsys)


def test_a_page_refused_a_stream_keeps_up_by_polling(board: Board, browsers: dict[str, Any]) -> None:
    """agent.api.max_streams caps open event streams (each holds a server worker): a page over the cap asks
    /ui/events?poll= every 2 s instead, and still shows an acknowledgement made elsewhere without a reload."""
    from selenium.webdriver.support.ui import WebDriverWait

    c = httpx.Client(base_url=board.url, timeout=30)
    page = c.get("/ui/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = c.post("/ui/login", data={"csrf": csrf, "token": board.seeded.tokens["noc-wall"]}, follow_redirects=False)
    assert r.status_code == 303, r.text
    desk, noc = browsers["desk"], browsers["noc"]
    # Every stream slot is held by this test: a stream is held by keeping its reader (a generator). The test once
    # read the first bytes with next(resp.iter_bytes()) and dropped that generator, which closed the connection:
    # the server freed the slot at its next writes (5-10 s later), and the desk's page, if it came after that,
    # got a stream and never polled. The fixtures' pages leave first, so that no slot is theirs either (a page
    # that was left frees its slot only when the server next writes to it).
    for d in (desk, noc):
        d.get("about:blank")
    with ExitStack() as held:
        mine: list[Iterator[bytes]] = []

        def every_slot_held() -> bool:
            while len(mine) < MAX_STREAMS:
                cm = c.stream("GET", "/ui/events")
                resp = cm.__enter__()
                if resp.status_code == 503:  # a left page's slot is not free yet: ask again shortly
                    cm.__exit__(None, None, None)
                    return False
                held.push(cm)
                assert resp.status_code == 200, resp.status_code
                reader = resp.iter_bytes()
                next(reader)  # the stream is open and counted
                mine.append(reader)  # kept: the stream lives as long as its reader
            return True

        wait_for(every_slot_held, timeout=60, interval=0.5, what=f"this test holding all {MAX_STREAMS} stream slots")
        with c.stream("GET", "/ui/events") as over:
            assert over.status_code == 503  # the cap holds
        desk.get(board.url + "/ui/incidents")
        no_reload_marker(desk)
        wait_feed(desk, "poll")  # refused a stream: it polls
        polls = "return performance.getEntriesByType('resource').filter((e) => e.name.includes(arguments[0])).length"
        WebDriverWait(desk, 30, poll_frequency=0.2).until(lambda d: d.execute_script(polls, "/ui/events?poll=") >= 1)
        target = next(i for i, text in desk.execute_script(ROWS) if "(ack)" not in text)
        token = board.seeded.tokens["petrov"]
        r = httpx.post(f"{board.url}/api/v1/incidents/{target}/acknowledge",
                       headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
        assert r.status_code == 200, r.text
        sel = f"tr[data-incident='{target}'] td.state"
        WebDriverWait(desk, 30, poll_frequency=0.2).until(lambda d: "(ack)" in (text_of(d, sel) or ""))
        assert still_same_page(desk)
        assert desk.execute_script("return document.body.dataset.feed") == "poll"  # the acknowledgement came so


def test_revoking_a_token_ends_its_open_pages(board: Board, browsers: dict[str, Any]) -> None:
    """The stream re-checks the session and its token: a revoked token's open page is told at once (no stale board)."""
    from selenium.webdriver.support.ui import WebDriverWait

    desk = browsers["desk"]
    switch_user(desk, board, "sidorov")
    desk.get(board.url + "/ui/incidents")
    wait_feed(desk, "stream", "poll")  # the page listens (the polling test's streams may still hold the slots)
    p = subprocess.run([DIAG, "api", "token", "revoke", "sidorov", "--data", str(board.seeded.data)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr

    def told(d: Any) -> bool:
        js = "const e = document.getElementById('live-status'); return !!e && !e.hidden && e.textContent"
        return "Signed out: the token of this session was revoked" in (d.execute_script(js) or "")

    WebDriverWait(desk, 30, poll_frequency=0.2).until(told)


# ---- every page: screenshot and axe-core

PAGES = [
    ("hosts", "/ui/", "admin"),
    ("host-server", "/ui/hosts/web-03", "admin"),
    ("host-device", "/ui/hosts/sw-02", "admin"),
    ("incidents", "/ui/incidents", "admin"),
    ("incident", "/ui/incidents/{busy}", "admin"),
    ("checks", "/ui/checks", "admin"),
    ("approvals", "/ui/approvals", "ivanova"),
    ("kb", "/ui/kb", "admin"),
    ("journal", "/ui/journal", "admin"),
    ("reports", "/ui/reports", "ivanova"),
    ("wall", "/ui/wall", "noc-wall"),
]


def test_every_page_has_no_serious_accessibility_violation(board: Board, capsys: pytest.CaptureFixture[str]) -> None:
    from selenium.webdriver.common.by import By

    incidents = board.api("/api/v1/incidents")
    busy = max(incidents, key=lambda i: len(board.api(f"/api/v1/incidents/{i['id']}")["events"]))["id"]
    agent_host = board.api("/api/v1/incidents?state=open")  # the probe's incident names the agent's host
    own = next((i["host"] for i in agent_host if str(board.mnt) in i["summary"]), None)
    pages = [*PAGES, ("host-agent", f"/ui/hosts/{own}", "admin")] if own else PAGES
    problems: dict[str, list[str]] = {}
    driver = chromium()
    try:
        driver.get(board.url + "/ui/login")
        if bad := serious(axe(driver)):
            problems["login"] = bad
        shot(driver, "login", capsys)
        who = None
        for name, path, user in pages:
            if user != who:
                switch_user(driver, board, user)
                who = user
            driver.get(board.url + path.format(busy=busy))
            assert driver.find_elements(By.TAG_NAME, "main"), name
            assert "Internal" not in driver.title, name
            if name == "incident":
                driver.find_element(By.CSS_SELECTOR, "#history summary")  # folded history with its pager
            if name == "reports":
                imgs = driver.find_elements(By.CSS_SELECTOR, ".charts img")
                assert imgs and all(driver.execute_script("return arguments[0].naturalWidth", i) > 0 for i in imgs)
            shot(driver, name, capsys)
            if bad := serious(axe(driver)):
                problems[name] = bad
        # keyboard: the skip link is the first stop, and it leads to the main content
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        driver.get(board.url + "/ui/incidents")
        ActionChains(driver).send_keys(Keys.TAB).perform()
        focused = driver.switch_to.active_element
        assert focused.get_attribute("class") == "skip" and focused.get_attribute("href").endswith("#main")
    finally:
        driver.quit()
    assert not problems, json.dumps(problems, indent=1)
