"""Plain agent routes other than the scrape endpoints need an API token (diag.api.guard_routes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diag import config
from diag.api import OPEN_PATHS, LazyApi, guard_routes
from diag.api.tokens import TokenStore
from diag.wsgi import App, json_response


def call(app: App, path: str, token: str | None = None) -> str:
    env: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    if token:
        env["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    seen: list[str] = []
    b"".join(app(env, lambda status, headers: seen.append(status)))
    return seen[0]


def test_only_scrape_endpoints_stay_open(tmp_path: Path) -> None:
    cfg = config.build(None, {"data": str(tmp_path)})
    app = App()
    for path in [*OPEN_PATHS, "/traps", "/future"]:
        app.route(path, lambda env: json_response({"ok": True}))
    app.route("/api/v1/alertmanager", lambda env: json_response({"ok": True}))
    lazy = LazyApi(cfg, None)
    try:
        guarded = guard_routes(app, lazy, webhooks=("/api/v1/alertmanager",))
        assert sorted(guarded) == ["/future", "/traps"]
        assert call(app, "/traps").startswith("401")
        assert call(app, "/traps", "diag_00000000_not-a-token").startswith("401")
        store = TokenStore(tmp_path)
        token = store.add("noc", "viewer", (), ())
        store.close()
        assert call(app, "/traps", token).startswith("200")
        for path in OPEN_PATHS:
            assert call(app, path).startswith("200"), path
        assert call(app, "/api/v1/alertmanager").startswith("200")  # its own credential, checked by its handler
    finally:
        lazy.close()
