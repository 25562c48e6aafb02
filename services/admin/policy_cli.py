"""``spendgate policy dry-run | apply | show | versions | verify | rollback``: try a budget policy on past
traffic, ship it as a signed version, check the signatures, roll back.

Imports beyond click happen inside the commands: this module is imported by every ``spendgate`` call.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
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
    write_output_file,
)

if TYPE_CHECKING:
    from spendgate.admin.dryrun import DryRun
    from spendgate.admin.guard import GuardCheck
    from spendgate.admin.policy_versions import Verifications, VersionApplied
    from spendgate.admin.ration import Rationing
    from spendgate.admin.suggest import Suggestions


MAX_PROPOSAL_BYTES = 4 * 2**20
"""The largest proposal file read (the admin API takes the same 4 MB body)."""


def _read_document(path: Path) -> dict[str, Any]:
    return _read_proposal(path)[1]


def _read_proposal(path: Path) -> tuple[str, dict[str, Any]]:
    """The proposal file's text and its document."""
    from spendgate.admin.policy import parse_proposal
    from spendgate.domain.errors import ConfigError

    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PROPOSAL_BYTES + 1)
        if len(raw) > MAX_PROPOSAL_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_PROPOSAL_BYTES // 2**20} MB: not a policy proposal")
        text = raw.decode("utf-8")
        return text, parse_proposal(text, source=str(path))
    except UnicodeDecodeError:
        raise click.BadParameter(f"{path} is not UTF-8 text") from None
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


def _approver(value: str | None) -> str:
    return value if value is not None else f"cli:{getpass.getuser()}"


approver_option = click.option(
    "--approver", default=None, metavar="NAME",
    help="Who approved the change, recorded on the signed version (default cli:<OS user>; through --api, "
         "the API's signed-in identity).")


@policy.command("apply")
@proposal_argument
@click.option("--reason", default=None, metavar="TEXT", help="Why, recorded on the version (default: the file name).")
@approver_option
@click.option("--suggestion", default=None, metavar="ID",
              help="The `policy suggest` suggestion PROPOSAL came from (--save), recorded as the version's source.")
@api_option
@pass_ctx
def apply_cmd(ctx: Ctx, proposal: Path, reason: str | None, approver: str | None, suggestion: str | None,
              api_url: str | None) -> None:
    """Make the live budgets, raises and routing rules exactly those of PROPOSAL (the file a dry-run
    used), stored as a new signed policy version that becomes the active one."""
    from spendgate.admin.client import open_api
    from spendgate.admin.policy_versions import VersionApplied, apply_version
    from spendgate.domain.enforcement.policy import policy_from_document

    settings = ctx.settings
    text, document = _read_proposal(proposal)
    why = reason if reason is not None else f"policy apply {proposal.name}"
    source = _suggestion_source(suggestion)
    if suggestion is not None:
        _check_suggestion_file(ctx, api_url, proposal, text, document, suggestion)

    async def go() -> VersionApplied:
        if api_url:
            async with open_api(settings, api_url) as api:
                return await api.call("POST", "/v1/policy/apply", VersionApplied,
                                      body={"proposal": document, "reason": why,
                                            **({"suggestion": suggestion} if suggestion else {})})
        policy_ = policy_from_document(document, settings.enforcement)
        from spendgate.store.access import store as access

        async with ctx.database() as pool:
            done = await apply_version(pool, policy_, settings, settings.pricing.table(), now=datetime.now(UTC),
                                       approver=_approver(approver), reason=why, source=source)
            await access.record(pool, actor=_approver(approver), action="policy.apply", target="policy",
                                detail={"version": done.version_id, "set": done.set_budgets,
                                        "deleted": done.deleted_budgets, "raises": done.added_raises})
            return done

    _report(run(go()))


def _check_suggestion_file(ctx: Ctx, api_url: str | None, path: Path, text: str, document: dict[str, Any],
                           suggestion: str) -> None:
    """Refuse ``--suggestion`` for a file that is not that suggestion as saved, on today's live policy."""
    from spendgate.admin.suggestion_file import check
    from spendgate.domain.errors import ConfigError

    try:
        check(text, source=str(path), suggestion_id=suggestion, document=document, live=run(_live(ctx, api_url)))
    except ConfigError as exc:
        raise click.BadParameter(exc.message, param_hint="--suggestion") from None


async def _live(ctx: Ctx, api_url: str | None) -> dict[str, Any]:
    from spendgate.admin.client import open_source

    async with open_source(ctx, api_url) as source:
        return await source.policy()


def _suggestion_source(suggestion: str | None) -> str | None:
    from spendgate.admin.suggest import suggestion_source
    from spendgate.domain.errors import ConfigError

    try:
        return suggestion_source(suggestion)
    except ConfigError as exc:
        raise click.BadParameter(exc.message, param_hint="--suggestion") from None


