"""SNMP profiles (data files with numeric OIDs) and the poll that turns one into metrics and findings.

A profile (``diag/network/snmp/profiles/NAME.yaml``) lists scalars and table columns to fetch, which string
columns label the rows, and finding rules (``equals``, ``above``, ``below``, ``rising``, ``went_back``,
``rate_above``).
Adding a profile means adding one file; docs/snmp.md describes the format. :func:`poll` walks only the
columns a profile names, so a poll asks for far fewer values than a whole-table walk.
"""

from __future__ import annotations

import re
import time
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from diag import yamlsrc
from diag.errors import ConfigError, RegistryError
from diag.model import Evidence, Gap, Result, Severity
from diag.network.snmp import ber
from diag.network.snmp.client import Session, SnmpError, SnmpTimeout, Target, Walked, open_session
from diag.network.snmp.parallel import walk_split

PROFILE_DIR = Path(__file__).with_name("profiles")
PREFIX = "diag_snmp_"


class ExponentSpec(msgspec.Struct, forbid_unknown_fields=True):
    """Multiply by 10 ** (factor * (column value + offset)) of the same row (ENTITY-SENSOR's scale)."""

    oid: str
    factor: float = 1.0
    offset: float = 0.0


class FallbackSpec(msgspec.Struct, forbid_unknown_fields=True):
    """Another column for the rows where the metric's own column is absent (ifInOctets for ifHCInOctets)."""

    oid: str
    #: Instead of the metric's ``scale`` (ifSpeed is bit/s where ifHighSpeed is Mbit/s).
    scale: float | None = None
    #: The value of the metric's ``variant_label`` on rows taken from here (e.g. "32").
    variant: str = ""


class MetricSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    oid: str
    help: str
    kind: Literal["gauge", "counter"] = "gauge"
    #: Rows the column lacks are taken from the first fallback that has them.
    fallback: list[FallbackSpec] = []
    #: A 0 in the metric's own column counts as absent where a fallback has the row: ifHighSpeed is 0 below
    #: 1 Mbit/s and on agents that leave it unset (a PA-5000's subinterfaces: ifHighSpeed 0, ifSpeed 1 Gbit/s).
    zero_falls_back: bool = False
    #: A label that says which column a row came from (``counter_bits``: "64" or "32"), and its value here.
    variant_label: str | None = None
    variant: str = ""
    scale: float = 1.0
    #: A column of the same table whose row value multiplies this one (hrStorageAllocationUnits).
    scale_by: str | None = None
    #: Powers of ten from other columns of the row: sensor value -> units (scale and precision).
    exponent_by: list[ExponentSpec] = []
    #: A column of the same row to divide by (supply level / max capacity). Rows where either is
    #: negative or the divisor is 0 have no sample: those are "unknown" in the MIBs that do this.
    divide_by: str | None = None


class RuleSpec(msgspec.Struct, forbid_unknown_fields=True):
    check: str
    metric: str
    test: Literal["equals", "above", "below", "rising", "went_back", "rate_above"]
    summary: str
    severity: Severity = "warning"
    value: float = 0.0
    #: Only rows where this other metric equals ``when_value`` (e.g. admin up for an oper-down rule).
    when: str | None = None
    when_value: float = 0.0
    #: rate_above: divide the counter's rate per second by this metric of the same row (if_speed_bytes),
    #: so ``value`` is a utilisation ratio.
    per: str | None = None


class TableSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    index: str
    metrics: list[MetricSpec]
    labels: dict[str, str] = {}
    #: The label that names a row in findings; a list: the first that is not empty (else the index).
    subject: str | list[str] | None = None
    #: Subtrees walked whole, once, instead of one walk per column: the columns under them are cut out
    #: of these walks (fewer round trips when a profile uses most columns of a table, as if_mib does).
    walk: list[str] = []


class RecordSpec(msgspec.Struct, forbid_unknown_fields=True):
    """One value of a record string (:class:`RecordsSpec`): the record's code and the metric it gives."""

    #: The record's code octet in hex ("6f").
    code: str
    name: str
    help: str
    kind: Literal["gauge", "counter"] = "gauge"
    scale: float = 1.0


