"""Re-check an alert without a playbook: evaluate its rule's expression again on Prometheus.

Alertmanager's ``generatorURL`` carries the rule's expression (``/graph?g0.expr=...``). When diag has no
playbook or inventory host for an alert, it asks the Prometheus that ``agent.alertmanager.prometheus_url`` names
(never the host in the payload's URL, so an alert cannot make diag fetch arbitrary URLs) whether the expression
still returns a series with the alert's labels. No such series means the condition is gone, but only when
Prometheus has data on the alert's target: an expression over a target that is down or no longer scraped returns
nothing too, and no data is not "OK" (:func:`no_data` says why; the receiver keeps the incident open then).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from diag.alertmanager.payload import Alert


class RecheckError(Exception):
    """The re-check could not be made (no expression, Prometheus unreachable or refusing the query)."""


def expression(alert: Alert) -> str:
    """The rule's PromQL expression from the alert's generatorURL."""
    query = urllib.parse.urlsplit(alert.generatorURL).query
    exprs = urllib.parse.parse_qs(query).get("g0.expr")
    if not exprs or not exprs[0].strip():
        raise RecheckError("the alert's generatorURL carries no expression (g0.expr)")
    return exprs[0]


def _query(prometheus_url: str, expr: str, timeout: float) -> list[dict[str, object]]:
    """The instant vector ``expr`` evaluates to now, as Prometheus' JSON gives it."""
    url = prometheus_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - http(s) checked in config
            doc = json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise RecheckError(f"Prometheus {prometheus_url} refused the query: HTTP {e.code}") from None
    except (OSError, ValueError) as e:
        raise RecheckError(f"Prometheus {prometheus_url}: {e}") from None
    if doc.get("status") != "success" or not isinstance(doc.get("data", {}).get("result"), list):
        raise RecheckError(f"Prometheus {prometheus_url}: unexpected answer to the query")
    return [s for s in doc["data"]["result"] if isinstance(s, dict)]


def still_firing(alert: Alert, prometheus_url: str, timeout: float = 10.0) -> list[dict[str, str]]:
    """The series of the rule's expression that match the alert's labels now (empty: the condition is gone)."""
    matching = []
    for series in _query(prometheus_url, expression(alert), timeout):
        labels = series.get("metric", {})
        # The rule adds labels (severity...) the expression does not return; compare the ones the series has.
        if isinstance(labels, dict) and all(alert.labels.get(k) == v for k, v in labels.items() if k != "__name__"):
            matching.append(dict(labels))
    return matching


def _promql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def no_data(alert: Alert, prometheus_url: str, timeout: float = 10.0) -> str | None:
    """Why Prometheus has no data on the alert's target now (not scraped, or its scrape fails), else None.

    The target is what the alert's ``job`` and ``instance`` labels name (Prometheus' own ``up`` series); an alert
    with neither names none, and then the expression's answer is all there is to go by.
    """
    target = {k: alert.labels[k] for k in ("job", "instance") if alert.labels.get(k)}
    if not target:
        return None
    selector = "up{" + ",".join(f"{k}={_promql_string(v)}" for k, v in sorted(target.items())) + "}"
    series = _query(prometheus_url, selector, timeout)
    shown = ", ".join(f"{k}={v}" for k, v in sorted(target.items()))
    if not series:
        return f"Prometheus does not scrape {shown} (no {selector} series)"
    values = [s.get("value") for s in series]
    if all(isinstance(v, list) and len(v) == 2 and v[1] == "0" for v in values):
        return f"the scrape of {shown} fails ({selector} is 0)"
    return None
