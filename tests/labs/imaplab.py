"""A real Dovecot IMAP server (Debian's ``dovecot-imapd``) on 127.0.0.1 serving the Maildirs an Exim lab delivers to.

Its own configuration, run directory, log and user list live in a temp dir (``dovecot -F -c``, stopped by PID);
nothing of the system's /etc/dovecot is read. It offers IMAP with STARTTLS (the Exim lab's throw-away certificate)
and refuses a login before TLS; users come from a passwd-file and are served as Debian-exim, which owns what Exim
delivers (``mail/USER/`` with ``EximLab(per_user=True)``). Nothing listens anywhere but loopback.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.conftest import free_port, owns_port, stop_process
from tests.labs.smtplab import EximLab

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DEFAULT_PORTS = range(20350, 20360)

CONFIG = """
protocols = imap
listen = 127.0.0.1
base_dir = @DIR@/run
state_dir = @DIR@/state
log_path = @DIR@/dovecot.log
info_log_path = @DIR@/dovecot.log
ssl = required
ssl_cert = <@CERT@
ssl_key = <@KEY@
disable_plaintext_auth = yes
auth_mechanisms = plain
first_valid_uid = 1
mail_location = maildir:@MAIL@/%n
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%n @DIR@/passwd
}
userdb {
  driver = static
  args = uid=Debian-exim gid=Debian-exim home=@MAIL@/%n
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = @PORT@
  }
  inet_listener imaps {
    port = 0
  }
}
"""


class DovecotLab:
    """One Dovecot serving ``users`` (name -> password) from the Exim lab's Maildirs."""

    def __init__(self, exim: EximLab, users: dict[str, str], ports: Sequence[int] = DEFAULT_PORTS) -> None:
        self.exim = exim
        self.users = users
        self.port = free_port(ports)
        self.dir = Path(tempfile.mkdtemp(prefix="dgk-dovecot-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> str:
        return self.exim.ca_file

    def start(self) -> DovecotLab:
        try:
            for sub in ("run", "state"):
                (self.dir / sub).mkdir()
            self.dir.chmod(0o755)  # the auth process runs as dovecot and reads the passwd-file
            passwd = self.dir / "passwd"
            passwd.write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in self.users.items()))
            passwd.chmod(0o640)
            shutil.chown(passwd, group="dovecot")
            conf = CONFIG
            for k, v in (("@DIR@", str(self.dir)), ("@CERT@", str(self.exim.dir / "cert.pem")),
                         ("@KEY@", str(self.exim.dir / "key.pem")), ("@MAIL@", str(self.exim.dir / "mail")),
                         ("@PORT@", str(self.port))):
                conf = conf.replace(k, v)
            (self.dir / "dovecot.conf").write_text(conf)
            self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.dir / "dovecot.conf")],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"dovecot exited with {self.proc.returncode}: {self.log()}")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1) as s:
                    if s.recv(200).startswith(b"* OK"):
                        if not owns_port(self.proc.pid, self.port):
                            raise RuntimeError(f"port {self.port}: an IMAP server answers, but not our dovecot")
                        return self
                time.sleep(0.1)
            raise RuntimeError(f"dovecot not answering on {self.port}: {self.log()}")
        except BaseException:
            self.close()
            raise

    def log(self) -> str:
        path = self.dir / "dovecot.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> DovecotLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
