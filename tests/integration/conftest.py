"""Fixtures for integration tests that need SSH targets: a shared lab of 4 real sshd hosts and a lab factory.

``ssh_lab`` is built once per session; tests must leave it as they found it (no key rotation, no killed sshd).
Tests that break hosts build their own with ``make_lab(n, ...)``, torn down after the test even when it fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.labs.lab import Lab
from tests.labs.redminelab import RedmineLab


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the SSH lab needs root (network namespaces, sshd); CI runs the tests as root")


@pytest.fixture(scope="session")
def ssh_lab() -> Iterator[Lab]:
    """Four lab hosts h01..h04 with sshd, known_hosts and inventory; shared by the whole session."""
    _need_root()
    lab = Lab(4)
    try:
        lab.start()
        yield lab
    finally:
        lab.close()


@pytest.fixture
def make_lab() -> Iterator[Callable[..., Lab]]:
    """Factory: ``make_lab(2, no_sshd=(1,))`` builds a private lab that this test may break."""
    _need_root()
    labs: list[Lab] = []

    def build(n_hosts: int = 2, **kw: Any) -> Lab:
        lab = Lab(n_hosts, **kw)
        labs.append(lab)
        return lab.start()

    try:
        yield build
    finally:
        for lab in labs:
            lab.close()


@pytest.fixture(scope="session")
def redmine_lab() -> Iterator[RedmineLab]:
    """A real Redmine on 127.0.0.1 (labs/redminelab.py), shared by the session; ``lab.backend_config()`` configures
    the ``redmine`` ticket backend for it. Tests that stop it (``stop_server``) must ``start_server`` it again."""
    _need_root()
    lab = RedmineLab()
    try:
        yield lab.start()
    finally:
        lab.close()
