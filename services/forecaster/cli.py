"""``spendgate forecaster`` (run the worker alone) and ``spendgate forecast …``: print forecasts,
render or send the nightly report, backtest the model on a series a user brings.

Imports beyond click happen inside the commands (numpy, the model, the database): this module is
imported by every ``spendgate`` call.
"""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from spendgate.core.clitools import (
    DOCUMENT_FORMATS,
    CliError,
    Ctx,
    api_option,
    check_output_file,
    force_option,
    format_option,
    pass_ctx,
    run,
    valid_scope,
    write_output_file,
)
from spendgate.core.tables import Field, field

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from spendgate.forecaster.backtest import Metrics
    from spendgate.forecaster.chart import ChartFormat
    from spendgate.forecaster.engine import ScopeForecast
    from spendgate.forecaster.report import Report


@click.command()
@pass_ctx
def forecaster(ctx: Ctx) -> None:
    """Run the forecaster alone: hourly and nightly forecasts, overrun events, the nightly report."""
    from spendgate.forecaster.service import serve
    from spendgate.runtime import run_services

    run(run_services(ctx.settings, {"forecaster": serve}), serving=True)


def _end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def _as_of(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    """``--as-of``: a day no later than today (UTC); the ledger of a day still to come is unknown."""
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"use a date such as 2026-03-10, not {value!r}") from None
    today = datetime.now(UTC).date()
    if day > today:
        raise click.BadParameter(f"{day} is in the future (today is {today}, UTC)")
    return day


as_of_option = click.option("--as-of", "as_of", callback=_as_of, metavar="YYYY-MM-DD",
                            help="Forecast from the ledger as it stood at the end of this day (audits).")

FORECAST_FIELDS: list[Field] = [
    Field("scope", lambda r: r.scope.scope), Field("month", lambda r: r.forecast.month, "date", header=None),
    Field("as_of", lambda r: r.forecast.as_of, "date"),
    Field("actual_micros", lambda r: r.forecast.actual_micros, "money", "spent"),
    Field("p10_micros", lambda r: r.forecast.p10_micros, "money", "p10"),
    Field("p50_micros", lambda r: r.forecast.p50_micros, "money", "p50"),
    Field("p90_micros", lambda r: r.forecast.p90_micros, "money", "p90"),
    Field("budget_micros", lambda r: r.forecast.budget_micros, "money", "budget"),
    Field("p10_crosses_on", lambda r: r.forecast.p10_crosses_on, "date", header=None),
    Field("p50_crosses_on", lambda r: r.forecast.p50_crosses_on, "date", "p50_crosses"),
    Field("p90_crosses_on", lambda r: r.forecast.p90_crosses_on, "date", "p90_crosses"),
    Field("model", lambda r: r.forecast.model), Field("inputs", lambda r: r.forecast.inputs, "map", header=None),
]

STORED_FORECAST_FIELDS: list[Field] = [
    field("scope"), field("month", "date", header=None), field("as_of", "date"),
    field("actual_micros", "money", "spent"), field("p10_micros", "money", "p10"),
    field("p50_micros", "money", "p50"), field("p90_micros", "money", "p90"),
    field("budget_micros", "money", "budget"), field("p10_crosses_on", "date", header=None),
    field("p50_crosses_on", "date", "p50_crosses"), field("p90_crosses_on", "date", header=None),
    field("model"), field("computed_at", "time", "computed"),
]
"""A forecast as the admin API serves it: the forecaster worker's latest, with when it was computed."""


@click.group(invoke_without_command=True)
@click.option("--scope", callback=valid_scope,
              help="Only this scope, e.g. team:platform (default: every scope with a monthly budget, and every "
                   "developer, team, cost center and the org that spent, budgeted or not).")
