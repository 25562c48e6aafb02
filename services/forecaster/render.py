"""Rendering the nightly report as HTML (charts by reference: cid: in mail, data: in a file) and text."""

from __future__ import annotations

import base64
from html import escape
from typing import TYPE_CHECKING

from spendgate.domain.money import format_usd

if TYPE_CHECKING:
    from spendgate.forecaster.report import Report, TeamSection

_STYLE = ("body{font-family:Arial,Helvetica,sans-serif;color:#222}table{border-collapse:collapse;margin:8px 0}"
          "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f0f0f0}"
          "td.l,th.l{text-align:left}.risk{color:#c1121f;font-weight:bold}")


def _day(d: object) -> str:
    return "-" if d is None else str(d)


def _row(t: TeamSection) -> list[str]:
    f = t.result.forecast
    return [t.team, format_usd(f.actual_micros), format_usd(f.p10_micros), format_usd(f.p50_micros),
            format_usd(f.p90_micros), format_usd(f.budget_micros or 0), f"{100 * t.risk:.0f}%",
            _day(f.p50_crosses_on), _day(f.p90_crosses_on), f.model]


HEADERS = ["team", "spent", "P10", "P50", "P90", "budget", "P50/budget", "P50 crosses", "P90 crosses", "model"]


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def report_html(report: Report, image_src: dict[str, str] | None = None) -> str:
    """The report as HTML; ``image_src`` maps team → image URL (default: embedded data: URIs)."""
    src = image_src if image_src is not None else {t.team: data_uri(t.chart_png) for t in report.teams}
    out = [f"<html><head><meta charset='utf-8'><style>{_STYLE}</style></head><body>",
           f"<h1>Spend forecast, {report.month:%B %Y}</h1>",
           f"<p>Generated {escape(report.generated_at.isoformat(timespec='minutes'))}. Month-end spend per team: "
           "P50 is the median outcome, P10-P90 the range that holds the truth four times in five.</p>",
           "<h2>Teams by risk</h2><table><tr>", *(f"<th class='l'>{h}</th>" if i == 0 else f"<th>{h}</th>"
                                                   for i, h in enumerate(HEADERS)), "</tr>"]
    for t in report.teams:
        cells = _row(t)
        cls = " class='risk'" if t.risk >= 1.0 else ""
        out.append(f"<tr{cls}>" + "".join(f"<td class='l'>{escape(c)}</td>" if i in (0, 9) else f"<td>{escape(c)}</td>"
                                           for i, c in enumerate(cells)) + "</tr>")
    out.append("</table>")
    for t in report.teams:
        out.append(f"<h2>team {escape(t.team)}</h2>")
        out.append(f"<img src='{escape(src[t.team], quote=True)}' alt='burndown chart of team {escape(t.team)}' "
                   "width='560'>")
        out.append("<h3>Developers driving the change (last 7 days vs the 7 before)</h3><table>"
                   "<tr><th class='l'>developer</th><th>last 7 days</th><th>7 days before</th><th>change</th></tr>")
        for d in t.developers:
            out.append(f"<tr><td class='l'>{escape(d.developer)}</td><td>{format_usd(d.recent_micros)}</td>"
                       f"<td>{format_usd(d.before_micros)}</td><td>{format_usd(d.change_micros)}</td></tr>")
        out.append("</table><h3>Costliest sessions (last 7 days)</h3><table><tr><th class='l'>session</th>"
                   "<th class='l'>developer</th><th class='l'>repo</th><th>cost</th><th>requests</th></tr>")
        for s in t.sessions:
            out.append(f"<tr><td class='l'>{escape(s.session_id)}</td><td class='l'>{escape(s.developer)}</td>"
                       f"<td class='l'>{escape(s.repo or '-')}</td><td>{format_usd(s.cost_micros)}</td>"
                       f"<td>{s.requests}</td></tr>")
        out.append("</table>")
    if not report.teams:
        out.append("<p>No team has a monthly budget.</p>")
    out.append("</body></html>")
    return "\n".join(out)


def report_text(report: Report) -> str:
    lines = [f"Spend forecast, {report.month:%B %Y} (generated {report.generated_at.isoformat(timespec='minutes')})",
             "", "Teams by risk:", "  " + " | ".join(HEADERS)]
    lines += ["  " + " | ".join(_row(t)) for t in report.teams]
    for t in report.teams:
        lines += ["", f"team {t.team}", "  developers driving the change (last 7 days vs the 7 before):"]
        lines += [f"    {d.developer}: {format_usd(d.recent_micros)} vs {format_usd(d.before_micros)} "
                  f"({format_usd(d.change_micros)})" for d in t.developers] or ["    none"]
        lines.append("  costliest sessions (last 7 days):")
        lines += [f"    {s.session_id} {s.developer} {s.repo or '-'}: {format_usd(s.cost_micros)} "
                  f"in {s.requests} requests" for s in t.sessions] or ["    none"]
    if not report.teams:
        lines.append("  no team has a monthly budget")
    return "\n".join(lines) + "\n"