class RecordsSpec(msgspec.Struct, forbid_unknown_fields=True):
    """An OCTET STRING scalar (GET of OID.0) that packs records: code, 0x01, length, value (big-endian, length
    octets), ..., 0xFF at the end. Brother's brInfoCounter/Maintenance/NextCare carry this way the page counts
    and toner and drum levels its Printer-MIB reports as -3 ("some remaining")."""

    oid: str
    metrics: list[RecordSpec]


class DetectSpec(msgspec.Struct, forbid_unknown_fields=True):
    """When auto-selection picks the profile: sysObjectID under one of these, or sysDescr matching one, or
    one of the ``probe`` instances answering (asked in the same GET: a UPS card or a net-snmp agent under a
    vendor's sysObjectID, e.g. a Phoenixtec or Santak UPS, a Sangfor or Vyatta appliance)."""

    sys_object_id: list[str] = []
    sys_descr: list[str] = []
    probe: list[str] = []


class ProfileSpec(msgspec.Struct, forbid_unknown_fields=True):
    description: str
    #: Strings fetched as labels of one info metric (value 1), e.g. sysDescr and sysName.
    info: dict[str, str] = {}
    info_metric: str = "info"
    scalars: list[MetricSpec] = []
    #: Record strings (Brother's private MIB): each record's value as a metric.
    records: list[RecordsSpec] = []
    tables: list[TableSpec] = []
    rules: list[RuleSpec] = []
    #: Auto-selection (``profiles: [auto]``): which devices this profile is for.
    detect: DetectSpec | None = None
    #: Profiles auto-selection adds with this one (a vendor UPS profile may want ``ups`` too).
    with_profiles: list[str] = []


@dataclass(slots=True)
class Profile:
    name: str
    file: str
    spec: ProfileSpec


@dataclass(slots=True)
class PollState:
    """What a poll remembers of a target for the next one: sysUpTime and counter values."""

    values: dict[tuple[str, str], float] = field(default_factory=dict)
    polled_at: float = 0.0
    #: What auto-selection chose for the device (asked again when empty).
    detected: tuple[str, ...] = ()


#: The profile name that stands for auto-selection from sysObjectID (``profiles: [auto]``).
AUTO = "auto"
#: What auto-selection always polls: every SNMP device has these.
AUTO_BASE = ("system", "if_mib")
SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"


