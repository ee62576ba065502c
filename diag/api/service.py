"""What the API and the console share: the stores (tokens, approvals, journal), the check jobs, and the operations.

Each operation takes the calling :class:`~diag.api.tokens.Principal`, checks it with :mod:`diag.api.policy`,
journals what happened, and returns plain data; the JSON resources (:mod:`diag.api.app`) and the console pages
(:mod:`diag.api.console`) are thin layers over it, so a rule holds for both.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diag.api import approvals as appr
from diag.api import policy
from diag.api.approvals import Approval, ApprovalStore
from diag.api.jobs import Job, JobManager
from diag.api.schemas import VISIBLE_TEXT
from diag.api.tokens import Principal, TokenStore
from diag.config.api import ApiSettings
from diag.errors import ConfigError
from diag.journal import Journal, open_journal

if TYPE_CHECKING:
    from diag.inventory import Host, Inventory
    from diag.remote.playbook import Playbook

log = logging.getLogger(__name__)


class NotFound(Exception):
    """A 404 with this reason."""


class Invalid(Exception):
    """A 400/422-style refusal of a well-formed request (unknown host, playbook or variable)."""


class Busy(Exception):
    """A 503: a bounded resource (event streams) is in use; retry later."""


class Conflict(Exception):
    """A 409: the request was already decided."""


class Service:
    """One per agent; built on the first API or console request."""

    def __init__(self, data: Path, inv: Inventory | None, settings: ApiSettings | None = None) -> None:
        self.data = Path(data)
        self.inv = inv
        self.settings = settings or ApiSettings()
        self.tokens = TokenStore(self.data)
        self.approvals = ApprovalStore(self.data)
        self.journal: Journal = open_journal(self.data)
        self.jobs = JobManager(
            self.data,
            self.settings.known_hosts,
            inv.hosts if inv else {},
            concurrency=self.settings.check_concurrency,
            workers=self.settings.job_workers,
            keep=self.settings.jobs_kept,
            sink=None,
        )
        self.incidents: Any = None  # the incident engine's adapter (diag.api.incidents) when diag.incidents is there
        self.sessions: Any = None  # the console's sessions (diag.api.sessions.SessionStore)
        self.live: Any = None  # the console's live feed (diag.api.live.LiveFeed)
        #: the agent's own host: its name, its probe runner (states) and the short history of key figures
        self.local_host: str | None = None
        self.runner: Any = None  # diag.probes.runner.ProbeRunner
        self.history: Any = None  # diag.probes.history.History
        self.poller: Any = None  # diag.network.snmp.poller.SnmpPoller, when the agent polls devices
        self._lock = threading.Lock()
        # An event stream holds one of the HTTP server's few workers while it is open: cap them, so that
        # clients following checks cannot take every worker from /metrics and the webhook.
        self._streams = threading.BoundedSemaphore(self.settings.max_streams)
        self._owned: dict[str, int] = {}  # streams held per console session

    # ---- helpers
    def stream(self, job: Job, after: int, running: bool = False) -> Iterator[bytes]:
        """A job's event stream, within the cap on open streams (Busy when it is reached)."""
        return self.held(job.follow(after, running=running))

    def held(self, events: Iterator[bytes], owner: str = "") -> Iterator[bytes]:
        """Any event stream (a job's, the console's live one) within the cap on open streams (Busy beyond).

        ``owner`` (a console session) may hold at most ``max_streams_per_session`` of them, so that one browser's
        many tabs cannot take every slot from the other screens (its tabs beyond poll instead)."""
        if owner:
            with self._lock:
                if self._owned.get(owner, 0) >= self.settings.max_streams_per_session:
                    raise Busy(f"this session holds {self.settings.max_streams_per_session} event streams already")
                self._owned[owner] = self._owned.get(owner, 0) + 1
        if not self._streams.acquire(blocking=False):
            self._disown(owner)
            raise Busy(f"{self.settings.max_streams} event streams are open; try again shortly")

        def gen() -> Iterator[bytes]:
            try:
                yield from events
            finally:
                self._streams.release()
                self._disown(owner)

        return gen()

    def _disown(self, owner: str) -> None:
        if owner:
            with self._lock:
                left = self._owned.pop(owner, 1) - 1
                if left > 0:
                    self._owned[owner] = left

    @property
    def hosts(self) -> Mapping[str, Host]:
        return self.inv.hosts if self.inv else {}

    def select(self, targets: list[str]) -> list[Host]:
        if self.inv is None:
            raise Invalid("the agent has no inventory; start it with --inventory FILE")
        try:
            return self.inv.select(targets)
        except ConfigError as e:
            raise Invalid(str(e).rsplit(": ", 1)[-1]) from None

    def playbook(self, name: str) -> Playbook:
        """A playbook by name only: a client never names a file on the agent's disk."""
        from diag.remote import playbook as pbmod

        known = pbmod.available()
        if name not in known:
            raise NotFound(f"no playbook named {name!r}")
        return pbmod.load(known[name])

    def deny(self, p: Principal | None, what: str, reason: str, target: str = "") -> None:
        """Journal a refused action (403) before the refusal is sent."""
        actor = p.actor if p else "anonymous"
        self.journal.append(actor, "access.denied", target, "forbidden", {"what": what, "reason": reason})

    # ---- checks
    def start_check(
        self, p: Principal, playbook: str, targets: list[str], variables: Mapping[str, Any], read_only: bool
    ) -> tuple[Job | None, Approval | None]:
        """Start a job, or (for a playbook that changes hosts, unless ``read_only``) file an approval request."""
        try:
            policy.require(p, "engineer", "starting a check")  # before anything about playbooks or hosts is told
            pb = self.playbook(playbook)
            hosts = self.select(targets)
            if not hosts:
                raise Invalid("the targets name no hosts")
            policy.check_run(p, pb.name, hosts)
        except policy.Forbidden as e:
            self.deny(p, "check.start", str(e), ",".join(targets))
            raise
        overrides = self._vars(pb, hosts, variables)
        changing = [s.id for s in pb.steps if s.changes]
        if changing and not read_only:
            a = self.approvals.create(
                p.actor,
                pb.name,
                list(targets),
                overrides,
                changing,
                "playbook changes hosts",
                requester_token=p.token_id,
                hosts=[{"name": h.name, "groups": list(h.groups)} for h in hosts],
                commands=rendered_commands(pb, hosts, overrides),
                ttl=self.settings.approval_ttl_s,
            )
            self.journal.append(
                p.actor,
                "approval.requested",
                ",".join(h.name for h in hosts),
                "pending",
                {"approval": a.id, "playbook": pb.name, "steps": changing},
            )
            return None, a
        return self.jobs.start(p.actor, pb, list(targets), hosts, overrides, allow_changes=False), None

    def _vars(self, pb: Playbook, hosts: list[Host], variables: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(variables) - set(pb.vars))
        if unknown:
            raise Invalid(f"playbook {pb.name} has no variable {unknown[0]!r} (has: {', '.join(pb.vars) or 'none'})")
        overrides = {k: str(v) if not isinstance(v, str) else v for k, v in variables.items()}
        problems = []
        for h in hosts:  # as `diag check` does: refuse when no host could run with these variables
            try:
                pb.resolve_vars(overrides, h.vars)
            except ConfigError as e:
                problems.append(str(e))
        if problems and len(problems) == len(hosts):
            raise Invalid(problems[0])
        return overrides

    def expire_due(self) -> None:
        """Close pending requests whose time is up (journaled as ``approval.expired``)."""
        for a in self.approvals.due():
            appr.cancel(self.approvals, self.journal, a, "diag", "no decision before it expired", "expired")

    def list_approvals(self, state: str | None = None) -> list[Approval]:
        self.expire_due()
        return self.approvals.list(state)

    def get_approval(self, approval_id: str) -> Approval:
        self.expire_due()
        a = self.approvals.get(approval_id)
        if a is None:
            raise NotFound(f"no approval request {approval_id!r}")
        return a

    def decide(self, p: Principal, approval_id: str, approve: bool, comment: str) -> tuple[Approval, Job | None]:
        """Approve or reject, with a comment; the requester is re-checked now, not trusted from when they asked."""
        a = self.get_approval(approval_id)
        try:
            pb = self.playbook(a.playbook)
            hosts = self.select(a.targets)
        except (NotFound, Invalid) as e:
            self._close_gone(p, a, str(e))
            raise
        try:
            policy.approve(p, a.requester, pb.name, hosts)
        except policy.Forbidden as e:
            self.deny(p, "approval.decide", str(e), a.id)
            raise
        if not re.search(VISIBLE_TEXT, comment):  # the API's schema and the console's form: one rule
            raise Invalid("a comment is required to approve or reject a change")
        if a.state == "pending":
            # The requester's token, role and scope as they are now: a revoked or narrowed token's request is
            # cancelled (journaled) instead of running as that token.
            requester = appr.requester_of(self.tokens, a)
            why = appr.refusal(requester, a)
            if why is None and requester is not None:
                try:
                    policy.check_run(requester, pb.name, hosts)
                except policy.Forbidden as e:
                    why = f"the requester may no longer run it: {e}"
            if why is None:
                why = changed_since(a, pb, hosts)
            if why is not None:
                appr.cancel(self.approvals, self.journal, a, p.actor, why)
                raise Conflict(f"approval request {a.id} is cancelled: {why}")
        state = "approved" if approve else "rejected"
        if not self.approvals.decide(a.id, state, p.actor, comment):
            raise Conflict(f"approval request {a.id} is already {self.approvals.get(a.id).state}")  # type: ignore[union-attr]
        self.journal.append(
            p.actor,
            f"approval.{state}",
            ",".join(h.name for h in hosts),
            state,
            {"approval": a.id, "playbook": pb.name, "requester": a.requester, "comment": comment},
        )
        job = None
        if approve:
            # Run as the requester, with changes allowed: the journal shows who asked and who approved.
            job = self.jobs.start(a.requester, pb, a.targets, hosts, a.vars, allow_changes=True, approval=a.id)
            self.approvals.set_job(a.id, job.id)
        return self.approvals.get(a.id) or a, job

    def _close_gone(self, p: Principal, a: Approval, why: str) -> None:
        """A request whose playbook or hosts are gone from the agent cannot be approved as asked; a lead who may
        decide it (judged on what it recorded) closes it as ``cancelled`` (journaled, Conflict) instead of leaving
        it pending until it expires."""
        try:
            policy.approve_recorded(p, a.requester, a.playbook, [h.get("groups") or [] for h in a.hosts])
        except policy.Forbidden as e:
            self.deny(p, "approval.decide", str(e), a.id)
            raise
        if a.state == "pending" and appr.cancel(self.approvals, self.journal, a, p.actor, why):
            raise Conflict(f"approval request {a.id} is cancelled: {why}")

    def close(self) -> None:
        self.jobs.close()
        if self.sessions is not None:
            self.sessions.close()


