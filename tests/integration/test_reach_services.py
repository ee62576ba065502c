"""Service handshakes against real daemons in the routed lab's dgr-b: exim4, dovecot (IMAP), vsftpd, MariaDB.

Each daemon runs in the foreground with a throw-away configuration in a temp dir, on b's lab address, and is killed
by the lab (by process group) at teardown. Probes run from dgr-a with ``diag net service ... --json``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.labs.routedlab import ADDR, RoutedLab

pytestmark = pytest.mark.integration

B = ADDR["b"]


@pytest.fixture(scope="module")
def lab() -> Iterator[RoutedLab]:
    if os.geteuid() != 0:
        pytest.fail("the routed lab needs root (network namespaces); CI runs the tests as root")
    with RoutedLab() as lab:
        yield lab


def test_smtp_exim(lab: RoutedLab) -> None:
    # -bdf: daemon in the foreground; -oX: listen only on b's address, port 25 (the namespace is ours).
    lab.spawn("dgr-b", ["exim4", "-bdf", "-oX", f"{B}.25"], (B, 25))
    rc, out = lab.diag("net", "service", B, "smtp")
    d = out["details"]
    assert rc == 0 and d["ok"] is True, d
    assert d["banner"].startswith("220 ") and "Exim" in d["banner"]
    assert d["detail"]["ehlo_code"] == 250 and "PIPELINING" in d["detail"]["extensions"]


def test_imap_dovecot(lab: RoutedLab, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    conf = tmp_path / "dovecot.conf"
    conf.write_text(
        f"""protocols = imap
listen = {B}
base_dir = {tmp_path}/run
state_dir = {tmp_path}/state
log_path = {tmp_path}/dovecot.log
ssl = no
default_internal_user = dovecot
default_login_user = dovenull
service imap-login {{
  inet_listener imap {{
    port = 143
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
"""
    )
    lab.spawn("dgr-b", ["dovecot", "-F", "-c", str(conf)], (B, 143))
    rc, out = lab.diag("net", "service", B, "imap")
    d = out["details"]
    assert rc == 0 and d["ok"] is True and d["banner"].startswith("* OK"), d
    assert "Dovecot" in d["banner"]


def test_ftp_vsftpd_ok_and_refusing(lab: RoutedLab, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    base = [
        "listen=YES",
        "listen_ipv6=NO",
        f"listen_address={B}",
        "background=NO",
        f"secure_chroot_dir={empty}",
        "ftpd_banner=diag lab FTP",
        "local_enable=NO",
    ]
    good, bad = tmp_path / "good.conf", tmp_path / "bad.conf"
    good.write_text("\n".join([*base, "listen_port=21", "anonymous_enable=YES", f"anon_root={empty}"]) + "\n")
    # Both access kinds off: vsftpd answers every connection with "500 OOPS" - a real failed handshake.
    bad.write_text("\n".join([*base, "listen_port=2121", "anonymous_enable=NO"]) + "\n")
    lab.spawn("dgr-b", ["vsftpd", str(good)], (B, 21))
    lab.spawn("dgr-b", ["vsftpd", str(bad)], (B, 2121))
    rc, out = lab.diag("net", "service", B, "ftp")
    assert rc == 0 and out["details"]["banner"] == "220 diag lab FTP", out["details"]
    rc, out = lab.diag("net", "service", B, "ftp", "-p", "2121")
    assert rc == 2 and out["details"]["ok"] is False
    (f,) = out["findings"]
    assert f["check"] == "reach_service" and "500 OOPS" in f["summary"]


def test_mysql_mariadb_greeting_and_host_not_allowed(lab: RoutedLab, tmp_path: Path) -> None:
    datadir = tmp_path / "db"
    subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={datadir}",
            "--user=root",
            "--auth-root-authentication-method=normal",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    lab.spawn(
        "dgr-b",
        [
            "mariadbd",
            "--no-defaults",
            f"--datadir={datadir}",
            f"--socket={tmp_path}/my.sock",
            f"--pid-file={tmp_path}/my.pid",
            "--bind-address=0.0.0.0",  # b's lab address and its loopback
            "--port=3306",
            "--user=root",
        ],
        ("0.0.0.0", 3306),
    )
    # From a (10.233.0.1): only root@localhost exists, so the server refuses the host with ERR 1130 instead of a
    # greeting.
    rc, out = lab.diag("net", "service", B, "mysql")
    d = out["details"]
    assert rc == 2 and d["ok"] is False and d["detail"]["error_code"] == 1130, d
    assert "is not allowed to connect" in out["findings"][0]["summary"]
    # From b's loopback (root@localhost matches) the server greets: protocol 10 and its version, without the
    # 5.5.5- compatibility prefix.
    rc, out = lab.diag("net", "service", "127.0.0.1", "mysql", ns="dgr-b")
    d = out["details"]
    assert rc == 0 and d["detail"]["protocol"] == 10, d
    assert "MariaDB" in d["detail"]["server_version"] and not d["detail"]["server_version"].startswith("5.5.5-")
    assert d["detail"]["connection_id"] > 0
