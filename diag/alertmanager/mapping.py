"""From an alert to what diag knows: the inventory host it is about, the diagnosis to run, the incident finding.

Pure functions over the decoded payload and the configuration, so the receiver's policy can be read (and
tested) without HTTP, threads or SSH.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from diag.alertmanager.config import Route
from diag.alertmanager.payload import Alert
from diag.inventory import Host
from diag.model import SEVERITY_RANK, Evidence, Finding, Severity
from diag.secrets import mask

#: Labels that name where or how an alert was made rather than what it is about: left out of the subject, so
#: the same condition keeps one incident when Prometheus is relabelled or the rule's severity changes.
_NOT_SUBJECT = frozenset({"alertname", "instance", "job", "severity", "host", "prometheus", "replica"})
_SEVERITIES: dict[str, Severity] = {
    "critical": "critical",
    "page": "critical",
    "error": "critical",
    "warning": "warning",
    "warn": "warning",
    "info": "info",
    "none": "info",
}


def strip_port(value: str) -> str:
    """``web-03:9847`` -> ``web-03``, ``[::1]:9847`` -> ``::1``; an IPv6 address without a port stays whole."""
    v = value.strip()
    if v.startswith("["):
        return v[1 : v.index("]")] if "]" in v else v
    if v.count(":") == 1:
        return v.rsplit(":", 1)[0]
    return v


class HostIndex:
    """Inventory hosts by name and by address (an IP address in its canonical form)."""

    def __init__(self, hosts: Mapping[str, Host]) -> None:
        self.by_name = dict(hosts)
        self.by_address: dict[str, Host] = {}
        for h in hosts.values():
            self.by_address.setdefault(_canonical(h.address), h)

    def lookup(self, value: str) -> Host | None:
        v = strip_port(value)
        return self.by_name.get(v) or self.by_address.get(_canonical(v))


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address.lower().rstrip(".")


def resolve_host(alert: Alert, index: HostIndex, host_labels: list[str]) -> tuple[Host | None, str]:
    """The inventory host the alert is about, and the name to file it under (the label's value when unknown)."""
    fallback = ""
    for label in host_labels:
        value = alert.labels.get(label)
        if not value:
            continue
        host = index.lookup(value)
        if host is not None:
            return host, host.name
        fallback = fallback or strip_port(value)
    return None, fallback or "unknown"


def playbook_vars(route: Route, alert: Alert) -> dict[str, Any]:
    """Constants from the route, then values taken from the alert's labels (quoted in commands like any variable)."""
    out: dict[str, Any] = dict(route.vars)
    for var, label in route.vars_from_labels.items():
        if label in alert.labels:
            out[var] = alert.labels[label]
    return out


def severity(alert: Alert) -> Severity:
    return _SEVERITIES.get(alert.labels.get("severity", "").lower(), "warning")


def subject(alert: Alert) -> str:
    """The alert's own identity labels as ``k=v, ...`` (sorted), e.g. ``mountpoint=/srv``."""
    return ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k not in _NOT_SUBJECT)


def _iso(t: datetime | None) -> str | None:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z") if t is not None else None


def alert_evidence(alert: Alert, external_url: str) -> Evidence:
    """What Alertmanager told us, as evidence: labels, annotations, times and the links back."""
    lines = [f"{k}={v}" for k, v in sorted(alert.labels.items())]
    lines += [f"{k}: {v}" for k, v in sorted(alert.annotations.items())]
    return Evidence(
        kind="alert",
        title=f"Alertmanager: {alert.name} ({alert.status})",
        text=mask("\n".join(lines)),
        data={
            "status": alert.status,
            "labels": dict(alert.labels),
            "annotations": {k: mask(v) for k, v in alert.annotations.items()},
            "starts_at": _iso(alert.startsAt),
            "ends_at": _iso(alert.ends),
            "generator_url": alert.generatorURL,
            "alertmanager_url": external_url,
            "alertmanager_fingerprint": alert.key,
        },
    )


def incident_finding(
    alert: Alert,
    host_name: str,
    external_url: str,
    diagnosis: list[Finding],
    diag_evidence: list[Evidence],
    playbook: str | None,
) -> Finding:
    """One finding for the alert: its identity, the diagnosis' findings as summary lines and their evidence.

    The alert keeps one incident (and one ticket) however many findings its diagnosis makes; the most severe
    diagnosis finding lends its cause, so the knowledge base can classify the incident by what was found.
    """
    ranked = sorted(diagnosis, key=lambda f: SEVERITY_RANK[f.severity], reverse=True)
    title = alert.annotations.get("summary") or alert.annotations.get("description") or f"{alert.name} on {host_name}"
    summary = title if not ranked else f"{title}; diagnosis: {ranked[0].summary}"
    sev = severity(alert)
    if ranked and SEVERITY_RANK[ranked[0].severity] > SEVERITY_RANK[sev]:
        sev = ranked[0].severity  # the host is worse than the rule thought: say so
    evidence = [alert_evidence(alert, external_url)]
    if ranked:
        evidence.append(
            Evidence(
                "text",
                f"diagnosis findings ({playbook})",
                "\n".join(f"[{f.severity}] {f.check}: {f.summary}" for f in ranked),
                {
                    "findings": [
                        {
                            "check": f.check,
                            "severity": f.severity,
                            "subject": f.subject,
                            "cause": f.cause,
                            "fingerprint": f.fingerprint,
                        }
                        for f in ranked
                    ]
                },
            )
        )
    evidence.extend(diag_evidence)
    labels = {"source": "alertmanager", "alertname": alert.name, "alert_fingerprint": alert.key}
    if playbook:
        labels["playbook"] = playbook
    # Links a ticket can carry: the rule's graph in Prometheus, and the rule's runbook (a common annotation).
    if alert.generatorURL:
        labels["generator_url"] = alert.generatorURL
    if alert.annotations.get("runbook_url"):
        labels["runbook_url"] = alert.annotations["runbook_url"]
    return Finding(
        check=alert.name,
        severity=sev,
        summary=mask(summary),
        subject=subject(alert),
        cause=next((f.cause for f in ranked if f.cause), alert.labels.get("cause")),
        evidence=evidence,
        host=host_name,
        labels=labels,
    )