def _report(done: VersionApplied) -> None:
    click.echo(f"version {done.version_id} active (parent {done.parent or 'none'}, signed with key {done.key_id})")
    for label, items in (("set", done.set_budgets), ("deleted", done.deleted_budgets),
                         ("unchanged", done.unchanged_budgets), ("raise added", done.added_raises),
                         ("raise kept (runs out by itself)", done.kept_raises)):
        for item in items:
            click.echo(f"{label}: {item}")
    for diff in done.settings_differences:
        click.echo(f"not applied, lives in spendgate.yaml (enforcement): {diff}", err=True)
    for item in done.ended_raises:
        click.echo(f"warning: raise not added, it ended before now: {item}", err=True)
    for scope in done.unmetered_budgets:
        click.echo(f"warning: budget {scope}: its model has no price and no fallback price is set, so requests "
                   "for it are refused and the budget counts nothing (a mistyped model name?)", err=True)


@policy.command("versions")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@format_option()
@api_option
@pass_ctx
def versions_cmd(ctx: Ctx, limit: int, fmt: str, api_url: str | None) -> None:
    """List the stored policy versions, newest (the active one) first."""
    from spendgate.admin.client import open_api
    from spendgate.admin.policy_versions import VersionList, versions
    from spendgate.core.tables import Field, field, render

    async def go() -> VersionList:
        if api_url:
            async with open_api(ctx.settings, api_url) as api:
                return await api.call("GET", "/v1/policy/versions", VersionList, query={"limit": str(limit)})
        async with ctx.database() as pool:
            return VersionList(versions=await versions(pool, limit=limit))

    found = run(go())
    fields = [Field("version_id", lambda v: v.version_id, header="version", whole=True), field("active", "bool"),
              field("created_at", "time"), field("action", header=None),
              Field("kind", _version_kind, header="action", table_only=True), field("source", header=None),
              field("parent", header=None), field("approver"), field("routing_rules", "int", header="rules"),
              field("budgets", "int", header=None), field("key_id", header=None), field("reason")]
    click.echo(render(fmt, fields, found.versions, document=found))


def _version_kind(v: Any) -> str:
    """The table's action: ``baseline`` and ``suggested`` applies told apart (after the first apply the table
    showed two plain ``apply`` rows, one of them a version nobody typed)."""
    if v.action == "apply" and v.source == "baseline":
        return "baseline"
    if v.action == "apply" and (v.source or "").startswith("suggestion:"):
        return "suggested"
    return str(v.action)


@policy.command("verify")
@click.argument("version", required=False)
@click.option("--all", "every", is_flag=True, help="Check every stored version.")
@api_option
@pass_ctx
def verify_cmd(ctx: Ctx, version: str | None, every: bool, api_url: str | None) -> None:
    """Check the Ed25519 signature of the active version (or VERSION, or --all) with the policy key (through
    --api: the admin's); exits 1 when one does not verify."""
    from spendgate.admin.client import open_api
    from spendgate.admin.policy_versions import Verifications, check

    if version and every:
        raise click.UsageError("give a VERSION or --all, not both")

    async def go() -> Verifications:
        if api_url:
            query = {"all": "true"} if every else {"version": version} if version else {}
            async with open_api(ctx.settings, api_url) as api:
                return await api.call("GET", "/v1/policy/verify", Verifications, query=query)
        async with ctx.database() as pool:
            return await check(pool, ctx.settings, version_id=version, every=every)

    result = run(go())
    for v in result.versions:
        if v.ok:
            click.echo(f"ok: {v.version_id}")
        else:
            click.echo(f"BAD: {v.version_id}: {v.problem}")
    if result.bad:
        raise CliError(f"{result.bad} of {result.checked} policy versions do not verify")
    click.echo(f"{result.checked} policy version{'s' if result.checked != 1 else ''} verified")


@policy.command("rollback")
@click.option("--to", "to", default=None, metavar="VERSION",
              help="The version to restore (default: the active version's parent).")
@click.option("--reason", default="rollback", show_default=True, metavar="TEXT", help="Why, recorded on the version.")
@approver_option
@api_option
@pass_ctx
def rollback_cmd(ctx: Ctx, to: str | None, reason: str, approver: str | None, api_url: str | None) -> None:
    """Make the previous version (or --to VERSION) active again, as a new signed version."""
    from spendgate.admin.client import open_api
    from spendgate.admin.policy_versions import VersionApplied, rollback

    settings = ctx.settings

    async def go() -> VersionApplied:
        if api_url:
            async with open_api(settings, api_url) as api:
                return await api.call("POST", "/v1/policy/rollback", VersionApplied,
                                      body={"to": to, "reason": reason})
        async with ctx.database() as pool:
            return await rollback(pool, settings, settings.pricing.table(), now=datetime.now(UTC),
                                  approver=_approver(approver), reason=reason, to=to)

    _report(run(go()))


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


