"""A report as JSON (the figures), CSV (one row per incident of the period) or one self-contained HTML page with
SVG charts drawn on the server by pygal (no script, no external file: it opens from a mail attachment).

The page is the Jinja2 template ``templates/report.html`` (autoescaped); this module prepares its values."""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from diag.model import IncidentRow as Row
from diag.reports.figures import breaches, in_period

CSV_COLUMNS = (
    "id",
    "host",
    "check",
    "cause",
    "subject",
    "severity",
    "classification",
    "line",
    "priority",
    "opened_at",
    "acked_at",
    "resolved_at",
    "time_to_ack_s",
    "time_to_resolve_s",
    "sla_breached",
    "reopened",
    "state",
)


def iso(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


def to_csv(rows: Sequence[Row], start: float, end: float) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in in_period(rows, start, end):
        assert r.opened_at is not None
        w.writerow(
            [
                r.id,
                r.host,
                r.check,
                r.cause,
                r.subject,
                r.severity,
                r.classification,
                r.line,
                r.priority,
                iso(r.opened_at),
                iso(r.acked_at),
                iso(r.resolved_at),
                "" if r.acked_at is None else round(r.acked_at - r.opened_at, 3),
                "" if r.resolved_at is None else round(r.resolved_at - r.opened_at, 3),
                ",".join(sorted(breaches(r))),
                r.reopened,
                r.state,
            ]
        )
    return out.getvalue()


def duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f} %"


def _chart_config() -> Any:
    import pygal  # type: ignore[import-untyped]
    from pygal.style import Style  # type: ignore[import-untyped]

    style = Style(
        background="white",
        plot_background="white",
        font_family="DejaVu Sans, sans-serif",
        colors=("#3465a4", "#cc0000", "#73d216", "#f57900", "#75507b", "#c4a000", "#555753"),
        title_font_size=16,
        label_font_size=12,
        major_label_font_size=12,
        legend_font_size=12,
    )
    cfg = pygal.Config()
    cfg.style = style
    cfg.js = []  # pygal links its tooltip script from a CDN by default: a report must open offline
    cfg.disable_xml_declaration = True
    cfg.width, cfg.height = 640, 320
    cfg.print_values = True
    return cfg


def _svg(chart: Any) -> str:
    return str(chart.render(is_unicode=True))


def charts(report: dict[str, Any]) -> dict[str, str]:
    import pygal

    cfg = _chart_config()
    out = {}
    bar = pygal.HorizontalBar(cfg, title="Incidents by cause (top)", show_legend=False)
    causes = list(reversed(report["by_cause"]))
    bar.x_labels = [c["name"] for c in causes]
    bar.add("incidents", [c["count"] for c in causes])
    out["by_cause"] = _svg(bar)
    bar = pygal.Bar(cfg, title="Incidents by line and group", show_legend=True)
    bar.x_labels = [x["name"] for x in report["by_line"]] + [g["name"] for g in report["by_group"]]
    bar.add("by line", [x["count"] for x in report["by_line"]] + [None] * len(report["by_group"]))
    bar.add("by group", [None] * len(report["by_line"]) + [g["count"] for g in report["by_group"]])
    out["by_line_group"] = _svg(bar)
    t = report["typical"]
    pie = pygal.Pie(cfg, title="Typical (KB, line 1) vs atypical", inner_radius=0.45)
    pie.add("typical", t["typical"])
    pie.add("atypical", t["atypical"])
    out["typical"] = _svg(pie)
    sla = report["sla"]["by_line"]
    bar = pygal.Bar(cfg, title="SLA compliance by line (%)", range=(0, 100), show_legend=False)
    bar.x_labels = list(sla)
    bar.add("within SLA", [round(100 * (v["compliance"] or 0), 1) for v in sla.values()])
    out["sla"] = _svg(bar)
    f = report["forecast"]
    line = pygal.Line(cfg, title="Incidents opened per day, and forecast", show_dots=True, print_values=False)
    line.show_minor_x_labels, line.x_labels_major_every = False, 7
    n = len(f["daily"])
    line.x_labels = [str(i - n) for i in range(n)] + [f"+{i + 1}" for i in range(len(f["forecast_daily"]))]
    line.add("opened", list(f["daily"]) + [None] * len(f["forecast_daily"]))
    line.add("forecast", [None] * n + [round(x, 1) for x in f["forecast_daily"]])
    out["forecast"] = _svg(line)
    return out


CSS = """
body{font-family:"DejaVu Sans",sans-serif;margin:24px;color:#222;max-width:1340px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccc}
.kpis{display:flex;flex-wrap:wrap;gap:12px}
.kpi{border:1px solid #ccc;border-radius:6px;padding:10px 16px;min-width:150px}
.kpi b{display:block;font-size:22px}.kpi span{color:#555;font-size:13px}
.charts{display:flex;flex-wrap:wrap;gap:12px}.charts svg{width:640px;height:320px;border:1px solid #eee}
table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}.bad{color:#c00}
"""


def _section(title: str, *tables: tuple[Sequence[str], Sequence[Sequence[Any]]], note: str = "") -> dict[str, Any]:
    return {"title": title, "tables": [{"head": h, "rows": rows} for h, rows in tables], "note": note}


