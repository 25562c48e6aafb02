"""``spendgate reconcile``: compare the providers' own usage and cost reports with the ledger now, store
the result (as the nightly run does) and print it; ``spendgate reconciler`` runs the nightly worker alone.

Imports beyond click happen inside the commands: this module is imported by every ``spendgate`` call.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from spendgate.core.clitools import CliError, Ctx, did_you_mean, format_option, pass_ctx, run, warn
from spendgate.core.tables import Field

if TYPE_CHECKING:
    from spendgate.domain.reconcile import Reconciliation


def _day(_ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"use a date such as 2026-11-01, not {value!r}") from None


def _rate(ppm: int | None) -> str:
    from spendgate.domain.reconcile import format_rate

    return format_rate(ppm)


DAY_FIELDS: list[Field] = [
    Field("day", lambda r: r.day, "date"), Field("provider", lambda r: r.provider),
    Field("ledger_tokens", lambda r: r.ledger_tokens, "int", "ledger tokens"),
    Field("provider_tokens", lambda r: r.provider_tokens, "int", "provider tokens"),
    Field("tokens_capture_ppm", lambda r: r.tokens_capture_ppm, "int", None),
    Field("tokens_capture", lambda r: _rate(r.tokens_capture_ppm), "text", "tok rate", table_only=True),
    Field("ledger_cost_micros", lambda r: r.ledger_cost_micros, "money", "ledger cost"),
    Field("provider_cost_micros", lambda r: r.provider_cost_micros, "money", "provider cost"),
    Field("cost_gap_micros", lambda r: r.cost_gap_micros, "money", "gap"),
    Field("cost_capture_ppm", lambda r: r.cost_capture_ppm, "int", None),
    Field("cost_capture", lambda r: _rate(r.cost_capture_ppm), "text", "cost rate", table_only=True),
    Field("gap", lambda r: r.gap, "bool", "alert"),
]
"""``--by day``: one line per provider and UTC day (the rates are ledger / provider; CSV and JSON carry ppm)."""
MODEL_FIELDS: list[Field] = [
    Field("day", lambda r: r.day, "date"), Field("provider", lambda r: r.provider), Field("model", lambda r: r.model),
    Field("upstream", lambda r: r.upstream),
    Field("ledger_requests", lambda r: r.ledger_requests, "int", None),
    Field("provider_requests", lambda r: r.provider_requests, "int", None),
    Field("ledger_input_tokens", lambda r: r.ledger_input_tokens, "int", "ledger in"),
    Field("provider_input_tokens", lambda r: r.provider_input_tokens, "int", "provider in"),
    Field("ledger_output_tokens", lambda r: r.ledger_output_tokens, "int", None),
    Field("provider_output_tokens", lambda r: r.provider_output_tokens, "int", None),
    Field("tokens_capture_ppm", lambda r: r.tokens_capture_ppm, "int", None),
    Field("ledger_cost_micros", lambda r: r.ledger_cost_micros, "money", "ledger cost"),
    Field("provider_cost_micros", lambda r: r.provider_cost_micros, "money", "provider cost"),
    Field("cost_gap_micros", lambda r: r.cost_gap_micros, "money", None),
    Field("cost_capture_ppm", lambda r: r.cost_capture_ppm, "int", None),
    Field("cost_capture", lambda r: _rate(r.cost_capture_ppm), "text", "rate", table_only=True),
]
"""``--by model``: one line per UTC day, model and upstream."""


def render(doc: Reconciliation, by: str, fmt: str) -> str:
    from spendgate.core.tables import render as render_rows

    rows: list[Any] = list(doc.days if by == "day" else doc.lines)
    if fmt != "json" and not rows:
        return "" if fmt == "csv" else f"nothing to compare from {doc.start} to {doc.end}: no usage on either side"
    return render_rows(fmt, DAY_FIELDS if by == "day" else MODEL_FIELDS, rows, document=doc)


@click.command("reconcile")
@click.option("--from", "start", callback=_day, metavar="YYYY-MM-DD",
              help="First UTC day (default: reconcile.lookback_days before today).")
@click.option("--to", "end", callback=_day, metavar="YYYY-MM-DD", help="Last UTC day, inclusive (default: yesterday).")
@click.option("--provider", default=None, help="Only this configured provider (reconcile.providers[].name).")
@click.option("--by", type=click.Choice(["day", "model"]), default="day", show_default=True,
              help="One line per provider and day, or per day, model and upstream.")
@format_option()
@pass_ctx
def reconcile_cmd(ctx: Ctx, start: date | None, end: date | None, provider: str | None, by: str, fmt: str) -> None:
    """Compare the providers' own usage and cost reports with the ledger, per UTC day, model and upstream.

    Stores the result (GET /v1/reconciliation shows it) and records a gap once per provider and day the
    provider billed more than the threshold above the ledger; the running worker alerts on it.
    """
    from spendgate.domain.money import format_usd
    from spendgate.domain.reconcile import RangeError, check_range, default_range, document, format_rate
    from spendgate.reconcile.run import reconcile

    settings = ctx.settings
    cfg = settings.reconcile
    today = datetime.now(UTC).date()
    first, last = default_range(today, cfg.lookback_days)
    if end is None:
        end = last if start is None else max(start, last)
    if start is None:
        start = min(first, end - timedelta(days=cfg.lookback_days - 1))
    try:
        check_range(start, end, today)
    except RangeError as exc:
        raise click.BadParameter(str(exc), param_hint="'--from'/'--to'") from None
    chosen = cfg.providers
    if provider is not None:
        chosen = [p for p in cfg.providers if p.name == provider]
        if not chosen:
            names = [p.name for p in cfg.providers]
            raise click.BadParameter(f"no provider {provider!r} in reconcile.providers{did_you_mean(provider, names)}",
                                     param_hint="'--provider'")

    async def go() -> Reconciliation:
        async with ctx.database() as pool:
            if not cfg.providers:  # after the database: a wrong data dir is the first thing to fix
                raise CliError("no provider to reconcile with: set reconcile.providers (name, kind, admin_key); "
                               "see docs/reconciliation.md", exit_code=2)
            outcome = await reconcile(pool, settings, start, end, now=datetime.now(UTC), providers=chosen)
        for gap in outcome.new_gaps:
            warn(f"{gap.provider} billed {format_usd(gap.gap_micros)} more than the ledger counted on {gap.day} "
                 f"(capture {format_rate(gap.capture_ppm)}): recorded; the running worker raises a "
                 "reconciliation_gap alert")
        return document(start, end, outcome.lines, [(g.provider, g.day) for g in outcome.gaps])

    click.echo(render(run(go()), by, fmt))


@click.command("reconciler")
@pass_ctx
def reconciler(ctx: Ctx) -> None:
    """Run the reconcile worker alone: the nightly reconciliation and its gap alerts."""
    from spendgate.reconcile.service import serve
    from spendgate.runtime import run_services

    run(run_services(ctx.settings, {"reconcile": serve}), serving=True)


COMMANDS: list[click.Command] = [reconcile_cmd, reconciler]
