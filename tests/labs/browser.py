"""Headless Chromium for the console's browser tests: Debian's ``chromium`` driven by its ``chromium-driver``.

Also axe-core (vendored in tests/vendor/axe-core, MPL-2.0) injected into a page to list accessibility violations.
Why selenium with Debian's browser rather than playwright's own: docs/console.md, "Tests".
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

#: chromedriver's own port, reserved per test run (selenium would take a kernel port, close it, and have the driver
#: bind it a moment later: any other connection or run may get it in between)
DRIVER_PORTS = range(20700, 20760)
AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-core" / "axe.min.js"


def chromium(width: int = 1366, height: int = 900) -> Any:
    """A new headless Chromium (quit it when done); fails the test when the Debian packages are missing."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService

    binary = shutil.which("chromium") or "/usr/bin/chromium"
    driver_bin = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (Path(binary).exists() and Path(driver_bin).exists()):
        pytest.fail("headless Chromium needs Debian's chromium and chromium-driver (scripts/debian-packages.txt)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    size = f"--window-size={width},{height}"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", size, "--disable-gpu"):
        opts.add_argument(a)
    service = ChromeService(executable_path=driver_bin, port=free_port(DRIVER_PORTS))
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_script_timeout(60)
    return driver


def axe(driver: Any) -> list[dict[str, Any]]:
    """axe-core's violations on the page open in ``driver`` (its WCAG 2.x A/AA rules and best practices)."""
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    js = "const done = arguments[arguments.length - 1]; axe.run(document).then((r) => done(r.violations));"
    return list(driver.execute_async_script(js))


def serious(violations: list[dict[str, Any]]) -> list[str]:
    """The violations a test fails on (impact serious or critical), each with the first elements it names."""
    return [
        f"{v['id']}: {v['help']} {[n['target'] for n in v['nodes'][:3]]}"
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]