def profile_names(directory: Path = PROFILE_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


_cache: dict[Path, Profile] = {}


def load(name: str, directory: Path = PROFILE_DIR) -> Profile:
    """The profile ``name`` (its file in ``directory``); ConfigError naming FILE:LINE when invalid."""
    if name == AUTO:
        return Profile(AUTO, "", ProfileSpec(description="the profiles auto-selection picks from sysObjectID"))
    path = directory / f"{name}.yaml"
    if path in _cache:
        return _cache[path]
    if not name.replace("_", "").replace("-", "").isalnum() or not path.is_file():
        raise RegistryError(f"unknown SNMP profile {name!r} (known: {', '.join(profile_names(directory))})")
    doc = yamlsrc.load_file(path)
    spec = doc.check_type((), doc.data, ProfileSpec)
    if spec is None:
        raise ConfigError(doc.problems)
    _validate(doc, spec)
    profile = Profile(name, str(path), spec)
    _cache[path] = profile
    return profile


def _validate(doc: yamlsrc.Doc, spec: ProfileSpec) -> None:
    names: set[str] = set()
    for i, m in enumerate(spec.scalars):
        names.add(m.name)
        _check_oid(doc, ("scalars", i, "oid"), m.oid)
    for label, oid in spec.info.items():
        _check_oid(doc, ("info", label), oid)
    for r, rec in enumerate(spec.records):
        _check_oid(doc, ("records", r, "oid"), rec.oid)
        for i, rm in enumerate(rec.metrics):
            if len(rm.code) != 2 or not all(c in "0123456789abcdefABCDEF" for c in rm.code) or rm.code in "ffFF":
                doc.problem(("records", r, "metrics", i, "code"), f"code: {rm.code!r} is not an octet in hex below ff")
            if rm.name in names:
                doc.problem(("records", r, "metrics", i, "name"), f"name: metric {rm.name!r} twice")
            names.add(rm.name)
    for t, table in enumerate(spec.tables):
        for i, m in enumerate(table.metrics):
            names.add(m.name)
            _check_oid(doc, ("tables", t, "metrics", i, "oid"), m.oid)
            if m.scale_by:
                _check_oid(doc, ("tables", t, "metrics", i, "scale_by"), m.scale_by)
            if m.divide_by:
                _check_oid(doc, ("tables", t, "metrics", i, "divide_by"), m.divide_by)
            for e, exp in enumerate(m.exponent_by):
                _check_oid(doc, ("tables", t, "metrics", i, "exponent_by", e, "oid"), exp.oid)
            for f, fb in enumerate(m.fallback):
                _check_oid(doc, ("tables", t, "metrics", i, "fallback", f, "oid"), fb.oid)
        for label, oid in table.labels.items():
            _check_oid(doc, ("tables", t, "labels", label), oid)
        for w, oid in enumerate(table.walk):
            _check_oid(doc, ("tables", t, "walk", w), oid)
        subjects = [table.subject] if isinstance(table.subject, str) else table.subject or []
        for subject in subjects:
            if subject not in table.labels:
                doc.problem(("tables", t, "subject"), f"subject: no label {subject!r} in this table")
    if spec.detect is not None:
        for d, oid in enumerate(spec.detect.sys_object_id):
            _check_oid(doc, ("detect", "sys_object_id", d), oid)
        for d, oid in enumerate(spec.detect.probe):
            _check_oid(doc, ("detect", "probe", d), oid)
        for d, pattern in enumerate(spec.detect.sys_descr):
            try:
                re.compile(pattern)
            except re.error as e:
                doc.problem(("detect", "sys_descr", d), f"not a regular expression: {e}")
    for r, rule in enumerate(spec.rules):
        for key in ("metric", "when", "per"):
            ref = getattr(rule, key)
            if ref is not None and ref not in names:
                doc.problem(("rules", r, key), f"{key}: no metric {ref!r} in this profile")
    if doc.problems:
        raise ConfigError(doc.problems)


def _check_oid(doc: yamlsrc.Doc, path: yamlsrc.PathKey, oid: str) -> None:
    try:
        ber.encode_oid(oid)
    except ber.BerError as e:
        doc.problem(path, str(e))


def _number(type_name: str, value: Any) -> float | None:
    """A value as a number, or None for a type that is not one (a wrong type from the agent)."""
    if isinstance(value, (int, float)):  # float: an Opaque-wrapped float (UCD laLoadFloat, vendor MIBs)
        return float(value)
    if isinstance(value, bytes):  # some agents send numbers as strings (UCD laLoad)
        try:
            return float(value.decode().strip())
        except (UnicodeDecodeError, ValueError):
            return None
    return None


def parse_records(raw: bytes) -> dict[int, int] | None:
    """The records of a record string (:class:`RecordsSpec`) by code; None when it is not one."""
    out: dict[int, int] = {}
    i = 0
    while i < len(raw) and raw[i] != 0xFF:
        if i + 3 > len(raw) or raw[i + 1] != 0x01:
            return None
        end = i + 3 + raw[i + 2]
        if end > len(raw):
            return None
        out[raw[i]] = int.from_bytes(raw[i + 3 : end], "big")
        i = end
    return out


def _scaled(value: float, scale: float) -> float:
    """value * scale, dividing for 0.01-like scales so 41 * 0.01 shows as 0.41, not 0.41000000000000003."""
    if 0 < scale < 1:
        inverse = round(1 / scale)
        if abs(inverse * scale - 1) < 1e-12:
            return value / inverse
    return value * scale


def _label(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").rstrip("\x00")
    return "" if value is None else str(value)


def _under(oid: str, prefix: str) -> bool:
    oid, prefix = oid.strip("."), prefix.strip(".")
    return oid == prefix or oid.startswith(prefix + ".")


def detect(
    sys_object_id: str, sys_descr: str, directory: Path = PROFILE_DIR, answered: Container[str] = ()
) -> list[str]:
    """The profiles for a device, from its sysObjectID and sysDescr (as LibreNMS's OS detection does) and
    the ``probe`` OIDs it ``answered``.

    Always :data:`AUTO_BASE`; then every profile whose ``detect`` matches, with its ``with_profiles``,
    in name order.
    """
    names = list(AUTO_BASE)
    for name in profile_names(directory):
        spec = load(name, directory).spec
        d = spec.detect
        if d is None:
            continue
        if (
            any(_under(sys_object_id, p) for p in d.sys_object_id)
            or any(re.search(p, sys_descr) for p in d.sys_descr)
            or any(p in answered for p in d.probe)
        ):
            names += [n for n in (name, *spec.with_profiles) if n not in names]
    return names


def probes(directory: Path = PROFILE_DIR) -> list[str]:
    """Every profile's ``detect.probe`` OIDs, for the selection's GET."""
    out: list[str] = []
    for name in profile_names(directory):
        d = load(name, directory).spec.detect
        out += [o for o in (d.probe if d else []) if o not in out]
    return out


#: What a GET gives for an instance the agent does not have (v2c exceptions; v1's are reported as these too).
_NO_VALUE = frozenset({"noSuchObject", "noSuchInstance", "endOfMibView"})


def _expand_auto(session: Session, chosen: list[Profile], state: PollState | None) -> list[Profile]:
    """``auto`` replaced by what :func:`detect` picks (kept in ``state``: asked once per device)."""
    names = state.detected if state is not None else ()
    if not names:
        answers = session.get([SYS_OBJECT_ID, SYS_DESCR, *probes()])
        got = {o: v for o, _, v in answers}
        answered = {o for o, t, v in answers if v is not None and t not in _NO_VALUE}
        descr = got.get(SYS_DESCR)
        sys_descr = _label(descr) if descr is not None else ""
        names = tuple(detect(str(got.get(SYS_OBJECT_ID) or ""), sys_descr, answered=answered))
        if state is not None:
            state.detected = names
    out: list[Profile] = []
    for p in chosen:
        for q in [load(n) for n in names] if p.name == AUTO else [p]:
            if all(q.name != r.name for r in out):
                out.append(q)
    return out


Row = tuple[str, str, Any]  # (row index, type name, value)


class _Columns:
    """A table's columns as rows, all fetched at the first ask, side by side (:mod:`parallel`).

    Subtrees in ``TableSpec.walk`` are walked whole, split at their children (a table entry's columns);
    every other wanted column is walked on its own. Walks an agent cut short (out of order, a loop) still
    give their rows; their warnings are collected. v1 has no GETBULK: one walk after the other.
    """

    def __init__(self, session: Session, table: TableSpec, incomplete: list[str]) -> None:
        self.session = session
        self.incomplete = incomplete
        self.roots = [ber.encode_oid(o) for o in table.walk]
        self.cache: dict[str, list[Row]] | None = None
        wanted = {*table.labels.values()}
        for m in table.metrics:
            wanted |= {m.oid, *(f.oid for f in m.fallback), *(e.oid for e in m.exponent_by)}
            wanted |= {o for o in (m.scale_by, m.divide_by) if o}
        self.wanted = {ber.encode_oid(o): o for o in sorted(wanted)}

    def get(self, oid: str) -> list[Row]:
        if self.cache is None:
            self.cache = self._fetch()
        return self.cache.get(oid, [])

    def _fetch(self) -> dict[str, list[Row]]:
        names = ber.TYPE_NAMES
        alone = [c for c in self.wanted if not any(c.startswith(r) for r in self.roots)]
        roots = self.roots + alone
        results: list[Walked[Any]] = [Walked() for _ in roots]
        walked: list[list[ber.Varbind]] = [[] for _ in roots]
        if self.session.target.version == "1":
            for i, root in enumerate(roots):
                walked[i] = results[i] = self.session.walk_raw(root)
        else:
            split = [True] * len(self.roots) + [False] * len(alone)
            for i, chunk in walk_split(self.session, roots, results=results, split=split):
                walked[i] += chunk
        self.incomplete += [r.warning for r in results if r.warning]
        out: dict[str, list[Row]] = {o: [] for o in self.wanted.values()}
        lengths = sorted({len(c) for c in self.wanted})
        for vbs in walked:
            for o, t, v in vbs:
                for n in lengths:  # the longest wanted column this OID is in; rows are what follows it
                    name = self.wanted.get(o[:n])
                    if name is not None:
                        out[name].append((ber.decode_suffix(o[n:]), names[t], v))
                        break
        return out


def poll(
    target: Target,
    profiles: Iterable[Profile],
    state: PollState | None = None,
    session: Session | None = None,
) -> Result:
    """Fetch every profile's values from the target: metrics ``diag_snmp_*`` and findings.

    A target that does not answer gives ``diag_snmp_up 0`` and a critical finding, never an exception;
    ``state`` (kept by the caller between polls) lets rules see reboots and rising counters. A profile
    named ``auto`` stands for the profiles :func:`detect` picks for the device.
    """
    result = Result()
    up = result.metric(PREFIX + "up", "1 if the SNMP agent answered the last poll", labels=("profile",))
    samples = result.metric(
        PREFIX + "profile_samples",
        "Samples the profile found on the device (0: the device has none of its objects: wrong profile?)",
        labels=("profile",),
    )
    cut = result.metric(
        PREFIX + "incomplete_walks",
        "Walks the agent cut short (OIDs out of order or in a loop): their tables are partial",
        labels=("profile",),
    )
    started = time.monotonic()
    own = session is None
    previous = dict(state.values) if state is not None else {}
    current: dict[tuple[str, str], float] = {}
    now = time.time()
    elapsed = now - state.polled_at if state is not None and state.polled_at else None
    try:
        if session is None:
            session = open_session(target)
        chosen = list(profiles)
        if any(p.name == AUTO for p in chosen):
            try:
                chosen = _expand_auto(session, chosen, state)
            except SnmpError as e:
                up.add(0, AUTO)
                check = "snmp_not_answering" if isinstance(e, SnmpTimeout) else "snmp_poll_failed"
                result.find(check, "critical", str(e), target.name or target.label)
                result.gaps.append(Gap(f"SNMP: {e}", observed=frozenset({check})))
                chosen = []
        for profile in chosen:
            incomplete: list[str] = []
            before = sum(len(m.samples) for m in result.metrics)
            try:
                _poll_profile(session, profile, result, current, previous, elapsed, incomplete)
            except SnmpError as e:
                up.add(0, profile.name)
                check = "snmp_not_answering" if isinstance(e, SnmpTimeout) else "snmp_poll_failed"
                result.find(
                    check, "critical", str(e), target.name or target.label,
                    evidence=[Evidence("text", "SNMP error", str(e), {"profile": profile.name})],
                )  # fmt: skip
                if isinstance(e, SnmpTimeout):  # the device stopped answering: nothing further was looked at
                    result.gaps.append(Gap(f"SNMP: {e}", observed=frozenset({check})))
                    break  # the next profiles would wait the same timeout again
                result.gaps.append(Gap(f"SNMP profile {profile.name}: {e}", _rule_checks(profile)))
            else:
                samples.add(sum(len(m.samples) for m in result.metrics) - before, profile.name)
                up.add(1, profile.name)
                cut.add(len(incomplete), profile.name)
                if incomplete:  # a partial table: a row missing from it is not a row that is fine
                    why = f"SNMP profile {profile.name}: {len(incomplete)} walks cut short by the agent"
                    result.gaps.append(Gap(why, _rule_checks(profile)))
                    result.find(
                        "snmp_walk_incomplete", "warning",
                        f"{len(incomplete)} walks of profile {profile.name} were cut short by the agent; "
                        "their tables are partial",
                        profile.name, evidence=[Evidence("text", "walks cut short", "\n".join(incomplete[:20]))],
                    )  # fmt: skip
    except SnmpError as e:
        result.find("snmp_poll_failed", "critical", str(e), target.name or target.label)
        result.gaps.append(Gap(f"SNMP: {e}", observed=frozenset({"snmp_poll_failed"})))
    finally:
        if own and session is not None:
            session.close()
    result.metric(PREFIX + "poll_duration_seconds", "How long the SNMP poll took").add(time.monotonic() - started)
    if state is not None:
        state.values.update(current)
        state.polled_at = now
    host = target.name or target.label
    for f in result.findings:
        f.host = host
    return result


def _poll_profile(
    session: Session,
    profile: Profile,
    result: Result,
    current: dict[tuple[str, str], float],
    previous: dict[tuple[str, str], float],
    elapsed: float | None,
    incomplete: list[str],
) -> None:
    spec = profile.spec
    #: metric name -> {row index: (value, subject)} for the rules.
    seen: dict[str, dict[str, tuple[float, str]]] = {}
    bad: list[str] = []
    if spec.scalars or spec.info or spec.records:
        info_oids = [o.strip(".") + ".0" for o in spec.info.values()]
        oids = [m.oid.strip(".") + ".0" for m in spec.scalars]
        record_oids = [r.oid.strip(".") + ".0" for r in spec.records]
        got = {o: (t, v) for o, t, v in session.get(info_oids + oids + record_oids) if v is not None}
        if spec.info:
            names = tuple(spec.info)
            info = result.metric(PREFIX + spec.info_metric, f"{profile.name} strings as labels", labels=names)
            if any(o in got for o in info_oids):
                info.add(1, *[_label(got[o][1]) if o in got else "" for o in info_oids])
        for m, oid in zip(spec.scalars, oids, strict=True):
            if oid not in got:
                continue
            value = _number(*got[oid])
            if value is None:
                bad.append(f"{oid} ({got[oid][0]})")
                continue
            value = _scaled(value, m.scale)
            result.metric(PREFIX + m.name, m.help, m.kind).add(value)
            seen[m.name] = {"": (value, "")}
        for rec, oid in zip(spec.records, record_oids, strict=True):
            if oid not in got:
                continue
            type_name, raw = got[oid]
            records = parse_records(raw) if isinstance(raw, bytes) else None
            if records is None:
                bad.append(f"{oid} ({type_name}, not a record string)")
                continue
            for rm in rec.metrics:
                code = int(rm.code, 16)
                if code in records:
                    value = _scaled(float(records[code]), rm.scale)
                    result.metric(PREFIX + rm.name, rm.help, rm.kind).add(value)
                    seen[rm.name] = {"": (value, "")}
    for table in spec.tables:
        cols = _Columns(session, table, incomplete)
        labels = {name: {i: _label(v) for i, _, v in cols.get(oid)} for name, oid in table.labels.items()}
        subjects = [labels[n] for n in ([table.subject] if isinstance(table.subject, str) else table.subject or [])]
        label_names = (table.index, *labels)
        for m in table.metrics:
            family = result.metric(
                PREFIX + m.name, m.help, m.kind, label_names + ((m.variant_label,) if m.variant_label else ())
            )
            rows = seen.setdefault(m.name, {})
            add = family.samples.append
            factors = {i: _number(t, v) for i, t, v in cols.get(m.scale_by)} if m.scale_by else {}
            # Powers of ten summed, then one multiply or divide: 282 * 10 ** -1 is 28.200000000000003, 282 / 10 is
            # 28.2 (an Arista's entPhySensorValue with precision 1).
            exponents: dict[str, float] = {}
            for exp in m.exponent_by:
                for i, t, v in cols.get(exp.oid):
                    n = _number(t, v)
                    if n is not None:
                        exponents[i] = exponents.get(i, 0.0) + exp.factor * (n + exp.offset)
            divisors = {i: _number(t, v) for i, t, v in cols.get(m.divide_by)} if m.divide_by else None
            sources: list[tuple[str, float, str, list[Row]]] = [(m.oid, m.scale, m.variant, cols.get(m.oid))]
            for f in m.fallback:
                sources.append((f.oid, m.scale if f.scale is None else f.scale, f.variant, cols.get(f.oid)))
            if m.zero_falls_back:  # the own column's zeros after the fallbacks: for rows no fallback has
                own = sources[0]
                sources[0] = (*own[:3], [r for r in own[3] if _number(r[1], r[2]) != 0])
                sources.append(own)
            taken: set[str] = set()
            for oid, scale, variant, column in sources:
                for index, type_name, raw in column:
                    if index in taken:
                        continue
                    taken.add(index)
                    value = _number(type_name, raw)
                    if value is None:
                        bad.append(f"{oid}.{index} ({type_name})")
                        continue
                    if divisors is not None:
                        divisor = divisors.get(index)
                        if value < 0 or not divisor or divisor < 0:
                            continue
                        value /= divisor
                    value = _scaled(value, scale) * (factors.get(index) or 1.0)
                    e = exponents.get(index)
                    if e:
                        value = value * 10**e if e > 0 else value / 10**-e
                    values = (index, *[col.get(index, "") for col in labels.values()])
                    add(((*values, variant) if m.variant_label else values, value))
                    subject = next((col[index] for col in subjects if col.get(index)), index)
                    rows[index] = (value, subject)
    if bad:
        result.find(
            "snmp_bad_value", "warning",
            f"{len(bad)} values of profile {profile.name} are not numbers (wrong type from the agent)",
            profile.name, evidence=[Evidence("text", "values of a wrong type", "\n".join(bad[:20]))],
        )  # fmt: skip
    for rule in spec.rules:
        _apply(rule, profile.name, seen, result, current, previous, elapsed)


def _rule_checks(profile: Profile) -> frozenset[str]:
    """The checks a profile's rules make: what a failed or partial poll of it leaves unjudged."""
    return frozenset(r.check for r in profile.spec.rules)


def _apply(
    rule: RuleSpec,
    profile: str,
    seen: dict[str, dict[str, tuple[float, str]]],
    result: Result,
    current: dict[tuple[str, str], float],
    previous: dict[tuple[str, str], float],
    elapsed: float | None,
) -> None:
    rows = seen.get(rule.metric, {})
    per = seen.get(rule.per, {}) if rule.per else None
    when = seen.get(rule.when, {}) if rule.when else None
    unjudged: set[str] = set()  # rows a change rule cannot judge yet: no earlier sample, or a counter reset
    for index, (value, subject) in rows.items():
        if when is not None and (index not in when or when[index][0] != rule.when_value):
            continue
        key = (f"{profile}/{rule.metric}", index)
        shown = value
        if rule.test in ("rising", "went_back", "rate_above"):
            current[key] = value
            before = previous.get(key)
            if before is None:
                unjudged.add(subject)
                continue
            if rule.test == "rate_above":
                divisor = per[index][0] if per is not None and index in per else 1.0
                if not elapsed or elapsed <= 0 or value < before or not divisor:  # first poll, reset, no speed
                    unjudged.add(subject)
                    continue
                shown = (value - before) / elapsed / divisor
                hit = shown > rule.value
            else:
                hit = value > before if rule.test == "rising" else value < before
        elif rule.test == "equals":
            hit = value == rule.value
        elif rule.test == "above":
            hit = value > rule.value
        else:
            hit = value < rule.value
        if not hit:
            continue
        before_text = f"{previous[key]:g}" if key in previous else ""
        summary = rule.summary.format(
            subject=subject, value=f"{shown:g}", previous=before_text, limit=f"{rule.value:g}", percent=f"{shown:.0%}"
        )
        evidence = Evidence(
            "metric", f"{PREFIX}{rule.metric}", f"{rule.metric}[{index}] = {value:g}",
            {"index": index, "value": value, "previous": previous.get(key), "profile": profile, "result": shown},
        )  # fmt: skip
        f = result.find(rule.check, rule.severity, summary, subject, evidence=[evidence])
        f.labels = {"profile": profile}
    if unjudged:
        why = f"{rule.check}: no earlier sample to compare with for {len(unjudged)} rows (first poll or a reset)"
        result.gaps.append(Gap(why, frozenset({rule.check}), frozenset(unjudged)))
