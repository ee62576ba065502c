"""Profiles on recordings of the devices they are for, served by snmpsim (tests/labs/snmpsimlab.py).

Every vendor profile is polled through auto-selection (sysObjectID), as a device in the inventory with
``profiles: [auto]`` would be, and its values are checked against the recording. A profile that finds
nothing says so in ``diag_snmp_profile_samples``; a recording edited to answer out of order gives partial
tables with a warning and ``diag_snmp_incomplete_walks``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from diag.model import Result
from diag.network.snmp import client as snmp
from diag.network.snmp import profiles
from tests.conftest import DIAG
from tests.labs.snmpsimlab import DISORDER, SnmpSim

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim() -> Iterator[SnmpSim]:
    with SnmpSim() as s:
        yield s


def poll(sim: SnmpSim, community: str, names: tuple[str, ...] = ("auto",)) -> Result:
    target = snmp.Target("127.0.0.1", sim.port, community=community, timeout=3, retries=1, name=community)
    return profiles.poll(target, [profiles.load(n) for n in names], profiles.PollState())


def samples(r: Result, name: str) -> dict[tuple[str, ...], float]:
    return {labels: v for m in r.metrics if m.name == "diag_snmp_" + name for labels, v in m.samples}


def by_profile(r: Result, name: str) -> dict[str, float]:
    return {labels[0]: v for labels, v in samples(r, name).items()}


def checks(r: Result) -> list[tuple[str, str]]:
    return sorted((f.check, f.summary) for f in r.findings)


@pytest.mark.parametrize(
    ("community", "watts", "kwh", "phase_amps", "banks"),
    [
        ("apc-8641", 1210.0, 1951.6, 6.5, {"1": 3.8, "2": 2.4}),  # AP8641
        ("apc-8932", 160.0, None, 1.4, {"1": 1.3, "2": 0.0}),  # AP8932
        ("apc-7902b", 160.0, None, 1.6, {"1": 0.0, "2": 1.1}),  # AP7902B
    ],
)
def test_apc_pdu(
    sim: SnmpSim, community: str, watts: float, kwh: float | None, phase_amps: float, banks: dict[str, float]
) -> None:
    r = poll(sim, community)
    assert by_profile(r, "up") == {"system": 1.0, "if_mib": 1.0, "apc_pdu": 1.0}
    assert by_profile(r, "profile_samples")["apc_pdu"] > 5
    power = samples(r, "apc_pdu_power_watts")
    if community == "apc-8641":
        assert list(power.values()) == [watts]
        assert list(samples(r, "apc_pdu_energy_kwh").values()) == [pytest.approx(kwh)]
    assert samples(r, "apc_pdu_phase_current_amperes")[("1",)] == pytest.approx(phase_amps)
    assert {k[0]: v for k, v in samples(r, "apc_pdu_bank_current_amperes").items()} == pytest.approx(banks)
    assert set(samples(r, "apc_pdu_bank_load_state").values()) == {2.0}  # normal: no findings
    assert not [f for f in r.findings if f.check.startswith("snmp_pdu")]


def test_eaton_9px_xups_and_ups_mib(sim: SnmpSim) -> None:
    r = poll(sim, "eaton-9px")
    up = by_profile(r, "up")
    assert up == {"system": 1.0, "if_mib": 1.0, "eaton_xups": 1.0, "ups": 1.0}
    counts = by_profile(r, "profile_samples")
    assert counts["eaton_xups"] >= 12
    assert counts["ups"] == 0  # the partial recording has no UPS-MIB: the profile says it found nothing
    assert counts["if_mib"] == 0 and counts["system"] == 1  # nor MIB-2 but sysObjectID (in system_info)
    assert samples(r, "eaton_ups_runtime_seconds") == {(): 17218.0}
    assert samples(r, "eaton_ups_battery_charge_ratio") == {(): 1.0}
    assert samples(r, "eaton_ups_load_ratio") == {(): 0.09}
    assert samples(r, "eaton_ups_output_source") == {(): 3.0}
    assert samples(r, "eaton_ups_input_frequency_hertz") == {(): 50.0}
    assert samples(r, "eaton_ups_output_power_watts") == {("1",): 50.0}
    assert samples(r, "eaton_ups_output_voltage_volts") == {("1",): 231.0}
    assert r.findings == []


def test_eaton_93e_ups_mib(sim: SnmpSim) -> None:
    r = poll(sim, "eaton-93e")
    assert "ups" in by_profile(r, "up")
    assert samples(r, "ups_battery_status") == {(): 2.0}
    assert samples(r, "ups_charge_ratio") == {(): 1.0}
    assert by_profile(r, "profile_samples")["ups"] >= 4


@pytest.mark.parametrize("community", ["cisco-c3560", "cisco-c3750", "cisco-n5000", "cisco-router"])
def test_cisco(sim: SnmpSim, community: str) -> None:
    r = poll(sim, community)
    assert set(by_profile(r, "up")) == {"system", "if_mib", "cisco", "entity_sensor"}
    assert by_profile(r, "profile_samples")["cisco"] > 0
    cpu5 = samples(r, "cisco_cpu_busy_5m_ratio")
    # cpmCPUTotal5minRev, else the older cpmCPUTotal5min (the 3560's and the router's IOS have only that)
    want = {"cisco-c3560": 0.28, "cisco-c3750": 0.29, "cisco-n5000": 0.16, "cisco-router": None}[community]
    if want is not None:
        assert cpu5 == {("1",): want}
    if community in ("cisco-c3560", "cisco-c3750", "cisco-router"):
        pools = {k[1]: v for k, v in samples(r, "cisco_memory_pool_used_bytes").items()}
        assert (
            pools["Processor"] == {"cisco-c3560": 22188980, "cisco-c3750": 33385580, "cisco-router": 8335368}[community]
        )
    if community == "cisco-c3560":
        assert samples(r, "cisco_temperature_celsius") == {("1005", "SW#1, Sensor#1, YELLOW "): 61.0}
        # ciscoEnvMonTemperatureState 2 (warning) in this recording: a finding
        assert ("snmp_environment_warning", "temperature SW#1, Sensor#1, YELLOW : warning") in checks(r)
        assert samples(r, "cisco_fan_state") == {("1004", "Switch#1, Fan#1"): 1.0}


def test_apc_smart_ups_written_from_the_mib(sim: SnmpSim) -> None:
    r = poll(sim, "apc-smart-ups-written")
    assert "apc_ups" in by_profile(r, "up")
    assert samples(r, "apc_ups_runtime_seconds") == {(): 1440.0}
    assert samples(r, "apc_ups_load_ratio") == {(): 0.41}
    assert [c for c, _ in checks(r)] == ["snmp_ups_battery_replace", "snmp_ups_on_battery"]


def test_cyberpower_written_from_the_mib(sim: SnmpSim) -> None:
    r = poll(sim, "cyberpower-written")
    assert "cyberpower_ups" in by_profile(r, "up")
    assert samples(r, "cyberpower_ups_runtime_seconds") == {(): 2160.0}
    assert samples(r, "cyberpower_ups_output_status") == {(): 2.0}
    assert r.findings == []
    # The generic UPS-MIB profile on it finds nothing, and says so (it used to say only "up").
    plain = poll(sim, "cyberpower-written", ("ups",))
    assert by_profile(plain, "up") == {"ups": 1.0} and by_profile(plain, "profile_samples") == {"ups": 0.0}


def test_eltex_mes_written_from_the_mib(sim: SnmpSim) -> None:
    r = poll(sim, "eltex-mes-written")
    assert "eltex_mes" in by_profile(r, "up")
    assert samples(r, "eltex_cpu_busy_5m_ratio") == {(): 0.07}
    assert samples(r, "eltex_temperature_celsius") == {("1",): 41.0}
    assert sorted(c for c, _ in checks(r)) == ["snmp_environment_critical", "snmp_memory_low"]


def test_printer_with_only_iftable_gets_32_bit_counters(sim: SnmpSim) -> None:
    r = poll(sim, "brother-printer-written")
    assert set(by_profile(r, "up")) == {"system", "if_mib", "brother", "printer"}
    assert by_profile(r, "profile_samples")["brother"] == 0  # no private MIB written in this one
    octets = samples(r, "if_hc_in_octets")
    # ifIndex, ifName (absent), ifAlias (absent), ifDescr, counter_bits
    assert octets == {("1", "", "", "BRN001BA9A1B2C3", "32"): 1000.0, ("2", "", "", "lo0", "32"): 2000.0}
    assert samples(r, "if_speed_bytes")[("1", "", "", "BRN001BA9A1B2C3")] == 12_500_000.0  # ifSpeed 100 Mbit/s
    assert samples(r, "printer_marker_life_count") == {("1.1",): 48213.0}
    assert ("snmp_printer_supply_low", "printer supply Black Toner Cartridge at 8%: order a replacement") in checks(r)


def test_out_of_order_recording_keeps_partial_tables(sim: SnmpSim) -> None:
    """xupsOutputVoltage.1 and xupsOutputWatts.1 swapped in the recording: the agent answers out of order."""
    r = poll(sim, DISORDER, ("eaton_xups",))
    assert by_profile(r, "up") == {"eaton_xups": 1.0}
    assert by_profile(r, "incomplete_walks") == {"eaton_xups": 1.0}
    assert samples(r, "eaton_ups_runtime_seconds") == {(): 17218.0}  # scalars are GETs: unaffected
    # The output table's columns are walked side by side: watts came (where voltage should be), then the
    # agent went back to current (.3.1 after .4.1): that chain stops there; voltage and current are missing.
    assert samples(r, "eaton_ups_output_power_watts") == {("1",): 50.0}
    assert samples(r, "eaton_ups_output_current_amperes") == {}
    assert samples(r, "eaton_ups_output_voltage_volts") == {}
    assert [f.check for f in r.findings] == ["snmp_walk_incomplete"]
    assert "OIDs not increasing" in r.findings[0].evidence[0].text
    # A partial table is not a healthy one: the profile's rule checks were not judged, so the incident engine
    # holds their incidents ("not checked") instead of clearing them (docs/incidents.md#not-checked).
    rules = {rule.check for rule in profiles.load("eaton_xups").spec.rules}
    (gap,) = r.gaps
    assert rules and gap.checks == rules and "walks cut short" in gap.reason
    # The command walks as snmpbulkwalk does: each OID checked against the OID asked for, so an answer out of
    # order among itself is printed whole, in the order received (a note on stderr, exit 0), and nothing is lost.
    table = "1.3.6.1.4.1.534.1.4.4"
    argv = [DIAG, "snmp", "walk", "-c", DISORDER, f"127.0.0.1:{sim.port}", table]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "OIDs out of order inside an answer" in p.stderr, p.stderr
    ref = subprocess.run(
        ["snmpbulkwalk", "-v2c", "-c", DISORDER, "-On", "-t", "3", f"127.0.0.1:{sim.port}", table],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ref.returncode == 0, ref.stderr
    ours = [line.split(" = ")[0] for line in p.stdout.splitlines()]
    assert ours == [line.split(" = ")[0] for line in ref.stdout.splitlines()]
    assert ours[:3] == [f".{table}.1.1.1", f".{table}.1.4.1", f".{table}.1.3.1"] and f".{table}.1.2.1" in ours
    every = subprocess.run([*argv[:3], "-Cc", *argv[3:]], capture_output=True, text=True, timeout=60)
    assert every.returncode == 0 and len(every.stdout.splitlines()) == 5  # -Cc: all five, like snmpwalk -Cc


def test_brother_private_mib_gives_what_printer_mib_leaves_unknown(sim: SnmpSim) -> None:
    """An HL-L2340DW's values (python-brother's fixture of a real unit): toner, drum and counts from brInfo*."""
    r = poll(sim, "brother-hl-l2340dw")
    assert set(by_profile(r, "up")) == {"system", "if_mib", "brother", "printer"}
    assert samples(r, "brother_toner_black_remaining_ratio") == {(): 0.75}
    assert samples(r, "brother_drum_remaining_ratio") == {(): 0.92}
    assert samples(r, "brother_drum_pages") == {(): 986.0}
    assert samples(r, "brother_pages") == {(): 986.0}
    assert samples(r, "brother_drum_remaining_pages") == {(): 11014.0}
    assert samples(r, "brother_toner_cyan_remaining_ratio") == {}  # a mono printer sends no colour records
    [(status, serial)] = samples(r, "brother_printer_info")
    assert status.startswith("OCZEKIWANIE") and serial == "serial_number"
    assert samples(r, "printer_marker_life_count") == {("1.1",): 1279.0}
    assert checks(r) == []


def test_brother_mfc_printer_mib_only(sim: SnmpSim) -> None:
    """A Brother whose Printer-MIB says -3 (unknown) for the toner and that answers no brInfo record strings, only
    its serial number (written here in the shape of an MFC-L2710DW's answers)."""
    r = poll(sim, "brother-mfc-written")
    assert set(by_profile(r, "up")) == {"system", "if_mib", "brother", "printer"}
    # Of the private MIB only the serial number (the info metric's one sample): no record strings.
    assert by_profile(r, "profile_samples")["brother"] == 1
    assert samples(r, "brother_printer_info") == {("", "E78123K9N654321"): 1.0}
    assert samples(r, "brother_toner_black_remaining_ratio") == {}
    levels = samples(r, "printer_supply_level")
    assert levels == {("1.1", "Black Toner Cartridge"): -3.0, ("1.2", "Drum Unit"): 10452.0}
    ratios = samples(r, "printer_supply_level_ratio")  # toner: unknown level and capacity, no ratio
    assert list(ratios) == [("1.2", "Drum Unit")] and round(ratios[("1.2", "Drum Unit")], 3) == 0.871
    assert samples(r, "printer_device_status") == {("1", "Brother MFC-L2710DW series"): 2.0}
    assert len(samples(r, "if_hc_in_octets")) == 4  # ifTable only: the 32-bit counters
    assert checks(r) == []


def test_kyocera_counters_written_from_the_mib(sim: SnmpSim) -> None:
    r = poll(sim, "kyocera-written")
    assert set(by_profile(r, "up")) == {"system", "if_mib", "kyocera", "printer"}
    assert samples(r, "kyocera_printed_pages") == {("1.1",): 24567.0}
    assert samples(r, "kyocera_function_pages") == {("1",): 20000.0, ("2",): 4000.0, ("3",): 567.0}
    assert samples(r, "kyocera_function_colour_pages") == {
        ("1.1",): 15000.0, ("1.3",): 5000.0, ("2.1",): 3500.0, ("2.3",): 500.0,
    }  # fmt: skip
    assert samples(r, "printer_status") == {("1", "ECOSYS M6630cidn"): 3.0}
    assert checks(r) == [("snmp_printer_supply_low", "printer supply Yellow at 5%: order a replacement")]


def test_hp_laserjet_written_from_the_mib(sim: SnmpSim) -> None:
    r = poll(sim, "hp-laserjet-written")
    assert set(by_profile(r, "up")) == {"system", "if_mib", "hp_printer", "printer"}
    assert samples(r, "hp_printer_engine_pages") == {(): 51234.0}
    assert samples(r, "hp_printer_mono_pages") == {(): 40000.0}
    assert samples(r, "hp_printer_colour_pages") == {(): 11234.0}
    assert checks(r) == [
        ("snmp_printer_supply_empty", "printer supply Black Cartridge HP W2030A is empty"),
        ("snmp_printer_supply_low", "printer supply Black Cartridge HP W2030A at 0%: order a replacement"),
        ("snmp_printer_warning", "printer HP Color LaserJet MFP M479fdw reports a warning (see its panel)"),
    ]


def test_entity_sensor_on_an_arista_names_sensors_by_description(sim: SnmpSim) -> None:
    """An Arista DCS-7150S: 95 ENTITY-SENSOR-MIB sensors, entPhysicalName empty on every one of them."""
    r = poll(sim, "arista-7150s")
    assert set(by_profile(r, "up")) == {"system", "if_mib", "entity_sensor"}
    values = samples(r, "ent_sensor_value")
    assert len(values) == 95
    # entPhySensorValue 282, precision 1: exactly 28.2 (not 28.200000000000003); 509 milliamperes, precision 2
    assert values[("100006001", "", "Cpu temp sensor")] == 28.2
    assert values[("100305211", "", "DOM TX Bias Sensor for Ethernet5")] == 0.00509
    assert not [c for c, _ in checks(r) if c in ("snmp_temperature_high", "snmp_sensor_failed")]  # all below 70 °C


def test_speed_from_ifspeed_where_ifhighspeed_is_zero(sim: SnmpSim) -> None:
    """A PA-5000's subinterfaces: up, ifSpeed 1 Gbit/s, ifHighSpeed 0 (unset). The speed is ifSpeed's."""
    r = poll(sim, "paloalto-pa-5000", ("if_mib",))
    speed = samples(r, "if_speed_bytes")
    assert speed[("101134008", "ethernet1/13.4008", "", "ethernet1/13.4008")] == 125_000_000.0
    assert speed[("200004008", "vlan.4008", "", "vlan.4008")] == 0.0  # ifHighSpeed 0 and ifSpeed 0: 0
    octets = samples(r, "if_hc_in_octets")
    assert octets[("101134008", "ethernet1/13.4008", "", "ethernet1/13.4008", "64")] == 2767605761.0


def test_walk_prints_binary_strings_as_hex_like_snmpbulkwalk(sim: SnmpSim) -> None:
    """ifPhysAddress of a VMware guest (00 50 56 01 01 43) is valid UTF-8 but no text: hex, not NUL and controls."""
    root = "1.3.6.1.2.1.2.2.1.6"
    ours = subprocess.run(
        [DIAG, "snmp", "walk", "-c", "linux-vm", f"127.0.0.1:{sim.port}", root],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    theirs = subprocess.run(
        ["snmpbulkwalk", "-v2c", "-c", "linux-vm", "-On", f"127.0.0.1:{sim.port}", root],
        capture_output=True, text=True, timeout=60, env={**os.environ, "MIBS": ""},
    )  # fmt: skip
    assert ours.returncode == 0 and theirs.returncode == 0
    want = [line.split(" = ") for line in theirs.stdout.splitlines()]
    got = [line.split(" = ") for line in ours.stdout.splitlines()]
    assert len(got) == len(want) == 11
    for (oid, value), (net_oid, net_value) in zip(got, want, strict=True):
        assert oid == net_oid
        if net_value == '""':
            assert value == "OCTET STRING: "
        else:  # Hex-STRING: 00 50 56 01 01 43 (net-snmp ends it with a blank)
            assert net_value.startswith("Hex-STRING: ") and value == "OCTET STRING: " + net_value[12:].strip()
    assert got[1][1] == "OCTET STRING: 00 50 56 01 01 43"


@pytest.mark.parametrize(
    ("community", "version"),
    [("phoenixtec-ups", "2c"), ("santak-ups", "2c"), ("huawei-ups-card", "2c"), ("phoenixtec-ups", "1")],
)
def test_ups_mib_cards_under_their_own_sysobjectid(sim: SnmpSim, community: str, version: str) -> None:
    """UPS-MIB cards whose sysObjectID is their maker's (Phoenixtec 935, Santak via Ingrasys 2468, a Huawei card
    running net-snmp): auto-selection finds `ups` by a probe of upsBatteryStatus.0 (v1 too: a missing probe
    is asked again without it). On mains these cards say 0 or -1 minutes left: no runtime finding from that."""
    target = snmp.Target("127.0.0.1", sim.port, community=community, timeout=3, retries=1, version=version)
    r = profiles.poll(target, [profiles.load("auto")], profiles.PollState())
    assert by_profile(r, "up")["ups"] == 1.0 and by_profile(r, "profile_samples")["ups"] == 5
    assert samples(r, "ups_battery_status") == {(): 2.0}
    assert samples(r, "ups_output_source") == {(): 3.0}  # normal (mains)
    # the Huawei card says -1 (unknown: out of UPS-MIB's 0..100) for charge and minutes left; kept as it came
    assert samples(r, "ups_charge_ratio") == {(): -0.01 if community == "huawei-ups-card" else 1.0}
    assert samples(r, "ups_runtime_seconds")[()] <= 0  # what they say on mains
    assert not [c for c, _ in checks(r) if c.startswith("snmp_ups")]
    named = profiles.poll(target, [profiles.load("ups")], profiles.PollState())  # named in the inventory: the same
    assert not [c for c, _ in checks(named) if c.startswith("snmp_ups")]


def test_net_snmp_under_a_vendor_sysobjectid_gets_ucd_and_host_resources(sim: SnmpSim) -> None:
    """A Vyatta router: net-snmp with sysObjectID 1.3.6.1.4.1.30803; memTotalReal.0 answering picks ucd."""
    r = poll(sim, "vyatta")
    assert set(by_profile(r, "up")) == {"system", "if_mib", "ucd", "host_resources"}
    assert by_profile(r, "profile_samples")["host_resources"] > 10
    assert samples(r, "ucd_mem_total_real_bytes") == {(): 7844796 * 1024.0}


def test_juniper_mx960_components_from_jnx_operating_table(sim: SnmpSim) -> None:
    """An MX960 on Junos 13.3: no ENTITY-SENSOR-MIB (entity_sensor finds nothing, and says so); the juniper
    profile reads state, temperature, CPU and memory of its PEMs, fans, FPCs and Routing Engines."""
    r = poll(sim, "juniper-mx960")
    assert set(by_profile(r, "up")) == {"system", "if_mib", "entity_sensor", "juniper"}
    counts = by_profile(r, "profile_samples")
    assert counts["entity_sensor"] == 0 and counts["juniper"] == 204  # 51 components x 4 columns
    assert samples(r, "juniper_temperature_celsius")[("2.1.0.0", "PEM 0")] == 30.0
    assert samples(r, "juniper_cpu_busy_ratio")[("9.1.0.0", "Routing Engine 0")] == 0.54
    assert samples(r, "juniper_memory_used_ratio")[("9.2.0.0", "Routing Engine 1")] == 0.08
    assert samples(r, "juniper_component_state")[("9.2.0.0", "Routing Engine 1")] == 7.0  # standby
    assert not [c for c, _ in checks(r) if c != "snmp_interface_down"]
