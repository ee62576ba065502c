"""The console left open all day, in headless Chromium against a real ``diag agent`` with short session times.

The agent (tests/labs/consoledata.py's 50 hosts and 30 open incidents, probes off) is configured with an 8 s idle
timeout, a 24 s cap for engineers (10 min and 1 h from the restart on) and an hour for viewers. It shows: a page
whose live stream is open stays signed in past the idle timeout while an idle session ends; at the cap the open
page says "Signed out: session expired" (and the page dims) instead of freezing; the agent restarting under an open
wallboard shows "Reconnecting", and afterwards the page catches up by itself (an acknowledgement made while the
agent was down appears, no row twice, no reload, still signed in); ten screens get live streams, one session's many
tabs cannot take every slot, and a page without a free slot says it is polling and still updates; a network that
drops silently (a relay holding every byte) makes the page say "Reconnecting" until it is back, then catch up. No
timing assertions: waits are generous, and what is asserted is the order of things (which session ended, which page
stayed live).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DIAG, free_port, owns_port, stop_process, wait_for
from tests.labs.browser import chromium
from tests.labs.consoledata import Seeded, seed

pytestmark = pytest.mark.integration

PORTS = range(21620, 21640)
DEAD_PORTS = range(21640, 21660)  # the inventory's SSH port: nothing listens
IDLE, CAP = 8, 24  # a page's stream renews its session every IDLE/4 = 2 s: 6 s of margin on a loaded machine
ROWS = "return [...document.querySelectorAll('tr[data-incident]')].map((r) => [r.dataset.incident, r.textContent])"
STATE = "return [document.body.dataset.liveState || '', document.getElementById('live-mode').textContent]"


@dataclass
class Agent:
    seeded: Seeded
    port: int
    log: Path
    base: Path
    proc: subprocess.Popen[bytes] | None = None
    runs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [DIAG, "agent", "--inventory", str(self.seeded.inventory), "--listen", f"127.0.0.1:{self.port}"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=self.base)
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"diag agent exited with {proc.returncode}:\n{self.log.read_text()}")
            try:
                return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=60, what="the agent")
        assert owns_port(proc.pid, self.port), f"port {self.port}: the agent answering is not ours"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def api(self, path: str, method: str = "GET") -> Any:
        token = self.seeded.tokens["admin"]
        r = httpx.request(method, self.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def session(self, who: str) -> httpx.Client:
        """An HTTP client logged in to the console as ``who`` (a screen without a browser)."""
        c = httpx.Client(base_url=self.url, timeout=30)
        page = c.get("/ui/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        r = c.post("/ui/login", data={"csrf": csrf, "token": self.seeded.tokens[who]}, follow_redirects=False)
        assert r.status_code == 303, r.text
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie, cookie
        return c


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    base = tmp_path_factory.mktemp("console-allday")
    dead = free_port(DEAD_PORTS)
    seeded = seed(base, dead, "")
    probes = "  probes: {" + ", ".join(f"{p}: {{enabled: false}}" for p in _probe_names()) + "}\n"
    api = f"  api: {{max_body_bytes: 16384, session_idle: {IDLE}, session_ttl: {CAP}, viewer_session_ttl: 3600}}\n"
    text = seeded.inventory.read_text().replace("  api: {max_body_bytes: 16384}\n", api + probes)
    seeded.inventory.write_text(text)
    a = Agent(seeded, free_port(PORTS), base / "agent.log", base)
    try:
        a.start()
        yield a
    finally:
        a.stop()
    assert "Traceback" not in a.log.read_text(), a.log.read_text()[-3000:]


def _probe_names() -> list[str]:
    from diag import config

    return list(config.build(None, {}).probes)


def login(driver: Any, agent: Agent, who: str, then: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(agent.url + "/ui/login?next=" + then)
    WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "token")))
    driver.find_element(By.ID, "token").send_keys(agent.seeded.tokens[who])
    driver.find_element(By.ID, "login").click()
    WebDriverWait(driver, 30).until(lambda d: d.current_url.endswith(then))


ARTIFACTS = Path(os.environ.get("DIAG_TEST_ARTIFACTS", "test-artifacts")).resolve()


def shot(driver: Any, name: str) -> None:
    """A screenshot of the state the test reached (test-artifacts/console-allday-NAME.png)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"console-allday-{name}.png"))


def live_state(driver: Any) -> str:
    return str(driver.execute_script(STATE)[0])


def wait_state(driver: Any, state: str, timeout: float = 60) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: live_state(d) == state)


