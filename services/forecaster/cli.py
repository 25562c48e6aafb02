"""``spendgate forecaster`` (run the worker alone) and ``spendgate forecast …``: print forecasts,
render or send the nightly report, backtest the model on a series a user brings."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click
import numpy as np
from numpy.typing import NDArray

from spendgate.core.clitools import Ctx, pass_ctx, run
from spendgate.core.mail import send_mail
from spendgate.domain.money import format_usd, usd_str, usd_to_micros
from spendgate.forecaster.backtest import Metrics, backtest
from spendgate.forecaster.chart import ChartFormat
from spendgate.forecaster.engine import ScopeForecast, forecast_all
from spendgate.forecaster.render import report_html, report_text
from spendgate.forecaster.report import FOR_MAIL, Report, build_report, report_message
from spendgate.forecaster.service import serve
from spendgate.runtime import open_database, run_services


@click.command()
@pass_ctx
def forecaster(ctx: Ctx) -> None:
    """Run the forecaster alone: hourly and nightly forecasts, overrun events, the nightly report."""

    run(run_services(ctx.settings, {"forecaster": serve}))


def _end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def _as_json(r: ScopeForecast) -> dict[str, object]:
    f = r.forecast
    out: dict[str, object] = {"scope": r.scope.scope, "month": f.month.isoformat(), "as_of": f.as_of.isoformat(),
                              "model": f.model, "inputs": f.inputs}
    for name in ("actual", "p10", "p50", "p90", "budget"):
        micros = getattr(f, f"{name}_micros")
        out[f"{name}_micros"] = micros
        out[f"{name}_usd"] = None if micros is None else usd_str(micros)
    for band in ("p10", "p50", "p90"):
        day = getattr(f, f"{band}_crosses_on")
        out[f"{band}_crosses_on"] = day.isoformat() if day else None
    return out


def _table(results: list[ScopeForecast]) -> str:
    head = ("scope", "as of", "spent", "P10", "P50", "P90", "budget", "P50 crosses", "P90 crosses", "model")
    rows = [head] + [
        (r.scope.scope, str(r.forecast.as_of), format_usd(r.forecast.actual_micros), format_usd(r.forecast.p10_micros),
         format_usd(r.forecast.p50_micros), format_usd(r.forecast.p90_micros),
         format_usd(r.forecast.budget_micros or 0), str(r.forecast.p50_crosses_on or "-"),
         str(r.forecast.p90_crosses_on or "-"), r.forecast.model)
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) if i in (0, 9) else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True))) for row in rows)


@click.group(invoke_without_command=True)
@click.option("--scope", help="Only this scope, e.g. team:platform (default: every scope with a monthly budget).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%d"]),
              help="Forecast from the ledger as it stood at the end of this day (audits).")
@click.pass_context
def forecast(click_ctx: click.Context, scope: str | None, as_json: bool, as_of: datetime | None) -> None:
    """Month-end spend forecasts: P10/P50/P90 and the day each crosses the budget."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Ctx = click_ctx.find_object(Ctx)  # type: ignore[assignment]
    settings = ctx.settings
    audit_day = as_of.date() if as_of else None

    async def main() -> list[ScopeForecast]:
        async with open_database(settings) as (_url, pool), pool.acquire() as conn:
            at = _end_of(audit_day) if audit_day else datetime.now(UTC)
            return await forecast_all(conn, settings.forecast, at, audit_day=audit_day, only=scope)

    results = run(main())
    if as_json:
        click.echo(json.dumps([_as_json(r) for r in results], indent=2))
    elif not results:
        click.echo("no scope with a monthly budget" + (f" named {scope}" if scope else ""))
    else:
        click.echo(_table(results))


@forecast.command()
@click.option("--send", is_flag=True, help="Email it to forecast.report_recipients (and any --to).")
@click.option("--to", "extra", multiple=True, help="Another recipient (repeatable).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the HTML report to this file.")
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%d"]), help="As the ledger stood at the end of this day.")
@pass_ctx
def report(ctx: Ctx, send: bool, extra: tuple[str, ...], out: Path | None, as_of: datetime | None) -> None:
    """The nightly report: every budgeted scope with its burndown chart, teams by risk first with the developers
    and sessions behind them."""
    settings = ctx.settings
    recipients = [*settings.forecast.report_recipients, *extra]
    if send and not recipients:
        raise click.UsageError("no recipients: set forecast.report_recipients or pass --to")
    audit_day = as_of.date() if as_of else None

    async def main() -> Report:
        async with open_database(settings) as (_url, pool), pool.acquire() as conn:
            now = _end_of(audit_day) if audit_day else datetime.now(UTC)
            page: list[ChartFormat] = ["svg"] if out is not None else []  # the page inlines SVG
            formats = [*(FOR_MAIL if send else ()), *page]
            built = await build_report(conn, settings, now, formats=formats, audit_day=audit_day)
        if send:
            await send_mail(settings.smtp, report_message(built, recipients, settings.smtp.sender))
        return built

    built = run(main())
    if out is None and not send:
        click.echo(report_text(built), nl=False)
    if out is not None:
        out.write_text(report_html(built))
        click.echo(f"wrote {out}")
    if send:
        click.echo(f"sent to {', '.join(recipients)}")


def _metrics_lines(path: Path, m: Metrics) -> list[str]:
    return [
        f"series {path}: {m.months} whole months, {m.origins} forecasts (one at the end of each day)",
        f"  P10-P90 coverage          {m.coverage_pct:.1f}%  (target 80%, acceptable 70-90%)",
        f"  pinball .1/.5/.9 (% of month)  forecast {'/'.join(f'{v:.2f}' for v in m.pinball_pct)}"
        f"  mean {m.pinball_mean_pct:.2f}",
        f"                                 run-rate {'/'.join(f'{v:.2f}' for v in m.runrate_pinball_pct)}"
        f"  mean {m.runrate_pinball_mean_pct:.2f}",
        f"  |error| of P50 at day 10  forecast {m.ape_day10_pct:.1f}%  run-rate {m.runrate_ape_day10_pct:.1f}%",
        f"  models used: {', '.join(f'{k} ×{v}' for k, v in sorted(m.models.items()))}",
    ]


class SeriesFileError(ValueError):
    """A daily series file that cannot be read: says which line and why."""


def read_series_csv(path: Path) -> tuple[date, NDArray[np.int64]]:
    """Read ``date,cost_usd`` rows (header optional, any order, gaps are zero-spend days)."""
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
@click.option("--json", "as_json", is_flag=True)
@click.option("--paths", default=500, show_default=True, help="Sample paths per forecast.")
def backtest_command(path: Path, as_json: bool, paths: int) -> None:
    """How far to trust the bands on your own history: rolling-origin backtest against a run-rate."""
    try:
        start, daily = read_series_csv(path)
    except SeriesFileError as exc:
        raise click.ClickException(str(exc)) from None
    metrics = backtest(start, daily, paths=paths)
    if metrics.origins == 0:
        raise click.ClickException(f"{path}: too short: needs 8 weeks of warm-up and then at least one whole month")
    if as_json:
        click.echo(json.dumps({"series": str(path), **metrics.as_json()}, indent=2))
    else:
        click.echo("\n".join(_metrics_lines(path, metrics)))


COMMANDS: list[click.Command] = [forecaster, forecast]
