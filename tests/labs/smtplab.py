"""A real Exim 4 (Debian's ``exim4-daemon-light``) on 127.0.0.1 that delivers into a Maildir the test reads.

Its own config (``exim4 -C``; as root, Exim then runs as Debian-exim), spool, log and Maildir live in a temp
dir. It offers STARTTLS with a throw-away certificate (made with ``cryptography``), advertises AUTH PLAIN only
over TLS (user ``diag``), and its RCPT ACL gives the answers the backend must map: ``rejectme@`` -> 550,
``later@`` -> 451, ``@auth.diaglab.invalid`` -> 550 unless authenticated, the rest of ``diaglab.invalid`` is
accepted and delivered. Nothing is relayed anywhere else.
"""

from __future__ import annotations

import contextlib
import datetime
import email
import email.policy
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import free_port, owns_port, stop_process

EXIM = shutil.which("exim4") or "/usr/sbin/exim4"
USER = "diag"
PASSWORD = "smtp-lab-pass-9"
DEFAULT_PORTS = range(20345, 20350)

CONFIG = """
primary_hostname = mail.diaglab.invalid
daemon_smtp_ports = @PORT@
local_interfaces = 127.0.0.1
spool_directory = @DIR@/spool
log_file_path = @DIR@/log/%slog
exim_user = Debian-exim
exim_group = Debian-exim
domainlist local_domains = diaglab.invalid : auth.diaglab.invalid
tls_certificate = @DIR@/cert.pem
tls_privatekey = @DIR@/key.pem
tls_advertise_hosts = @TLS_HOSTS@
auth_advertise_hosts = ${if eq{$tls_in_cipher}{}{}{*}}
acl_smtp_rcpt = acl_rcpt
host_lookup =
rfc1413_hosts =
keep_environment =

begin acl
acl_rcpt:
  deny    local_parts = rejectme
          message = no such user here
  defer   local_parts = later
          message = mailbox busy, try later
  deny    domains = auth.diaglab.invalid
          !authenticated = *
          message = authentication required
  accept  domains = +local_domains
  deny    message = relay not permitted

begin routers
local:
  driver = accept
  domains = +local_domains
  transport = maildir

begin transports
maildir:
  driver = appendfile
  directory = @DIR@/mail
  maildir_format
  create_directory
  user = Debian-exim
  group = Debian-exim
  envelope_to_add
  return_path_add

begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_condition = ${if and{{eq{$auth2}{@USER@}}{eq{$auth3}{@PASSWORD@}}}}
  server_set_id = $auth2
"""


class EximLab:
    """One Exim daemon with a Maildir; ``messages()`` returns what it delivered, parsed."""

    def __init__(self, ports: Sequence[int] = DEFAULT_PORTS, starttls: bool = True,
                 per_user: Sequence[str] = ()) -> None:
        self.port = free_port(ports)
        self.starttls = starttls
        self.per_user = list(per_user)  # these local parts get a Maildir each (mail/USER/), e.g. for IMAP
        self.dir = Path(tempfile.mkdtemp(prefix="dgk-exim-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> str:
        return str(self.dir / "cert.pem")

    def start(self) -> EximLab:
        try:
            self._write()
            with (self.dir / "daemon.out").open("wb") as out:
                # -bdf: daemon in the foreground (stopped by PID); -q2s: queue runs retry deferred mail soon
                self.proc = subprocess.Popen([EXIM, "-C", str(self.dir / "exim.conf"), "-bdf", "-q2s"],
                                             stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"exim exited with {self.proc.returncode}: {self.log()}")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1) as s:
                    if s.recv(100).startswith(b"220"):
                        if not owns_port(self.proc.pid, self.port):
                            raise RuntimeError(f"port {self.port}: an SMTP server answers, but not our exim")
                        return self
                time.sleep(0.1)
            raise RuntimeError(f"exim not answering on port {self.port}: {self.log()}")
        except BaseException:
            self.close()
            raise

    def _write(self) -> None:
        self.dir.chmod(0o755)  # exim runs as Debian-exim and must reach its spool and Maildir
        ids = pwd.getpwnam("Debian-exim")
        for sub in ("spool", "log", "mail"):
            (self.dir / sub).mkdir()
            os.chown(self.dir / sub, ids.pw_uid, ids.pw_gid)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.diaglab.invalid")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        (self.dir / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file = self.dir / "key.pem"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o600)
        os.chown(key_file, ids.pw_uid, ids.pw_gid)
        conf = CONFIG
        if self.per_user:
            # Exim 4.96 refuses a path built from the (tainted) recipient; $local_part_data is the matched list item
            conf = conf.replace("directory = @DIR@/mail\n", "directory = @DIR@/mail/${local_part_data}\n")
            conf = conf.replace("  transport = maildir\n",
                                f"  local_parts = {' : '.join(self.per_user)}\n  transport = maildir\n")
        for name, value in (("@PORT@", str(self.port)), ("@DIR@", str(self.dir)), ("@USER@", USER),
                            ("@PASSWORD@", PASSWORD), ("@TLS_HOSTS@", "*" if self.starttls else "")):
            conf = conf.replace(name, value)
        (self.dir / "exim.conf").write_text(conf)

    def log(self) -> str:
        path = self.dir / "log" / "mainlog"
        out = (self.dir / "daemon.out").read_text(errors="replace") if (self.dir / "daemon.out").exists() else ""
        return out[-800:] + (path.read_text(errors="replace")[-1500:] if path.exists() else "")

    def messages(self, user: str | None = None) -> list[EmailMessage]:
        """Delivered mail, oldest first (``user``: that local part's Maildir, with ``per_user``)."""
        new = self.dir / "mail" / (f"{user}/new" if user else "new")
        files = sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns) if new.exists() else []
        out = []
        for f in files:
            msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            out.append(msg)
        return out

    def wait_for_messages(self, n: int, timeout: float = 20) -> list[EmailMessage]:
        """Exim delivers in a process of its own after accepting: wait until ``n`` messages are in the Maildir."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = self.messages()
            if len(msgs) >= n:
                return msgs
            time.sleep(0.1)
        raise AssertionError(f"{len(self.messages())} messages delivered, expected {n}: {self.log()}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> EximLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
