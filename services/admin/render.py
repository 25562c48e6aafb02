"""Reports as people and spreadsheets read them: an aligned table, CSV, or the API's JSON.

JSON is exactly what the admin API returns (integer micro-dollars); CSV writes money as exact
decimal dollars (``12.345678``); the table rounds money to cents for reading.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from spendgate.admin.alerts import AlertList, AlertOut
from spendgate.admin.cache import CacheLine, CacheReport
from spendgate.admin.reports import Chargeback, ChargebackLine
from spendgate.admin.sessions import SessionDetail
from spendgate.domain.money import format_usd, usd_str

FORMATS = ("table", "csv", "json")

Column = tuple[str, Callable[[Any], object], str]
"""Header, getter, kind: ``int``, ``money`` (micro-dollars), ``time`` or ``text``."""

CHARGEBACK_COLUMNS: list[Column] = [
    ("group", lambda x: x.group, "text"), ("developer", lambda x: x.developer, "text"),
    ("team", lambda x: x.team, "text"), ("repo", lambda x: x.repo, "text"),
    ("first_request", lambda x: x.first_at, "time"), ("last_request", lambda x: x.last_at, "time"),
    ("sessions", lambda x: x.sessions, "int"), ("turns", lambda x: x.turns, "int"),
    ("requests", lambda x: x.requests, "int"), ("input", lambda x: x.input_tokens, "int"),
    ("cached", lambda x: x.cached_tokens, "int"), ("output", lambda x: x.output_tokens, "int"),
    ("reasoning", lambda x: x.reasoning_tokens, "int"), ("cost", lambda x: x.cost_micros, "money"),
    ("retries", lambda x: x.retries, "int"), ("retry_cost", lambda x: x.retry_cost_micros, "money"),
    ("downgraded", lambda x: x.downgraded, "int"),
    ("downgrade_saved", lambda x: x.downgrade_saved_micros, "money"),
]

CACHE_COLUMNS: list[Column] = [
    ("group", lambda x: x.group, "text"), ("developer", lambda x: x.developer, "text"),
    ("repo", lambda x: x.repo, "text"), ("requests", lambda x: x.requests, "int"),
    ("input", lambda x: x.input_tokens, "int"), ("cached", lambda x: x.cached_tokens, "int"),
    ("hit_rate_pct", lambda x: x.hit_rate_pct, "text"), ("saved", lambda x: x.saved_micros, "money"),
    ("miss_cost", lambda x: x.miss_cost_micros, "money"),
]



def deliveries_text(a: AlertOut) -> str:
    """Where each delivery stands, e.g. ``slack:platform delivered; email:finops dead (3 attempts: HTTP 500)``."""
    parts = []
    for d in a.deliveries:
        text = f"{d.target}{' resolve' if d.action == 'resolve' else ''} {d.status}"
        if d.status != "delivered" and d.attempts:
            text += f" ({d.attempts} attempt{'s' if d.attempts != 1 else ''}"
            text += f": {d.last_error})" if d.last_error else ")"
        parts.append(text)
    parts += [f"digest {route}" for route in a.digest_routes]
    return "; ".join(parts)


ALERT_COLUMNS: list[Column] = [
    ("created", lambda x: x.created_at, "time"), ("kind", lambda x: x.kind, "text"),
    ("scope", lambda x: x.scope, "text"), ("status", lambda x: x.status, "text"),
    ("deliveries", lambda x: deliveries_text(x) or None, "text"), ("title", lambda x: x.title, "text"),
]
ALERT_CSV_COLUMNS: list[Column] = [
    ("alert_id", lambda x: x.alert_id, "text"), ("created_at", lambda x: x.created_at, "time"),
    ("kind", lambda x: x.kind, "text"), ("severity", lambda x: x.severity, "text"),
    ("scope", lambda x: x.scope, "text"), ("developer", lambda x: x.developer, "text"),
    ("team", lambda x: x.team, "text"), ("cost_center", lambda x: x.cost_center, "text"),
    ("status", lambda x: x.status, "text"), ("deliveries", lambda x: deliveries_text(x), "text"),
    ("title", lambda x: x.title, "text"), ("summary", lambda x: x.summary, "text"),
]


def _cell(value: object, kind: str, *, human: bool) -> str:
    if value is None:
        return "-" if human else ""
    if kind == "money":
        assert isinstance(value, int)
        return format_usd(value) if human else usd_str(value)
    if kind == "int" and human:
        return f"{value:,}"
    if kind == "time":
        assert isinstance(value, datetime)
        return value.strftime("%Y-%m-%d %H:%M") if human else value.isoformat()
    return str(value)


def table(columns: Sequence[Column], rows: Sequence[Any], total: Any | None = None) -> str:
    cells = [[_cell(get(r), kind, human=True) for _, get, kind in columns] for r in rows]
    if total is not None:
        cells.append(["TOTAL", *(_cell(get(total), kind, human=True) for _, get, kind in columns[1:])])
    headers = [name for name, _, _ in columns]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    right = [kind in ("int", "money") for _, _, kind in columns]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True))

    lines = [fmt(headers), fmt(["-" * w for w in widths]), *(fmt(c) for c in cells)]
    return "\n".join(line.rstrip() for line in lines)


def to_csv(columns: Sequence[Column], rows: Sequence[Any], total: Any | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([name for name, _, _ in columns])
    for r in rows:
        writer.writerow([_cell(get(r), kind, human=False) for _, get, kind in columns])
    if total is not None:
        writer.writerow(["TOTAL", *(_cell(get(total), kind, human=False) for _, get, kind in columns[1:])])
    return out.getvalue()


def to_json(value: object) -> str:
    return msgspec.json.format(msgspec.json.encode(value)).decode()


def chargeback(report: Chargeback, fmt: str) -> str:
    if fmt == "json":
        return to_json(report)
    render = table if fmt == "table" else to_csv
    return render(CHARGEBACK_COLUMNS, report.lines, report.total)


def cache(report: CacheReport, fmt: str) -> str:
    if fmt == "json":
        return to_json(report)
    if fmt == "csv":
        return to_csv(CACHE_COLUMNS, report.lines, report.total)
    text = table(CACHE_COLUMNS, report.lines, report.total)
    flagged: list[CacheLine] = report.flagged_sessions
    head = (f"\n\nSessions under {report.flag_below_pct} % hit rate (at least {report.min_requests} requests), "
            "worst first: review their prompt shape")
    return text + head + ("\n" + table(CACHE_COLUMNS, flagged) if flagged else "\n(none)")


def session(detail: SessionDetail, fmt: str) -> str:
    if fmt == "json":
        return to_json(detail)
    line: ChargebackLine = detail.line
    out = [table(CHARGEBACK_COLUMNS, [line]), ""]
    for turn in detail.turns:
        out.append(f"turn {turn.turn_id or '-'}  {turn.first_at:%Y-%m-%d %H:%M:%S}  requests {turn.requests}  "
                   f"cost {format_usd(turn.cost_micros, places=6)}")
        for r in turn.request_lines:
            model = r.model_used if r.model_used == r.model_requested else f"{r.model_requested}->{r.model_used}"
            out.append(f"  {r.occurred_at:%H:%M:%S}  {model:<36} stage {r.stage:<9} {r.status:<14} "
                       f"in {r.input_tokens:>7} cached {r.cached_tokens:>7} out {r.output_tokens:>6} "
                       f"{format_usd(r.cost_micros, places=6):>11}{'  retry' if r.retry else ''}")
    return "\n".join(out)


def alerts(found: AlertList, fmt: str) -> str:
    if fmt == "json":
        return to_json(found)
    if fmt == "csv":
        return to_csv(ALERT_CSV_COLUMNS, found.alerts)
    if not found.alerts:
        return "no alerts"
    return table(ALERT_COLUMNS, found.alerts)
