"""Console sessions (diag.api.sessions) over the real token store, on a clock the test moves; the stream cap.

A session ends when not used for ``idle`` or at its role's cap, whichever is first; use renews only the idle
deadline; a revoked (or demoted) token ends it at once; it survives a restart (a new store on the same file)
without its id being stored; the reason it ended is kept for the page. The browser side is
tests/integration/test_console_allday.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from diag.api.service import Busy, Service
from diag.api.sessions import EXPIRED, IDLE, REVOKED, SIGNED_OUT, SessionStore
from diag.api.tokens import TokenStore
from diag.config.api import ApiSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _store(tmp_path: Path, clock: Clock) -> SessionStore:
    return SessionStore(tmp_path, 60.0, lambda role: 7 * 86400 if role == "viewer" else 3600.0, clock)


def test_use_renews_the_idle_deadline_but_never_the_cap(tmp_path: Path) -> None:
    tokens, clock = TokenStore(tmp_path), Clock()
    eng = tokens.authenticate(tokens.add("eng", "engineer"))
    assert eng is not None
    store = _store(tmp_path, clock)
    sid, _ = store.new(eng.token_id)
    for _ in range(70):  # used every 50 s (a live page's stream renews it the same way): 58 min
        clock.now += 50
        got, p, why = store.check(sid, tokens.by_id)
        assert got is not None and p == eng and why == ""
    clock.now += 50 * 2  # past the cap (1 h after login): used or not, it ends
    assert store.check(sid, tokens.by_id) == (None, None, EXPIRED)
    clock.now += 1
    assert store.check(sid, tokens.by_id)[2] == EXPIRED  # the reason stays for a page that asks later
    idle_sid, _ = store.new(eng.token_id)
    clock.now += 59
    assert store.check(idle_sid, tokens.by_id, renew=False)[0] is not None
    clock.now += 1.5  # not used for 60.5 s
    assert store.check(idle_sid, tokens.by_id) == (None, None, IDLE)
    assert store.check("no-such-session", tokens.by_id)[2] == SIGNED_OUT
    assert store.check("", tokens.by_id)[2] == SIGNED_OUT


def test_a_viewer_has_the_long_cap_and_loses_it_when_promoted(tmp_path: Path) -> None:
    tokens, clock = TokenStore(tmp_path), Clock()
    wall = tokens.authenticate(tokens.add("noc-wall", "viewer"))
    assert wall is not None
    store = _store(tmp_path, clock)
    sid, _ = store.new(wall.token_id)
    for _ in range(3 * 24 * 60):  # a wallboard on screen for three days, its stream renewing the session
        clock.now += 60 - 1
        assert store.check(sid, tokens.by_id)[2] == ""
    tokens.change("noc-wall", role="engineer")  # an engineer's cap (1 h) applies at once to the old session
    assert store.check(sid, tokens.by_id) == (None, None, EXPIRED)


def test_revoking_the_token_ends_its_sessions_at_once_and_logout_is_remembered(tmp_path: Path) -> None:
    tokens, clock = TokenStore(tmp_path), Clock()
    eng = tokens.authenticate(tokens.add("eng", "engineer"))
    assert eng is not None
    store = _store(tmp_path, clock)
    a, _ = store.new(eng.token_id)
    b, _ = store.new(eng.token_id)
    store.drop(b)
    assert store.check(b, tokens.by_id)[2] == SIGNED_OUT
    tokens.revoke("eng")
    assert store.check(a, tokens.by_id) == (None, None, REVOKED)
    assert store.check(a, tokens.by_id)[2] == REVOKED  # said again to a page that asks later


def test_sessions_survive_a_restart_and_the_file_holds_no_session_id(tmp_path: Path) -> None:
    tokens, clock = TokenStore(tmp_path), Clock()
    eng = tokens.authenticate(tokens.add("eng", "engineer"))
    assert eng is not None
    first = _store(tmp_path, clock)
    sid, s = first.new(eng.token_id)
    clock.now += 40
    assert first.check(sid, tokens.by_id)[0] is not None  # renewed, and written (40 s > min(30, idle/4))
    first.close()
    raw = b"".join(f.read_bytes() for f in tmp_path.glob("sessions.db*"))
    assert raw and sid.encode() not in raw
    again = _store(tmp_path, clock)  # the agent restarted
    clock.now += 50  # 90 s after login, 50 s after the renewal that was written
    got, _, why = again.check(sid, tokens.by_id)
    assert got is not None and got.csrf == s.csrf and why == ""
    rows = sqlite3.connect(tmp_path / "sessions.db").execute("SELECT count(*) FROM sessions").fetchone()[0]
    assert rows == 1


def test_one_session_cannot_take_every_stream_slot(tmp_path: Path) -> None:
    svc = Service(tmp_path, None, ApiSettings(max_streams=5, max_streams_per_session=2))

    def stream() -> object:
        yield b"x"

    held = [svc.held(stream(), owner="tab-a"), svc.held(stream(), owner="tab-a")]
    for g in held:
        next(g)  # type: ignore[call-overload]
    with pytest.raises(Busy, match="this session"):
        svc.held(stream(), owner="tab-a")
    others = [svc.held(stream(), owner=f"screen-{i}") for i in range(3)]  # other screens still get theirs
    for g in others:
        next(g)  # type: ignore[call-overload]
    with pytest.raises(Busy, match="5 event streams"):
        svc.held(stream(), owner="screen-9")
    for g in held:
        g.close()  # type: ignore[attr-defined]
    g = svc.held(stream(), owner="tab-a")  # freed: the session may open one again
    next(g)  # type: ignore[call-overload]
    svc.close()


def test_the_stream_cap_leaves_two_workers_for_other_requests(tmp_path: Path) -> None:
    from diag import config
    from diag.errors import ConfigError

    default = config.build(None, {})
    assert default.api is None and default.http.threads == 16  # 12 streams (ApiSettings) of 16 workers
    small = config.build(None, {"http": {"threads": 6}})
    assert small.api.max_streams == 4  # the default cap follows fewer workers
    with pytest.raises(ConfigError, match="max_streams 6 leaves fewer than 2"):
        config.build(None, {"http": {"threads": 6}, "api": {"max_streams": 6}})
    for bad in (float("inf"), float("nan"), 1e300, 2.0):  # YAML's .inf and .nan are floats too
        with pytest.raises(ConfigError, match="viewer_session_ttl must be between"):
            config.build(None, {"api": {"viewer_session_ttl": bad}})
    with pytest.raises(ConfigError, match="session_idle must not be longer"):
        config.build(None, {"api": {"session_idle": 100, "session_ttl": 60}})


def test_the_login_page_sends_a_browser_back_only_to_a_console_page() -> None:
    from diag.api.console import safe_next

    assert safe_next("/ui/wall") == "/ui/wall" and safe_next("/ui/incidents?severity=critical") == (
        "/ui/incidents?severity=critical"
    )
    for bad in ("//evil.example/ui/", "https://evil.example/ui/", "/ui//evil.example", "/\\evil.example", "/api/v1/x",
                "javascript:alert(1)", "/ui/wall\r\nSet-Cookie: x=1", "", None):  # fmt: skip
        assert safe_next(bad) == "/ui/", bad
