"""Every command refuses a bad argument the same way: exit 2, one line on stderr that names what is wrong, no traceback.

Exit 3 is kept for failures at run time (unreachable, timed out); a value that can never work is the user's input.
Each case must be refused before anything is sent, so no peer is needed: the targets are loopback addresses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from diag.cli.main import main

CASES: list[tuple[list[str], str]] = [
    # diag net: ports, numbers, names, URLs, DNS servers and types
    (["net", "port", "127.0.0.1", "99999"], "99999 is not a port number"),
    (["net", "port", "127.0.0.1", "0"], "0 is not a port number"),
    (["net", "port", "127.0.0.1", "http"], "'http' is not a port number"),
    (["net", "port", "127.0.0.1", "80", "--timeout", "-1"], "argument --timeout: '-1': must be above 0"),
    (["net", "port", "no such host", "80"], "'no such host' is not a host name or address"),
    (["net", "ping", "127.0.0.1", "-c", "0"], "argument -c/--count: '0': must be above 0"),
    (["net", "ping", "127.0.0.1", "-i", "-1"], "argument -i/--interval"),
    (["net", "ping", "127.0.0.1", "--tcp-port", "70000"], "argument --tcp-port: 70000 is not a port number"),
    (["net", "ping", "127.0.0.1", "--loss-threshold", "nan"], "argument --loss-threshold: 'nan'"),
    (["net", "trace", "127.0.0.1", "--max-hops", "0"], "argument --max-hops"),
    (["net", "trace", "127.0.0.1", "-p", "65536"], "argument -p/--port: 65536 is not a port number"),
    (["net", "dns", "example.org", "--server", "notip"], "server 'notip': not an IP address"),
    (["net", "dns", "example.org", "--server", "127.0.0.1:99999"], "server port 99999 is not a port number"),
    (["net", "dns", "example.org", "--server", "127.0.0.1", "--type", "BOGUS"], "BOGUS: not a DNS record type"),
    (["net", "http", "notaurl"], "notaurl: not an http(s) URL"),
    (["net", "http", "ftp://example.org/"], "ftp://example.org/: not an http(s) URL"),
    (["net", "http", "http://127.0.0.1:99999/"], "http://127.0.0.1:99999/: not an http(s) URL"),
    (["net", "http", "http://127.0.0.1/", "--cert-days", "-1"], "argument --cert-days"),
    (["net", "service", "127.0.0.1", "smtp", "-p", "70000"], "argument -p/--port: 70000 is not a port number"),
    (["net", "service", "127.0.0.1", "gopher"], "argument service: invalid choice: 'gopher'"),
    # diag snmp: OIDs, targets, numbers, v3 settings, profiles
    (["snmp", "walk", "127.0.0.1", "notanoid"], "not a numeric OID: 'notanoid'"),
    (["snmp", "walk", "127.0.0.1", "1.3.6.1", "--max-repetitions", "0"], "argument --max-repetitions"),
    (["snmp", "walk", "127.0.0.1", "1.3.6.1", "--timeout", "-1"], "argument --timeout/-t"),
    (["snmp", "walk", "127.0.0.1", "1.3.6.1", "--retries", "-1"], "argument --retries/-r"),
    (["snmp", "walk", "127.0.0.1:99999", "1.3.6.1"], "127.0.0.1:99999: bad port"),
    (["snmp", "walk", "127.0.0.1", "1.3.6.1", "-v", "3"], "SNMPv3 needs a user"),
    (["snmp", "get", "127.0.0.1", "1.3.6.1.2.1.1.5.0", "x.y"], "not a numeric OID: 'x.y'"),
    (["snmp", "poll", "127.0.0.1", "--profile", "nosuch"], "unknown SNMP profile 'nosuch'"),
    (
        ["snmp", "get", "127.0.0.1", "-v", "3", "-u", "u", "-a", "BOGUS", "--auth-key-env", "DGT_KEY", "1.3.6.1"],
        "unknown auth protocol 'BOGUS'",
    ),
    (
        ["snmp", "get", "127.0.0.1", "-v", "3", "-u", "u", "--auth-key-env", "DGT_SHORT", "1.3.6.1"],
        "at least 8 characters",
    ),
    # the agent and the other commands
    (["agent", "--listen", "nonsense"], "--listen: listen address 'nonsense' must be HOST:PORT"),
    (["agent", "--listen", "127.0.0.1:99999"], "--listen: listen address '127.0.0.1:99999'"),
    (["traps", "listen", "--listen", "nonsense", "--community-env", "DGT_KEY"], "--listen: listen address 'nonsense'"),
    (
        ["traps", "listen", "--listen", "127.0.0.1:1", "--community-env", "DGT_UNSET"],
        "--community-env: secret env:DGT_UNSET: environment variable DGT_UNSET is not set",
    ),
    (["traps", "listen", "-u", "bob", "-x", "AES-512"], "--priv-protocol AES-512: needs --priv-key-env"),
    (["traps", "listen", "-x", "AES-256", "--priv-key-env", "DGT_KEY"], "--priv-protocol needs --user"),
    (["traps", "listen", "-u", "bob", "-a", "SHA-256"], "--auth-protocol SHA-256: needs --auth-key-env"),
    (["probe", "--only", "warp_drive"], "--only warp_drive: no such probe"),
    (["check", "-p", "disk-full", "--concurrency", "0", "web"], "argument --concurrency"),
    (["inventory", "validate", "missing.yaml"], "missing.yaml:1: cannot read"),
    (["report", "--days", "0"], "argument --days"),
    (["report", "--slo", "2"], "argument --slo: '2': must be at most 1"),
    (["report", "--from", "notadate"], "--from: 'notadate' is not a date"),
    (["incidents", "list", "--limit", "0"], "argument --limit"),
    (["journal", "--limit", "-5"], "argument --limit"),
    (["config", "diff", "sw-1", "--context", "-1"], "argument --context/-U"),
    (["incidents", "show", "99"], "no incident database here (is --data right?)"),
    (["incidents", "silence", "--for", "xyz", "--reason", "r", "--by", "me"], "--for: duration 'xyz'"),
    (["journal", "verify", "--key", "file:/nonexistent/key"], "--key: journal key: secret file:/nonexistent/key"),
    (["config", "show", "bad name"], "'bad name': a target is an inventory host name"),
    (["worker", "--redis", "notaurl"], "broker URL notaurl: not a Redis URL"),
    (["worker", "--redis", "redis://:pw-s3cret@127.0.0.1:99999/0"], "broker URL redis://127.0.0.1:99999/0: Port out"),
    # too large to mean anything: an OverflowError traceback before
    (["net", "port", "127.0.0.1", "1", "--timeout", "1e300"], "argument --timeout: '1e300': must be at most 2592000"),
    (["net", "http", "http://127.0.0.1:1/", "--timeout", "1e300"], "argument --timeout: '1e300'"),
    (["snmp", "get", "127.0.0.1", "1.3.6.1.2.1.1.1.0", "-t", "1e300"], "argument --timeout/-t: '1e300'"),
    (["report", "--days", "1e300"], "argument --days: '1e300': must be at most 36600"),
    (["incidents", "list", "--limit", "99999999999999999999"], "must be at most 9223372036854775807"),
    (["incidents", "show", "99999999999999999999"], "argument id: '99999999999999999999'"),
    (["journal", "--limit", "99999999999999999999"], "argument --limit"),
    (["worker", "--redis", "redis://127.0.0.1:1/0", "--metrics-listen", "x"], "--metrics-listen: listen address 'x'"),
    (["nosuchcommand"], "argument COMMAND: invalid choice: 'nosuchcommand'"),
]


@pytest.mark.parametrize(("argv", "expected"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_argument_exits_2_with_one_line(
    argv: list[str], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./inventory.yaml, no ./.diag: only the argument decides
    monkeypatch.setenv("DGT_KEY", "a-long-enough-password")
    monkeypatch.setenv("DGT_SHORT", "short")
    monkeypatch.delenv("DGT_UNSET", raising=False)
    from diag.distributed import tasks

    settings_before = tasks.SETTINGS
    try:
        status = main(argv)
    except SystemExit as e:  # argparse's own refusals
        status = e.code
    out, err = capsys.readouterr()
    assert status == 2, (status, out, err)
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.endswith("\n"), err  # one line
    assert expected in err
    assert tasks.SETTINGS is settings_before  # refused before any state of the process was set (a worker's)
    assert "short\n" not in err and "a-long-enough-password" not in err and "s3cret" not in err  # no secret values


def test_input_errors_are_still_the_kind_their_callers_catch() -> None:
    """A poll of a v3 device without a user is a finding of that device (not a crash of the poller), while the
    command line exits 2 for the same error; a reach input error is still a ReachError for the agent's checks."""
    from diag.errors import InvalidInput
    from diag.network import reach
    from diag.network.snmp import profiles
    from diag.network.snmp.client import SnmpError, Target

    result = profiles.poll(Target(host="127.0.0.1", port=9, version="3", timeout=0.2, retries=0),
                           [profiles.load("system")])  # fmt: skip
    [finding] = [f for f in result.findings if f.check == "snmp_poll_failed"]
    assert "SNMPv3 needs a user" in finding.summary
    with pytest.raises(reach.ReachError) as e:
        reach.port_check("127.0.0.1", 99999)
    assert isinstance(e.value, InvalidInput) and not isinstance(e.value, SnmpError)
    with pytest.raises(reach.ReachError, match="timeout 1e\\+300 is too large"):  # the library's own guard
        reach.port_check("127.0.0.1", 1, 1e300)


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "-o", "/nonexistent/dir/report.html"],
        ["api", "token", "add", "t", "--role", "viewer", "--data", "/proc/no"],
    ],
)
def test_a_file_that_cannot_be_used_is_one_line_exit_3(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not bad input (the path may be right, the machine not): a failure at run time, still one line, no traceback."""
    from diag.incidents.service import IncidentService
    from diag.incidents.settings import from_mapping

    monkeypatch.chdir(tmp_path)
    IncidentService(from_mapping({}, tmp_path / ".diag"), {}).close()  # an (empty) incident store to report on
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("diag: /") and "No such file or directory" in err, err
