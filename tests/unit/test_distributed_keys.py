"""Namespaces of scale-out deployments (diag.distributed.keys) and the broker options that carry them."""

from __future__ import annotations

import pytest

from diag.distributed import keys
from diag.distributed.app import make_app, transport_options
from diag.errors import ConfigError


def test_the_default_namespace_keeps_the_old_key_names() -> None:
    assert keys.results("r1") == "diag:run:r1:results"
    assert keys.attempts("r1") == "diag:run:r1:attempts"
    assert keys.fired("job", 7) == "diag:fired:job:7"
    assert keys.key("", keys.LEADER) == "diag:scheduler:leader"
    assert "global_keyprefix" not in transport_options(300)


def test_a_namespace_prefixes_every_key_and_the_broker() -> None:
    assert keys.results("r1", "prod") == "prod:diag:run:r1:results"
    assert keys.events("r1", "prod") == "prod:diag:run:r1:events"
    assert keys.snmp_state("sw1", "prod") == "prod:diag:snmp:state:sw1"
    opts = make_app("redis://127.0.0.1:1/0", 5, "prod").conf.broker_transport_options
    assert opts["global_keyprefix"] == "prod:"  # queues, bindings, unacked messages, restore mutex
    assert opts["visibility_timeout"] == 5


def test_restores_are_scanned_every_tick() -> None:
    # kombu's defaults scan for lost messages every 10th tick of 10 s: ~100 s whatever the visibility timeout.
    opts = transport_options(5)
    assert opts["unacked_restore_throttle"] == 1 and opts["unacked_restore_interval"] <= 1


def test_namespace_from_the_environment_and_refused_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIAG_NAMESPACE", raising=False)
    assert keys.namespace(None) == ""
    monkeypatch.setenv("DIAG_NAMESPACE", "site-b")
    assert keys.namespace(None) == "site-b"
    assert keys.namespace("a.b_c-1") == "a.b_c-1"  # the option wins over the environment
    for bad in ("a:b", "-x", "a b", "x" * 65, "é"):
        with pytest.raises(ConfigError, match="--namespace"):
            keys.namespace(bad)
