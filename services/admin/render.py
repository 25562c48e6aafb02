"""The admin area's documents as the CLI prints them, in the one convention of :mod:`spendgate.core.tables`.

JSON is exactly what the admin API returns (integer micro-dollars); CSV carries the same fields of
each line (money as exact decimal dollars, ``cost_usd``); the table is the part of a line that fits
120 columns, money rounded for reading.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spendgate.core.tables import Field, field, render, table, to_json
from spendgate.domain.money import format_usd

if TYPE_CHECKING:
    from spendgate.admin.alerts import AlertList, AlertOut, DeadLetterList
    from spendgate.admin.api_tokens import TokenList
    from spendgate.admin.cache import CacheReport
    from spendgate.admin.reports import Chargeback
    from spendgate.admin.sessions import RequestLine, SessionDetail
    from spendgate.admin.views import Budgets, BudgetStatus, KeyList


def chargeback_fields(by: str) -> list[Field]:
    """Every field of a chargeback line; the table leaves out what a line of ``by`` makes redundant."""
    per_session = by == "session"
    return [
        field("group"), field("developer", header=None), field("team", header=None),
        field("cost_center", header=None), field("repo", header=None),
        field("first_at", "time", header=None), field("last_at", "time", header=None),
        field("sessions", "int", header=None if per_session else "sessions"), field("turns", "int", header=None),
        field("requests", "int"), field("refused", "int", header=None),
        field("input_tokens", "int", "input"), field("cached_tokens", "int", header=None),
        field("output_tokens", "int", "output"), field("reasoning_tokens", "int", header=None),
        field("cost_micros", "money", "cost"), field("retries", "int"),
        field("retry_cost_micros", "money", "retry_cost"), field("downgraded", "int", header=None),
        field("downgrade_saved_micros", "money", "saved"), field("unpriced_downgrades", "int", header=None),
    ]


CACHE_FIELDS: list[Field] = [
    field("group"), field("developer"), field("repo", header=None), field("requests", "int"),
    field("input_tokens", "int", "input"), field("cached_tokens", "int", "cached"),
    field("hit_rate_pct", "pct", "hit_rate"), field("saved_micros", "money", "saved"),
    field("miss_cost_micros", "money", "miss_cost"),
]

SESSION_FIELDS: list[Field] = [
    field("group", header="session"), field("developer"), field("team"), field("cost_center", header=None),
    field("repo", header=None), field("first_at", "time", header=None), field("last_at", "time", "last"),
    field("sessions", "int", header=None), field("turns", "int"), field("requests", "int"),
    field("refused", "int", header=None), field("input_tokens", "int", header=None),
    field("cached_tokens", "int", header=None), field("output_tokens", "int", header=None),
    field("reasoning_tokens", "int", header=None), field("cost_micros", "money", "cost"),
    field("retries", "int", header=None), field("retry_cost_micros", "money", header=None),
    field("downgraded", "int", header=None), field("downgrade_saved_micros", "money", header=None),
    field("unpriced_downgrades", "int", header=None),
]
"""``sessions list``: a chargeback by session, read as a list of sessions."""

KEY_FIELDS: list[Field] = [
    field("key_id"), field("key_prefix", header="prefix"), field("developer"), field("team"),
    field("cost_center"), field("created_at", "time", header=None), field("revoked_at", "time", header=None),
    field("active", "bool", header=None), Field("status", lambda k: _key_status(k), table_only=True),
]


def _key_status(k: Any) -> str:
    return "active" if k.active else f"revoked {k.revoked_at:%Y-%m-%d %H:%M}"


BUDGET_FIELDS: list[Field] = [
    field("scope"), field("daily_micros", "money", "daily"), field("monthly_micros", "money", "monthly"),
    field("timezone"), field("thresholds_pct", "list", "thresholds"), field("at_pause"), field("retry_cap", "int"),
    field("raised_micros", "money", "raised"), field("weekly_micros", "money", "weekly"), field("model", header=None),
    Field("cascades", lambda b: _cascades_text(b.cascades), header=None),
]


def _cascades_text(cascades: dict[str, list[str]] | None) -> str | None:
    """A budget's own cascades on one line: ``gpt-5.1 > gpt-5.1-mini > gpt-4.1-mini; o3 > o4-mini``."""
    if not cascades:
        return None
    return "; ".join(f"{m} > {' > '.join(c)}" for m, c in sorted(cascades.items()))


def chargeback(report: Chargeback, fmt: str) -> str:
    return render(fmt, chargeback_fields(report.by), report.lines, document=report, total=report.total)


def cache(report: CacheReport, fmt: str) -> str:
    if fmt != "table":
        return render(fmt, CACHE_FIELDS, report.lines, document=report, total=report.total)
    text = table(CACHE_FIELDS, report.lines, report.total)
    flagged = report.flagged_sessions
    head = (f"\n\nSessions under {report.flag_below_pct} % hit rate (at least {report.min_requests} requests), "
            "worst first: review their prompt shape")
    return text + head + ("\n" + table(CACHE_FIELDS, flagged) if flagged else "\n(none)")


def sessions(report: Chargeback, fmt: str) -> str:
    return render(fmt, SESSION_FIELDS, report.lines, document=report)


def keys(found: KeyList, fmt: str) -> str:
    return render(fmt, KEY_FIELDS, found.keys, document=found)


