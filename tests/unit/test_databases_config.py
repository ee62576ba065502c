"""The database probes' configuration and the literal masking of query text (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from diag import config
from diag.errors import ConfigError
from diag.probes.databases.options import dsn_keys
from diag.probes.databases.sqlmask import mask_sql


@pytest.mark.parametrize(
    ("sql", "masked"),
    [
        ("SELECT * FROM t WHERE a = 'x''y' AND b = 42", "SELECT * FROM t WHERE a = ? AND b = ?"),
        ("UPDATE acct SET card = E'4111\\'1111' WHERE id=$1", "UPDATE acct SET card = ? WHERE id=$1"),
        ("SELECT $$secret body$$, $fn$ also $fn$, 1.5e3, .5, 0xFF, x'ff'", "SELECT ?, ?, ?, ?, ?, ?"),
        ("SELECT t1.c2, \"Col\" FROM t1 -- where pw = 'hunter2'", 'SELECT t1.c2, "Col" FROM t1 --'),
        ("SELECT 1 /* token 'abc' */ FROM t", "SELECT ? /* */ FROM t"),
        ("INSERT INTO t VALUES ('unterminated", "INSERT INTO t VALUES (?"),
    ],
)
def test_literals_are_masked(sql: str, masked: str) -> None:
    assert mask_sql(sql) == masked


def test_mysql_double_quoted_strings_are_masked_too() -> None:
    assert mask_sql('SELECT * FROM `t` WHERE name = "alice"', double_quoted_strings=True) == (
        "SELECT * FROM `t` WHERE name = ?"
    )
    assert len(mask_sql("SELECT " + "a, " * 500 + "b", limit=50)) == 50


def test_dsn_forms() -> None:
    assert dsn_keys("postgresql://diag@db1:5433/app?sslmode=require") == {
        "sslmode": "require", "user": "diag", "host": "db1", "port": "5433", "dbname": "app"
    }  # fmt: skip
    assert dsn_keys("host=/run/postgresql port=5432 user=diag dbname='my db'")["dbname"] == "my db"
    assert dsn_keys("mysql://diag@localhost/?unix_socket=/run/mysqld/mysqld.sock")["unix_socket"] == (
        "/run/mysqld/mysqld.sock"
    )


@pytest.mark.parametrize(
    ("probe", "body", "message"),
    [
        ("postgres", '{instances: [{name: a, dsn: "postgresql://u:hunter2@h/db"}]}', "must not hold the password"),
        ("postgres", '{instances: [{name: a, dsn: "host=h password=hunter2"}]}', "must not hold the password"),
        ("mysql", "{instances: [{name: a, dsn: 'mysql://u@h/', password: hunter2}]}", "must be a reference"),
        ("mysql", "{instances: [{name: a, dsn: 'mysql://u@h/'}, {name: a, dsn: 'mysql://u@g/'}]}", "duplicate"),
        (
            "postgres",
            "{backups: [{name: b, glob: /x, max_age_hours: 1, verify: {instance: nope}}]}",
            "not a configured",
        ),
        ("postgres", "{instances: [{name: a, dsn: x=y}], connections_warning_percent: 99}", "connections_warning"),
    ],
)
def test_bad_configuration_names_the_file_and_line(probe: str, body: str, message: str, tmp_path: Path) -> None:
    from diag import inventory

    inv = tmp_path / "inventory.yaml"
    inv.write_text(f"hosts: {{}}\nagent:\n  probes:\n    {probe}: {body}\n")
    inv_doc = inventory.load(str(inv))
    with pytest.raises(ConfigError) as e:
        config.build(inv_doc.doc, dict(inv_doc.agent))
    text = "\n".join(e.value.problems)
    assert message in text and "inventory.yaml:4" in text, text
    assert "hunter2" not in text


def test_nothing_configured_means_disabled_and_no_driver_imported() -> None:
    import subprocess
    import sys

    cfg = config.build(None, {})
    assert cfg.probes["postgres"].enabled is False and cfg.probes["mysql"].enabled is False
    # a fresh interpreter: in the test session another test may have imported a driver already
    code = (
        "import sys\nfrom diag import config\nconfig.build(None, {})\n"
        "print(sorted({'MySQLdb', 'pymysql', 'psycopg'} & {m.split('.')[0] for m in sys.modules}))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert p.stdout.strip() == "[]"


def test_psql_batch_answers_are_read_per_query_and_a_failed_one_is_absent() -> None:
    from diag.probes.databases.postgres import QUERIES, batch_sql, parse_batch

    sql = batch_sql()
    assert sql.count("jsonb_agg(q)") == len(QUERIES) and "AS q(c0, c1, c2, c3, c4, c5, c6, c7, c8)" in sql
    # what psql -A -t prints: one line per query (jsonb's text escapes newlines inside strings); wal failed
    out = (
        'server\t[{"c0": "PostgreSQL 15", "c1": "15.18", "c2": 150018, "c3": 1.5e9, "c4": 1.6e9, "c5": false, '
        '"c6": false, "c7": 100, "c8": 3}]\n'
        'activity\t[{"c0": 7, "c1": "app", "c2": "db", "c3": "active", "c4": 1.0, "c5": 2.0, "c6": 1.0, '
        '"c7": "Lock", "c8": "SELECT 1;\\nSELECT 2", "c9": [9]}]\n'
        "slots\t[]\n"
    )
    answers = parse_batch(out)
    assert set(answers) == {"server", "activity", "slots"}
    assert answers["activity"][0][8] == "SELECT 1;\nSELECT 2" and answers["activity"][0][9] == [9]
    assert answers["server"][0][1] == "15.18" and answers["slots"] == []


@pytest.mark.parametrize("probe", ["postgres", "mysql"])
def test_an_unreadable_password_reference_is_a_config_finding_not_a_server_down(probe: str, tmp_path: Path) -> None:
    from diag.probes.base import Paths

    opts = {"instances": [{"name": "a", "dsn": "host=127.0.0.1 port=1 user=u", "password": "env:DIAG_UNSET_18"}]}
    if probe == "mysql":
        opts["instances"][0]["dsn"] = "mysql://u@127.0.0.1:1/"
    cfg = config.build(None, {"data": str(tmp_path), "probes": {probe: opts}})
    from diag.probes import probes

    r = probes.get(probe)(cfg.probes[probe], Paths(state=tmp_path)).collect()
    assert [(f.check, f.severity) for f in r.findings] == [(f"{probe}_credentials_missing", "warning")]
    assert "DIAG_UNSET_18 is not set" in r.findings[0].summary
