"""Rendering the nightly report as HTML and text.

Charts in HTML: in mail an ``<img>`` of the PNG by ``cid:`` reference (mail clients do not show SVG);
on a page (``forecast report --out``) the SVG inline, where it scales to the content width and a test
can read its parts back, with a narrow copy the page shows instead on a phone. Either way the chart
fills the content width (1,050 px of a 1,100 px column, the full width on a phone).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from html import escape
from typing import TYPE_CHECKING

from spendgate.domain.money import format_usd
from spendgate.forecaster.chart import chart_id

if TYPE_CHECKING:
    from spendgate.forecaster.report import Report, ScopeSection

CONTENT_WIDTH_PX = 1050
NARROW_MAX_PX = 600
"""Up to this page width (phones) the page shows each chart's narrow copy."""
_STYLE = ("body{font-family:Arial,Helvetica,sans-serif;color:#222;max-width:1100px;margin:0 auto;padding:0 12px}"
          "table{border-collapse:collapse;margin:8px 0}.scroll{overflow-x:auto}"
          "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}th{background:#f0f0f0}"
          "td.l,th.l{text-align:left}.risk{color:#c1121f;font-weight:bold}"
          "figure{margin:8px 0 4px}figcaption{color:#444;margin-top:4px}"
          f"svg.chart,img.chart{{display:block;width:100%;max-width:{CONTENT_WIDTH_PX}px;height:auto}}"
          f"svg.narrow{{display:none}}@media (max-width:{NARROW_MAX_PX}px){{svg.wide{{display:none}}"
          "svg.narrow{display:block}}")
HEADERS = ["spent", "P10", "P50", "P90", "budget", "P50/budget", "P50 crosses", "P90 crosses", "model"]


def _day(d: object) -> str:
    return "-" if d is None else str(d)


def _heading(kind: str, heading: str) -> str:
    return heading if kind == "org" else f"{heading} by risk"


def _row(s: ScopeSection) -> list[str]:
    f = s.result.forecast
    return [s.name, format_usd(f.actual_micros), format_usd(f.p10_micros), format_usd(f.p50_micros),
            format_usd(f.p90_micros), format_usd(f.budget_micros or 0), f"{100 * s.risk:.0f}%",
            _day(f.p50_crosses_on), _day(f.p90_crosses_on), f.model]


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _table(kind: str, sections: list[ScopeSection]) -> list[str]:
    head = "".join(f"<th class='l'>{h}</th>" if i in (0, 9) else f"<th>{h}</th>"
                   for i, h in enumerate([kind if kind != "org" else "scope", *HEADERS]))
    out = [f"<div class='scroll'><table><tr>{head}</tr>"]
    for s in sections:
        cls = " class='risk'" if s.risk >= 1.0 else ""
        out.append(f"<tr{cls}>" + "".join(f"<td class='l'>{escape(c)}</td>" if i in (0, 9) else f"<td>{escape(c)}</td>"
                                           for i, c in enumerate(_row(s))) + "</tr>")
    out.append("</table></div>")
    return out


def _caption(s: ScopeSection) -> str:
    f = s.result.forecast
    text = f"Spent {format_usd(f.actual_micros)} by {f.as_of}; P50 {format_usd(f.p50_micros)} at month end"
    if f.budget_micros is not None:
        text += f", {100 * s.risk:.0f}% of the {format_usd(f.budget_micros)} budget"
    if f.p50_crosses_on is not None:
        text += f"; P50 {'crossed' if f.p50_crosses_on <= f.as_of else 'crosses'} it on {f.p50_crosses_on}"
    return text + "."


def _figure(s: ScopeSection, image_src: Mapping[str, str] | None) -> str:
    """The chart: ``<img>`` of ``image_src[scope]`` when given, else the inline SVG (else the PNG inline)."""
    alt = f"burndown chart of {s.title}"
    if image_src is not None:
        img = (f"<img class='chart' src='{escape(image_src[s.scope], quote=True)}' alt='{escape(alt, quote=True)}' "
               f"width='{CONTENT_WIDTH_PX}' style='display:block;width:100%;max-width:{CONTENT_WIDTH_PX}px;"
               "height:auto'>")
    elif s.chart.svg is not None:
        img = s.chart.svg
    elif s.chart.png is not None:
        img = f"<img class='chart' src='{data_uri(s.chart.png)}' alt='{escape(alt, quote=True)}'>"
    else:
        img = ""
    return (f"<figure data-scope='{escape(s.scope, quote=True)}' data-chart='{chart_id(s.scope)}'>{img}"
            f"<figcaption>{escape(_caption(s))}</figcaption></figure>")


