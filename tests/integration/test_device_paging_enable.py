"""Paging, enable secrets and broken output against a FAKE IOS (tests/labs/fake_cli.py: no real IOS can run here,
and the fakenos emulator never pages nor asks for an enable secret): the driver answers ``--More--`` and returns
exactly what an unpaged device prints, a wrong enable secret is one line naming the host, the secret is in no
output, log or stored file, and a dropped connection / a command the version lacks / a banner with prompt-like
lines do not crash a check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from diag.errors import AuthError
from diag.inventory import Host
from diag.network.devices import open_device
from diag.remote.ssh import ConnectionLost
from diag.secrets import SecretRef
from tests.labs.fake_cli import FakeIos, Script, fake_ios

SECRET = "En4ble-s3cret-7731"
LOGIN = "pw-login-1234"
CONFIG = (
    "Building configuration...\n\nCurrent configuration : 4212 bytes\n!\nversion 15.2\nhostname sw-1\n!\n"
    + "".join(f"interface GigabitEthernet1/0/{i}\n description uplink-{i} --More-- text\n no shutdown\n!\n"
              for i in range(1, 25))
    + "line vty 0 4\n transport input ssh\n!\nend\n"
)  # fmt: skip
INTERFACES = "".join(
    f"GigabitEthernet1/0/{i} is up, line protocol is up (connected)\n"
    f"  Hardware is Gigabit Ethernet, address is 0011.2233.44{i:02d} (bia 0011.2233.44{i:02d})\n"
    f"  Description: access-{i}\n  MTU 1500 bytes, BW 1000000 Kbit/sec, DLY 10 usec,\n"
    "  Full-duplex, 1000Mb/s, media type is 10/100/1000BaseTX\n"
    "     0 input errors, 0 CRC, 0 frame, 0 overrun, 0 ignored\n"
    "     0 output errors, 0 collisions, 2 interface resets\n"
    for i in range(1, 9)
)
MOTD = "******************************************\nsw-1> authorised access only\nsw-1#\n(sw-1) config locked\n*****"


def script(**kw: object) -> Script:
    outputs = {"show running-config": CONFIG, "show interfaces": INTERFACES, "show logging": "x\n" * 400}
    return Script(motd=MOTD, enable_secret=SECRET, outputs=outputs, **kw)  # type: ignore[arg-type]


@pytest.fixture
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeIos]:
    monkeypatch.setenv("DGT_LOGIN", LOGIN)
    monkeypatch.setenv("DGT_ENABLE", SECRET)
    with fake_ios(script(cut_after=frozenset({"show logging"}))) as d:
        d.write_known_hosts(tmp_path / "known_hosts")
        yield d


def host(dev: FakeIos, secret_env: str = "DGT_ENABLE") -> Host:
    return Host(name="sw-1", address="127.0.0.1", port=dev.port, user="netops", password=SecretRef("env:DGT_LOGIN"),
                enable_secret=SecretRef(f"env:{secret_env}"), device_type="cisco_ios", connect_timeout=10,
                command_timeout=30)  # fmt: skip


def test_paged_output_is_exactly_the_unpaged_text(dev: FakeIos, tmp_path: Path) -> None:
    with open_device(host(dev), known_hosts=[tmp_path / "known_hosts"]) as d:
        assert d.session.base_prompt == "sw-1"  # not a line of the banner
        assert d.session.check_enable_mode("#")
        cfg = d.running_config()
        ifs = d.send_command("show interfaces")
    assert dev.stats.pages >= 4  # `terminal length 0` was refused: both outputs paged
    assert "terminal length 0" in dev.stats.received
    assert cfg == "\n".join(CONFIG.splitlines()[3:]) + "\n"  # minus Building configuration / Current configuration
    assert ifs == INTERFACES.rstrip("\n")
    for text in (cfg, ifs):
        assert "\b" not in text and "\x1b" not in text and "\r" not in text
    assert cfg.count("--More--") == 24  # the description text, not the pager


def test_wrong_or_missing_enable_secret_is_one_line_naming_the_host(
    dev: FakeIos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DGT_WRONG", "Wrong-s3cret-4455")
    with pytest.raises(AuthError) as e:
        open_device(host(dev, "DGT_WRONG"), known_hosts=[tmp_path / "known_hosts"])
    msg = str(e.value)
    assert msg == f"127.0.0.1:{dev.port} (sw-1, cisco_ios): `enable` refused: wrong enable_secret"
    h = host(dev)
    h.enable_secret = None
    with pytest.raises(AuthError, match=r"^127\.0\.0\.1:\d+ \(sw-1, cisco_ios\): `enable` asks for a password; the "):
        open_device(h, known_hosts=[tmp_path / "known_hosts"])


def inventory(dev: FakeIos, path: Path, secret_env: str = "DGT_ENABLE") -> Path:
    doc = {"hosts": {"sw-1": {"address": "127.0.0.1", "port": dev.port, "user": "netops", "device_type": "cisco_ios",
                               "password": "env:DGT_LOGIN", "enable_secret": f"env:{secret_env}",
                               "command_timeout": 30}}}  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    return path


def diag(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DIAG_KNOWN_HOSTS": str(tmp_path / "known_hosts")}
    r = subprocess.run([sys.executable, "-m", "diag.cli", *args], capture_output=True, text=True, env=env,
                       timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    return r


def stored(tmp_path: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in (tmp_path / "data").rglob("*") if p.is_file())


def test_diag_check_masks_the_secret_everywhere(dev: FakeIos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inv = inventory(dev, tmp_path / "inv.yaml")
    r = diag(tmp_path, "check", "-i", str(inv), "-p", "network-interfaces", "--json", "--data", str(tmp_path / "data"),
             "sw-1")  # fmt: skip
    doc = json.loads(r.stdout)
    [res] = doc["results"]
    assert res["status"] == "ok", r.stderr
    assert SECRET not in r.stdout + r.stderr + stored(tmp_path)
    assert LOGIN not in r.stdout + r.stderr + stored(tmp_path)
    monkeypatch.setenv("DGT_WRONG", "Wrong-s3cret-4455")
    inv = inventory(dev, tmp_path / "inv2.yaml", "DGT_WRONG")
    r = diag(tmp_path, "check", "-i", str(inv), "-p", "network-interfaces", "--json", "--data", str(tmp_path / "data"),
             "sw-1")  # fmt: skip
    assert r.returncode == 3
    [res] = json.loads(r.stdout)["results"]
    assert res["status"] == "auth_failed"
    assert f"127.0.0.1:{dev.port} (sw-1, cisco_ios): `enable` refused: wrong enable_secret" in r.stdout
    assert "Wrong-s3cret-4455" not in r.stdout + r.stderr + stored(tmp_path)


def test_connection_dropped_mid_command(dev: FakeIos, tmp_path: Path) -> None:
    with open_device(host(dev), known_hosts=[tmp_path / "known_hosts"]) as d:
        with pytest.raises(ConnectionLost) as e:
            d.send_command("show logging", timeout=20)
        assert str(e.value).startswith(f"127.0.0.1:{dev.port} (sw-1, cisco_ios): connection lost while running")
        assert "\n" not in str(e.value)
        assert not d.alive


def test_command_the_version_lacks_is_a_device_error_and_the_session_goes_on(dev: FakeIos, tmp_path: Path) -> None:
    with open_device(host(dev), known_hosts=[tmp_path / "known_hosts"]) as d:
        res = d.run("show environment all")
        assert res.exit_status == 1 and res.stderr == "% Invalid input detected at '^' marker."
        assert d.send_command("show interfaces") == INTERFACES.rstrip("\n")


def test_checks_whose_commands_the_version_lacks_are_not_applicable(dev: FakeIos, tmp_path: Path) -> None:
    """This "IOS release" has `show interfaces` and `show processes cpu` only: the BGP/OSPF/neighbour/route/log
    steps are not applicable (no finding, no failure); health still reads the CPU and skips memory/environment."""
    dev.script.outputs["show processes cpu"] = (
        "CPU utilization for five seconds: 95%/0%; one minute: 96%; five minutes: 97%\n"
        " PID Runtime(ms)     Invoked      uSecs   5Sec   1Min   5Min TTY Process\n"
        "   1           4          68         58  0.00%  0.00%  0.00%   0 Chunk Manager\n"
    )
    inv = inventory(dev, tmp_path / "inv.yaml")
    # `show logging` drops the connection half way (the fixture's cut): the host is an error, one line, no traceback
    r = diag(tmp_path, "check", "-i", str(inv), "-p", "network-logs", "--json", "sw-1")
    [res] = json.loads(r.stdout)["results"]
    assert (r.returncode, res["status"], res["findings"]) == (3, "error", []), r.stdout
    assert res["error"] == (
        f"127.0.0.1:{dev.port} (sw-1, cisco_ios): connection lost while running `show logging`: "
        "the device closed the connection"
    )
    del dev.script.outputs["show logging"]
    for playbook in ("network-neighbors", "network-routes", "network-logs"):
        r = diag(tmp_path, "check", "-i", str(inv), "-p", playbook, "--json", "sw-1")
        [res] = json.loads(r.stdout)["results"]
        assert (r.returncode, res["status"], res["findings"]) == (0, "ok", []), r.stdout
        assert res["steps"] and all(s["status"] == "skipped" for s in res["steps"])
        assert all(s["reason"].startswith("not applicable: cisco_ios here does not know `show ") for s in res["steps"])
        assert all("% Invalid input detected at '^' marker." in s["reason"] for s in res["steps"])
    r = diag(tmp_path, "check", "-i", str(inv), "-p", "network-health", "--json", "sw-1")
    [res] = json.loads(r.stdout)["results"]
    assert [(f["check"], f["severity"]) for f in res["findings"]] == [("cpu_high", "warning")]
    [step] = res["steps"]
    assert step["status"] == "ok" and step["parsed"]["cpu_percent"] == 97 and step["parsed"]["memory_percent"] is None
    r = diag(tmp_path, "check", "-i", str(inv), "-p", "network-routes", "sw-1")
    assert r.returncode == 0 and "sw-1: step routes not applicable: cisco_ios here does not know" in " ".join(
        r.stdout.split()
    )