@pytest.fixture
def browser() -> Iterator[Any]:
    d = chromium()
    try:
        yield d
    finally:
        d.quit()


def unacked(driver: Any) -> str:
    return str(next(i for i, text in driver.execute_script(ROWS) if "(ack)" not in text))


def acked_on_page(driver: Any, iid: str) -> bool:
    js = "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';"
    return "(ack)" in str(driver.execute_script(js, f"tr[data-incident='{iid}'] td.state"))


def test_an_open_page_stays_signed_in_past_the_idle_timeout_and_says_when_the_cap_ends_it(
    agent: Agent, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    login(browser, agent, "petrov", "/ui/incidents")  # an engineer: the 24 s cap
    logged_in = time.monotonic()
    wait_state(browser, "live", 30)
    browser.execute_script("window.__noReload = 20;")
    idle = agent.session("sidorov")  # another engineer who logs in and then does nothing
    idle_login = time.monotonic()
    time.sleep(IDLE + 2)  # longer than the idle timeout: only a used session survives it
    r = idle.get("/ui/events?poll=")
    # ended for want of use ("expired" instead only if the machine stalled past the cap meanwhile)
    want = "idle" if time.monotonic() - idle_login < CAP else "expired"
    assert r.status_code == 401 and r.headers["X-Diag-Signed-Out"] == want, (r.status_code, r.headers)
    if time.monotonic() - logged_in < CAP:  # on a loaded machine the cap may come first; then only it is seen
        assert live_state(browser) == "live"
        target = unacked(browser)
        agent.api(f"/api/v1/incidents/{target}/acknowledge", "POST")
        WebDriverWait(browser, 30, poll_frequency=0.2).until(lambda d: acked_on_page(d, target))
    # the cap: the open page is told, says so, and its data is dimmed; it is the same page (no reload)
    wait_state(browser, "signed-out", CAP + 60)
    shot(browser, "signed-out")
    banner = browser.find_element(By.ID, "live-status")
    assert banner.is_displayed() and "Signed out: session expired — sign in again." in banner.text, banner.text
    assert "stale" in browser.find_element(By.TAG_NAME, "body").get_attribute("class")
    assert browser.execute_script("return window.__noReload === 20;")
    assert time.monotonic() - logged_in >= CAP - 1  # the stream kept it past the idle timeout until the cap
    # "Sign in" leads back to the same page
    banner.find_element(By.LINK_TEXT, "Sign in").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "token"))
    browser.find_element(By.ID, "token").send_keys(agent.seeded.tokens["petrov"])
    browser.find_element(By.ID, "login").click()
    WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith("/ui/incidents"))
    wait_state(browser, "live", 30)
    # a page loaded with an expired session goes to the login page, which says why
    r = idle.get("/ui/wall", follow_redirects=False)
    assert r.status_code == 303 and "ended=idle" in r.headers["location"], r.headers
    assert "session expired" in idle.get(r.headers["location"]).text