def _drivers(s: ScopeSection) -> list[str]:
    out = ["<h4>Developers driving the change (last 7 days vs the 7 before)</h4><div class='scroll'><table>"
           "<tr><th class='l'>developer</th><th>last 7 days</th><th>7 days before</th><th>change</th></tr>"]
    for d in s.developers:
        out.append(f"<tr><td class='l'>{escape(d.developer)}</td><td>{format_usd(d.recent_micros)}</td>"
                   f"<td>{format_usd(d.before_micros)}</td><td>{format_usd(d.change_micros)}</td></tr>")
    out.append("</table></div><h4>Costliest sessions (last 7 days)</h4><div class='scroll'><table><tr>"
               "<th class='l'>session</th><th class='l'>developer</th><th class='l'>repo</th><th>cost</th>"
               "<th>requests</th></tr>")
    for x in s.sessions:
        out.append(f"<tr><td class='l'>{escape(x.session_id)}</td><td class='l'>{escape(x.developer)}</td>"
                   f"<td class='l'>{escape(x.repo or '-')}</td><td>{format_usd(x.cost_micros)}</td>"
                   f"<td>{x.requests}</td></tr>")
    out.append("</table></div>")
    return out


def report_html(report: Report, image_src: Mapping[str, str] | None = None) -> str:
    """The report as HTML; ``image_src`` maps scope → image URL (mail), else charts are inlined."""
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'>"
           "<meta name='viewport' content='width=device-width, initial-scale=1'>"
           f"<title>Spend forecast, {report.month:%B %Y}</title><style>{_STYLE}</style></head><body>",
           f"<h1>Spend forecast, {report.month:%B %Y}</h1>",
           f"<p>Generated {escape(report.generated_at.isoformat(timespec='minutes'))}. Month-end spend of every "
           "scope with a monthly budget: P50 is the median outcome, P10-P90 the range that holds the truth four "
           "times in five. In each chart the fan opens at what has been spent so far.</p>"]
    for kind, heading, sections in report.groups():
        out.append(f"<h2>{_heading(kind, heading)}</h2>")
        out += _table(kind, sections)
        for s in sections:
            out.append(f"<section><h3>{escape(s.title)}</h3>{_figure(s, image_src)}")
            if kind == "team":
                out += _drivers(s)
            out.append("</section>")
    if not report.sections:
        out.append("<p>No scope has a monthly budget.</p>")
    out.append("</body></html>")
    return "\n".join(out)


def report_text(report: Report) -> str:
    lines = [f"Spend forecast, {report.month:%B %Y} (generated {report.generated_at.isoformat(timespec='minutes')})"]
    for kind, heading, sections in report.groups():
        lines += ["", f"{_heading(kind, heading)}:",
                  "  " + " | ".join([kind if kind != "org" else "scope", *HEADERS])]
        lines += ["  " + " | ".join(_row(s)) for s in sections]
        for s in sections if kind == "team" else []:
            lines += ["", f"{s.title}", "  developers driving the change (last 7 days vs the 7 before):"]
            lines += [f"    {d.developer}: {format_usd(d.recent_micros)} vs {format_usd(d.before_micros)} "
                      f"({format_usd(d.change_micros)})" for d in s.developers] or ["    none"]
            lines.append("  costliest sessions (last 7 days):")
            lines += [f"    {x.session_id} {x.developer} {x.repo or '-'}: {format_usd(x.cost_micros)} "
                      f"in {x.requests} requests" for x in s.sessions] or ["    none"]
    if not report.sections:
        lines += ["", "  no scope has a monthly budget"]
    return "\n".join(lines) + "\n"
