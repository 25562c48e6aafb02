"""*Alerts* (``/alerts``): what fired and whether each delivery got through, the dead letters with a replay
button, and the routes in force.

The history and dead letters are :func:`~spendgate.admin.alerts.alert_list` and
:func:`~spendgate.admin.alerts.dead_letter_list` (``GET /v1/alerts``, ``spendgate alerts list | dead``);
the routes are the alerter's own rules file read by :func:`~spendgate.core.alert_routes.load_rules`, shown
by target name only (a name carries no secret). Replay hands dead letters back to the running alerter
(:func:`~spendgate.admin.alerts.hand_back_for_replay`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from spendgate.admin.access import audit
from spendgate.admin.alert_query import KINDS
from spendgate.admin.alerts import AlertOut, alert_list, dead_letter_list, hand_back_for_replay, parse_since
from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.forms import Refused, action, forbidden, read_form, see_other
from spendgate.admin.console.identity import (
    Identity,
    may_read_alerts,
    may_read_team,
    may_replay_alerts,
    reads_everything,
)
from spendgate.admin.console.web import csv_response, render, wants_csv
from spendgate.admin.deps import DEPS
from spendgate.admin.window import WindowError
from spendgate.core.alert_routes import Rules, load_rules
from spendgate.domain.errors import ConfigError

HISTORY_LIMIT = 200
STATUSES = ("delivered", "pending", "failed", "digest", "unrouted")


def _visible(who: Identity, alert: AlertOut) -> bool:
    return reads_everything(who) or (alert.team is not None and may_read_team(who, alert.team))


def _filters(request: web.Request) -> dict[str, str]:
    q = request.rel_url.query
    return {k: q.get(k, "").strip()[:200] for k in ("scope", "kind", "status", "since")}


def _routes(path: Path | None) -> tuple[Rules | None, str | None]:
    try:
        return load_rules(path), None
    except ConfigError as exc:
        return None, exc.message


async def page(request: web.Request, *, error: str | None = None, status: int = 200) -> web.StreamResponse:
    who = identity_of(request)
    if not may_read_alerts(who):
        return render(request, "alerts.html", title="Alerts", status=403, denied=True,
                      error="Alerts are for admins, FinOps and managers.")
    deps = request.app[DEPS]
    f = _filters(request)
    if any("\x00" in v for v in f.values()):
        error, status, f = "a filter contains a NUL character", 400, dict.fromkeys(f, "")
    if f["kind"] and f["kind"] not in KINDS:
        error, status, f["kind"] = f"kind must be one of {', '.join(KINDS)}", 400, ""
    if f["status"] and f["status"] not in STATUSES:
        error, status, f["status"] = f"status must be one of {', '.join(STATUSES)}", 400, ""
    try:
        since = parse_since(f["since"] or None)
    except WindowError as exc:
        error, status, since, f["since"] = str(exc), 400, None, ""
    found = await alert_list(deps.pool, scope=f["scope"] or None, kind=f["kind"] or None, since=since,
                             limit=HISTORY_LIMIT)
    alerts = [a for a in found.alerts if _visible(who, a) and (not f["status"] or a.status == f["status"])]
    everything = reads_everything(who)
    dead = (await dead_letter_list(deps.pool, include_replayed=request.rel_url.query.get("replayed") == "1")
            ).dead_letters if everything else []
    table = request.rel_url.query.get("table", "history")
    if wants_csv(request):
        if table == "dead":
            return csv_response("dead-letters.csv", ["dead_letter_id", "created_at", "kind", "scope", "route", "target",
                                                     "attempts", "last_error", "replayed_at"],
                                [[d.dead_letter_id, d.created_at.isoformat(), d.kind, d.scope, d.route, d.target,
                                  d.attempts, d.last_error or "", d.replayed_at.isoformat() if d.replayed_at else ""]
                                 for d in dead])
        return csv_response("alerts.csv", ["created_at", "kind", "severity", "scope", "title", "status", "deliveries"],
                            [[a.created_at.isoformat(), a.kind, a.severity, a.scope, a.title, a.status,
                              "; ".join(f"{d.target} {d.status}" for d in a.deliveries)] for a in alerts])
    rules, rules_error = _routes(deps.settings.alerts.routes_file) if everything else (None, None)
    done = request.rel_url.query.get("replayed_now")
    flash = (f"{done} dead letter(s) handed back to the alerter: it re-sends them within "
             f"{deps.settings.alerts.schedule_every_s:g} s.") if done and done.isascii() and done.isdigit() else None
    return render(request, "alerts.html", title="Alerts", status=status, denied=False, error=error, flash=flash,
                  alerts=alerts, dead=dead, filters=f, kinds=KINDS, statuses=STATUSES, rules=rules,
                  rules_error=rules_error, routes_file=deps.settings.alerts.routes_file, everything=everything,
                  may_replay=may_replay_alerts(who), limit=HISTORY_LIMIT)


@action(page)
async def replay(request: web.Request, who: Identity) -> web.StreamResponse:
    if not may_replay_alerts(who):
        raise forbidden("only admins replay dead letters")
    fields = await read_form(request)
    raw = fields.get("dead_letter_id", "").strip()
    if raw == "all":
        ids: list[int] = []
    elif raw.isascii() and raw.isdigit() and len(raw) <= 18:
        ids = [int(raw)]
    else:
        raise Refused("dead_letter_id must be a dead letter's number or all")
    handed = await hand_back_for_replay(request.app[DEPS].pool, ids, actor=who.actor)
    await audit(request, "alert.replay", "dead_letters", {"ids": ids[:100], "count": handed})
    raise see_other("/alerts?" + urlencode({"replayed_now": handed}))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/alerts", page, name="alerts")
    app.router.add_post("/alerts/replay", replay)
