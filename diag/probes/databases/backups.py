"""Backups of a database: freshness of each job's newest dump, and restore verification on a schedule.

Restore verification restores the newest dump into a scratch database on a configured instance, runs the job's
queries there (row counts, checksums), drops the scratch database and keeps pass/fail with timings. It runs in a
thread of its own, so a restore that takes an hour never holds up the probe: each probe run reports the last
finished verification (kept in ``<state>/<probe>-restore.json`` so that a failed one survives an agent restart)
and starts the next when it is due. A dump that cannot be restored is critical even when it is fresh.

Client programs do the restore (``pg_restore``/``psql``, ``mysql``): they are what a person would use, and they
read every dump format. Secrets go to them through the environment (``PGPASSWORD``) or a 0600 option file, never
the command line. A plain SQL dump is streamed through this module, which refuses one that would leave the
scratch database (``\\connect``, ``USE``, ``CREATE DATABASE``): verification must never write to a real database.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from diag.errors import DiagError
from diag.model import Evidence, Result
from diag.probes.base import Paths
from diag.probes.databases.common import Families, size_text
from diag.probes.databases.options import BackupJob, DatabaseOptions, Instance, dsn_keys
from diag.secrets import mask

log = logging.getLogger(__name__)

Engine = Literal["postgres", "mysql"]
EVIDENCE_FILES = 5
#: statements that would make a plain dump leave the scratch database
_ESCAPES = {
    "postgres": re.compile(rb"^\s*\\(c|connect)\b|^\s*CREATE\s+DATABASE\b", re.IGNORECASE),
    "mysql": re.compile(rb"^\s*(USE\s|CREATE\s+(DATABASE|SCHEMA)\b)|^/\*!\d+\s+(USE|CREATE DATABASE)\b", re.IGNORECASE),
}


class RestoreFailed(Exception):
    """The restore or a verification query failed; the message says which step and why."""


@dataclass(slots=True)
class Verification:
    """The outcome of one restore verification, as kept in the state file."""

    file: str
    mtime: float
    size: int
    started: float
    ok: bool = False
    error: str = ""
    restore_s: float = 0.0
    verify_s: float = 0.0
    queries: list[dict[str, Any]] = field(default_factory=list)

    def text(self) -> str:
        lines = [
            f"dump {self.file} ({size_text(self.size)}, written {_utc(self.mtime)})",
            f"restore {'FAILED' if self.error.startswith('restore') else 'ok'} in {self.restore_s:.1f} s,"
            f" queries in {self.verify_s:.1f} s",
        ]
        lines += [f"  {q['sql']}  ->  {q.get('value')!s:.60}  {q.get('verdict', '')}" for q in self.queries]
        if self.error:
            lines.append(f"error: {self.error}")
        return mask("\n".join(lines))


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def newest_files(paths: Paths, pattern: str) -> list[tuple[float, int, str]]:
    """Regular files matching ``pattern`` (under the rootfs), newest first, as (mtime, size, path)."""
    files = []
    for p in glob.iglob(str(paths.root(pattern)), recursive=True):
        try:
            st = os.stat(p)
        except OSError:
            continue  # removed between glob and stat
        if stat.S_ISREG(st.st_mode) or (stat.S_ISDIR(st.st_mode) and p.endswith((".dir", "/"))):
            files.append((st.st_mtime, st.st_size, p))
    files.sort(reverse=True)
    return files


def scratch_name(job: str) -> str:
    return "diag_restore_" + re.sub(r"[^a-z0-9_]", "_", job.lower())


def _open_dump(path: str) -> IO[bytes]:
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile reads bytes like any IO[bytes]
    return open(path, "rb")


def _stream_plain(engine: Engine, src: IO[bytes], proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Copy a plain SQL dump to the client's stdin line by line, refusing statements that leave the scratch db."""
    assert proc.stdin is not None
    escape = _ESCAPES[engine]
    try:
        for n, line in enumerate(src, 1):
            if escape.match(line):
                raise RestoreFailed(
                    f"restore refused: line {n} would leave the scratch database "
                    f"({line[:60].decode(errors='replace').strip()}); "
                    "verify dumps of one database (pg_dump; mysqldump without --databases)"
                )
            if time.monotonic() > deadline:
                raise RestoreFailed("restore timed out")
            proc.stdin.write(line)
    except (BrokenPipeError, EOFError, OSError, gzip.BadGzipFile) as e:
        if isinstance(e, BrokenPipeError):
            return  # the client stopped reading (an error): its exit status and stderr say why
        raise RestoreFailed(f"restore failed: reading the dump: {e}") from None
    finally:
        with contextlib.suppress(BrokenPipeError):  # it already exited; its status tells
            proc.stdin.close()


