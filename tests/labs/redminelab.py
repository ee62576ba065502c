"""A real Redmine (Debian's ``redmine`` + ``redmine-sqlite``, 5.0) on 127.0.0.1 for tests and benches.

Each lab is its own Redmine *instance* (Debian's multi-tenancy: ``/var/lib/redmine/NAME`` holds config/, files/,
log/, tmp/; ``X_DEBIAN_SITEID=NAME`` selects it), so it never touches the package's ``default`` instance and
several labs can run at once on different ports. Its sqlite database is a fresh copy of a template that is built
once per Redmine version and set-up script (migrate, default data, then ``rails runner``: REST on, the fingerprint
custom field, two projects, an admin API key) and cached in ``/var/tmp/diag-tests``; building it takes ~30 s, a
start from it ~10 s.

Facts measured on Debian 12 (see docs/tickets.md): the package's setup fails with bookworm's default bundler
2.3.27, so ``apt-get install`` needs ``BUNDLER_VERSION=2.3.15`` (scripts/test.sh sets it); ``rails server``
needs ``gem 'webrick'`` in ``/usr/share/redmine/Gemfile.local`` (written here, idempotently); the 5.0 REST API
cannot create custom fields, hence ``rails runner``.

Use it from pytest through the session fixture ``redmine_lab`` (tests/integration/conftest.py), or directly::

    lab = RedmineLab(ports=range(20300, 20310)).start()
    backend = BACKENDS.get("redmine")(lab.backend_config())
    ...
    lab.close()
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from tests.conftest import json_request, port_is_free, stop_process

REDMINE_ROOT = Path("/usr/share/redmine")
INSTANCES = Path("/var/lib/redmine")  # Rails.root/instances points here
CACHE = Path("/var/tmp/diag-tests")
GEMFILE_LOCAL = REDMINE_ROOT / "Gemfile.local"

#: Ports of this lab unless the caller passes its own range (each helper/test area has its own).
DEFAULT_PORTS = range(20300, 20310)

#: Names the backend is configured with; tests refer to them.
PROJECT = "diag"
FINGERPRINT_FIELD = "diag fingerprint"
UNFILTERED_FIELD = "diag fingerprint, no filter"  # names are at most 30 characters

INSTALL_HINT = (
    "Redmine is not installed: run scripts/test.sh, or as root: DEBIAN_FRONTEND=noninteractive "
    "BUNDLER_VERSION=2.3.15 apt-get install -y --no-install-recommends redmine redmine-sqlite ruby-webrick"
)

# One rails runner does all the set-up the 5.0 REST API cannot do. Printed JSON is read back by the lab.
SETUP_RB = """
require 'json'
Setting.rest_api_enabled = '1'
Setting.text_formatting = 'common_mark'
# No notification mails: with delivery off Redmine still renders them in-process, ~190 ms per issue here
Setting.notified_events = []
trackers = Tracker.pluck(:id)
def field(name, filter, trackers)
  cf = IssueCustomField.find_or_initialize_by(name: name)
  cf.field_format = 'string'
  cf.is_filter = filter
  cf.is_for_all = true
  cf.searchable = true
  cf.visible = true
  cf.tracker_ids = trackers
  cf.save!
  cf
end
fp = field(%(FINGERPRINT_FIELD), true, trackers)
nofilter = field(%(UNFILTERED_FIELD), false, trackers)
p = Project.find_or_initialize_by(identifier: %(PROJECT))
p.name = 'diag lab'
p.is_public = false
p.tracker_ids = trackers
p.enabled_module_names = ['issue_tracking']
p.save!
other = Project.find_or_initialize_by(identifier: 'other')
other.name = 'another team'
other.is_public = false
other.tracker_ids = trackers
other.enabled_module_names = ['issue_tracking']
other.save!
admin = User.find_by_login('admin')
admin.must_change_passwd = false
admin.mail_notification = 'none'
admin.save!
outsider = User.find_by_login('outsider') ||
  User.new(firstname: 'Out', lastname: 'Sider', mail: 'outsider@example.invalid')
