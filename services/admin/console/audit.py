"""The Audit page (``/audit``, admin and FinOps): every change — budgets, raises, keys, tokens, policy,
rate limits, alert replays, sign-ins — with who made it and when, filterable, with a CSV export."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time

from aiohttp import web

from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import may_read_audit
from spendgate.admin.console.web import csv_response, render, wants_csv
from spendgate.admin.deps import DEPS
from spendgate.admin.window import WindowError, parse_date
from spendgate.store.access import store as access

FILTERS = ("actor", "action", "target", "since")
MAX_FILTER_CHARS = 256
PAGE_ROWS = 500


def _filters(request: web.Request) -> tuple[dict[str, str], str | None]:
    """The filters as given (for the form) and an error to show instead of rows, if any."""
    given = {k: request.query.get(k, "")[:MAX_FILTER_CHARS] for k in FILTERS}
    if given["since"]:
        try:
            parse_date(given["since"], what="since")
        except WindowError as exc:
            return given, str(exc)
    return given, None


async def audit_page(request: web.Request) -> web.Response:
    who = identity_of(request)
    if not may_read_audit(who):
        return render(request, "audit.html", title="Audit", status=403, forbidden=True, rows=[], given={},
                      error=None)
    given, error = _filters(request)
    rows: list[access.AuditEntry] = []
    if error is None:
        day = parse_date(given["since"], what="since") if given["since"] else None
        rows = await access.audit_entries(
            request.app[DEPS].pool, actor=given["actor"] or None, action=given["action"] or None,
            target=given["target"] or None, since=datetime.combine(day, time(), UTC) if day else None,
            limit=PAGE_ROWS)
    if wants_csv(request):
        return csv_response("audit.csv", ["at", "name", "actor", "action", "target", "detail"],
                            ([r.at.isoformat(), r.actor_name or "", r.actor, r.action, r.target,
                              json.dumps(r.detail, sort_keys=True)] for r in rows))
    return render(request, "audit.html", title="Audit", forbidden=False, rows=rows, given=given, error=error,
                  limit=PAGE_ROWS, detail=lambda d: json.dumps(d, sort_keys=True))


def add_audit(app: web.Application) -> None:
    app.router.add_get("/audit", audit_page, name="audit")