@policy.command("guard")
@click.option("--act", is_flag=True, help="Roll the version back when a segment regressed, as the guard worker "
                                          "does (approver spendgate-guard); without it, only report.")
@format_option(*DOCUMENT_FORMATS)
@api_option
@pass_ctx
def guard_cmd(ctx: Ctx, act: bool, fmt: str, api_url: str | None) -> None:
    """Judge the active policy version once: per part it changed (a routing rule, the downgrade size limit,
    a budget, stage thresholds, a retry cap, exploration), the turns the change touched since against the
    same kind of turns before, the regression with its 95 % bounds, and the verdict."""
    from spendgate.admin.client import open_api
    from spendgate.admin.guard import GuardCheck, check
    from spendgate.core.tables import to_json

    if act and api_url:
        raise click.UsageError("--act rolls back here, with this machine's signing key; the admin API's guard "
                               "check only reports (the guard worker acts): leave out --api or --act")
    settings = ctx.settings

    async def go() -> GuardCheck:
        if api_url:
            async with open_api(settings, api_url) as api:
                return await api.call("GET", "/v1/policy/guard", GuardCheck)
        async with ctx.database() as pool:
            return await check(pool, settings, settings.pricing.table(), now=datetime.now(UTC), act=act)

    result = run(go())
    click.echo(to_json(result) if fmt == "json" else describe_guard(result))


def describe_guard(g: GuardCheck) -> str:
    if g.version_id is None or g.note:
        return g.note
    out = [f"version {g.version_id} (approved by {g.approver}, live since {g.activated_at:%Y-%m-%d %H:%M} UTC); "
           f"tolerance {g.tolerance_pct:g} %, at least {g.min_turns} turns a side"]
    for s in g.segments:
        head = (f"{s.rule} ({s.scope}, {s.change})" if s.kind == "routing_rule"
                else f"{s.summary} ({s.kind}, {s.change})")
        line = f"  {head}: baseline {s.baseline_n} turns, candidate {s.candidate_n} turns"
        if s.regression is None:
            line += f"; too few turns ({s.needed} more needed)"
        else:
            line += (f"; means {s.baseline_mean:.3f} → {s.candidate_mean:.3f}, regression {s.regression:.1%} "
                     f"(95 % bounds {s.lower:.1%} to {s.upper:.1%}): {s.verdict}")
        out.append(line)
    if g.rolled_back_to:
        out.append(f"rolled back: version {g.rolled_back_to} is active again (rollback version {g.rollback_version})")
    return "\n".join(out)


@policy.command("ration")
@click.option("--scope", default=None, metavar="SCOPE", help="Only this scope (team:platform, org, …).")
@format_option(*DOCUMENT_FORMATS)
@api_option
@pass_ctx
def ration_cmd(ctx: Ctx, scope: str | None, fmt: str, api_url: str | None) -> None:
    """For every scope whose month-end P50 crosses its monthly budget: the changes that would bring it back
    under (an earlier downgrade stage, a daily cap, a routing rule for small turns), least disruptive
    first, each estimated from a dry-run of recent traffic."""
    from spendgate.admin.client import open_api
    from spendgate.admin.ration import Rationing, proposals
    from spendgate.core.tables import to_json
    from spendgate.domain.enforcement.scopes import parse_scope
    from spendgate.domain.errors import ConfigError

    settings = ctx.settings
    if scope is not None:
        try:
            scope = parse_scope(scope)
        except ConfigError as exc:
            raise click.BadParameter(exc.message, param_hint="--scope") from None

    async def go() -> Rationing:
        if api_url:
            async with open_api(settings, api_url) as api:
                return await api.call("GET", "/v1/policy/ration", Rationing,
                                      query={"scope": scope} if scope else None)
        async with ctx.database() as pool:
            return await proposals(pool, settings, settings.pricing.table(), now=datetime.now(UTC), scope=scope)

    result = run(go())
    click.echo(to_json(result) if fmt == "json" else describe_ration(result))


def describe_ration(r: Rationing) -> str:
    from spendgate.domain.money import format_usd

    if not r.scopes:
        return r.note or "no scope's month-end P50 crosses its monthly budget: nothing to ration"
    out = []
    for s in r.scopes:
        out.append(f"{s.scope}: P50 {format_usd(s.p50_micros)} against a {format_usd(s.budget_micros)} budget "
                   f"(forecast of {s.as_of}, {s.days_left:.1f} days left){'; ' + s.note if s.note else ''}")
        for i, p in enumerate(s.proposals, 1):
            out.append(f"  {i}. [{p.kind}{'' if p.sufficient else ', not enough'}] {p.summary}")
    return "\n".join(out)


