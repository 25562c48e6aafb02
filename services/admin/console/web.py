"""The console's rendering: Jinja2 templates shipped in the package, the page layout, CSV exports.

Pages are server-rendered HTML (autoescaped); charts are drawn in the browser by the vendored uPlot from
data the page embeds as JSON (:func:`chart_data`), so a page is one request and works without a CDN.
Every page that shows a table also answers ``?format=csv`` with the same rows (:func:`csv_response`).
State lives in the URL (query parameters), so a link is shareable.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from spendgate.admin.console.auth_chain import CSRF_TOKEN, identity_of
from spendgate.domain.money import format_usd

HERE = Path(__file__).parent
STATIC = HERE / "static"


def _usd(micros: int | None) -> str:
    return "—" if micros is None else format_usd(micros)


def _pct(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio * 100:.1f} %"


ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                         autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.StrictUndefined,
                         trim_blocks=True, lstrip_blocks=True)
ENV.filters["usd"] = _usd
ENV.filters["pct"] = _pct

#: The navigation, in order: (path, label). Pages a role may not open are still listed; they answer 403.
NAV: Sequence[tuple[str, str]] = (
    ("/", "Overview"), ("/teams", "Teams"), ("/developers", "Developers"), ("/sessions", "Sessions"),
    ("/cache", "Cache"), ("/policy", "Policy"), ("/budgets", "Budgets and keys"), ("/alerts", "Alerts"),
    ("/audit", "Audit"),
)


def render(request: web.Request, template: str, *, title: str, status: int = 200,
           **context: Any) -> web.Response:
    """One console page in the shared layout, for the signed-in identity. Forms put ``csrf_token`` in a
    hidden field of that name (empty when the request came with a bearer token, which needs none)."""
    html = ENV.get_template(template).render(title=title, who=identity_of(request), nav=NAV, path=request.path,
                                             query=request.rel_url.query, csrf_token=request.get(CSRF_TOKEN, ""),
                                             **context)
    return web.Response(status=status, text=html, content_type="text/html",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": CSP, "Referrer-Policy": "same-origin"})


#: No inline script or style from anywhere but this origin; chart data travels as JSON in a
#: ``<script type="application/json">`` element, which is data, not code.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def chart_data(value: object) -> str:
    """JSON for a ``<script type="application/json">`` element, safe against ``</script>`` in names."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("&", "\\u0026")


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> web.Response:
    """The rows a page shows, as a CSV download (money as exact decimal dollars, chosen by the caller)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return web.Response(text=out.getvalue(), content_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                 "Cache-Control": "no-store"})


def _cell(value: object) -> object:
    """A spreadsheet must not run a cell: text starting with = + - @ is quoted with a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def wants_csv(request: web.Request) -> bool:
    return request.rel_url.query.get("format") == "csv"


def query_with(query: Mapping[str, str], **changes: str | None) -> str:
    """The current query string with some parameters changed (``None`` drops one): for links that keep
    the page's state."""
    merged = {k: v for k, v in query.items() if k not in changes}
    merged.update({k: v for k, v in changes.items() if v is not None})
    from urllib.parse import urlencode
    return "?" + urlencode(merged) if merged else ""


ENV.globals["query_with"] = query_with
