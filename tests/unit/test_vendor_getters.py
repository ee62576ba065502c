"""Every vendor driver's getters on its recorded outputs (tests/fixtures/devices/<platform>/, from the fakenos
emulator's recordings of real devices and from diag's own samples in the platform's format): each parses, and
the records carry the fields the playbooks check."""

from __future__ import annotations

from pathlib import Path

import pytest

from diag.inventory import Host
from diag.network.devices import driver_class, getters
from diag.network.devices.pool import DeviceConnection
from diag.remote import playbook as pbmod
from diag.remote.runner import run_check
from diag.remote.ssh import CommandResult
from tests.labs.fakenoslab import UNKNOWN, slug
from tests.labs.vendor_faults import EXPECTED_SPEEDS, FAULTS, NEIGHBOR, SECRETS
from tests.unit.fake_ssh import SHIPPED, FakeConnection, FakePool, result

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "devices"
PLATFORMS = ("cisco_ios", "cisco_nxos", "cisco_xr", "juniper_junos", "arista_eos", "huawei_vrp",
             "mikrotik_routeros", "hp_comware", "eltex")  # fmt: skip


def outputs(platform: str, commands: tuple[str, ...]) -> dict[str, str]:
    return {c: (FIXTURES / platform / slug(c)).read_text() if (FIXTURES / platform / slug(c)).exists() else ""
            for c in commands}  # fmt: skip


@pytest.mark.parametrize("platform", PLATFORMS)
def test_getters_parse_recorded_outputs(platform: str) -> None:
    cls = driver_class(platform)
    got = {name: g.parse(outputs(platform, g.commands)) for name, g in cls.getters.items()}
    ifs = got["interfaces"]
    assert ifs and all({"admin_up", "oper_up", "errors", "duplex", "flaps"} <= set(r) for r in ifs.values())
    assert any(r["oper_up"] for r in ifs.values())
    assert got["bgp"] and all(isinstance(r["established"], bool) for r in got["bgp"])
    assert got["ospf"] and all(r["state"] in ("Full", "2-Way", "Init", "ExStart", "Exchange", "Loading", "Down")
                               for r in got["ospf"])  # fmt: skip
    assert got["routes"] and all("/" in r["prefix"] for r in got["routes"])
    assert got["neighbors"] and all(r["neighbor"] for r in got["neighbors"])
    assert got["health"]["cpu_percent"] is not None
    assert got["logs"] and all(r["severity"] is None or 0 <= r["severity"] <= 7 for r in got["logs"])


def test_a_fault_in_the_output_changes_the_record() -> None:
    eltex = driver_class("eltex")
    text = (FIXTURES / "eltex" / "show_ip_bgp_summary.txt").read_text()
    [up] = eltex.getters["bgp"].parse({"show ip bgp summary": text})
    [down] = eltex.getters["bgp"].parse({"show ip bgp summary": text.replace("3w1d            6", "3w1d       Active")})
    assert up["established"] and (down["state"], down["established"]) == ("Active", False)
    ios = driver_class("cisco_ios")
    routes = (FIXTURES / "cisco_ios" / "show_ip_route.txt").read_text()
    got = ios.getters["routes"].parse({"show ip route": routes.replace("S*    0.0.0.0/0 [1/0] via 10.0.1.1\n", "")})
    assert "0.0.0.0/0" not in {r["prefix"] for r in got}


# ---- the shipped playbooks over the recorded outputs, clean and with each platform's faults


class RecordedDevice(FakeConnection):
    """A FAKE device that answers from the recorded outputs (unknown commands: the platform's error line)."""

    def __init__(self, platform: str, overrides: dict[str, str] | None = None) -> None:
        self.platform = platform
        self.overrides = overrides or {}
        self.reads: dict[str, int] = {}
        super().__init__(self.answer)

    def answer(self, command: str, timeout: float | None = None, sudo: bool = False) -> CommandResult:
        text = self.overrides.get(command)
        if text is None:
            path = FIXTURES / self.platform / slug(command)
            if not path.exists():
                return result(command, UNKNOWN[self.platform], 1, UNKNOWN[self.platform].splitlines()[-1])
            text = path.read_text()
        n = self.reads[command] = self.reads.get(command, 0) + 1
        return result(command, text.replace("{{rising}}", str(100 + 37 * n)))

    quote_value = staticmethod(DeviceConnection.quote_value)

    def get(self, name: str, timeout: float | None = None) -> getters.GetResult:
        return getters.collect(self.platform, self.platform, driver_class(self.platform).getters, name, self.run,
                               timeout)  # fmt: skip


def run_on(platform: str, playbook: str, overrides: dict[str, str] | None = None) -> set[tuple[str, str]]:
    pb = pbmod.load(SHIPPED / f"{playbook}.yaml")
    host_vars = {"expected_neighbors": [NEIGHBOR[platform][1]], "expected_speeds": EXPECTED_SPEEDS.get(platform, {})}
    host = Host(name=platform, address="192.0.2.1", device_type=platform, vars=host_vars)  # type: ignore[arg-type]
    report = run_check([host], pb, FakePool({platform: RecordedDevice(platform, overrides)}), {})
    r = report.results[0]
    assert r.status in ("ok", "findings"), (platform, playbook, r.error, [s.to_dict() for s in r.steps])
    return {(f.check, f.subject) for f in r.findings}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_each_fault_makes_its_finding_on_recorded_outputs(platform: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from diag.remote import runner

    monkeypatch.setattr(runner.time, "sleep", lambda s: None)  # the errors-rising delay: no need to wait here
    for fault in FAULTS[platform]:
        before = run_on(platform, fault.playbook)
        text = RecordedDevice(platform).answer(fault.command).stdout
        assert fault.old in text, (platform, fault)
        after = run_on(platform, fault.playbook, {fault.command: text.replace(fault.old, fault.new, fault.count)})
        new = {f for f in after - before if f[0] == fault.check}
        assert new, (platform, fault, sorted(before), sorted(after))
        if fault.subject:
            assert (fault.check, fault.subject) in after, (platform, fault, sorted(after))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_secret_of_the_recorded_configuration_is_masked(platform: str) -> None:
    from diag.archive.redact import Masker

    cls = driver_class(platform)
    text = (FIXTURES / platform / slug(cls.running_config_command)).read_text()
    drv = cls.__new__(cls)  # clean_config needs no session
    masked = Masker(b"k" * 32).mask(drv.clean_config(text), "device", cls.mask_patterns)
    assert [s for s in SECRETS if s in text], "the sample holds secrets"
    assert [s for s in SECRETS if s in masked] == []
    assert masked.count("<masked:") >= 5
    # only values are replaced: every line still starts as it did (no keyword or section header eaten)
    kept = [ln.split("<masked:")[0] for ln in masked.splitlines()]
    assert all(any(orig.startswith(k) for orig in text.splitlines()) for k in kept)
