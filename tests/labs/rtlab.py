"""A real Request Tracker 5 (Debian's ``request-tracker5`` + ``rt5-db-sqlite``) on 127.0.0.1 for tests.

Each lab has its own site config (``RT_SITE_CONFIG``; ``RT_SITE_CONFIG_DIR`` points at an empty directory so the
package's debconf snippets are not read), its own sqlite database made by ``rt-setup-database --action init``
(~7 s), and a Perl set-up script run against RT's own library: the root password, an auth token for REST2, the
``diag fingerprint`` ticket custom field applied to the queues ``General`` and ``Second line``, and a queue
``No field`` where it is not applied. RT's built-in server (``rt-server``, Plack) serves it; outgoing mail goes to
RT's ``testfile`` mailer, never to the network. Start to answer: ~12 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.conftest import free_port, json_request, owns_port, stop_process

RT_SERVER = Path("/usr/share/request-tracker5/libexec/rt-server")
RT_SETUP_DB = Path("/usr/sbin/rt-setup-database-5")
RT_LIB = "/usr/share/request-tracker5/lib"
DEFAULT_PORTS = range(20320, 20330)
FINGERPRINT_FIELD = "diag fingerprint"

INSTALL_HINT = (
    "Request Tracker is not installed: run scripts/test.sh, or as root: DEBIAN_FRONTEND=noninteractive "
    "apt-get install -y --no-install-recommends request-tracker5 rt5-db-sqlite"
)

SETUP_PL = r"""
use strict; use warnings;
use lib '%(lib)s';
use RT; RT::LoadConfig(); RT::Init();
use JSON;
my ($ok, $msg);
my $root = RT::User->new(RT->SystemUser); $root->Load('root');
my @queues;
for my $name ('General', 'Second line', 'No field') {
  my $q = RT::Queue->new(RT->SystemUser); $q->Load($name);
  unless ($q->id) { ($ok, $msg) = $q->Create(Name => $name); die "queue $name: $msg" unless $ok; }
  push @queues, $q;
}
my $cf = RT::CustomField->new(RT->SystemUser);
($ok, $msg) = $cf->Create(Name => '%(field)s', Type => 'FreeformSingle',
                          LookupType => RT::Ticket->CustomFieldLookupType, Description => 'incident fingerprint');
die "cf: $msg" unless $ok;
for my $q (@queues[0, 1]) { ($ok, $msg) = $cf->AddToObject($q); die "apply: $msg" unless $ok; }
my $token = RT::AuthToken->new(RT->SystemUser);
($ok, $msg, my $string) = $token->Create(Owner => $root->id, Description => 'diag lab');
die "token: $msg" unless $ok;
print 'LAB=' . encode_json({token => $string, field_id => $cf->id}) . "\n";
"""


class RTError(RuntimeError):
    """RT could not be set up or did not answer; the message holds the tail of its log."""


def installed() -> bool:
    return RT_SERVER.exists() and RT_SETUP_DB.exists()


class RTLab:
    """One running RT with queues, the fingerprint custom field and a REST2 auth token for root."""

    def __init__(self, ports: Sequence[int] = DEFAULT_PORTS) -> None:
        self.ports = ports
        self.port = free_port(ports)
        self.dir = Path(tempfile.mkdtemp(prefix="dgk-rt-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.facts: dict[str, Any] = {}

    def _env(self) -> dict[str, str]:
        return {**os.environ, "RT_SITE_CONFIG": str(self.dir / "RT_SiteConfig.pm"),
                "RT_SITE_CONFIG_DIR": str(self.dir / "etc.d")}

    def _run(self, argv: list[str]) -> str:
        r = subprocess.run(argv, env=self._env(), capture_output=True, text=True, timeout=300, check=False)
        with (self.dir / "setup.log").open("a") as f:
            f.write(f"$ {' '.join(argv)}\n{r.stdout}{r.stderr}\n")
        if r.returncode != 0:
            raise RTError(f"{' '.join(argv)} failed ({r.returncode}): {(r.stdout + r.stderr)[-1500:]}")
        return r.stdout

    def start(self) -> RTLab:
        if not installed():
            raise RTError(INSTALL_HINT)
        try:
            for sub in ("etc.d", "mason", "var"):
                (self.dir / sub).mkdir()
            # Perl single-quoted strings: the temp path has no quote or backslash (mkdtemp's alphabet)
            (self.dir / "RT_SiteConfig.pm").write_text(
                f"""Set($rtname, 'diaglab');