def test_a_wallboard_recovers_by_itself_when_the_agent_restarts(agent: Agent, browser: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    login(browser, agent, "noc-wall", "/ui/wall")
    wait_state(browser, "live", 30)
    browser.execute_script("window.__noReload = 20;")
    target = unacked(browser)
    # an 8 s idle timeout is shorter than the restart itself (a real one is 30 min): the agent comes back with
    # 10 min, so what is seen is the reconnect, not the session idling out while nobody could renew it
    inv = agent.seeded.inventory
    old = f"session_idle: {IDLE}, session_ttl: {CAP},"
    inv.write_text(inv.read_text().replace(old, "session_idle: 600, session_ttl: 3600,"))
    agent.stop()  # SIGTERM, as an upgrade would
    wait_state(browser, "reconnecting", 60)
    shot(browser, "wall-reconnecting")
    assert "stale" in browser.execute_script("return document.body.className")
    # while the agent is down, an engineer acknowledges an incident from the command line
    p = subprocess.run([DIAG, "incidents", "ack", target, "--by", "petrov", "--inventory", str(agent.seeded.inventory)],
                       capture_output=True, text=True, timeout=60, cwd=agent.base)  # fmt: skip
    assert p.returncode == 0, p.stderr
    agent.start()
    wait_state(browser, "live", 90)  # reconnected by itself, still signed in (sessions outlive a restart)
    WebDriverWait(browser, 30, poll_frequency=0.2).until(lambda d: acked_on_page(d, target))
    assert browser.execute_script("return window.__noReload === 20;"), "the page was reloaded"
    ids = [i for i, _ in browser.execute_script(ROWS)]
    assert len(ids) == len(set(ids)), f"an incident row twice: {ids}"
    want = [str(i["id"]) for i in agent.api("/api/v1/incidents")][:25]  # the wallboard shows the first 25
    assert sorted(ids) == sorted(want)
    assert "stale" not in browser.execute_script("return document.body.className")


def test_ten_screens_get_live_streams_and_a_page_without_a_slot_says_it_polls(agent: Agent, browser: Any) -> None:
    """12 stream slots (of 16 workers): ten screens stream; one session's fifth tab is refused (4 a session),
    not another screen's; with every slot taken a new page polls, says so, and still updates; /metrics answers."""
    from selenium.webdriver.support.ui import WebDriverWait

    with ExitStack() as held:
        def session() -> httpx.Client:
            c = agent.session("noc-wall")
            held.callback(c.close)
            return c

        screens = [session() for _ in range(6)]
        tabs = session()  # one browser with many tabs: one session

        readers: list[Iterator[bytes]] = []

        def stream(c: httpx.Client) -> int:
            resp = held.enter_context(c.stream("GET", "/ui/events"))
            if resp.status_code == 200:
                reader = resp.iter_bytes()
                assert next(reader).startswith(b"retry:")  # open and counted
                readers.append(reader)  # kept: dropping the reader would close the stream
            return resp.status_code

        assert [stream(c) for c in screens] == [200] * 6
        got = [stream(tabs) for _ in range(5)]
        assert got == [200, 200, 200, 200, 503], got  # the session's fifth tab polls; others are not starved
        login(browser, agent, "noc-wall", "/ui/wall")  # the eleventh page: a slot is free, it streams
        wait_state(browser, "live", 30)
        assert httpx.get(agent.url + "/metrics", timeout=30).status_code == 200
        # take the slots left (a page of an earlier test may still hold one until its next ping fails)
        extra = 0
        while stream(session()) == 200:
            extra += 1
            assert extra <= 1, "more than 12 streams"
        assert httpx.get(agent.url + "/metrics", timeout=30).status_code == 200  # workers left for the rest
        browser.get(agent.url + "/ui/incidents")  # a page opened now gets no stream: it polls and says so
        wait_state(browser, "polling", 60)
        shot(browser, "polling")
        assert "Polling every 2 s" in browser.execute_script(STATE)[1]
        target = unacked(browser)
        agent.api(f"/api/v1/incidents/{target}/acknowledge", "POST")
        WebDriverWait(browser, 30, poll_frequency=0.2).until(lambda d: acked_on_page(d, target))


class HeldNetwork:
    """A TCP relay on loopback between the browser and the agent that can hold every byte, both ways, without
    closing anything: what a dropped link (a pulled cable, a NAT that forgot the flow) looks like to both ends
    until it comes back. Made here (a stand-in for a network, not for a peer): the agent and browser are real."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.open = threading.Event()
        self.open.set()
        self.listener = socket.create_server(("127.0.0.1", free_port(PORTS)))
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.upstream))
            self.socks += [c, u]
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                self.open.wait()  # the link is down: the bytes wait, nothing is closed
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.open.set()
        self.listener.close()
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.close()


def test_a_page_behind_a_dropped_network_says_reconnecting_and_recovers_by_itself(agent: Agent, browser: Any) -> None:
    """The stream goes silent without a reset: the page sees no ping for three, says "Reconnecting" and keeps
    trying; when the link is back it is live again and shows what changed meanwhile, without a reload."""
    from selenium.webdriver.support.ui import WebDriverWait

    net = HeldNetwork(agent.port)
    try:
        via = Agent(agent.seeded, net.port, agent.log, agent.base)  # the same agent, reached through the relay
        login(browser, via, "noc-wall", "/ui/wall")
        # live: the last test's streams free their slots within ~10 s, a page that polled meanwhile retries in 15 s
        wait_state(browser, "live", 90)
        browser.execute_script("window.__noReload = 20;")
        target = unacked(browser)
        net.open.clear()  # the network drops
        wait_state(browser, "reconnecting", 90)
        agent.api(f"/api/v1/incidents/{target}/acknowledge", "POST")  # meanwhile, from a desk that can reach it
        assert not acked_on_page(browser, target)
        net.open.set()  # back
        wait_state(browser, "live", 90)
        WebDriverWait(browser, 30, poll_frequency=0.2).until(lambda d: acked_on_page(d, target))
        assert browser.execute_script("return window.__noReload === 20;"), "the page was reloaded"
    finally:
        net.close()
