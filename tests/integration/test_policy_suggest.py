"""``policy suggest`` over a real database: segments and savings from seeded turns, a cheaper route proposed
where the explored turns did as well and not where they did worse, "needs more turns" where the data is
thin, the dry-run's numbers, the CLI's text, JSON, save-and-apply and error paths, and the API's roles."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from spendgate.admin.app import create_app
from spendgate.admin.console.auth_chain import RESOLVERS
from spendgate.admin.console.identity import Identity, Role
from spendgate.admin.deps import Deps
from spendgate.admin.suggest import suggest
from spendgate.cli import main
from spendgate.domain.events import UsageRecorded
from spendgate.domain.pricing import PriceTable, cost_micros
from spendgate.store.usage.store import insert_events
from tests.support.admin_server import ADMIN_TOKEN, TEST_SIGNING_KEY, admin_client, admin_settings, auth
from tests.support.factories import usage_event

NOW = datetime.now(UTC).replace(hour=18, minute=0, second=0, microsecond=0)
DAY = NOW.replace(hour=10) - timedelta(days=3)
"""The seeded turns start at 10:00 UTC (the day window for teams without a budget), three days ago."""
PRICES = PriceTable()


def turn(i: int, team: str, *, arm: str | None, good: bool, input_tokens: int = 3_000) -> UsageRecorded:
    """One single-request turn asking for gpt-5.1; ``arm="explore"`` ran on gpt-5.1-mini. A good turn ran three
    tools (one failing in every fifth turn) and answered; a bad one had two of three fail and stopped."""
    explored = arm == "explore"
    failures = (1 if i % 5 == 0 else 0) if good else 2
    return usage_event(
        turn_id=f"{team}-t{i}", session_id=f"{team}-s{i // 10}", developer=f"{team}-dev{i % 7}", key_id=f"k-{team}",
        team=team, occurred_at=DAY + timedelta(minutes=i), input_tokens=input_tokens, cached_tokens=1_000,
        output_tokens=500, model_used="gpt-5.1-mini" if explored else "gpt-5.1",
        route_reason="explore" if explored else "requested", experiment_arm=arm, tool_outputs=3,
        tool_failures=failures, final_message=good, repo=f"/src/{team}",
    )


async def seed(pool: asyncpg.Pool) -> list[UsageRecorded]:
    """platform: 160 control and 60 explored turns, as good. payments: the same, but the explored turns
    are bad. tiny: 10 control turns and 3 explored ones, too few to judge."""
    events = [turn(i, "platform", arm="control", good=True) for i in range(160)]
    events += [turn(i, "platform", arm="explore", good=True) for i in range(160, 220)]
    events += [turn(i, "payments", arm="control", good=True) for i in range(160)]
    events += [turn(i, "payments", arm="explore", good=False) for i in range(160, 220)]
    events += [turn(i, "tiny", arm="control", good=True) for i in range(10)]
    events += [turn(i, "tiny", arm="explore", good=True) for i in range(10, 13)]
    await insert_events(pool, events)
    return events


def repriced_saving(events: list[UsageRecorded], team: str) -> int:
    mini = PRICES.lookup("gpt-5.1-mini").price
    return sum(e.cost_micros - cost_micros(mini, input_tokens=e.input_tokens, cached_tokens=e.cached_tokens,
                                           output_tokens=e.output_tokens)
               for e in events if e.team == team and e.model_used == "gpt-5.1")


@pytest.fixture
async def seeded(pool: asyncpg.Pool) -> list[UsageRecorded]:
    return await seed(pool)


async def test_a_harmless_segment_is_proposed_a_harmful_one_is_not_and_thin_data_says_what_it_needs(
        pool: asyncpg.Pool, seeded: list[UsageRecorded]) -> None:
    """platform's explored turns score as well as its control turns: a routing rule to gpt-5.1-mini is
    proposed, with the repriced saving, the bootstrap bound, the sample sizes and a dry-run that saves at
    least that and pauses no one more; payments' explored turns score far worse: refused as harmful; tiny
    has 13 turns: it says how many more it needs."""
    settings = admin_settings()
    found = await suggest(pool, settings, PRICES, now=NOW)
    assert found.turns == 453
    (s,) = found.suggestions
    assert s.kind == "routing_rule" and s.scope == "team:platform" and s.change["model"] == "gpt-5.1-mini"
    assert s.change["max_input_tokens"] > 3_000 and s.change["models"] == ["gpt-5.1"]
    assert s.estimated_saving_micros == repriced_saving(seeded, "platform") > 0
    ev = s.evidence
    assert ev is not None and ev.explored_n == 60 and ev.baseline_n == 160 and ev.baseline == "control"
    assert ev.biased is None and ev.upper is not None and ev.regression is not None
    assert ev.regression <= ev.upper <= 0.02
    assert s.dry_run.extra_pauses == 0 and s.dry_run.days == 30
    # the live replay prices the explored turns at gpt-5.1 too (it does not explore), so the rule saves on them
    assert s.dry_run.saved_micros >= s.estimated_saving_micros
    assert s.dry_run.saved_micros == s.dry_run.live_spend_micros - s.dry_run.spend_micros
    assert s.summary.startswith("for platform: route turns under ") and "to gpt-5.1-mini" in s.summary
    assert "95 % upper bound" in s.summary and "220 turns, 60 explored" in s.summary
    assert "dry-run of the last 30 days: $" in s.summary and "0 extra pauses" in s.summary
    assert [r["name"] for r in s.document["routing_rules"]] == [s.id]
    assert "+routing_rules:" in s.diff and f"+- name: {s.id}" in s.diff
    verdicts = {n.scope: n for n in found.not_proposed}
    assert verdicts["team:payments"].verdict == "harmful"
    harm = verdicts["team:payments"].evidence
    assert harm is not None and harm.lower is not None and harm.lower > 0.02
    tiny = verdicts["team:tiny"]
    assert tiny.verdict == "needs_data" and tiny.more_turns == (30 - 10) + (30 - 3)
    assert "needs 47 more turns" in tiny.summary and "3 explored" in tiny.summary
    segments = {(g.team, g.size, g.hours, g.tools): g for g in found.segments}
    g = segments[("platform", "2K-8K", "day", "failing")]
    assert g.turns == 44 and g.repo == "/src/platform" and g.candidate_model == "gpt-5.1-mini"


async def test_without_explored_turns_the_estimate_comes_from_downgrades_and_says_it_is_biased(
        pool: asyncpg.Pool) -> None:
    """Budget-downgraded turns stand in for explored ones when there are none, labelled biased."""
    events = [turn(i, "platform", arm=None, good=True) for i in range(120)]
    events += [msgspec.structs.replace(turn(i, "platform", arm=None, good=True), model_used="gpt-5.1-mini",
                                       route_reason="downgrade", stage="downgrade")
               for i in range(120, 160)]
    await insert_events(pool, events)
    found = await suggest(pool, admin_settings(), PRICES, now=NOW)
    (s,) = found.suggestions
    assert s.evidence is not None and s.evidence.biased == "biased: from budget downgrades"
    assert s.evidence.explored_n == 0 and s.evidence.downgraded_n == 40 and s.evidence.baseline == "requested model"
    assert "40 budget-downgraded, biased: from budget downgrades" in s.summary


async def test_the_cli_prints_text_and_json_saves_a_suggestion_and_applies_it_as_a_version(
        pool: asyncpg.Pool, seeded: list[UsageRecorded], db_url: str, tmp_path: Path) -> None:
    """Text shows each suggestion's sentence and diff and what was not proposed; --format json the whole
    answer (and --json, the issue's spelling); --save writes the document, and `policy apply --suggestion`
    stores a version whose source names it."""
    env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_LOG_LEVEL": "error",
           "SPENDGATE_ADMIN_URL": "", "SPENDGATE_POLICY__SIGNING_KEY": TEST_SIGNING_KEY}

    async def cli(*args: str) -> tuple[int, str]:
        result = await asyncio.to_thread(CliRunner().invoke, main, ["policy", *args], env=env)
        assert "Traceback" not in result.output, result.output
        return result.exit_code, result.output

    code, out = await cli("suggest")
    assert code == 0, out
    assert "suggestion suggest-platform-gpt-5.1-under-" in out and "for platform: route turns under" in out
    assert "+  model: gpt-5.1-mini" in out and "not proposed:" in out and "for payments: gpt-5.1" in out
    code, out = await cli("suggest", "--json", "--team", "payments", "--tolerance", "5")
    assert code == 0, out
    answer = json.loads(out)
    assert answer["suggestions"] == [] and answer["tolerance_pct"] == 5
    assert [n["verdict"] for n in answer["not_proposed"]] == ["harmful"]
    assert answer["turns"] == 220 and answer["days"] == 30
    code, out = await cli("suggest", "--format", "json", "--team", "payments", "--tolerance", "5")
    assert code == 0 and json.loads(out)["not_proposed"] == answer["not_proposed"], out
    sid = (await suggest(pool, admin_settings(), PRICES, now=datetime.now(UTC))).suggestions[0].id
    target = tmp_path / "suggested.yaml"
    code, out = await cli("suggest", "--save", sid, str(target))
    assert code == 0 and target.read_text().startswith(f"# spendgate suggestion {sid}")
    mine = tmp_path / "mine.yaml"  # a file the user already has is never replaced by a mistyped --save
    mine.write_text("budgets: []\n")
    code, out = await cli("suggest", "--save", sid, str(mine))
    assert code == 1 and "already exists: pass --force" in out and mine.read_text() == "budgets: []\n", out
    code, out = await cli("suggest", "--save", sid, str(mine), "--force")
    assert code == 0 and mine.read_text() == target.read_text(), out
    edited = tmp_path / "edited.yaml"  # edited after saving: not the suggestion any more
    edited.write_text(target.read_text().replace("max_input_tokens: ", "max_input_tokens: 9"))
    code, out = await cli("apply", str(edited), "--suggestion", sid, "--reason", "mine")
    assert code == 2 and "was edited after it was saved" in out, out
    code, out = await cli("apply", str(target), "--suggestion", sid, "--reason", "cheaper small turns")
    assert code == 0 and "active" in out, out
    source = await pool.fetchval("SELECT source FROM policy_versions ORDER BY seq DESC LIMIT 1")
    assert source == f"suggestion:{sid}"
    code, out = await cli("apply", str(target), "--suggestion", sid, "--reason", "again")
    assert code == 2 and "the live policy already is suggestion" in out, out
    assert await pool.fetchval("SELECT count(*) FROM policy_versions") == 2  # the baseline and the one apply


@pytest.mark.parametrize(("args", "words"), [
    (["--tolerance", "0"], "tolerance must be a percentage above 0"),
    (["--tolerance", "80"], "at most 50"),
    (["--tolerance", "nan"], "tolerance must be"),
    (["--tolerance", "two"], "'two' is not a valid float"),
    (["--days", "0"], "days must be from 1 to 90"),
    (["--days", "1000"], "days must be from 1 to 90"),
    (["--team", "x" * 300], "team must be printable text"),
    (["--team", "nobody"], "unknown team 'nobody'"),
    (["--save", "no-such-id", "{tmp}/x.yaml"], "no suggestion 'no-such-id'"),
    (["--save", "some-id", "{tmp}/no/such/folder/x.yaml"], "folder does not exist"),
    (["--save", "some-id", "{tmp}"], "is a directory: name a file"),
])
async def test_the_cli_refuses_bad_input_with_one_clear_line(pool: asyncpg.Pool, db_url: str, tmp_path: Path,
                                                             args: list[str], words: str) -> None:
    """Every bad input is an error naming what is wrong, exit status 1 or 2, no traceback."""
    env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_LOG_LEVEL": "error",
           "SPENDGATE_ADMIN_URL": ""}
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = await asyncio.to_thread(CliRunner().invoke, main, ["policy", "suggest", *args], env=env)
    assert result.exit_code in (1, 2) and words in result.output and "Traceback" not in result.output, result.output


async def test_the_api_serves_suggestions_to_admins_finops_and_a_teams_manager_only(
        pool: asyncpg.Pool, seeded: list[UsageRecorded]) -> None:
    """The admin token gets every team's; bad parameters are 400s; a manager only their own team's, a
    developer nothing; the operation is in the OpenAPI document."""
    async with admin_client(pool, now=NOW) as client:
        resp = await client.get("/v1/policy/suggestions", headers=auth())
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert [s["scope"] for s in body["suggestions"]] == ["team:platform"]
        assert body["suggestions"][0]["document"]["routing_rules"][0]["model"] == "gpt-5.1-mini"
        for params in ({"tolerance": "0"}, {"tolerance": "x"}, {"days": "400"}, {"days": "1.5"},
                       {"team": "nobody"}):
            resp = await client.get("/v1/policy/suggestions", headers=auth(), params=params)
            assert resp.status == 400 and (await resp.json())["error"]["message"], params
        spec = await (await client.get("/openapi.json", headers=auth())).json()
        assert "get" in spec["paths"]["/v1/policy/suggestions"]
        chosen = body["suggestions"][0]
        resp = await client.post("/v1/policy/apply", headers=auth(),
                                 json={"proposal": chosen["document"], "reason": "r", "suggestion": "bad id!"})
        assert resp.status == 400 and await pool.fetchval("SELECT count(*) FROM policy_versions") == 0
        resp = await client.post("/v1/policy/apply", headers=auth(),
                                 json={"proposal": chosen["document"], "reason": "r", "suggestion": chosen["id"]})
        assert resp.status == 200, await resp.text()
        assert await pool.fetchval("SELECT source FROM policy_versions ORDER BY seq DESC LIMIT 1") == (
            f"suggestion:{chosen['id']}")

    for role, params, status in ((Role.MANAGER, {"team": "payments"}, 200), (Role.MANAGER, {}, 403),
                                 (Role.MANAGER, {"team": "platform"}, 403), (Role.DEVELOPER, {"team": "payments"}, 403),
                                 (Role.FINOPS, {}, 200)):
        settings = admin_settings()
        app = create_app(Deps(pool, settings, settings.pricing.table(), now=lambda: NOW))
        who = Identity(subject="u", name="U", role=role, teams=frozenset({"payments"}), developer="payments-dev1")

        async def as_who(_request: web.Request, who: Identity = who) -> Identity:
            return who

        app[RESOLVERS].insert(0, as_who)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            resp = await client.get("/v1/policy/suggestions", params=params)
            assert resp.status == status, (role, params, await resp.text())


async def test_the_cli_reads_suggestions_through_the_admin_api(pool: asyncpg.Pool, seeded: list[UsageRecorded],
                                                               tmp_path: Path) -> None:
    """--api asks the running admin API: the same suggestion, and the API's 400 as one error line."""
    async with admin_client(pool, now=NOW) as client:
        env = {"SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_LOG_LEVEL": "error",
               "SPENDGATE_ADMIN_TOKEN": ADMIN_TOKEN, "SPENDGATE_ADMIN_URL": str(client.make_url("")).rstrip("/")}
        result = await asyncio.to_thread(CliRunner().invoke, main, ["policy", "suggest", "--format", "json"], env=env)
        assert result.exit_code == 0, result.output
        assert [s["scope"] for s in json.loads(result.output)["suggestions"]] == ["team:platform"]
        result = await asyncio.to_thread(CliRunner().invoke, main, ["policy", "suggest", "--team", "nobody"], env=env)
        assert result.exit_code == 1 and "unknown team 'nobody'" in result.output
        assert "Traceback" not in result.output