def changed_since(a: Approval, pb: Playbook, hosts: list[Host]) -> str | None:
    """Why what would run now is not what the lead is shown (the request's hosts and rendered commands), or None.

    The playbook is read from disk and the targets resolved again when a lead decides: a playbook edited, or an
    inventory whose groups changed (the agent restarted; pending requests survive), would otherwise run commands or
    reach hosts that nobody approved. Requests stored before issue 15 recorded neither and are not compared.
    """
    if not a.hosts:
        return None
    names, asked = [h.name for h in hosts], [str(h.get("name")) for h in a.hosts]
    if names != asked:
        return f"the targets now name {', '.join(names[:5]) or 'no host'}, not the requested {', '.join(asked[:5])}"
    if rendered_commands(pb, hosts, a.vars) != a.commands:
        return f"playbook {pb.name} or its hosts changed since the request: the commands to run are not those shown"
    return None


def rendered_commands(pb: Playbook, hosts: list[Host], overrides: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What each changing step will send to each host, rendered and quoted as the runner will (secrets masked).

    A lead approves these commands, not a playbook name: ``marker=/etc/...`` shows up inside the command.
    Network devices quote values for their CLI instead of for a shell; their commands are shown shell-quoted.
    """
    from diag.remote.runner import host_view
    from diag.secrets import mask

    out: list[dict[str, Any]] = []
    for h in hosts:
        try:
            variables = pb.resolve_vars(overrides, h.vars)
        except ConfigError as e:
            out.append({"host": h.name, "step": "", "command": "", "sudo": False, "when": None, "error": str(e)})
            continue
        for step in pb.steps:
            if step.changes:
                text = step.command.render(variables, host_view(h))
                out.append(
                    {
                        "host": h.name,
                        "step": step.id,
                        "command": mask(text),
                        "sudo": step.sudo,
                        "when": step.when.text if step.when is not None else None,
                        "error": None,
                    }
                )
    return out
