"""The /snmp route: target resolution against the inventory, and the 400 answers for bad requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diag import inventory
from diag.agent.snmp_route import register_routes
from diag.wsgi import App

INVENTORY = """\
defaults:
  snmp: {version: '2c', community: 'env:DGN_TEST_COMMUNITY', timeout: 0.5}
hosts:
  sw1:
    address: 10.232.9.2
    snmp: {port: 1161}
  ups1:
    address: 10.232.9.3
    snmp: {version: '3', user: ops, auth_key: 'env:DGN_TEST_AUTH', priv_key: 'env:DGN_TEST_PRIV'}
"""


@pytest.fixture
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> inventory.Inventory:
    monkeypatch.setenv("DGN_TEST_COMMUNITY", "s3cret-community")
    monkeypatch.setenv("DGN_TEST_AUTH", "auth-pass")
    monkeypatch.setenv("DGN_TEST_PRIV", "priv-pass")
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY)
    return inventory.load(str(path))


def test_resolve_by_name_address_and_port(inv: inventory.Inventory) -> None:
    ex = register_routes(App(), inv)
    t = ex.resolve("sw1")
    assert (t.host, t.port, t.version, t.community, t.timeout, t.name) == (
        "10.232.9.2", 1161, "2c", "s3cret-community", 0.5, "sw1",
    )  # fmt: skip
    assert ex.resolve("10.232.9.2:2161").port == 2161  # an explicit port wins
    v3 = ex.resolve("10.232.9.3")
    assert (v3.version, v3.user, v3.auth_key, v3.priv_key, v3.security_level) == (
        "3", "ops", "auth-pass", "priv-pass", "authPriv",
    )  # fmt: skip


def test_unknown_target_needs_a_default_community(inv: inventory.Inventory) -> None:
    with pytest.raises(LookupError, match="not in the inventory"):
        register_routes(App(), inv).resolve("10.232.9.99")
    t = register_routes(App(), inv, default_community="public").resolve("10.232.9.99")
    assert (t.host, t.port, t.community) == ("10.232.9.99", 161, "public")


def call(app: App, query: str) -> tuple[str, dict[str, str]]:
    seen: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status

    body = b"".join(app({"PATH_INFO": "/snmp", "REQUEST_METHOD": "GET", "QUERY_STRING": query}, start_response))
    return seen["status"], json.loads(body)


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("", "missing target parameter"),
        ("target=sw1&module=nope", "unknown SNMP profile 'nope'"),
        ("target=sw1&module=../etc/passwd", "unknown SNMP profile"),
        ("target=elsewhere", "not in the inventory"),
        ("target=sw1:99999", "bad port"),
    ],
)
def test_bad_requests_are_400_with_the_reason(inv: inventory.Inventory, query: str, error: str) -> None:
    app = App()
    register_routes(app, inv)
    status, body = call(app, query)
    assert status == "400 Bad Request"
    assert error in body["error"]
    assert "s3cret" not in json.dumps(body)