TOKEN_FIELDS: list[Field] = [
    field("name"), field("token_prefix", header="prefix"), field("role"),
    Field("teams", lambda t: " ".join(t.teams) or None), field("developer"), field("created_by", header=None),
    field("created_at", "time", header=None), field("expires_at", "time", "expires"),
    field("revoked_at", "time", header=None),
]


def tokens(found: TokenList, fmt: str) -> str:
    return render(fmt, TOKEN_FIELDS, found.tokens, document=found)


def budgets(found: Budgets, fmt: str) -> str:
    return render(fmt, BUDGET_FIELDS, found.budgets, document=found)


def budget(status: BudgetStatus, fmt: str) -> str:
    if fmt == "json":
        return to_json(status)
    b = status.budget
    out = [f"{b.scope}  ({b.timezone}, thresholds {','.join(map(str, b.thresholds_pct))}, at pause: {b.at_pause}, "
           f"retry cap: {b.retry_cap if b.retry_cap is not None else 'default'})", ""]
    if b.cascades:
        out[-1:-1] = [f"own cascades: {_cascades_text(b.cascades)}"]
    out.append(table([field("period"), field("start", "date"), field("spent_micros", "money", "spent"),
                      field("budget_micros", "money", "budget"), field("stage"),
                      field("resets_at", "time", "resets")], status.periods))
    if status.raises:
        out += ["", table([field("amount_micros", "money", "raise"), field("until", "time"), field("reason")],
                          status.raises)]
    return "\n".join(out)


def _stream(r: RequestLine) -> str | None:
    return None if r.stream is None else ("stream" if r.stream else "plain")


def _model(r: RequestLine) -> str:
    return r.model_used if r.model_used == r.model_requested else f"{r.model_requested}->{r.model_used}"


def _status(r: RequestLine) -> str:
    """``ok``, ``error, retry``, ``incomplete, intent estimate`` (usage estimated after a proxy crash)."""
    return r.status + (", retry" if r.retry else "") + (", intent estimate" if r.intent_estimate else "")


REQUEST_FIELDS: list[Field] = [
    Field("time", lambda r: f"{r.occurred_at:%H:%M:%S}"), Field("endpoint", lambda r: r.endpoint.removeprefix("/v1/")),
    Field("answer", _stream), Field("model", _model), field("stage"),
    Field("status", _status), field("input_tokens", "int", "input"),
    field("cached_tokens", "int", "cached"), field("output_tokens", "int", "output"),
    field("cost_micros", "money", "cost"),
]


def session(detail: SessionDetail, fmt: str) -> str:
    if fmt == "json":
        return to_json(detail)
    line = detail.line
    out = [table([field("group", header="session"), field("developer"), field("team"), field("repo"),
                  field("turns", "int"), field("requests", "int"), field("cost_micros", "money", "cost"),
                  field("downgrade_saved_micros", "money", "saved")], [line])]
    for turn in detail.turns:
        out += ["", f"turn {turn.turn_id or '-'}  {turn.first_at:%Y-%m-%d %H:%M:%S}  requests {turn.requests}  "
                    f"cost {format_usd(turn.cost_micros)}",
                table(REQUEST_FIELDS, turn.request_lines)]
    return "\n".join(out)


def _delivery_parts(a: AlertOut, *, errors: bool) -> list[str]:
    parts = []
    for d in a.deliveries:
        text = f"{d.target}{' resolve' if d.action == 'resolve' else ''} {d.status}"
        if d.status != "delivered" and d.attempts:
            text += f" ({d.attempts} attempt{'s' if d.attempts != 1 else ''}"
            text += f": {d.last_error})" if errors and d.last_error else ")"
        parts.append(text)
    return parts


def deliveries_text(a: AlertOut, *, errors: bool = True) -> str:
    """Where each delivery stands, e.g. ``slack:platform delivered; email:finops dead (3 attempts: HTTP 500)``
    (without ``errors``: ``… dead (3 attempts)``), then ``digest <route>`` for each digest route."""
    return "; ".join(_delivery_parts(a, errors=errors) + [f"digest {route}" for route in a.digest_routes])


ALERT_FIELDS: list[Field] = [
    field("alert_id", header=None), field("created_at", "time", "created"), field("kind"),
    field("severity", header=None), field("scope"), field("developer", header=None), field("team", header=None),
    field("cost_center", header=None), field("title", header=None), field("summary", header=None),
    field("status"), Field("deliveries", lambda a: "; ".join(_delivery_parts(a, errors=True)) or None, header=None),
    Field("deliveries", lambda a: deliveries_text(a, errors=False) or None, table_only=True),
    field("digest_routes", "list", header=None),
]
"""``alerts list``: CSV carries the JSON's fields in order (each delivery as text, with its last error);
the table reads created, kind, scope, status and where each delivery stands (digest routes included),
which fits 120 columns: the title, the summary and the errors are in CSV and JSON."""


def alerts(found: AlertList, fmt: str) -> str:
    return render(fmt, ALERT_FIELDS, found.alerts, document=found)


DEAD_LETTER_FIELDS: list[Field] = [
    field("dead_letter_id", "int", "id"), field("created_at", "time", "created"), field("kind"), field("scope"),
    field("route"), field("target"), field("action", header=None), field("attempts", "int"),
    field("last_error", header="error"), field("replayed_at", "time", "replayed"), field("job_id", header=None),
    field("alert_id", header=None),
]


def dead_letters(found: DeadLetterList, fmt: str) -> str:
    return render(fmt, DEAD_LETTER_FIELDS, found.dead_letters, document=found)
