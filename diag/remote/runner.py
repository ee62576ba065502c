"""Run a playbook on many hosts at once: one connection per host, steps in order, every failure a host status.

``run_check`` fans hosts out over a thread pool bounded by the SSH pool's concurrency. Each host runs the
playbook's steps in order over one cached connection; a step may be skipped by ``when:``, held back because
it changes the host (``changes: true`` without ``allow_changes``), time out, or fail to parse, and the host
goes on where that makes sense. Nothing a host does can crash the run: connection errors map to the statuses
of the ``diag check --json`` contract (DESIGN.md), anything unexpected to ``error`` with a one-line reason.

Evidence is made here, once per step: the command, exit status, duration, stdout/stderr capped at
:data:`EVIDENCE_CAP` and passed through :func:`diag.secrets.mask`, and the parsed values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from diag.errors import ConfigError, ConnectError, DiagError, HostKeyError
from diag.inventory import Host
from diag.model import (
    Finding,
    HostResult,
    RunReport,
    StepRecord,
)
from diag.remote import host_status, where
from diag.remote.expr import ExprError
from diag.remote.parsers import ParseError
from diag.remote.playbook import HOST_FIELDS, Check, Playbook, Step
from diag.secrets import mask

log = logging.getLogger(__name__)

EVIDENCE_CAP = 32 * 1024  # characters of stdout (and of stderr) kept per step in evidence
#: Host statuses that mean "this host could not be (fully) checked": Nagios UNKNOWN, exit 3.
ERROR_CAP = 2000  # characters of an error message; a host-key message is never cut (its last line is the remedy)


class CommandResultLike(Protocol):
    command: str
    exit_status: int | None
    stdout: str
    stderr: str
    duration_s: float
    truncated: bool
    timed_out: bool


class ConnectionLike(Protocol):
    def run(self, command: str, timeout: float | None = None, sudo: bool = False) -> CommandResultLike: ...


class PoolLike(Protocol):
    """What the runner needs of :class:`diag.remote.ssh.SSHPool` (and of the unit tests' FakeConnection pool)."""

    max_concurrency: int

    def connect(self, host: Host) -> ConnectionLike: ...


#: progress(event, host name, result): "start" before a host begins, "done" (with its result) after.
Progress = Callable[[str, str, "HostResult | None"], None]


def _cap(text: str) -> tuple[str, bool, int]:
    """The text as evidence keeps it, whether it was cut, and how many bytes of it were kept."""
    text = mask(text)
    if len(text) <= EVIDENCE_CAP:
        return text, False, len(text.encode())
    kept = text[:EVIDENCE_CAP]
    return kept + f"\n[... {len(text) - EVIDENCE_CAP} more characters not kept]", True, len(kept.encode())


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, HostKeyError):  # its remedy (ssh-keygen -R ...) is at the end: never cut
        return mask(msg)
    return mask(msg if len(msg) <= ERROR_CAP else msg[:ERROR_CAP] + " [...]")


def host_view(host: Host) -> dict[str, Any]:
    return {f: getattr(host, f) for f in HOST_FIELDS}