@policy.command("suggest")
@click.option("--team", default=None, metavar="TEAM", help="Only this team's turns (default: every team).")
@click.option("--tolerance", type=float, default=2.0, show_default=True, metavar="PCT",
              help="Largest quality regression allowed, in percent (the bootstrap's 95 % upper bound must stay "
                   "under it); above 0, at most 50.")
@click.option("--days", type=int, default=30, show_default=True, help="Days of turns to learn from (1 to 90).")
@format_option(*DOCUMENT_FORMATS)
@click.option("--json", "as_json", is_flag=True, hidden=True, help="The same as --format json.")
@click.option("--save", nargs=2, default=None, metavar="ID FILE",
              help="Write suggestion ID's proposed policy document to FILE (YAML), to dry-run or apply: "
                   "spendgate policy apply FILE --suggestion ID --reason ...")
@force_option
@api_option
@pass_ctx
def suggest_cmd(ctx: Ctx, team: str | None, tolerance: float, days: int, fmt: str, as_json: bool,
                save: tuple[str, str] | None, force: bool, api_url: str | None) -> None:
    """Propose policy changes the last DAYS of turns say are safe: cheaper routes for the kinds of turns where
    the cheaper model did as well, a larger downgrade size limit, earlier downgrade stages, budgets from the
    forecast, lower retry caps, and rationing's proposals; each with its math, a dry-run and the policy
    document to apply."""
    from spendgate.admin.client import open_api
    from spendgate.admin.suggest import Suggestions, check_inputs, suggest
    from spendgate.core.tables import to_json
    from spendgate.domain.errors import ConfigError

    try:
        check_inputs(team=team, tolerance_pct=tolerance, days=days)
    except ConfigError as exc:
        raise click.BadParameter(exc.message) from None
    if save is not None:
        check_output_file(Path(save[1]), force=force, flag="--save")
    settings = ctx.settings

    async def go() -> Suggestions:
        if api_url:
            query = {"tolerance": repr(tolerance), "days": str(days), **({"team": team} if team else {})}
            async with open_api(settings, api_url) as api:
                return await api.call("GET", "/v1/policy/suggestions", Suggestions, query=query)
        async with ctx.database() as pool:
            return await suggest(pool, settings, settings.pricing.table(), now=datetime.now(UTC), days=days,
                                 tolerance_pct=tolerance, team=team)

    found = run(go())
    if save is not None:
        _save(found, save[0], Path(save[1]), force=force, live=run(_live(ctx, api_url)))
    click.echo(to_json(found) if as_json or fmt == "json" else describe_suggestions(found))


def _save(found: Suggestions, suggestion_id: str, file: Path, *, force: bool, live: dict[str, Any]) -> None:
    import yaml

    from spendgate.admin.policy import parse_proposal
    from spendgate.admin.suggestion_file import header

    chosen = next((s for s in found.suggestions if s.id == suggestion_id), None)
    if chosen is None:
        known = ", ".join(s.id for s in found.suggestions) or "none this time"
        raise CliError(f"no suggestion {suggestion_id!r} (suggestions: {known})")
    body = yaml.safe_dump(chosen.document, sort_keys=False)
    saved = parse_proposal(body, source=str(file))  # the digest of what apply will read back
    text = header(chosen.id, chosen.summary, document=saved, live=live) + body
    write_output_file(file, text, force=force)
    click.echo(f"saved {chosen.id} to {file}; apply with: spendgate policy apply {file} --suggestion {chosen.id} "
               "--reason ...", err=True)


def describe_suggestions(r: Suggestions) -> str:
    out = [f"{r.turns:,} turns from {r.from_at:%Y-%m-%d %H:%M} to {r.to_at:%Y-%m-%d %H:%M} UTC ({r.days} days), "
           f"tolerance {r.tolerance_pct:g} %, in {r.elapsed_ms / 1000:.1f} s"]
    if not r.turns:
        out.append("no turns in the window: suggestions learn from turns (requests with a turn id, as Codex sends, "
                   "through the proxy), at least 30 on each side of a change; none yet (docs/policy.md)")
    elif not r.suggestions:
        out.append("no suggestions")
    for s in r.suggestions:
        out += ["", f"suggestion {s.id} ({s.kind})", f"  {s.summary}", "",
                *("  " + line for line in s.diff.splitlines())]
    if r.not_proposed:
        out += ["", "not proposed:"]
        out += [f"  {n.summary}" for n in r.not_proposed]
    return "\n".join(out)


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
    if r.exploration:
        out.append(f"exploration: {r.explored_turns} turns ({r.explore_requests} requests) on the next cheaper "
                   f"model, saving {format_usd(r.explore_saved_micros)}")
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
