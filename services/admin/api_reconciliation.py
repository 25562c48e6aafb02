"""``GET /v1/reconciliation``: the stored comparison of the providers' bills with the ledger (what the
nightly run and ``spendgate reconcile`` recorded), per provider and UTC day and per day, model and upstream."""

from __future__ import annotations

from datetime import date

from aiohttp import web

from spendgate.admin.access import require
from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import reads_everything
from spendgate.admin.deps import DEPS
from spendgate.admin.middleware import bad_request, json_response
from spendgate.admin.openapi import Operation, Param
from spendgate.admin.window import WindowError, parse_date
from spendgate.core.db import Queryable
from spendgate.domain.reconcile import RangeError, Reconciliation, check_range, default_range, document
from spendgate.store.reconciliation import store


async def stored_reconciliation(db: Queryable, start: date, end: date, provider: str | None) -> Reconciliation:
    """The stored lines of ``start``..``end`` and the gaps recorded for those days."""
    found = await store.stored_lines(db, start, end, provider)
    gaps = [(p, d) for p, d, _published in await store.gap_days(db, start, end) if provider in (None, p)]
    return document(start, end, [s.line for s in found], gaps)


async def get_reconciliation(request: web.Request) -> web.Response:
    require(request, reads_everything(identity_of(request)), "read the reconciliation")
    deps = request.app[DEPS]
    today = deps.now().date()
    first, last = default_range(today, deps.settings.reconcile.lookback_days)
    try:
        start = parse_date(request.query.get("from"), what="from") or first
        end = parse_date(request.query.get("to"), what="to") or max(last, start)
        check_range(start, end, today)
    except (WindowError, RangeError) as exc:
        raise bad_request(str(exc).replace("--", "")) from None
    provider = request.query.get("provider")
    if provider is not None and not 1 <= len(provider) <= 64:
        raise bad_request("provider must be 1 to 64 characters")
    return json_response(await stored_reconciliation(deps.pool, start, end, provider))


def operations() -> list[Operation]:
    day = {"type": "string", "format": "date"}
    return [
        Operation("GET", "/v1/reconciliation", "getReconciliation",
                  "The providers' bills beside the ledger, per UTC day and per day, model and upstream",
                  get_reconciliation, Reconciliation, tags=("reconciliation",), params=(
                      Param("from", day, "first UTC day (default: reconcile.lookback_days before today)"),
                      Param("to", day, "last UTC day, inclusive (default: yesterday)"),
                      Param("provider", {"type": "string", "minLength": 1, "maxLength": 64},
                            "only this configured provider"))),
    ]
