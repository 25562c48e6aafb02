"""``spendgate budgets …``: set, list, show, raise and delete budgets (every change audited and
announced to the proxies, which apply it within a second).

A key scope may name the key by its id or by the prefix ``keys list`` shows; a key that does not exist
is refused, a developer or team no key belongs to is warned about (with a "did you mean"). Imports
beyond click happen inside the commands: this module is imported by every ``spendgate`` call.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from spendgate.core.clitools import (
    DOCUMENT_FORMATS,
    CliError,
    Ctx,
    api_option,
    did_you_mean,
    format_option,
    nonempty,
    pass_ctx,
    run,
    valid_model,
    valid_scope,
    valid_timezone,
    warn,
)

if TYPE_CHECKING:
    from spendgate.admin.client import Source


def _usd(value: str | None, what: str) -> int | None:
    from spendgate.domain.money import usd_to_micros

    if value is None:
        return None
    try:
        amount = usd_to_micros(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=f"'{what}'") from None
    if amount <= 0:
        raise click.BadParameter(f"must be more than $0, not {value}", param_hint=f"'{what}'")
    return amount


def _thresholds(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        values = [int(p) for p in value.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or not 0 < values[0] <= values[1] <= values[2]:
        raise click.BadParameter("give three rising whole percentages, e.g. 80,95,110", param_hint="'--thresholds'")
    return values


scope_option = click.option("--scope", required=True, callback=valid_scope,
                            help="key:<id or prefix>, developer:<name>, team:<name>, cost_center:<name> or org")


model_option = click.option("--model", callback=valid_model,
                            help="The budget counts this model's spend only (a per-model budget), e.g. gpt-5.1")


def _cascades(value: tuple[str, ...], ctx: Ctx) -> dict[str, list[str]] | None:
    """``--cascade gpt-5.1=gpt-5.1-mini,gpt-4.1-mini`` (repeatable) as ``{model: [cheaper, ...]}``, checked
    (model ids, lengths, prices) before anything is written."""
    from spendgate.domain.enforcement.policy import check_cascades, parse_cascades
    from spendgate.domain.errors import ConfigError

    if not value:
        return None
    out: dict[str, list[str]] = {}
    for item in value:
        src, sep, chain = item.partition("=")
        steps = [m.strip() for m in chain.split(",") if m.strip()]
        if not sep or not src.strip() or not steps:
            raise click.BadParameter(f"write MODEL=CHEAPER[,CHEAPER…], e.g. gpt-5.1=gpt-5.1-mini, not {item!r}",
                                     param_hint="'--cascade'")
        if src.strip() in out:
            raise click.BadParameter(f"{src.strip()} is given twice", param_hint="'--cascade'")
        out[src.strip()] = steps
    try:
        parse_cascades(out, what="bad cascade")
        check_cascades(out, ctx.settings.pricing.table(), what="a cascade")
    except ConfigError as exc:
        raise click.BadParameter(exc.message, param_hint="'--cascade'") from None
    return out


async def resolve_scope(source: Source, scope: str, *, warn_unknown: bool, model: str | None = None) -> str:
    """``scope`` (on ``model`` only, when given) with a key prefix replaced by its key id; an unknown key is
    refused, and (with ``warn_unknown``) a developer or team no key belongs to is warned about."""
    from spendgate.domain.enforcement.scopes import ORG, model_scope, split_scope

    base, in_scope = split_scope(scope)
    if model is not None and in_scope is not None:
        raise CliError("give the model once: in --scope (…|model:<model>) or as --model, not both")
    model = model or in_scope
    whole = await _resolve_base(source, base, warn_unknown=warn_unknown) if base != ORG else base
    return whole if model is None else model_scope(whole, model)


async def _resolve_base(source: Source, scope: str, *, warn_unknown: bool) -> str:
    kind, _, name = scope.partition(":")
    if kind == "key":
        found = [k for k in (await source.keys(include_revoked=True)).keys if name in (k.key_id, k.key_prefix)]
        if not found:
            raise CliError(f"no key {name!r} (see spendgate keys list --all)")
        if len(found) > 1:
            raise CliError(f"key prefix {name!r} is ambiguous: it matches {len(found)} keys "
                           f"({', '.join(k.key_id for k in found)}); give the key id")
        return f"key:{found[0].key_id}"
    if warn_unknown and kind in ("team", "developer"):
        teams = (await source.teams()).teams
        known = {t.team for t in teams} if kind == "team" else {d for t in teams for d in t.developers}
        if name not in known:
            warn(f"no {kind} {name!r} has a key or usage this month, so this budget applies to nobody yet"
                 f"{did_you_mean(name, known)}")
    return scope


@click.group()
def budgets() -> None:
    """Dollar budgets per key, developer, team, cost center or the org (optionally on one model only), per
    day, ISO week and month."""


@budgets.command("set")
@scope_option
@model_option
@click.option("--daily", help="Daily budget in USD, e.g. 40")
@click.option("--weekly", help="Weekly budget in USD (ISO week, from Monday 00:00), e.g. 200")
@click.option("--monthly", help="Monthly budget in USD, e.g. 800")
@click.option("--timezone", callback=valid_timezone,
              help="IANA time zone of the scope's days and months (default: default_timezone)")
@click.option("--thresholds", help="alert,downgrade,pause percentages (default 80,95,110)")
@click.option("--at-pause", type=click.Choice(["refuse", "cheapest", "step_down"]),
              help="At the pause stage: refuse, send to the cascade's cheapest model, or one step down it")
@click.option("--cascade", "cascade", multiple=True, metavar="MODEL=CHEAPER[,CHEAPER…]",
              help="This scope's own cascade for MODEL (repeatable); the narrowest scope's cascade wins")
@click.option("--no-cascades", is_flag=True, help="Remove the scope's own cascades (the broader ones apply)")
@click.option("--retry-cap", type=click.IntRange(0, 1000),
              help="Retries of the same failing tool call before a session is stopped")
@click.option("--actor", default=getpass.getuser, show_default="current user", callback=nonempty,
              help="Recorded in the audit trail")
@pass_ctx
def set_(ctx: Ctx, scope: str, model: str | None, daily: str | None, weekly: str | None, monthly: str | None,
         timezone: str | None, thresholds: str | None, at_pause: str | None, cascade: tuple[str, ...],
         no_cascades: bool, retry_cap: int | None, actor: str) -> None:
    """Create a budget, or change the given fields of an existing one."""
    from spendgate.admin.client import DatabaseSource
    from spendgate.domain.enforcement.policy import Budget, Thresholds, budget_of
    from spendgate.domain.money import format_usd
    from spendgate.store.budgets import store

    daily_micros, weekly_micros, monthly_micros = _usd(daily, "--daily"), _usd(weekly, "--weekly"), _usd(
        monthly, "--monthly")
    limits, cascades = _thresholds(thresholds), _cascades(cascade, ctx)
    if cascades and no_cascades:
        raise click.UsageError("give --cascade or --no-cascades, not both")

    async def main() -> str:
        async with ctx.database() as pool:
            target = await resolve_scope(DatabaseSource(pool, ctx.settings), scope, warn_unknown=True, model=model)
            old = await store.get_budget(pool, target)
            base = old or Budget(target, timezone=ctx.settings.default_timezone,
                                 thresholds=Thresholds.of(ctx.settings.enforcement.thresholds_pct))
            b = budget_of(
                base.scope,
                daily_micros=daily_micros if daily_micros is not None else base.daily_micros,
                weekly_micros=weekly_micros if weekly_micros is not None else base.weekly_micros,
                monthly_micros=monthly_micros if monthly_micros is not None else base.monthly_micros,
                timezone=timezone or base.timezone,
                thresholds=limits or base.thresholds.as_list(),
                at_pause=at_pause or base.at_pause,
                retry_cap=retry_cap if retry_cap is not None else base.retry_cap,
                cascades=None if no_cascades else cascades or base.cascade_dict(),
            )
            await store.set_budget(pool, b, actor=actor)

        def money(micros: int | None) -> str:
            return "-" if micros is None else format_usd(micros)

        own = "" if b.cascades is None else ", cascades " + "; ".join(f"{m} > {' > '.join(c)}" for m, c in b.cascades)
        weekly = "" if b.weekly_micros is None else f", weekly {money(b.weekly_micros)}"
        return (f"budget for {b.scope}: daily {money(b.daily_micros)}, monthly {money(b.monthly_micros)}{weekly}"
                f" ({b.timezone}, thresholds {b.thresholds.as_list()}, at pause: {b.at_pause}{own})")

    click.echo(run(main()))


@budgets.command("list")
@format_option()
@api_option
@pass_ctx
def list_(ctx: Ctx, fmt: str, api_url: str | None) -> None:
    """Every budget, with the raises active now (raised: added to its daily and monthly budget)."""
    from spendgate.admin import render
    from spendgate.admin.client import open_source

    async def main() -> str:
        async with open_source(ctx, api_url) as source:
            return render.budgets(await source.budgets(), fmt)

    click.echo(run(main()))


@budgets.command("show")
@scope_option
@model_option
@format_option(*DOCUMENT_FORMATS)
@api_option
@pass_ctx
def show(ctx: Ctx, scope: str, model: str | None, fmt: str, api_url: str | None) -> None:
    """A budget, its active raises and where this day's, week's and month's spend stands."""
    from spendgate.admin import render
    from spendgate.admin.client import open_source

    async def main() -> str:
        async with open_source(ctx, api_url) as source:
            target = await resolve_scope(source, scope, warn_unknown=False, model=model)
            return render.budget(await source.budget(target), fmt)

    click.echo(run(main()))