class _HostRun:
    """One host's pass through the playbook."""

    def __init__(self, host: Host, pb: Playbook, variables: dict[str, Any], allow_changes: bool) -> None:
        self.host = host
        self.pb = pb
        self.variables = variables
        self.allow_changes = allow_changes
        self.hview = host_view(host)
        self.result = HostResult(host.name)
        self.records: dict[str, StepRecord] = {}
        self.scope: dict[str, Any] = {
            **variables,
            "vars": variables,
            "host": self.hview,
            "true": True,
            "false": False,
            "null": None,
        }

    def run(self, conn: ConnectionLike) -> None:
        for step in self.pb.steps:
            try:
                rec = self.step(conn, step)
            except Exception as e:  # the host's run ends here (run_host maps the error); the step says where
                self.result.steps.append(StepRecord(step.id, "error", reason=_one_line(e)))
                raise
            self.records[step.id] = rec
            self.result.steps.append(rec)
            self.scope[step.id] = rec.view()
            if rec.status in ("ok", "failed", "timeout"):
                self.checks(step, rec)

    def step(self, conn: ConnectionLike, step: Step) -> StepRecord:
        if step.when is not None:
            try:
                go = step.when.truth(self.scope)
            except ExprError as e:
                self.result.fail("error", f"step {step.id}: when: {e}")
                return StepRecord(step.id, "error", reason=f"when: {e}")
            if not go:
                return StepRecord(step.id, "skipped", reason=f"when: {step.when.text} is false")
        # A network device's connection validates values for its CLI instead of shell-quoting them.
        command = step.command.render(self.variables, self.hview, getattr(conn, "quote_value", None))
        if step.changes and not self.allow_changes:
            return StepRecord(step.id, "needs_approval", mask(command), reason="needs approval: changes the host")
        timeout = step.timeout if step.timeout is not None else self.host.command_timeout
        if step.delay:
            time.sleep(step.delay)  # a second sample of counters (errors rising) needs time between the two reads
        if step.get is not None:
            getter = getattr(conn, "get", None)
            if getter is None:
                msg = f"step {step.id}: get: {step.get} needs a network device driver; {self.host.device_type} has none"
                self.result.fail("error", msg)
                return StepRecord(step.id, "error", f"get {step.get}", reason=msg)
            try:
                res = getter(step.get, timeout)
            except ParseError as e:  # output the platform's template does not fit: this step, not the host's run
                self.result.fail("error", f"step {step.id}: {e}")
                return StepRecord(step.id, "error", f"get {step.get}", reason=f"parse: {e}")
            if getattr(res, "unsupported", False):
                # The device's software has none of the commands (an IOS release without the feature): the step's
                # checks do not apply to this host. Not a finding, not a failure; the device's answer is evidence.
                return StepRecord(
                    step.id,
                    "skipped",
                    mask(res.command),
                    reason=f"not applicable: {mask(res.stderr)}",
                    exit_status=res.exit_status,
                    duration_s=res.duration_s,
                    stdout=_cap(res.stdout)[0],
                    stderr=_cap(res.stderr)[0],
                )
        else:
            res = conn.run(command, timeout=timeout, sudo=step.sudo)
        stdout, cut_out, kept_out = _cap(res.stdout)
        stderr, cut_err, kept_err = _cap(res.stderr)
        sent = getattr(res, "stdout_bytes", 0) + getattr(res, "stderr_bytes", 0)
        sent = max(sent, len(res.stdout.encode()) + len(res.stderr.encode()))
        rec = StepRecord(
            step.id,
            "ok" if res.exit_status == 0 else "failed",
            mask(res.command if step.get is not None else command),
            exit_status=res.exit_status,
            duration_s=res.duration_s,
            stdout=stdout,
            stderr=stderr,
            truncated=res.truncated or cut_out or cut_err,
            bytes_sent=sent,
            bytes_kept=kept_out + kept_err,
        )
        if res.timed_out:
            rec.status = "timeout"
            rec.reason = f"command timed out after {timeout:g} s"
            self.result.fail("timeout", f"step {step.id}: {rec.reason}")
            return rec  # partial output is evidence, but not worth parsing
        if res.exit_status != 0:
            rec.reason = f"exit status {res.exit_status}"
        if step.get is not None:
            rec.parsed = getattr(res, "parsed", None)
        elif step.parser is not None and res.stdout.strip():
            try:
                rec.parsed = step.parser(res.stdout)
            except ParseError as e:
                rec.status = "error"
                rec.reason = f"parse ({step.parse_type}): {e}"
                self.result.fail("error", f"step {step.id}: {rec.reason}")
        return rec

    def checks(self, step: Step, rec: StepRecord) -> None:
        local = {
            **self.scope,
            "exit": rec.exit_status,
            "stdout": rec.stdout,
            "stderr": rec.stderr,
            "parsed": rec.parsed,
            "timed_out": rec.status == "timeout",
        }
        for check in step.checks:
            try:
                if check.each is None:
                    if check.cond.truth(local):
                        self.finding(check, local, rec)
                    continue
                items = check.each.evaluate(local)
                if items is None:
                    continue
                if not isinstance(items, list):
                    raise ExprError(f"each: {check.each.text!r} is a {type(items).__name__}, not a list")
                for item in items:
                    scope = {**local, "item": item}
                    if check.cond.truth(scope):
                        self.finding(check, scope, rec)
            except ExprError as e:
                msg = f"step {step.id}: check {check.id}: {e}"
                rec.reason = (rec.reason + "; " if rec.reason else "") + f"check {check.id}: {e}"
                self.result.fail("error", msg)

    def finding(self, check: Check, scope: Mapping[str, Any], rec: StepRecord) -> None:
        evidence = [rec.evidence()]
        for sid in check.evidence:
            other = self.records.get(sid)
            if other is not None and other is not rec and other.command:
                evidence.append(other.evidence())
        summary = check.summary.render(scope)
        subject = check.subject.render(scope) if check.subject is not None else ""
        self.result.findings.append(
            Finding(
                check=check.id,
                severity=check.severity,
                summary=mask(summary),
                subject=mask(subject),
                cause=check.cause,
                evidence=evidence,
                host=self.host.name,
                labels={"playbook": self.pb.name},
            )
        )