def sections(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The tables of the page, each a heading, its column names and rows of plain values (the template escapes).

    The console's Reports page (diag/api/templates/reports.html) shows the same sections."""
    sla = report["sla"]
    avail = report["availability"]
    out = [
        _section(
            "Handling per group",
            (
                ("group", "incidents", "MTTA", "MTTR", "SLA compliance", "typical share"),
                [
                    (
                        g["group"],
                        g["incidents"],
                        duration(g["mtta_s"]),
                        duration(g["mttr_s"]),
                        pct(g["sla_compliance"]),
                        pct(g["typical_share"]),
                    )
                    for g in report["groups"]
                ],
            ),
        ),
        _section("Incidents by host", (("host", "incidents"), [(x["name"], x["count"]) for x in report["by_host"]])),
        _section(
            "SLA",
            (
                ("line", "incidents", "within SLA", "compliance"),
                [(k, v["incidents"], v["within_sla"], pct(v["compliance"])) for k, v in sla["by_line"].items()],
            ),
            note=f"Breaches: {json.dumps(sla['breaches'])}; incidents breached: {sla['incidents_breached']}.",
        ),
        _section(
            "Recurring incidents (same cause, same host)",
            (("cause", "host", "times"), [(x["cause"], x["host"], x["count"]) for x in report["recurring"]]),
        ),
        _section(
            "Candidates for new knowledge-base entries (atypical, repeated)",
            (("cause", "incidents", "hosts"), [(x["cause"], x["count"], x["hosts"]) for x in report["kb_candidates"]]),
        ),
        _section(
            "Candidates for automation (typical, by time to resolve)",
            (
                ("KB entry", "incidents", "hours to resolve"),
                [(x["kb"], x["count"], f"{x['hours_to_resolve']:.1f}") for x in report["automation_candidates"]],
            ),
        ),
        _section(
            "Availability",
            (
                ("host", "downtime", "availability", "SLO met"),
                [
                    (x["host"], duration(x["downtime_s"]), pct(x["availability"], 3), "yes" if x["slo_met"] else "NO")
                    for x in avail["hosts"]
                ],
            ),
            (
                ("host", "service", "downtime", "availability", "SLO met"),
                [
                    (
                        x["host"],
                        x["service"],
                        duration(x["downtime_s"]),
                        pct(x["availability"], 3),
                        "yes" if x["slo_met"] else "NO",
                    )
                    for x in avail["services"]
                ],
            ),
        ),
    ]
    if "engineers" in report:
        out.append(
            _section(
                "Per engineer (lead only)",
                (
                    (
                        "engineer",
                        "acknowledged",
                        "mean time to ack",
                        "resolved",
                        "mean time to resolve",
                        "SLA breached",
                    ),
                    [
                        (
                            e["engineer"],
                            e["acknowledged"],
                            duration(e["mean_time_to_ack_s"]),
                            e["resolved"],
                            duration(e["mean_time_to_resolve_s"]),
                            e["sla_breached"],
                        )
                        for e in report["engineers"]
                    ],
                ),
            )
        )
    if report.get("line1"):
        out.append(_line1_section(report["line1"]))
    return out


def _line1_section(l1: dict[str, Any]) -> dict[str, Any]:
    """Tickets people filed: how much line-1 automation triaged and resolved, per KB entry (docs/line1.md)."""
    head = ("KB entry", "tickets", "triaged automatically", "resolved by line 1", "reopened",
            "first response (median)")
    rows = [(e["kb_entry"], e["tickets"], pct(e["triaged_share"]), pct(e["resolved_share"]), e["reopened"],
             duration(e["first_response_median_s"])) for e in l1["by_kb_entry"]]
    rows.append(("all", l1["tickets"], pct(l1["triaged_share"]), pct(l1["resolved_share"]), l1["reopened"],
                 duration(l1["first_response_median_s"])))
    changes = [(c["change"], c["result"], c["count"]) for c in l1["standard_changes"]]
    return _section("Line-1 automation (tickets filed by people)", (head, rows),
                    (("standard change", "result", "applications"), changes))


@functools.cache
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("diag.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html")


def to_html(report: dict[str, Any], title: str = "diag support-quality report") -> str:
    """One self-contained page: KPIs, pygal SVG charts (server-drawn), and the tables (templates/report.html)."""
    from markupsafe import Markup

    p = report["period"]
    return str(
        _template().render(
            title=title,
            css=Markup(CSS),  # noqa: S704 - our own constant
            start=iso(p["start"]),
            end=iso(p["end"]),
            days=f"{p['days']:.0f}",
            kpis=kpis(report),
            charts=[Markup(svg) for svg in charts(report).values()],  # noqa: S704 - pygal's SVG, labels escaped by it
            sections=sections(report),
        )
    )


def kpis(report: dict[str, Any]) -> list[tuple[str, Any]]:
    """The headline figures, (name, value as shown): the file's and the console's."""
    t, sla = report["totals"], report["sla"]
    return [
        ("incidents", t["incidents"]),
        ("MTTA", duration(report["mtta_s"])),
        ("MTTR", duration(report["mttr_s"])),
        ("SLA compliance", pct(sla["compliance"])),
        ("typical share", pct(report["typical"]["typical_share"])),
        ("reopen rate", pct(report["reopen_rate"])),
        ("escalations", t["escalations"]),
        ("forecast next 7 days", f"{report['forecast']['forecast_total']:.0f}"),
    ]
