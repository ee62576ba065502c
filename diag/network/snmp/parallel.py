"""Walks split by subtree and run side by side on one session: the agent always has a request to work on.

A walk is a chain of requests, each asking from the last OID of the previous answer: the agent waits
for the manager between answers, and the manager for the agent. Here a walk of ROOT is split at ROOT's
children (found with one GETNEXT each, ``ROOT.(c+1)`` after child ``c``), each child's subtree is walked
as its own chain, and up to ``width`` requests are in flight at once on the same socket, matched by
request id. Values come out in OID order, as one walk would give them: a child's values are handed out
once every child before it is done.

Each chain keeps the checks of :meth:`Session.walk_chunks`: values kept in order received, each OID checked
against the OID asked for (as snmpbulkwalk does; an answer out of order among itself is kept whole), an OID
not after it ends the chain unless ``check_increasing`` is off, an answer with nothing new ends it (loop),
and the first such warning is set on the result. Children of a table entry (its columns) are as many rows
long: once two columns agree on a length, later columns ask for no more than that many values, so the
last answer of a column does not make the agent compute a full answer of values past it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from diag.network.snmp import ber
from diag.network.snmp.client import (
    MIN_REPETITIONS,
    RESEND_REPORTS,
    Session,
    SnmpError,
    SnmpTimeout,
    Walked,
    report_error,
)

#: Requests in flight at once. net-snmp's snmpd answers one at a time; 6 keep it busy without
#: filling its socket buffer (and a device that drops bursts gets the retry of a walk).
WIDTH = 6
#: Child numbers a discovery request asks for at once (GETNEXT with this many OIDs).
PROBES = 16


def encode_arc(n: int) -> bytes:
    """One arc in BER (base 128, high bit on all but the last byte)."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def first_arc(b: bytes) -> int:
    """The first arc of BER octets (the child number right after a root)."""
    n = 0
    for byte in b:
        n = (n << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return n
    raise ber.BerError("truncated OID")


@dataclass(slots=True)
class _Chain:
    """One request chain: the discovery of a root's children, or the walk of one child's subtree."""

    root: int  # which root of the call
    prefix: bytes  # the subtree walked (discovery: the root)
    last: bytes  # ask from here
    discover: bool = False
    child: int = -1
    out: list[ber.Varbind] = field(default_factory=list)
    seen: set[bytes] = field(default_factory=set)
    done: bool = False
    rid: int = 0
    reps: int = 0
    sent_at: float = 0.0
    tries: int = 0
    reports: int = 0


def walk_split(
    session: Session,
    roots: list[bytes],
    check_increasing: bool = True,
    results: list[Walked[Any]] | None = None,
    width: int = WIDTH,
    split: bool | list[bool] = True,
) -> Iterator[tuple[int, list[ber.Varbind]]]:
    """(root index, values) in OID order per root, roots one after the other; warnings go to ``results[i]``.

    ``split`` (per root, or for all): walk the root's children side by side; a root that is not split
    (a table column: its children are rows) is one chain, walked beside the other roots. GETBULK only
    (v2c and v3); the caller walks v1 with GETNEXT. Raises what a walk raises: SnmpTimeout after the
    retries of one request, SnmpError on an error answer.
    """
    t = session.target
    splits = split if isinstance(split, list) else [split] * len(roots)
    chains: list[list[_Chain]] = [[] if splits[i] else [_Chain(i, r, r)] for i, r in enumerate(roots)]
    discovery = [_Chain(i, r, r, discover=True, done=not splits[i]) for i, r in enumerate(roots)]
    lengths: dict[int, list[int]] = {}  # per split root; unsplit roots (columns, -1) share one list
    inflight: dict[int, _Chain] = {}
    emitted = [0] * len(roots)  # per root: children fully handed out
    partial = [0] * len(roots)  # values of the current child already handed out
    root_done = [False] * len(roots)
    current = 0
    progress = 0.0  # when the last answer came

    def hint(c: _Chain) -> int:
        reps = session.max_repetitions
        agreed = lengths.get(c.root if splits[c.root] else -1, [])
        # Columns of one table have as many rows each: ask for the rest and one more (that shows the end).
        if len(agreed) >= 2 and agreed[-1] == agreed[-2] >= 8 and len(c.out) < agreed[-1]:
            reps = max(MIN_REPETITIONS, min(reps, agreed[-1] - len(c.out) + 1))
        return reps

    def send(c: _Chain) -> None:
        if c.discover:
            c.rid = session.send(ber.GETNEXT, probes(c), 0, 0)
        else:
            c.reps = c.reps or hint(c)
            c.rid = session.send(ber.GETBULK, [c.last], 0, c.reps)
        c.sent_at = time.monotonic()
        inflight[c.rid] = c

    def warn(c: _Chain, why: str) -> None:
        if results is not None and not results[c.root].warning:
            kept = sum(len(x.out) for x in chains[c.root])
            results[c.root].warning = (
                f"{t.label}: {why}: walk of {ber.decode_oid(roots[c.root])} stopped, {kept} values kept"
                + (" (--no-check-increasing walks on past this)" if "increasing" in why else "")
            )

    def take(c: _Chain, varbinds: list[ber.Varbind]) -> None:
        """A walk chain's answer: keep what is in its subtree; done at its end or at a bad OID.

        Order is checked as in :meth:`Session.walk_chunks` (and snmpbulkwalk): against the OID asked for, so an
        answer out of order among itself is kept whole; an OID met before is kept once; an answer with nothing
        new is a loop."""
        prefix, seen, out = c.prefix, c.seen, c.out
        asked = last = c.last
        new = 0
        for oid, tag, value in varbinds:
            if tag == ber.END_OF_MIB_VIEW:
                c.done = True
                break
            back = check_increasing and oid <= asked and ber.arcs(oid) <= ber.arcs(asked)
            if not oid.startswith(prefix):
                # Past this child: normally the next child's first OID. Going back is disorder (a split walk
                # sees it only here), and a child the discovery skipped (a leaf right after a subtree) is
                # walked now.
                if back:
                    warn(c, f"OIDs not increasing: {ber.decode_oid(oid)} after {ber.decode_oid(asked)}")
                elif oid.startswith(roots[c.root]) and len(oid) > len(roots[c.root]):
                    missed(c.root, oid, tag, value)
                c.done = True
                break
            if back:
                if oid not in seen:
                    seen.add(oid)
                    out.append((oid, tag, value))
                warn(c, f"OIDs not increasing: {ber.decode_oid(oid)} after {ber.decode_oid(asked)}")
                c.done = True
                break
            if oid in seen:  # repeated inside an answer that went back: kept once
                continue
            seen.add(oid)
            out.append((oid, tag, value))
            last = oid
            new += 1
        if not c.done and not new:
            warn(c, f"OID {ber.decode_oid(varbinds[-1][0])} came again after {ber.decode_oid(asked)} (loop)")
            c.done = True
        c.last = last
        if c.done:
            lengths.setdefault(c.root if splits[c.root] else -1, []).append(len(out))

    def missed(i: int, oid: bytes, tag: int, value: Any) -> None:
        root = roots[i]
        child = first_arc(oid[len(root) :])
        siblings = chains[i]
        if any(x.child == child for x in siblings):
            return
        at = next((k for k, x in enumerate(siblings) if x.child > child), len(siblings))
        at = max(at, emitted[i] + 1)  # never before what was handed out
        leaf = len(oid) == len(root) + len(encode_arc(child))
        c = _Chain(i, root + encode_arc(child), oid, child=child, out=[(oid, tag, value)], seen={oid}, done=leaf)
        siblings.insert(at, c)

    def probes(d: _Chain) -> list[bytes]:
        """What a discovery asks: GETNEXT of the root first; then of the next PROBES child numbers at once
        (a table's columns are numbered densely: two requests find them all). After a leaf, only the OID
        after it (GETNEXT of a number would skip a leaf with that number)."""
        root = roots[d.root]
        siblings = chains[d.root]
        if not siblings or d.last != root + encode_arc(siblings[-1].child + 1):
            return [d.last]
        start = siblings[-1].child + 1
        return [root + encode_arc(n) for n in range(start, start + PROBES)]

    def found(d: _Chain, varbinds: list[ber.Varbind]) -> None:
        """A discovery answer: the first OIDs of the next children, each of which starts that child's chain."""
        root = roots[d.root]
        siblings = chains[d.root]
        for oid, tag, value in varbinds:
            if tag == ber.END_OF_MIB_VIEW or not oid.startswith(root) or len(oid) == len(root):
                d.done = True
                return
            child = first_arc(oid[len(root) :])
            if not siblings and len(oid) == len(root) + len(encode_arc(child)):
                # The root's children are leaves (a column's rows): one chain for the root, not one per row.
                siblings.append(_Chain(d.root, root, oid, child=child, out=[(oid, tag, value)], seen={oid}))
                d.done = True
                return
            if siblings and child == siblings[-1].child:  # two probes led to the same child (a gap): fine
                continue
            if siblings and child < siblings[-1].child:  # the agent went back: walk no further
                if check_increasing:
                    warn(d, f"OIDs not increasing: {ber.decode_oid(oid)} after {ber.decode_oid(d.last)}")
                d.done = True
                return
            prefix = root + encode_arc(child)
            leaf = len(oid) == len(prefix)  # a leaf among subtrees: its one value, and ask right after it
            siblings.append(_Chain(d.root, prefix, oid, child=child, out=[(oid, tag, value)], seen={oid}, done=leaf))
            d.last = oid if leaf else root + encode_arc(child + 1)
            if leaf:
                return  # the probes after a leaf's number may have skipped the next leaf: ask after it

    while True:
        # Hand out what is complete, in order: the current root's children one after the other.
        while current < len(roots):
            siblings = chains[current]
            k = emitted[current]
            if k < len(siblings):
                c = siblings[k]
                if len(c.out) > partial[current]:
                    yield current, c.out[partial[current] :]
                    partial[current] = len(c.out)
                if not c.done:
                    break
                emitted[current] += 1
                partial[current] = 0
                continue
            if discovery[current].done and not any(x.rid in inflight for x in siblings):
                root_done[current] = True
                current += 1
                continue
            break
        if current >= len(roots):
            return
        # Keep the agent busy: discoveries first (they make work), then the earliest children.
        for d in discovery:
            if not d.done and d.rid not in inflight and len(inflight) < width:
                send(d)
        for i in range(current, len(roots)):
            for c in chains[i]:
                if len(inflight) >= width:
                    break
                if not c.done and c.rid not in inflight:
                    send(c)
        if not inflight:
            continue
        # The agent answers one request after the other: the last of several waits behind the others. So a
        # request times out only when nothing at all came for the timeout (the agent is answering the rest).
        deadline = max(min(c.sent_at for c in inflight.values()), progress) + t.timeout
        got = session.receive_any(inflight, deadline)
        if got is not None:
            progress = time.monotonic()
        else:  # the oldest request timed out: ask again, smaller, within the retries
            c = min(inflight.values(), key=lambda x: x.sent_at)
            del inflight[c.rid]
            c.tries += 1
            if c.tries > t.retries:
                kept = sum(len(x.out) for x in chains[c.root])
                where = f" (walk of {ber.decode_oid(roots[c.root])} stopped after {kept} values)" if kept else ""
                raise SnmpTimeout(session._no_answer(c.tries) + where)
            c.reps = max(MIN_REPETITIONS, c.reps // 2)
            session.max_repetitions = max(MIN_REPETITIONS, min(session.max_repetitions, c.reps or 1))
            continue
        rid, pdu, status, index, varbinds = got
        c = inflight.pop(rid)
        c.tries = 0
        if pdu == ber.REPORT:
            oid = varbinds[0][0] if varbinds else b""
            if oid in RESEND_REPORTS and c.reports < 2:
                c.reports += 1  # the agent told us its boots/time: the chain asks again
                continue
            raise report_error(t, oid)
        if status == ber.TOO_BIG and not c.discover and c.reps > MIN_REPETITIONS:
            c.reps = max(MIN_REPETITIONS, c.reps // 2)
            session.max_repetitions = min(session.max_repetitions, c.reps)
            continue
        session.check(status, index, [c.last])
        if not varbinds:
            raise SnmpError(f"{t.label}: empty answer to a walk request at {ber.decode_oid(c.last)}")
        if c.discover:
            found(c, varbinds)
        else:
            take(c, varbinds)
            c.reps = 0  # the next request of this chain asks for the hinted size again