def _until(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        ends = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"use ISO 8601 with a time zone, e.g. 2026-12-01T00:00Z, not {value!r}") from None
    if ends.tzinfo is None:
        raise click.BadParameter("give a time zone, e.g. 2026-12-01T00:00Z")
    if ends <= datetime.now(UTC):
        raise click.BadParameter(f"{ends.isoformat()} is in the past: a raise must end in the future")
    return ends


@budgets.command("raise")
@scope_option
@click.option("--by", "by", required=True, help="USD added to the scope's budgets while the raise lasts")
@click.option("--until", "until", required=True, callback=_until,
              help="When the raise ends, in the future, e.g. 2026-12-01T00:00Z")
@click.option("--reason", required=True, callback=nonempty)
@click.option("--actor", default=getpass.getuser, show_default="current user", callback=nonempty)
@model_option
@pass_ctx
def raise_(ctx: Ctx, scope: str, by: str, until: datetime, reason: str, actor: str, model: str | None) -> None:
    """Raise a scope's budgets temporarily; the raise expires by itself."""
    from spendgate.admin.client import DatabaseSource
    from spendgate.domain.enforcement.policy import BudgetRaise
    from spendgate.domain.money import format_usd
    from spendgate.store.budgets import store

    amount = _usd(by, "--by")
    assert amount is not None

    async def main() -> str:
        async with ctx.database() as pool:
            target = await resolve_scope(DatabaseSource(pool, ctx.settings), scope, warn_unknown=False, model=model)
            await store.raise_budget(pool, BudgetRaise(target, amount, until, reason), actor=actor)
        return f"raised {target} by {format_usd(amount)} until {until.isoformat()}"

    click.echo(run(main()))


@budgets.command("delete")
@scope_option
@model_option
@click.option("--actor", default=getpass.getuser, show_default="current user", callback=nonempty)
@pass_ctx
def delete(ctx: Ctx, scope: str, model: str | None, actor: str) -> None:
    """Remove a scope's budget (and its raises); a scope without a budget is an error, as for show."""
    from spendgate.admin.client import DatabaseSource
    from spendgate.store.budgets import store

    async def main() -> str:
        async with ctx.database() as pool:
            target = await resolve_scope(DatabaseSource(pool, ctx.settings), scope, warn_unknown=False, model=model)
            if not await store.delete_budget(pool, target, actor=actor):
                raise CliError(f"no budget for {target}")
        return target

    click.echo(f"deleted the budget of {run(main())}")


COMMANDS: list[click.Command] = [budgets]