outsider.login = 'outsider'
outsider.password = outsider.password_confirmation = 'outsider-pass-1234'
outsider.status = User::STATUS_ACTIVE
outsider.save!
puts 'LAB=' + JSON.generate({
  api_key: admin.api_key, outsider_key: outsider.api_key, project_id: p.id,
  fingerprint_field_id: fp.id, unfiltered_field_id: nofilter.id,
  statuses: IssueStatus.all.map { |s| [s.name, s.is_closed] },
})
""".replace("%(FINGERPRINT_FIELD)", repr(FINGERPRINT_FIELD)).replace(
    "%(UNFILTERED_FIELD)", repr(UNFILTERED_FIELD)
).replace("%(PROJECT)", repr(PROJECT))


class RedmineError(RuntimeError):
    """Redmine could not be set up or did not answer; the message holds the tail of its log."""


def installed() -> bool:
    return (REDMINE_ROOT / "bin" / "rails").exists() and (REDMINE_ROOT / "config" / "database.yml").exists()


def redmine_version() -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "redmine"], capture_output=True, text=True, check=False
    ).stdout
    return out.strip() or "unknown"


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise template builds and Gemfile.local edits between concurrent test sessions."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / name).open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_webrick() -> None:
    """Rails 6.1 on Ruby 3 has no bundled web server: add webrick to the Gemfile.local (idempotent)."""
    with _locked("redmine-gemfile.lock"):
        text = GEMFILE_LOCAL.read_text() if GEMFILE_LOCAL.exists() else ""
        if "gem 'webrick'" not in text:
            GEMFILE_LOCAL.write_text(text + ("" if not text or text.endswith("\n") else "\n") + "gem 'webrick'\n")


class _Instance:
    """A Redmine instance directory linked into /var/lib/redmine under a unique name."""

    def __init__(self, prefix: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.name = "dgk-" + self.dir.name
        for sub in ("config", "files", "log", "tmp/cache", "public/plugin_assets"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "config" / "database.yml").write_text(
            f"production:\n  adapter: sqlite3\n  database: {self.db}\n  encoding: utf8\n"
        )
        (self.dir / "config" / "secret_key.txt").write_text(os.urandom(32).hex())
        _remove_stale_links()
        self.link = INSTANCES / self.name
        self.link.symlink_to(self.dir)

    @property
    def db(self) -> Path:
        return self.dir / "db.sqlite3"

    def env(self) -> dict[str, str]:
        return {**os.environ, "X_DEBIAN_SITEID": self.name, "RAILS_ENV": "production", "REDMINE_LANG": "en"}

    def run(self, *argv: str, timeout: float = 300) -> str:
        log = self.dir / "setup.log"
        r = subprocess.run(
            list(argv), cwd=REDMINE_ROOT, env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        with log.open("a") as f:
            f.write(f"$ {' '.join(argv)}\n{r.stdout}{r.stderr}\n")
        if r.returncode != 0:
            raise RedmineError(f"{' '.join(argv)} failed ({r.returncode}): {(r.stdout + r.stderr)[-1500:]}")
        return r.stdout

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        shutil.rmtree(self.dir, ignore_errors=True)


def _remove_stale_links() -> None:
    """Links of labs whose session was killed point nowhere; drop them so /var/lib/redmine stays clean."""
    for link in INSTANCES.glob("dgk-*"):
        if link.is_symlink() and not link.exists():
            with contextlib.suppress(FileNotFoundError):
                link.unlink()


def _template() -> tuple[Path, dict[str, Any]]:
    """The cached, set-up sqlite database and its facts (keys, ids); built once per Redmine version + script."""
    key = hashlib.sha256((redmine_version() + SETUP_RB).encode()).hexdigest()[:16]
    db, facts = CACHE / f"redmine-{key}.sqlite3", CACHE / f"redmine-{key}.json"
    with _locked("redmine-template.lock"):
        if not (db.exists() and facts.exists()):
            inst = _Instance("dgk-redmine-template-")
            try:
                inst.run("bin/rake", "db:migrate")
                inst.run("bin/rake", "redmine:load_default_data")
                script = inst.dir / "setup.rb"
                script.write_text(SETUP_RB)
                out = inst.run("bin/rails", "runner", str(script))
                line = next((x for x in out.splitlines() if x.startswith("LAB=")), None)
                if line is None:
                    raise RedmineError(f"set-up script printed no facts: {out[-1500:]}")
                tmp_db = db.with_suffix(".tmp")
                shutil.copyfile(inst.db, tmp_db)
                tmp_db.rename(db)
                facts.write_text(line[4:])
            finally:
                inst.remove()
    return db, dict(json.loads(facts.read_text()))


class RedmineLab:
    """One running Redmine with a project, a filterable fingerprint field and an admin API key."""

    def __init__(self, ports: Sequence[int] = DEFAULT_PORTS) -> None:
        self.ports = ports
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.inst: _Instance | None = None
        self.facts: dict[str, Any] = {}
        self._port_lock: IO[str] | None = None

    # ---- life cycle ----
    def start(self) -> RedmineLab:
        if not installed():
            raise RedmineError(INSTALL_HINT)
        ensure_webrick()
        template, self.facts = _template()
        self.inst = _Instance("dgk-redmine-")
        shutil.copyfile(template, self.inst.db)
        # The instance's name as the application title: start_server checks it, so a lab never takes another
        # lab's Redmine (same template, same API key) on a port it thought free for its own.
        with contextlib.closing(sqlite3.connect(self.inst.db)) as db, db:
            db.execute("INSERT INTO settings (name, value, updated_on) VALUES ('app_title', ?, datetime('now'))",
                       (self.inst.name,))
        key_file = self.inst.dir / "api_key"
        key_file.write_text(self.api_key + "\n")
        key_file.chmod(0o600)
        try:
            self.start_server()
        except BaseException:
            self.close()
            raise
        return self

    def start_server(self) -> None:
        """Start (or restart after :meth:`stop_server`) ``rails server`` and wait until the REST API answers."""
        assert self.inst is not None
        if not self.port:
            self.port = self._reserve_port()
        log = self.inst.dir / "server.log"
        pidfile = self.inst.dir / "server.pid"
        pidfile.unlink(missing_ok=True)
        argv = ["bin/rails", "server", "-e", "production", "-b", "127.0.0.1", "-p", str(self.port), "-P", str(pidfile)]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, cwd=REDMINE_ROOT, env=self.inst.env(), stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RedmineError(f"rails server exited with {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(OSError):
                if self.api("GET", "/issue_statuses.json", timeout=2)[0] == 200:
                    if f"<title>{self.inst.name}</title>" not in self._login_page():
                        raise RedmineError(f"another Redmine answers on port {self.port}: {self.tail()}")
                    return
            time.sleep(0.25)
        raise RedmineError(f"Redmine not answering on port {self.port} after 120 s: {self.tail()}")

    def _login_page(self) -> str:
        with urllib.request.urlopen(self.url + "/login", timeout=5) as r:
            return bytes(r.read()).decode(errors="replace")

    def _reserve_port(self) -> int:
        """A port of the range that no other lab holds (a lock file kept open) and nothing listens on."""
        CACHE.mkdir(parents=True, exist_ok=True)
        for port in self.ports:
            f = (CACHE / f"port-{port}.lock").open("w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            if port_is_free(port):
                self._port_lock = f
                return port
            f.close()
        raise RedmineError(f"no free port in {self.ports}")

    def stop_server(self) -> None:
        """Stop the server by its PID (the lab's data stays), e.g. to test 'ticket system down'."""
        if self.proc is not None:
            stop_process(self.proc, timeout=15)
        self.proc = None

    def close(self) -> None:
        self.stop_server()
        if self.inst is not None:
            self.inst.remove()
            self.inst = None
        if self._port_lock is not None:
            self._port_lock.close()  # releases the flock
            self._port_lock = None

    def __enter__(self) -> RedmineLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tail(self, n: int = 2000) -> str:
        if self.inst is None:
            return ""
        text = ""
        for name in ("server.log", "log/production.log"):
            path = self.inst.dir / name
            if path.exists():
                text += f"[{name}] " + path.read_text(errors="replace")[-n:]
        return text

    # ---- facts ----
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_key(self) -> str:
        return str(self.facts["api_key"])

    @property
    def api_key_ref(self) -> str:
        """The admin key as a diag secret reference (a 0600 file in the lab's directory)."""
        assert self.inst is not None
        return f"file:{self.inst.dir / 'api_key'}"

    @property
    def outsider_key(self) -> str:
        """Key of an active user who is not a member of the (private) project: 403 on it."""
        return str(self.facts["outsider_key"])

    @property
    def fingerprint_field_id(self) -> int:
        return int(self.facts["fingerprint_field_id"])

    @property
    def unfiltered_field_id(self) -> int:
        return int(self.facts["unfiltered_field_id"])

    def backend_config(self, **overrides: Any) -> dict[str, Any]:
        """A config section for the ``redmine`` ticket backend pointing at this lab."""
        config: dict[str, Any] = {
            "url": self.url,
            "api_key": self.api_key_ref,
            "project": PROJECT,
            "fingerprint_field": self.fingerprint_field_id,
            "tracker": "Bug",
            "closed_status": "Closed",
            "reopen_status": "New",
            "timeout": 10,
        }
        config.update(overrides)
        return config

    # ---- a plain client for tests to check what the backend did, independent of it ----
    def api(
        self, method: str, path: str, body: Any = None, key: str | None = None, timeout: float = 10
    ) -> tuple[int, Any]:
        return json_request(method, self.url + path, body, {"X-Redmine-API-Key": key or self.api_key}, timeout)

    def issue(self, issue_id: int | str, include: str = "journals,attachments") -> dict[str, Any]:
        status, body = self.api("GET", f"/issues/{issue_id}.json?include={include}")
        if status != 200:
            raise RedmineError(f"GET issue {issue_id}: {status} {body}")
        return dict(body["issue"])

    def issues(self) -> list[dict[str, Any]]:
        """Every issue of the lab project, open or closed."""
        status, body = self.api("GET", f"/issues.json?project_id={PROJECT}&status_id=*&limit=100&sort=id")
        if status != 200:
            raise RedmineError(f"GET issues: {status} {body}")
        return list(body["issues"])


def add_project(lab: RedmineLab, identifier: str) -> str:
    """A fresh private project (a test of its own sees only its own issues); returns its identifier."""
    _, trackers = lab.api("GET", "/trackers.json")
    status, body = lab.api("POST", "/projects.json", {"project": {
        "name": identifier, "identifier": identifier, "is_public": False,
        "tracker_ids": [t["id"] for t in trackers["trackers"]], "enabled_module_names": ["issue_tracking"]}})
    if status != 201:
        raise RedmineError(f"create project {identifier}: {status} {body}")
    return identifier


def add_person(lab: RedmineLab, login: str, firstname: str, lastname: str,
               project: str = PROJECT) -> tuple[int, str]:
    """A non-admin user who is a Reporter in ``project``, as a person filing tickets: (user id, API key)."""
    status, body = lab.api("GET", f"/users.json?name={login}")
    users = [u for u in (body or {}).get("users", []) if u.get("login") == login]
    if users:
        uid = int(users[0]["id"])
    else:
        status, body = lab.api("POST", "/users.json", {"user": {
            "login": login, "firstname": firstname, "lastname": lastname, "mail": f"{login}@example.invalid",
            "password": f"{login}-pass-12345", "mail_notification": "none"}})
        if status != 201:
            raise RedmineError(f"create user {login}: {status} {body}")
        uid = int(body["user"]["id"])
    _, roles = lab.api("GET", "/roles.json")
    reporter = next(r["id"] for r in roles["roles"] if r["name"] in ("Reporter", "Репортёр"))
    status, body = lab.api("POST", f"/projects/{project}/memberships.json",
                           {"membership": {"user_id": uid, "role_ids": [reporter]}})
    if status not in (201, 422):  # 422: already a member
        raise RedmineError(f"membership of {login}: {status} {body}")
    status, body = lab.api("GET", f"/users/{uid}.json")
    return uid, str(body["user"]["api_key"])


HOST_FIELD_RB = """
cf = IssueCustomField.find_or_initialize_by(name: 'host')
cf.field_format = 'string'
cf.is_for_all = true
cf.visible = true
cf.editable = true
cf.is_filter = true
cf.tracker_ids = Tracker.pluck(:id)
cf.save!
puts 'FIELD=' + cf.id.to_s
"""


def add_host_field(lab: RedmineLab) -> int:
    """An issue custom field ``host`` (for all projects, visible, editable by people) on the running lab; its id.

    Done with ``rails runner`` against this lab's own database (the 5.0 REST API cannot create fields), so the
    shared template stays as it is.
    """
    status, body = lab.api("GET", "/custom_fields.json")
    for cf in (body or {}).get("custom_fields", []) if status == 200 else []:
        if cf.get("name") == "host" and cf.get("customized_type") == "issue":
            return int(cf["id"])
    assert lab.inst is not None
    script = lab.inst.dir / "host_field.rb"
    script.write_text(HOST_FIELD_RB)
    out = lab.inst.run("bin/rails", "runner", str(script))
    line = next((x for x in out.splitlines() if x.startswith("FIELD=")), None)
    if line is None:
        raise RedmineError(f"host field set-up printed nothing: {out[-1500:]}")
    return int(line[6:])
