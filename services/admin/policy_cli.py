"""``spendgate policy dry-run | apply | show``: try a budget policy on past traffic, then ship it.

Imports beyond click happen inside the commands: this module is imported by every ``spendgate`` call.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from spendgate.core.clitools import DOCUMENT_FORMATS, Ctx, api_option, format_option, pass_ctx, run

if TYPE_CHECKING:
    from spendgate.admin.dryrun import DryRun
    from spendgate.admin.policy import Applied


def _read_document(path: Path) -> dict[str, Any]:
    from spendgate.admin.policy import parse_proposal
    from spendgate.domain.errors import ConfigError

    try:
        return parse_proposal(path.read_text(), source=str(path))
    except ConfigError as exc:
        raise click.BadParameter(exc.message) from None


proposal_argument = click.argument("proposal", type=click.Path(exists=True, dir_okay=False, path_type=Path))


@click.group()
def policy() -> None:
    """Budget policies: dry-run a proposal on past traffic, apply it, show the live one."""


@policy.command("dry-run")
@proposal_argument
@click.option("--days", type=click.IntRange(1, 366), default=30, show_default=True)
@format_option(*DOCUMENT_FORMATS)
@api_option
@pass_ctx
def dry_run_cmd(ctx: Ctx, proposal: Path, days: int, fmt: str, api_url: str | None) -> None:
    """Replay the last DAYS of usage through PROPOSAL (same format as the live policy) and report."""
    from spendgate.admin.client import open_api
    from spendgate.admin.dryrun import DryRun, dry_run
    from spendgate.core.tables import to_json
    from spendgate.domain.enforcement.policy import policy_from_document

    settings = ctx.settings
    document = _read_document(proposal)

    async def go() -> DryRun:
        if api_url:
            async with open_api(settings, api_url) as api:
                return await api.call("POST", "/v1/policy/dry-run", DryRun, body={"proposal": document, "days": days})
        policy_ = policy_from_document(document, settings.enforcement)
        async with ctx.database() as pool:
            result, _ = await dry_run(pool, policy_, settings.pricing.table(), days=days, now=datetime.now(UTC))
            return result

    result = run(go())
    click.echo(to_json(result) if fmt == "json" else describe(result))


@policy.command("apply")
@proposal_argument
@api_option
@pass_ctx
def apply_cmd(ctx: Ctx, proposal: Path, api_url: str | None) -> None:
    """Make the live budgets and raises exactly those of PROPOSAL (the file a dry-run used)."""
    from spendgate.admin.client import open_api
    from spendgate.admin.policy import Applied, apply
    from spendgate.domain.enforcement.policy import policy_from_document

    settings = ctx.settings
    document = _read_document(proposal)

    async def go() -> Applied:
        if api_url:
            async with open_api(settings, api_url) as api:
                return await api.call("POST", "/v1/policy/apply", Applied, body={"proposal": document})
        policy_ = policy_from_document(document, settings.enforcement)
        policy_.check_prices(settings.pricing.table())  # a budget's own cascade may name an unpriced model
        from spendgate.store.access import store as access

        async with ctx.database() as pool:
            done = await apply(pool, policy_, settings.enforcement, now=datetime.now(UTC),
                               actor=f"cli:{getpass.getuser()}")
            await access.record(pool, actor=f"cli:{getpass.getuser()}", action="policy.apply", target="policy",
                                detail={"set": done.set_budgets, "deleted": done.deleted_budgets,
                                        "raises": done.added_raises})
            return done

    done = run(go())
    for label, items in (("set", done.set_budgets), ("deleted", done.deleted_budgets),
                         ("unchanged", done.unchanged_budgets), ("raise added", done.added_raises),
                         ("raise kept (runs out by itself)", done.kept_raises)):
        for item in items:
            click.echo(f"{label}: {item}")
    for diff in done.settings_differences:
        click.echo(f"not applied, lives in spendgate.yaml (enforcement): {diff}", err=True)


@policy.command("show")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True,
              help="yaml is the proposal format (edit it, dry-run it, apply it); json the same document.")
@api_option
@pass_ctx
def show_cmd(ctx: Ctx, fmt: str, api_url: str | None) -> None:
    """Print the live policy in the proposal format (edit it, dry-run it, apply it)."""
    from spendgate.admin.client import open_source
    from spendgate.core.tables import to_json

    async def go() -> dict[str, Any]:
        async with open_source(ctx, api_url) as source:
            return await source.policy()

    document = run(go())
    if fmt == "json":
        click.echo(to_json(document))
        return
    import yaml

    click.echo(yaml.safe_dump(document, sort_keys=False), nl=False)


def describe(r: DryRun) -> str:
    from spendgate.domain.money import format_usd

    out = [
        f"Replayed {r.events} requests from {r.from_at:%Y-%m-%d %H:%M} to {r.to_at:%Y-%m-%d %H:%M} UTC "
        f"({r.days} days) in {r.elapsed_ms / 1000:.1f} s",
        f"spend under the proposal {format_usd(r.spend_micros)} vs actual {format_usd(r.actual_micros)}",
        f"downgrades {r.downgrades} (saved {format_usd(r.downgrade_saved_micros)}), forced cheapest "
        f"{r.forced_cheapest}, refused {r.refused_requests} in {r.paused_sessions} paused sessions, "
        f"retry refusals {r.retry_refused}; {r.differences} requests treated differently than live",
    ]
    for s in r.scopes:
        out += ["", f"{s.scope}: spend {format_usd(s.spend_micros)} vs actual {format_usd(s.actual_micros)}; "
                    f"downgrades {s.downgrades} saving {format_usd(s.downgrade_saved_micros)}; "
                    f"forced cheapest {s.forced_cheapest} saving {format_usd(s.forced_cheapest_saved_micros)}; "
                    f"refused {s.refused_requests}"]
        for a in s.alerts:
            out.append(f"  alert {a.threshold_pct}% ({a.stage}) of the {a.period} budget from {a.period_start} "
                       f"at {a.at:%Y-%m-%d %H:%M}: {format_usd(a.spent_micros)} of {format_usd(a.budget_micros)}")
        for p in s.paused_sessions:
            resumed = f", resumed {p.resumed_at:%Y-%m-%d %H:%M}" if p.resumed_at else ""
            out.append(f"  paused session {p.session_id} ({p.developer}) at {p.paused_at:%Y-%m-%d %H:%M} after "
                       f"{p.turns_before} turns / {p.requests_before} requests; cut {p.refused_requests} "
                       f"requests, {p.remaining_turns} more turns, {format_usd(p.remaining_cost_micros)}{resumed}")
    return "\n".join(out)