class Restorer:
    """Restores one job's dump into a scratch database on an instance and runs the verification queries."""

    def __init__(self, engine: Engine, inst: Instance) -> None:
        self.engine = engine
        self.inst = inst

    # -- the client programs --------------------------------------------------------------------------
    def _pg_conninfo(self, dbname: str) -> str:
        keys = dsn_keys(self.inst.dsn)
        keys["dbname"] = dbname
        keys.setdefault("connect_timeout", str(max(1, round(self.inst.connect_timeout))))
        return " ".join(
            f"{k}='{v.replace(chr(92), chr(92) * 2).replace(chr(39), chr(92) + chr(39))}'"
            for k, v in keys.items()
            if k != "password"
        )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME", "TZ")}
        secret = self.inst.secret()
        if secret is not None and self.engine == "postgres":
            env["PGPASSWORD"] = secret
        return env

    def _mysql_argv(self, tmp: Path, database: str | None) -> list[str]:
        from diag.probes.databases.mysql import connect_params

        params = connect_params(self.inst)
        secret = self.inst.secret()
        opts = ["[client]"]
        for key, opt in (("user", "user"), ("host", "host"), ("port", "port"), ("unix_socket", "socket")):
            if key in params:
                opts.append(f"{opt}={params[key]}")
        if secret is not None:
            opts.append(f"password={secret}")
        cnf = tmp / "client.cnf"
        if not cnf.exists():  # one option file per verification, readable by this user only
            fd = os.open(cnf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("\n".join(opts) + "\n")
        argv = [client_program("mariadb", "mysql"), f"--defaults-extra-file={cnf}", "--batch", "--skip-column-names"]
        argv.append(f"--connect-timeout={max(1, round(self.inst.connect_timeout))}")
        return argv + ([database] if database else [])

    def _sql(self, tmp: Path, database: str | None, sql: str, timeout: float) -> str:
        """Run one statement with the client program; its first output line (first column), or RestoreFailed."""
        if self.engine == "postgres":
            argv = [
                client_program("psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self._pg_conninfo(database or dsn_keys(self.inst.dsn).get("dbname", "postgres")),
                "-c",
                sql,
            ]
        else:
            argv = [*self._mysql_argv(tmp, database), "-e", sql]
        try:
            p = subprocess.run(argv, capture_output=True, env=self._env(), timeout=max(1.0, timeout), check=False)
        except subprocess.TimeoutExpired:
            raise RestoreFailed(f"{sql[:60]}: no answer within {timeout:.0f} s") from None
        if p.returncode != 0:
            raise RestoreFailed(
                mask(
                    p.stderr.decode(errors="replace").strip().splitlines()[-1]
                    if p.stderr.strip()
                    else f"exit {p.returncode}"
                )
            )
        out = p.stdout.decode(errors="replace").splitlines()
        return out[0].split("\t")[0].split("|")[0] if out else ""

    def _restore(self, tmp: Path, scratch: str, path: str, deadline: float) -> None:
        env = self._env()
        if self.engine == "postgres":
            with open(path, "rb") as f:
                head = f.read(5)
            archive = head == b"PGDMP" or os.path.isdir(path)
            if archive:  # custom or directory format: pg_restore reads it, into the scratch database only
                argv = [
                    client_program("pg_restore"),
                    "--no-owner",
                    "--no-acl",
                    "--exit-on-error",
                    "-d",
                    self._pg_conninfo(scratch),
                    path,
                ]
                stdin: Any = subprocess.DEVNULL
            else:
                argv = [
                    client_program("psql"),
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    self._pg_conninfo(scratch),
                    "-f",
                    "-",
                ]
                stdin = subprocess.PIPE
        else:
            archive = False
            argv = self._mysql_argv(tmp, scratch)
            stdin = subprocess.PIPE
        errfile = tmp / "stderr"
        with errfile.open("wb") as err:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=err, env=env)
            try:
                if not archive:
                    with _open_dump(path) as src:
                        _stream_plain(self.engine, src, proc, deadline)
                proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise RestoreFailed("restore failed: timed out") from None
            except RestoreFailed:
                proc.kill()
                proc.wait()
                raise
        if proc.returncode != 0:
            lines = [ln for ln in errfile.read_text(errors="replace").splitlines() if ln.strip()]
            why = " | ".join(lines[-3:]) if lines else f"exit status {proc.returncode}"
            raise RestoreFailed(f"restore failed: {mask(why)[:400]}")

    def verify(self, job: BackupJob, file: tuple[float, int, str]) -> Verification:
        """Restore ``file`` into the scratch database, run the queries, drop it; never raises."""
        assert job.verify is not None
        mtime, size, path = file
        v = Verification(path, mtime, size, time.time())
        scratch = scratch_name(job.name)
        deadline = time.monotonic() + job.verify.timeout
        tmp = Path(tempfile.mkdtemp(prefix="diag-restore-"))
        q = '"' if self.engine == "postgres" else "`"
        try:
            try:
                self._sql(tmp, None, f"DROP DATABASE IF EXISTS {q}{scratch}{q}", 60)  # a leftover of a killed run
                self._sql(tmp, None, f"CREATE DATABASE {q}{scratch}{q}", 60)
            except RestoreFailed as e:
                v.error = f"scratch database {scratch}: {e}"
                return v
            t0 = time.monotonic()
            try:
                self._restore(tmp, scratch, path, deadline)
            except RestoreFailed as e:
                v.error = str(e)
                return v
            finally:
                v.restore_s = time.monotonic() - t0
            t1 = time.monotonic()
            failed = []
            for query in job.verify.queries:
                entry: dict[str, Any] = {"sql": query.sql}
                qt = time.monotonic()
                try:
                    value = self._sql(tmp, scratch, query.sql, max(1.0, deadline - time.monotonic()))
                except RestoreFailed as e:
                    entry.update(value=None, verdict=f"FAILED: {e}")
                    failed.append(f"{query.sql[:60]}: {e}")
                else:
                    entry["value"] = value
                    why = _judge(query.min, query.max, query.equals, value)
                    entry["verdict"] = f"FAILED: {why}" if why else "ok"
                    if why:
                        failed.append(f"{query.sql[:60]}: {why}")
                entry["seconds"] = round(time.monotonic() - qt, 3)
                v.queries.append(entry)
            v.verify_s = time.monotonic() - t1
            if failed:
                v.error = "verification failed: " + "; ".join(failed)
            else:
                v.ok = True
            return v
        except Exception as e:  # a secret that cannot be read, a client program missing: a failed verification
            v.error = v.error or f"restore verification could not run: {mask(str(e))}"
            return v
        finally:
            try:
                self._sql(tmp, None, f"DROP DATABASE IF EXISTS {q}{scratch}{q}", 120)
            except Exception as e:  # the next run drops it first; say so in the log
                log.warning("restore verification %s: cannot drop %s: %s", job.name, scratch, mask(str(e)))
            shutil.rmtree(tmp, ignore_errors=True)


class MissingClient(DiagError):
    """The database's client program is not installed on this host."""


def _version(path: str) -> tuple[int, ...]:
    parts = path.split("/")[-3].split(".")
    return tuple(int(p) for p in parts if p.isdigit())


def client_program(*names: str) -> str:
    """The path of a client program: PostgreSQL's newest versioned binary first (Debian's /usr/bin/psql is a Perl
    wrapper that costs a Perl start on every call), else the first of ``names`` on PATH."""
    for name in names:
        versioned = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version, reverse=True)
        if versioned:
            return versioned[0]
        found = shutil.which(name)
        if found:
            return found
    raise MissingClient(f"{names[0]} is not installed (the database probes use the database's client programs)")