@format_option()
@as_of_option
@api_option
@click.pass_context
def forecast(click_ctx: click.Context, scope: str | None, fmt: str, as_of: date | None, api_url: str | None) -> None:
    """Month-end spend forecasts: P10/P50/P90 and the day each crosses the budget.

    On the database the forecast is computed now. With --api it is the forecaster worker's latest (computed
    hourly; the computed column says when), read through the running admin API.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    from spendgate.core.tables import records, render
    from spendgate.forecaster.engine import forecast_all

    ctx = click_ctx.find_object(Ctx)
    assert ctx is not None
    settings = ctx.settings
    if api_url:
        if as_of is not None:
            raise click.UsageError("--as-of needs the database: the admin API serves the latest forecasts only")
        stored = run(_stored_forecasts(ctx, api_url, scope))
        if scope is not None and not stored:
            raise CliError(f"no forecast for {scope} yet: the forecaster runs hourly, over every scope that spent")
        click.echo(render(fmt, STORED_FORECAST_FIELDS, stored, document={"forecasts": stored}))
        return

    async def main() -> list[ScopeForecast]:
        async with ctx.database() as pool, pool.acquire() as conn:
            at = _end_of(as_of) if as_of else datetime.now(UTC)
            return await forecast_all(conn, settings.forecast, at, audit_day=as_of, only=scope,
                                      default_timezone=settings.default_timezone)

    results = run(main())
    if scope is not None and not results:
        raise CliError(f"nothing to forecast for {scope}: it has no monthly budget and has spent nothing in the "
                       f"last {settings.forecast.lookback_days} days")
    if not results and fmt == "table":
        click.echo("nothing to forecast: no scope has spent or has a monthly budget", err=True)
        return
    click.echo(render(fmt, FORECAST_FIELDS, results, document=records(FORECAST_FIELDS, results)))


async def _stored_forecasts(ctx: Ctx, api_url: str, scope: str | None) -> list[dict[str, Any]]:
    from spendgate.core.adminapi import open_admin_api

    async with open_admin_api(ctx.settings, api_url) as api:
        found = await api.call("GET", "/v1/forecasts", dict[str, list[dict[str, Any]]],
                               query={"scope": scope} if scope else None)
    rows = found.get("forecasts", [])
    for row in rows:  # the table shows times as times; JSON carries the API's own text
        row["computed_at"] = datetime.fromisoformat(row["computed_at"]) if row.get("computed_at") else None
    return rows


@forecast.command()
@click.option("--send", is_flag=True, help="Email it to forecast.report_recipients (and any --to).")
@click.option("--to", "extra", multiple=True, help="Another recipient (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), help="Write the HTML report to this file.")
@force_option
@as_of_option
@pass_ctx
def report(ctx: Ctx, send: bool, extra: tuple[str, ...], out: Path | None, force: bool, as_of: date | None) -> None:
    """The nightly report: every budgeted scope with its burndown chart, teams by risk first with the developers
    and sessions behind them."""
    from spendgate.core.mail import send_mail
    from spendgate.forecaster.render import report_html, report_text
    from spendgate.forecaster.report import FOR_MAIL, build_report, report_message

    settings = ctx.settings
    recipients = [*settings.forecast.report_recipients, *extra]
    if send and not recipients:
        raise click.UsageError("no recipients: set forecast.report_recipients or pass --to")
    if out is not None:
        check_output_file(out, force=force, flag="--out")

    async def main() -> Report:
        async with ctx.database() as pool, pool.acquire() as conn:
            now = _end_of(as_of) if as_of else datetime.now(UTC)
            page: list[ChartFormat] = ["svg"] if out is not None else []  # the page inlines SVG
            formats = [*(FOR_MAIL if send else ()), *page]
            built = await build_report(conn, settings, now, formats=formats, audit_day=as_of)
        if send:
            await send_mail(settings.smtp, report_message(built, recipients, settings.smtp.sender))
        return built

    built = run(main())
    if out is None and not send:
        click.echo(report_text(built), nl=False)
    if out is not None:
        write_output_file(out, report_html(built), force=force)
        click.echo(f"wrote {out}")
    if send:
        click.echo(f"sent to {', '.join(recipients)}")


_WARMUP_RULES = {"months after the warm-up": "each scored month (a long series)",
                 "origins after the warm-up": "each scored forecast (a short series)"}


def _metrics_lines(path: Path, m: Metrics) -> list[str]:
    return [
        f"series {path}: {m.months} whole months, {m.origins} forecasts (one at the end of each day)",
        f"  warm-up                   {m.warmup_days} days of history before {_WARMUP_RULES[m.warmup]}",
        f"  P10-P90 coverage          {m.coverage_pct:.1f}%  (target 80%, acceptable 70-90%)",
        f"  pinball .1/.5/.9 (% of month)  forecast {'/'.join(f'{v:.2f}' for v in m.pinball_pct)}"
        f"  mean {m.pinball_mean_pct:.2f}",
        f"                                 run-rate {'/'.join(f'{v:.2f}' for v in m.runrate_pinball_pct)}"
        f"  mean {m.runrate_pinball_mean_pct:.2f}",
        f"  |error| of P50 at day 10  forecast {m.ape_day10_pct:.1f}%  run-rate {m.runrate_ape_day10_pct:.1f}%"
        f"  (bias {m.bias_day10_pct:+.1f}% / {m.runrate_bias_day10_pct:+.1f}%)"
        if m.ape_day10_pct == m.ape_day10_pct else  # NaN: no day-10 origin after the warm-up
        "  |error| of P50 at day 10  n/a: no whole month has four weeks of history before its day 10",
        f"  models used: {', '.join(f'{k} ×{v}' for k, v in sorted(m.models.items()))}",
    ]


class SeriesFileError(ValueError):
    """A daily series file that cannot be read: says which line and why."""


def read_series_csv(path: Path) -> tuple[date, NDArray[np.int64]]:
    """Read ``date,cost_usd`` rows (header optional, any order, gaps are zero-spend days)."""
    import numpy as np

    from spendgate.domain.money import usd_to_micros

    values: dict[date, int] = {}
    with path.open(newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or (lineno == 1 and row[0].strip().lower() == "date"):
                continue
            if len(row) < 2:
                raise SeriesFileError(f"{path}:{lineno}: expected date,cost_usd")
            try:
                day = date.fromisoformat(row[0].strip())
                amount = usd_to_micros(Decimal(row[1].strip()))
            except (ValueError, InvalidOperation) as exc:
                raise SeriesFileError(f"{path}:{lineno}: {exc}") from exc
            values[day] = values.get(day, 0) + amount
    if not values:
        raise SeriesFileError(f"{path}: no rows")
    first, last = min(values), max(values)
    out = np.zeros((last - first).days + 1, dtype=np.int64)
    for day, micros in values.items():
        out[(day - first).days] = micros
    return first, out


@forecast.command(name="backtest")
@click.option("--series", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with date,cost_usd rows (e.g. an export of last year's bill).")
@format_option(*DOCUMENT_FORMATS)
@click.option("--paths", type=click.IntRange(10, 100_000), default=500, show_default=True,
              help="Sample paths per forecast.")
def backtest_command(path: Path, fmt: str, paths: int) -> None:
    """How far to trust the bands on your own history: rolling-origin backtest against a run-rate."""
    from spendgate.core.tables import to_json
    from spendgate.forecaster.backtest import backtest

    try:
        start, daily = read_series_csv(path)
    except (SeriesFileError, UnicodeDecodeError) as exc:
        raise CliError(str(exc)) from None
    metrics = backtest(start, daily, paths=paths)
    if metrics.origins == 0:
        raise CliError(f"{path}: too short: needs one whole calendar month with four weeks of history "
                       "before some day of it (e.g. 1 to 31 October)")
    if fmt == "json":
        click.echo(to_json({"series": str(path), **metrics.as_json()}))
    else:
        click.echo("\n".join(_metrics_lines(path, metrics)))


COMMANDS: list[click.Command] = [forecaster, forecast]