Set($Organization, 'diaglab.invalid');
Set($DatabaseType, 'SQLite');
Set($DatabaseName, '{self.dir}/rtdb');
Set($WebDomain, '127.0.0.1');
Set($WebPort, {self.port});
Set($WebPath, '');
Set($WebBaseURL, 'http://127.0.0.1:{self.port}');
Set($MailCommand, 'testfile');
Set($MasonDataDir, '{self.dir}/mason');
Set($LogToSTDERR, 'error');
Set($LogToSyslog, undef);
Set($LogToFile, undef);
Set($CorrespondAddress, 'rt@diaglab.invalid');
Set($CommentAddress, 'rt-comment@diaglab.invalid');
1;
"""
            )
            self._run([str(RT_SETUP_DB), "--action", "init", "--skip-create"])
            script = self.dir / "setup.pl"
            script.write_text(SETUP_PL % {"lib": RT_LIB, "field": FINGERPRINT_FIELD})
            out = self._run(["perl", str(script)])
            line = next((x for x in out.splitlines() if x.startswith("LAB=")), None)
            if line is None:
                raise RTError(f"set-up script printed no facts: {out[-1500:]}")
            self.facts = dict(json.loads(line[4:]))
            token_file = self.dir / "token"
            token_file.write_text(self.token + "\n")
            token_file.chmod(0o600)
            self.start_server()
        except BaseException:
            self.close()
            raise
        return self

    def start_server(self) -> None:
        log = self.dir / "server.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen([str(RT_SERVER), "--port", str(self.port)], env=self._env(),
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RTError(f"rt-server exited with {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(OSError):
                if self.api("GET", "/queues/all", timeout=2)[0] == 200:
                    if not owns_port(self.proc.pid, self.port):
                        raise RTError(f"port {self.port}: an RT answers, but not the rt-server started here")
                    return
            time.sleep(0.25)
        raise RTError(f"RT not answering on port {self.port} after 120 s: {self.tail()}")

    def stop_server(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=15)
        self.proc = None

    def close(self) -> None:
        self.stop_server()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RTLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tail(self, n: int = 2000) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return str(self.facts["token"])

    @property
    def token_ref(self) -> str:
        return f"file:{self.dir / 'token'}"

    def backend_config(self, **overrides: Any) -> dict[str, Any]:
        config: dict[str, Any] = {"url": self.url, "token": self.token_ref, "queue": "General",
                                  "fingerprint_field": FINGERPRINT_FIELD, "timeout": 10}
        config.update(overrides)
        return config

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10, **query: str) -> tuple[int, Any]:
        """A plain REST2 client for the tests' own checks."""
        url = f"{self.url}/REST/2.0{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return json_request(method, url, body, {"Authorization": f"token {self.facts.get('token', '')}"}, timeout)

    def ticket(self, ticket_id: int | str) -> dict[str, Any]:
        status, body = self.api("GET", f"/ticket/{ticket_id}")
        if status != 200:
            raise RTError(f"GET ticket {ticket_id}: {status} {body}")
        return dict(body)

    def messages(self, ticket_id: int | str) -> list[dict[str, Any]]:
        """Create/Comment/Correspond transactions in order, each with its text and attachment file names."""
        status, body = self.api("GET", f"/ticket/{ticket_id}/history", fields="Type", per_page="100")
        if status != 200:
            raise RTError(f"GET history {ticket_id}: {status} {body}")
        out = []
        for txn in body["items"]:
            if txn["Type"] not in ("Create", "Comment", "Correspond"):
                continue
            _, atts = self.api("GET", f"/transaction/{txn['id']}/attachments",
                               fields="Filename,ContentType,Content", per_page="100")
            text = ""
            files = []
            for a in atts["items"]:
                if a.get("Filename"):
                    # a collection listing gives Content as text (the single /attachment/N gives base64)
                    files.append((a["Filename"], str(a.get("Content") or "").encode()))
                elif a.get("ContentType", "").startswith("text/plain") and a.get("Content"):
                    text = str(a["Content"])
            out.append({"type": txn["Type"], "text": text, "files": files})
        return out


PERSON_PL = r"""
use strict; use warnings;
use lib '%(lib)s';
use RT; RT::LoadConfig(); RT::Init();
use JSON;
my ($ok, $msg);
my $u = RT::User->new(RT->SystemUser); $u->Load('%(login)s');
unless ($u->id) {
  ($ok, $msg) = $u->Create(Name => '%(login)s', EmailAddress => '%(login)s@diaglab.invalid',
                           RealName => '%(real)s', Privileged => 1);
  die "user: $msg" unless $ok;
}
my $q = RT::Queue->new(RT->SystemUser); $q->Load('General');
for my $right (qw(CreateTicket ShowTicket ReplyToTicket SeeQueue SeeCustomField ModifyCustomField)) {
  $u->PrincipalObj->GrantRight(Right => $right, Object => $q);
}
$u->PrincipalObj->GrantRight(Right => 'ManageAuthTokens', Object => RT->System);
my $cf = RT::CustomField->new(RT->SystemUser); $cf->Load('%(field)s');
unless ($cf->id) {
  ($ok, $msg) = $cf->Create(Name => '%(field)s', Type => 'FreeformSingle',
                            LookupType => RT::Ticket->CustomFieldLookupType, Description => 'the computer it is about');
  die "cf: $msg" unless $ok;
  $cf->AddToObject($q);
}
my $token = RT::AuthToken->new(RT->SystemUser);
($ok, $msg, my $string) = $token->Create(Owner => $u->id, Description => 'person');
die "token: $msg" unless $ok;
print 'PERSON=' . encode_json({token => $string, id => $u->id}) . "\n";
"""


def add_person(lab: RTLab, login: str, real_name: str, host_field: str = "Host") -> str:
    """A privileged RT user who may file and answer tickets in General (as a person would), and a ticket custom
    field ``host_field`` on General; returns the person's REST2 token."""
    script = lab.dir / f"person-{login}.pl"
    script.write_text(PERSON_PL % {"lib": RT_LIB, "login": login, "real": real_name, "field": host_field})
    out = lab._run(["perl", str(script)])
    line = next((x for x in out.splitlines() if x.startswith("PERSON=")), None)
    if line is None:
        raise RTError(f"person set-up printed nothing: {out[-1500:]}")
    return str(json.loads(line[7:])["token"])


def person_api(lab: RTLab, token: str, method: str, path: str, body: Any = None, **query: str) -> tuple[int, Any]:
    """REST2 as the person (their own token)."""
    url = f"{lab.url}/REST/2.0{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    return json_request(method, url, body, {"Authorization": f"token {token}"}, 10)