def _judge(lo: float | None, hi: float | None, equals: str | None, value: str) -> str:
    if equals is not None and value != equals:
        return f"expected {equals!r}, got {value!r}"
    if lo is not None or hi is not None:
        try:
            number = float(value)
        except ValueError:
            return f"expected a number, got {value!r}"
        if lo is not None and number < lo:
            return f"{number:g} < minimum {lo:g}"
        if hi is not None and number > hi:
            return f"{number:g} > maximum {hi:g}"
    return ""


class BackupWatcher:
    """Freshness of every job, and the restore verifications with their background thread."""

    def __init__(self, engine: Engine, opts: DatabaseOptions, paths: Paths) -> None:
        self.engine = engine
        self.opts = opts
        self.paths = paths
        self.state_file = paths.state / f"{engine}-restore.json"
        self._lock = threading.Lock()
        self._running: dict[str, threading.Thread] = {}
        self._last: dict[str, Verification] = self._load()
        self.instances = {i.name: i for i in opts.instances}
        self.run_verification: Callable[[BackupJob, tuple[float, int, str]], Verification] = self._verify

    def _load(self) -> dict[str, Verification]:
        try:
            raw = json.loads(self.state_file.read_text(encoding="utf-8"))
            return {k: Verification(**v) for k, v in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as e:
            log.warning("%s: unreadable, starting afresh: %s", self.state_file, e)
            return {}

    def _save(self) -> None:
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({k: asdict(v) for k, v in self._last.items()}), encoding="utf-8")
            tmp.replace(self.state_file)
        except OSError as e:
            log.warning("%s: cannot save: %s", self.state_file, e.strerror)

    def _verify(self, job: BackupJob, file: tuple[float, int, str]) -> Verification:
        assert job.verify is not None
        return Restorer(self.engine, self.instances[job.verify.instance]).verify(job, file)

    def _background(self, job: BackupJob, file: tuple[float, int, str]) -> None:
        try:
            v = self.run_verification(job, file)
        except Exception as e:  # never lose the outcome: a crash of the verifier is a failed verification
            v = Verification(file[2], file[0], file[1], time.time(), error=f"restore verification crashed: {e}")
        with self._lock:
            self._last[job.name] = v
            self._running.pop(job.name, None)
            self._save()
        log.info("restore verification %s: %s", job.name, "ok" if v.ok else mask(v.error))

    def wait(self, timeout: float) -> None:
        """Wait for running verifications (tests, ``diag probe``)."""
        with self._lock:
            threads = list(self._running.values())
        for t in threads:
            t.join(timeout)

    def collect(self, fam: Families, r: Result) -> None:
        e = self.engine
        now = time.time()
        for job in self.opts.backups:
            lab = {"job": job.name}
            files = newest_files(self.paths, job.glob)
            fam.add(f"diag_{e}_backup_files", "Files matching the backup job's glob.", len(files), lab)
            if not files:
                r.find(
                    "db_backup_missing",
                    "critical",
                    f"{e} backup {job.name}: no file matches {job.glob}",
                    subject=job.name,
                    cause="backup_failed",
                    evidence=[Evidence("file", f"glob {job.glob}", "no file matches", {"glob": job.glob})],
                )
            else:
                mtime, size, newest = files[0]
                age = max(0.0, now - mtime)
                fam.add(f"diag_{e}_backup_newest_age_seconds", "Age of the newest dump of the backup job.", age, lab)
                fam.add(f"diag_{e}_backup_newest_size_bytes", "Size of the newest dump of the backup job.", size, lab)
                listing = "\n".join(
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(t))} UTC {s:>14d}  {p}"
                    for t, s, p in files[:EVIDENCE_FILES]
                )
                ev = [
                    Evidence(
                        "file",
                        f"newest {min(len(files), EVIDENCE_FILES)} of {len(files)} dump(s) matching {job.glob}",
                        listing,
                        {"newest": newest, "age_s": round(age, 1), "size_bytes": size},
                    )
                ]
                if age > job.max_age_hours * 3600:
                    r.find(
                        "db_backup_stale",
                        "critical",
                        f"{e} backup {job.name}: newest dump is {age / 3600:.1f} h old (limit {job.max_age_hours:g} h)",
                        subject=job.name,
                        cause="backup_failed",
                        evidence=ev,
                    )
                if size < job.min_bytes:
                    r.find(
                        "db_backup_too_small",
                        "critical",
                        f"{e} backup {job.name}: newest dump has {size_text(size)} "
                        f"(at least {size_text(job.min_bytes)} expected)",
                        subject=job.name,
                        cause="backup_failed",
                        evidence=ev,
                    )
                if job.verify is not None:
                    self._maybe_start(job, files[0], now)
            if job.verify is not None:
                self._report(job, fam, r, lab)

    def _maybe_start(self, job: BackupJob, newest: tuple[float, int, str], now: float) -> None:
        assert job.verify is not None
        with self._lock:
            if job.name in self._running:
                return
            last = self._last.get(job.name)
            if last is not None:
                same = (last.file, last.mtime, last.size) == (newest[2], newest[0], newest[1])
                if same or now - last.started < job.verify.interval_hours * 3600:
                    return  # this dump was verified, or the last verification is too recent to start another
            t = threading.Thread(target=self._background, args=(job, newest), name=f"restore-{job.name}", daemon=True)
            self._running[job.name] = t
        t.start()

    def _report(self, job: BackupJob, fam: Families, r: Result, lab: dict[str, str]) -> None:
        e = self.engine
        with self._lock:
            last = self._last.get(job.name)
            running = job.name in self._running
        fam.add(
            f"diag_{e}_backup_restore_running",
            "1 while a restore verification of the job runs.",
            1 if running else 0,
            lab,
        )
        if last is None:
            return
        fam.add(
            f"diag_{e}_backup_restore_success", "1 when the last restore verification passed.", 1 if last.ok else 0, lab
        )
        fam.add(
            f"diag_{e}_backup_restore_timestamp_seconds",
            "When the last restore verification started, Unix time.",
            last.started,
            lab,
        )
        fam.add(f"diag_{e}_backup_restore_duration_seconds", "Time the last restore took.", last.restore_s, lab)
        fam.add(
            f"diag_{e}_backup_verify_duration_seconds", "Time the last verification queries took.", last.verify_s, lab
        )
        if not last.ok:
            r.find(
                "db_backup_restore_failed",
                "critical",
                f"{e} backup {job.name}: the dump cannot be restored and verified: {last.error[:200]}",
                subject=job.name,
                cause="backup_unrestorable",
                evidence=[
                    Evidence(
                        "text",
                        f"restore verification of {Path(last.file).name}",
                        last.text(),
                        {"ok": last.ok, "restore_s": round(last.restore_s, 3), "verify_s": round(last.verify_s, 3)},
                    )
                ],
            )
