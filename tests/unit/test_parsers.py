"""Output parsers over recorded command outputs (tests/fixtures/remote/...)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from diag.remote import parsers as p
from tests.unit.fake_ssh import FIXTURES, SHIPPED


def fixture(rel: str) -> str:
    return (FIXTURES / rel).read_text()


def spec(raw: dict[str, object]) -> p.ParseSpec:
    return msgspec.convert(raw, p.ParseSpec)  # type: ignore[arg-type]


def test_regex_first_match_with_types() -> None:
    f = p.prepare(
        spec(
            {
                "type": "regex",
                "pattern": r"(?P<load1>[\d.]+) (?P<load5>[\d.]+) \S+ (?P<running>\d+)/(?P<procs>\d+) "
                r"\d+\s+(?P<cpus>\d+)",
                "types": {"load1": "float", "load5": "float", "running": "int", "cpus": "int"},
            }
        )
    )
    assert f(fixture("linux-baseline/debian-problems/load.out")) == {
        "load1": 7.91,
        "load5": 6.52,
        "running": 9,
        "procs": "412",
        "cpus": 2,
    }
    assert f("no numbers here") is None


def test_regex_all_matches_and_flags() -> None:
    f = p.prepare(
        spec({"type": "regex", "all": True, "flags": ["multiline"], "pattern": r"^(?P<line>.*Killed process.*)$"})
    )
    rows = f(fixture("linux-baseline/debian-problems/oom.out"))
    assert len(rows) == 2 and "(java)" in rows[0]["line"]
    g = p.prepare(spec({"type": "regex", "flags": ["ignorecase"], "pattern": "(?P<w>out of MEMORY)"}))
    assert g("Out of memory") == {"w": "Out of memory"}


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"type": "regex", "pattern": "("}, "pattern", "bad regular expression"),
        ({"type": "regex", "pattern": "(\\d+)"}, "pattern", "named groups"),
        ({"type": "regex", "pattern": "(?P<a>x)", "types": {"b": "int"}}, "types", "does not have: b"),
        ({"type": "json", "path": "a[?"}, "path", "JMESPath"),
        ({"type": "kv", "separator": ""}, "separator", "empty"),
        ({"type": "columns", "header": False}, "names", "column names"),
        ({"type": "columns", "header": False, "names": ["a"], "split": "fixed"}, "split", "header"),
        ({"type": "textfsm"}, "template", "exactly one"),
        ({"type": "textfsm", "template_text": "Value X (\\S+\n\nStart\n  ^${X}\n"}, "template", "TextFSM"),
        ({"type": "textfsm", "template": "no-such.textfsm"}, "template", "cannot read"),
    ],
)
def test_bad_options_are_reported_with_their_field(raw: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(p.OptionsError) as e:
        p.prepare(spec(raw), SHIPPED)
    assert e.value.field == field
    assert message in str(e.value)


def test_json_with_jmespath_on_recorded_lsblk() -> None:
    f = p.prepare(spec({"type": "json", "path": "blockdevices[?type=='disk'].name"}))
    assert f(fixture("facts/lab/disks.out")) == ["zram0", "vda"]
    whole = p.prepare(spec({"type": "json"}))
    assert whole('{"a": [1, 2]}') == {"a": [1, 2]}
    assert whole("  ") is None
    with pytest.raises(p.ParseError, match="not JSON"):
        whole("Usage: lsblk [options]")


def test_json_ip_addr_projection() -> None:
    f = p.prepare(spec({"type": "json", "path": "[].{name: ifname, addresses: addr_info[].local}"}))
    rows = f(fixture("facts/lab/network.out"))
    names = {r["name"] for r in rows}
    assert {"lo", "eth0"} <= names
    lo = next(r for r in rows if r["name"] == "lo")
    assert "127.0.0.1" in lo["addresses"]


def test_kv_meminfo_and_os_release() -> None:
    mem = p.prepare(spec({"type": "kv", "separator": ":", "types": {"MemTotal": "int", "MemAvailable": "int"}}))
    v = mem(fixture("linux-baseline/debian-problems/memory.out"))
    assert v["MemTotal"] == 4015876 and v["MemAvailable"] == 163840 and v["Dirty"] == "1024 kB"
    osr = p.prepare(spec({"type": "kv"}))(fixture("facts/lab/os.out"))
    assert osr["ID"] == "debian" and osr["VERSION_ID"] == "12"
    assert osr["PRETTY_NAME"].startswith("Debian GNU/Linux 12")  # quotes stripped
    low = p.prepare(spec({"type": "kv", "lowercase_keys": True, "strip_quotes": False}))
    assert low('# comment\nNAME="x"\nnot a pair\n') == {"name": '"x"'}


def test_columns_df_full_disk_with_spaces_in_mount_and_missing_values() -> None:
    f = p.prepare(
        spec(
            {
                "type": "columns",
                "names": ["filesystem", "kib", "used", "avail", "use_pct", "mount"],
                "types": {"kib": "int", "use_pct": "int"},
            }
        )
    )
    rows = f(fixture("linux-baseline/debian-problems/disk.out"))
    assert len(rows) == 7
    assert rows[2] == {
        "filesystem": "/dev/sda1",
        "kib": 20466256,
        "used": "19389012",
        "avail": "0",
        "use_pct": 100,
        "mount": "/",
    }
    assert rows[-1]["mount"] == "/mnt/backup disk"
    inodes = f(fixture("linux-baseline/debian-problems/inodes.out"))
    assert inodes[-1]["use_pct"] is None  # "-": no inode limit


def test_columns_header_names_vmstat_and_ps() -> None:
    vm = p.prepare(spec({"type": "columns", "skip": 1, "types": {"wa": "int", "id": "int"}}))
    rows = vm(fixture("high-load/busy/cpu.out"))
    assert len(rows) == 4 and rows[1]["wa"] == 44 and rows[1]["id"] == 2 and rows[0]["in"] == "61"
    ps = p.prepare(spec({"type": "columns"}))
    top = ps(fixture("high-load/busy/top_cpu.out"))
    assert top[0]["pid"] == "4121" and top[0]["cpu"] == "187.0" and top[0]["command"] == "java"
    assert ps("") == []


def test_columns_fixed_width() -> None:
    text = "NAME      STATE    DESCRIPTION\nnginx     failed   web server here\ncron      active   \n"
    rows = p.prepare(spec({"type": "columns", "split": "fixed"}))(text)
    assert rows == [
        {"name": "nginx", "state": "failed", "description": "web server here"},
        {"name": "cron", "state": "active", "description": ""},
    ]


def test_textfsm_template_file_on_recorded_ip_s_link() -> None:
    f = p.prepare(spec({"type": "textfsm", "template": "ip-s-link.textfsm", "types": {"rx_errors": "int"}}), SHIPPED)
    rows = f(fixture("linux-baseline/debian-problems/interfaces.out"))
    assert [r["iface"] for r in rows] == ["lo", "ens3", "veth1a2b"]
    ens3 = rows[1]
    assert ens3["rx_errors"] == 1412 and ens3["tx_errors"] == "31" and ens3["state"] == "UP"
    lab = f(fixture("linux-baseline/lab-full-tmpfs/interfaces.out"))
    assert any(r["iface"] == "eth0" for r in lab)


def test_textfsm_inline_template() -> None:
    tpl = "Value Required UNIT (\\S+)\nValue STATE (\\S+)\n\nStart\n  ^${UNIT}\\s+loaded\\s+${STATE} -> Record\n"
    f = p.prepare(spec({"type": "textfsm", "template_text": tpl}))
    assert f(fixture("linux-baseline/debian-problems/failed_units.out")) == [
        {"unit": "nginx.service", "state": "failed"},
        {"unit": "logrotate.service", "state": "failed"},
    ]


def test_every_fixture_file_is_used_by_a_scenario() -> None:
    # recorded outputs that no test reads would rot silently
    for d in FIXTURES.glob("*/*"):
        if d.is_dir():
            assert (d / "exit.json").exists(), f"{d}: scenario without exit.json"
            assert (SHIPPED / f"{d.parent.name}.yaml").exists(), f"{d}: no playbook {d.parent.name}"


def test_unknown_parser_type_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        spec({"type": "xml"})
    assert Path(SHIPPED / "ip-s-link.textfsm").exists()