def run_host(
    host: Host, pb: Playbook, pool: PoolLike, overrides: Mapping[str, Any], allow_changes: bool = False
) -> HostResult:
    """Run ``pb`` on one host; never raises (every failure becomes the result's status and error)."""
    t0 = time.monotonic()
    try:
        variables = pb.resolve_vars(overrides, host.vars)
    except ConfigError as e:
        return HostResult(host.name, "error", str(e), time.monotonic() - t0)
    run = _HostRun(host, pb, variables, allow_changes)
    res = run.result
    try:
        conn = pool.connect(host)
        run.run(conn)
    except ConnectError as e:
        res.fail(host_status(e), _one_line(e))
    except DiagError as e:
        res.fail("error", _one_line(e))
    except Exception as e:  # a bug or an unexpected library error must not take the other hosts down
        log.debug("host %s: unexpected error", host.name, exc_info=True)
        res.fail("error", f"{type(e).__name__}: {_one_line(e)}")
    if res.status == "ok" and res.findings:
        res.status = "findings"
    w = where(host)
    if res.error is not None and not res.error.startswith(w.split(" ", 1)[0]):  # every error starts address:port
        res.error = f"{w}: {res.error}"
    res.duration_s = time.monotonic() - t0
    return res


def run_check(
    hosts: Sequence[Host],
    pb: Playbook,
    pool: PoolLike,
    variables: Mapping[str, Any] | None = None,
    allow_changes: bool = False,
    progress: Progress | None = None,
    concurrency: int | None = None,
) -> RunReport:
    """Run ``pb`` on ``hosts`` concurrently; results come back in the order of ``hosts``."""
    t0 = time.monotonic()
    overrides = dict(variables or {})
    targets: list[Host] = []
    skipped: list[dict[str, str]] = []
    for h in hosts:
        reason = pb.applies(h.device_type, h.tags)
        if reason is None:
            targets.append(h)
        else:
            skipped.append({"host": h.name, "reason": reason})

    def tell(event: str, name: str, r: HostResult | None) -> None:
        if progress is None:
            return
        try:
            progress(event, name, r)
        except Exception:  # a broken progress display must not cost the run its results
            log.debug("progress callback failed", exc_info=True)

    def one(h: Host) -> HostResult:
        tell("start", h.name, None)
        r = run_host(h, pb, pool, overrides, allow_changes)
        tell("done", h.name, r)
        return r

    results: list[HostResult] = []
    if targets:
        workers = max(1, min(len(targets), concurrency or pool.max_concurrency))
        ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="diag-check")
        try:
            results = list(ex.map(one, targets))
        except BaseException:
            # Ctrl-C: hosts not started yet are dropped; the caller closes the pool, which ends the running ones
            ex.shutdown(wait=False, cancel_futures=True)
            raise
        ex.shutdown()
    return RunReport(pb.name, results, skipped, time.monotonic() - t0)
