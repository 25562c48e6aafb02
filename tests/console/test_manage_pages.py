"""The console's pages that change things, over HTTP on a real database: budgets and raises set through the
API's own functions and audited as the signed-in identity, keys whose secret is shown once, the policy
dry-run and apply, dead letters handed back to the alerter; the role rules; hostile form input answered
with the page again and a 400, never a 500."""

from __future__ import annotations

from datetime import timedelta
from html import unescape

import aiohttp
import asyncpg
import yaml
from structlog.testing import capture_logs

from spendgate.admin.console.identity import Identity, Role, may_raise_budget
from spendgate.domain.enforcement.policy import Budget, budget_of
from spendgate.store.budgets import store as budgets_store
from spendgate.store.keys import store as keys_store
from tests.support.admin_server import NOW, admin_settings, auth
from tests.support.alerts import seed_usage
from tests.support.manage import DEVELOPER, FINOPS, MANAGER, console_as, seed_dead_letter

USD = 1_000_000
TEAM_BUDGET = {"kind": "team", "name": "platform", "daily": "120", "monthly": "2500", "thresholds": "80, 95, 110"}


async def test_finops_sets_raises_and_deletes_a_budget_audited_as_themself(pool: asyncpg.Pool) -> None:
    """Each form redirects back to the page, which shows the change; the audit names the FinOps identity;
    the budgets CSV holds the page's rows."""
    async with console_as(pool, FINOPS) as client:
        done = await client.post("/budgets/set", data=TEAM_BUDGET, allow_redirects=False)
        assert done.status == 303 and done.headers["Location"].startswith("/budgets?done=set")
        budget = await budgets_store.get_budget(pool, "team:platform")
        assert budget is not None and (budget.daily_micros, budget.monthly_micros) == (120 * USD, 2500 * USD)
        page = await client.get(done.headers["Location"])
        html = await page.text()
        assert page.status == 200 and "Budget set for team:platform." in html and "$2,500.00" in html

        until = (NOW + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
        raised = await client.post("/budgets/raise", data={"kind": "team", "name": "platform", "by": "300",
                                                           "until": until, "reason": "launch week"},
                                   allow_redirects=False)
        assert raised.status == 303
        html = await (await client.get("/budgets")).text()
        assert "launch week" in html and "$2,800.00" in html  # the month's budget now counts the raise
        csv = await (await client.get("/budgets?format=csv&table=budgets")).text()
        assert "team:platform,month,0.000000,2800.000000,ok," in csv
        assert "team:platform</td>" not in await (await client.get("/budgets?q=web")).text()
        crafted = await (await client.get("/budgets?done=set&scope=team:Call+555+now")).text()
        assert "Budget set for the scope." in crafted and "Call 555" not in crafted
        live = await client.get("/policy?format=yaml")
        assert live.status == 200 and "attachment" in live.headers["Content-Disposition"]
        assert yaml.safe_load(await live.text())["budgets"][0] == {
            "scope": "team:platform", "daily": "120.000000", "monthly": "2500.000000", "timezone": "UTC",
            "thresholds": [80, 95, 110], "at_pause": "refuse"}

        gone = await client.post("/budgets/delete", data={"scope": "team:platform"}, allow_redirects=False)
        assert gone.status == 303 and await budgets_store.get_budget(pool, "team:platform") is None
    changes = await budgets_store.recent_changes(pool)
    assert [(c.action, c.actor) for c in changes] == [("delete", "oidc:fin-1"), ("raise", "oidc:fin-1"),
                                                      ("set", "oidc:fin-1")]


HOSTILE_BUDGETS = [
    ({**TEAM_BUDGET, "name": "plat\x00form"}, "name contains a NUL character"),
    ({**TEAM_BUDGET, "monthly": "99999999999"}, "monthly: give US dollars"),
    ({**TEAM_BUDGET, "daily": "-5"}, "daily: give US dollars"),
    ({**TEAM_BUDGET, "kind": "galaxy"}, "unknown scope kind"),
    ({**TEAM_BUDGET, "name": "p" * 5000}, "name is too long"),
    ({**TEAM_BUDGET, "name": "p" * 300}, "bad scope"),
    ({**TEAM_BUDGET, "thresholds": "80, 95"}, "thresholds: give three whole percentages"),
    ({**TEAM_BUDGET, "thresholds": "95, 80, 110"}, "thresholds must be three rising percentages"),
    ({**TEAM_BUDGET, "retry_cap": "²"}, "retry_cap: give a whole number"),
    ({**TEAM_BUDGET, "timezone": "Mars/Olympus"}, "Mars/Olympus"),
    ({**TEAM_BUDGET, "cascades": "gpt-5.1 gpt-5.1-mini"}, "cascades line 1"),
    ({**TEAM_BUDGET, "cascades": "gpt-5.1: no-such-model"}, "no-such-model"),
    ({**TEAM_BUDGET, "daily": "", "monthly": ""}, "needs a daily, weekly or monthly amount"),
]


async def test_hostile_budget_input_gets_the_page_again_with_a_400(pool: asyncpg.Pool) -> None:
    """Each bad field (NUL, huge, negative, unknown scope, over-long, malformed) is named on the page, with
    status 400, and nothing is stored."""
    async with console_as(pool, FINOPS) as client:
        for fields, message in HOSTILE_BUDGETS:
            answer = await client.post("/budgets/set", data=fields, allow_redirects=False)
            html = await answer.text()
            assert answer.status == 400 and answer.content_type == "text/html", (fields, html[:300])
            assert message in html.replace("&#39;", "'"), (message, html[:2000])
            assert 'role="alert"' in html and "<h2 id=\"budgets-h\">" in html
    assert await budgets_store.recent_changes(pool) == []


async def test_bad_raises_and_deletes_are_refused_on_the_page(pool: asyncpg.Pool) -> None:
    """A raise needs a budget, a positive amount, a future end and a reason; deleting a missing budget is a
    404 page; a huge form is refused without a 500."""
    future = (NOW + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    raise_ = {"kind": "team", "name": "platform", "by": "10", "until": future, "reason": "x"}
    async with console_as(pool, FINOPS) as client:
        for fields, status, message in [
            (raise_, 409, "no budget for team:platform"),
            ({**raise_, "by": "0"}, 400, "a raise must be a positive amount"),
            ({**raise_, "until": "2020-01-01T00:00"}, 400, "a raise must end in the future"),
            ({**raise_, "until": "soon"}, 400, "until: give a time"),
            ({**raise_, "reason": ""}, 400, "reason: give a reason"),
        ]:
            answer = await client.post("/budgets/raise", data=fields, allow_redirects=False)
            assert (answer.status, message in await answer.text()) == (status, True), fields
        missing = await client.post("/budgets/delete", data={"scope": "team:nobody"}, allow_redirects=False)
        assert missing.status == 404 and "no budget for team:nobody" in await missing.text()
        huge = await client.post("/budgets/set", data={**TEAM_BUDGET, "cascades": "x" * (5 * 1024 * 1024)})
        assert huge.status in (400, 413)


async def test_a_key_is_shown_once_stored_hashed_and_revoked(pool: asyncpg.Pool) -> None:
    """The create answer holds the secret; the database holds only its hash; neither the list, its CSV nor
    the log holds it; revoking from the list ends the key."""
    async with console_as(pool) as client:
        with capture_logs() as logs:
            made = await client.post("/budgets/keys/create", data={"developer": "ada", "team": "platform"},
                                     headers=auth())
            html = await made.text()
        assert made.status == 200 and made.headers["Cache-Control"] == "no-store"
        secret = html.split('id="secret" aria-label="The new virtual key">')[1].split("<")[0]
        assert keys_store.looks_like_key(secret)
        (key,) = await keys_store.list_keys(pool)
        stored = await pool.fetchval("SELECT key_hash FROM virtual_keys WHERE key_id = $1", key.key_id)
        assert bytes(stored) == keys_store.hash_secret(secret)
        assert secret not in repr(logs)
        listing = await (await client.get("/budgets?developer=ada", headers=auth())).text()
        csv = await (await client.get("/budgets?format=csv&table=keys", headers=auth())).text()
        assert key.key_prefix in listing and secret not in listing and secret not in csv and "ada" in csv
        revoked = await client.post("/budgets/keys/revoke", data={"key_id": key.key_id}, headers=auth(),
                                    allow_redirects=False)
        assert revoked.status == 303 and secret not in revoked.headers["Location"]
        assert (await keys_store.get_key(pool, key.key_id)).revoked_at is not None  # type: ignore[union-attr]
        audited = await pool.fetch("SELECT actor, action FROM audit_log WHERE target = $1 ORDER BY action",
                                   key.key_id)
        assert [(r["actor"], r["action"]) for r in audited] == [("admin-token:break-glass", "key.create"),
                                                                ("admin-token:break-glass", "key.revoke")]
        again = await client.post("/budgets/keys/revoke", data={"key_id": "nope"}, headers=auth())
        assert again.status == 404
        for fields, message in (({"developer": "a\x00", "team": "t"}, "developer contains a NUL character"),
                                ({"developer": "a" * 300, "team": "t"}, "developer: give a name"),
                                ({"developer": "=cmd()", "team": "t"}, "developer: give a name"),
                                ({"team": "t"}, "missing required field `developer`")):
            bad = await client.post("/budgets/keys/create", data=fields, headers=auth())
            assert bad.status == 400 and message in await bad.text(), fields
        assert len(await keys_store.list_keys(pool)) == 1


async def test_roles_decide_who_changes_what(pool: asyncpg.Pool) -> None:
    """FinOps may not create keys (403); a developer opens neither /budgets nor its forms, /alerts nor
    /policy; a manager sees their teams' budgets only and, without a manager raise limit, may not raise."""
    await budgets_store.set_budget(pool, _budget("team:platform"), actor="t")
    await budgets_store.set_budget(pool, _budget("team:web"), actor="t")
    async with console_as(pool, FINOPS) as client:
        refused = await client.post("/budgets/keys/create", data={"developer": "ada", "team": "platform"})
        assert refused.status == 403 and "only admins create virtual keys" in await refused.text()
        assert "Create a key" not in await (await client.get("/budgets")).text()
    async with console_as(pool, DEVELOPER) as client:
        for path in ("/budgets", "/alerts", "/policy"):
            assert (await client.get(path)).status == 403, path
        for path, data in (("/budgets/set", TEAM_BUDGET), ("/budgets/delete", {"scope": "team:web"}),
                           ("/policy/apply", {"proposal": "budgets: []", "confirm": "yes"}),
                           ("/alerts/replay", {"dead_letter_id": "all"})):
            assert (await client.post(path, data=data)).status == 403, path
    await seed_dead_letter(pool, target="slack:platform-em", team="platform")
    await seed_dead_letter(pool, target="slack:web-em", team="web")
    async with console_as(pool, MANAGER) as client:
        html = await (await client.get("/budgets")).text()
        assert "team:platform" in html and "team:web" not in html and "Set a budget" not in html
        alerts = await (await client.get("/alerts")).text()
        assert "team:platform is paused" in alerts and "team:web" not in alerts and "Dead letters" not in alerts
        until = (NOW + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
        raised = await client.post("/budgets/raise", data={"kind": "team", "name": "platform", "by": "10",
                                                           "until": until, "reason": "x"})
        assert raised.status == 403 and "manager_raise_limit_usd" in await raised.text()
    assert {b.scope for b in await budgets_store.budgets_of(pool)} == {"team:platform", "team:web"}
    assert len(await budgets_store.recent_changes(pool)) == 2


async def test_a_manager_raises_their_team_within_the_configured_limit(pool: asyncpg.Pool) -> None:
    """With manager_raise_limit_usd set (the auth settings), a manager's raise on their team within it is
    made and audited as them; over it, or on another team, it is a 403 page and nothing changes."""
    await budgets_store.set_budget(pool, _budget("team:platform"), actor="t")
    await budgets_store.set_budget(pool, _budget("team:web"), actor="t")
    base = admin_settings()
    settings = base.model_copy(update={"console": base.console.model_copy(update={"manager_raise_limit_usd": "50"})})
    until = (NOW + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    async with console_as(pool, MANAGER, settings=settings) as client:
        form = {"kind": "team", "name": "platform", "by": "40", "until": until, "reason": "incident"}
        assert (await client.post("/budgets/raise", data=form, allow_redirects=False)).status == 303
        over = await client.post("/budgets/raise", data={**form, "by": "60"})
        assert over.status == 403 and "by at most $50.00" in await over.text()
        other = await client.post("/budgets/raise", data={**form, "name": "web"})
        assert other.status == 403
    raises = [(c.scope, c.raise_micros, c.actor) for c in await budgets_store.recent_changes(pool)
              if c.action == "raise"]
    assert raises == [("team:platform", 40 * USD, "oidc:mgr-1")]


def test_a_manager_raises_their_own_team_within_the_limit_only() -> None:
    """The raise rule: FinOps anything; a manager their team's (per-model too) up to the limit, and
    nothing when no limit is configured."""
    manager = Identity(subject="m", name="M", role=Role.MANAGER, teams=frozenset({"platform"}))
    assert may_raise_budget(manager, "team:platform", 50 * USD, 50 * USD)
    assert may_raise_budget(manager, "team:platform|model:gpt-5.1", 10 * USD, 50 * USD)
    assert not may_raise_budget(manager, "team:platform", 51 * USD, 50 * USD)
    assert not may_raise_budget(manager, "team:web", 1 * USD, 50 * USD)
    assert not may_raise_budget(manager, "developer:platform", 1 * USD, 50 * USD)
    assert not may_raise_budget(manager, "team:platform", 1 * USD, None)
    assert may_raise_budget(FINOPS, "org", 10_000 * USD, None)
    assert not may_raise_budget(DEVELOPER, "team:platform", 1 * USD, 50 * USD)


PROPOSAL = """budgets:
  - scope: team:platform
    monthly: "3"
"""


async def test_a_proposal_is_dry_run_from_an_upload_and_applied_after_confirmation(pool: asyncpg.Pool) -> None:
    """An uploaded YAML file is replayed over the stored traffic (what `policy dry-run` reports); apply
    needs the confirmation, then the budget is live and audited as the identity."""
    for i in range(4):
        await seed_usage(pool, session_id=f"s{i}", repo="r", cost_micros=2 * USD, at=NOW - timedelta(days=1, hours=i))
    async with console_as(pool, FINOPS) as client:
        form = aiohttp.FormData()
        form.add_field("proposal", "ignored: the file wins")
        form.add_field("proposal_file", PROPOSAL.encode(), filename="p.yaml", content_type="text/yaml")
        form.add_field("days", "30")
        result = await client.post("/policy/dry-run", data=form)
        html = await result.text()
        assert result.status == 200, html[:2000]
        assert 'id="dry-actual">$8.00<' in html and "team:platform" in html and 'name="confirm"' in html
        unconfirmed = await client.post("/policy/apply", data={"proposal": PROPOSAL})
        assert unconfirmed.status == 400 and "tick the confirmation" in await unconfirmed.text()
        assert await budgets_store.get_budget(pool, "team:platform") is None
        applied = await client.post("/policy/apply", data={"proposal": PROPOSAL, "confirm": "yes"})
        assert applied.status == 200 and "team:platform" in await applied.text()
        history = await (await client.get("/policy")).text()
        assert "oidc:fin-1" in history and 'id="versions"' in history
        csv = await (await client.get("/policy?format=csv")).text()
        assert "team:platform,set,oidc:fin-1" in csv
    budget = await budgets_store.get_budget(pool, "team:platform")
    assert budget is not None and budget.monthly_micros == 3 * USD


async def test_signed_versions_are_listed_verified_and_rolled_back_from_the_page(pool: asyncpg.Pool) -> None:
    """Each apply from the page is a signed version; the page lists them newest first with the active one
    and whether each verifies, and rolls back to an earlier one (after the confirmation) as a new version,
    audited as the signed-in identity; a hand-edited version shows as BAD. Before any, the page says the
    first apply stores two versions (the baseline, then the applied one), as it does."""
    async with console_as(pool, FINOPS) as client:
        empty = await (await client.get("/policy")).text()
        assert "stores two" in empty and "<code>baseline</code>" in empty and "stores one" not in empty
        for monthly in ("3", "5"):
            applied = await client.post("/policy/apply", data={
                "proposal": PROPOSAL.replace('monthly: "3"', f'monthly: "{monthly}"'), "confirm": "yes"})
            assert applied.status == 200, (await applied.text())[:2000]
        budget = await budgets_store.get_budget(pool, "team:platform")
        assert budget is not None and budget.monthly_micros == 5 * USD
        baseline, first, second = [r["version_id"] for r in await pool.fetch(
            "SELECT version_id FROM policy_versions ORDER BY seq")]  # the first apply stored the baseline first
        page = await (await client.get("/policy")).text()
        assert page.count(">verifies<") == 3 and f"<code>{baseline}</code>" in page
        assert f"<code>{second}</code> <strong>(active)</strong>" in page
        unconfirmed = await client.post("/policy/rollback", data={"version": first})
        assert unconfirmed.status == 400 and "tick the confirmation" in await unconfirmed.text()
        rolled = await client.post("/policy/rollback", data={"version": first, "confirm": "yes"})
        assert rolled.status == 200, (await rolled.text())[:2000]
        budget = await budgets_store.get_budget(pool, "team:platform")
        assert budget is not None and budget.monthly_micros == 3 * USD
        newest = await pool.fetchrow("SELECT action, source, approver FROM policy_versions ORDER BY seq DESC LIMIT 1")
        assert (newest["action"], newest["source"], newest["approver"]) == ("rollback", first, "oidc:fin-1")
        assert await pool.fetchval("SELECT actor FROM audit_log WHERE action = 'policy.rollback'") == "oidc:fin-1"
        await pool.execute("UPDATE policy_versions SET reason = 'edited by hand' WHERE version_id = $1", second)
        assert "BAD:" in await (await client.get("/policy")).text()


EXPLORING = "exploration:\n  share_pct: 5\n  teams: [platform, web]\n  max_input_tokens: 8000\n"


async def test_exploration_is_dry_run_applied_and_shown_read_only_on_the_policy_page(pool: asyncpg.Pool) -> None:
    """The page says exploration is off, a proposal with the block dry-runs with its explored turns, and
    once applied the page shows the share and the teams (read-only: the document's block changes it)."""
    async with console_as(pool, FINOPS) as client:
        before = await (await client.get("/policy")).text()
        assert 'id="live-exploration">Off' in before
        result = await client.post("/policy/dry-run", data={"proposal": EXPLORING, "days": "30"})
        assert result.status == 200 and 'id="dry-explored">0<' in await result.text()
        applied = await client.post("/policy/apply", data={"proposal": EXPLORING, "confirm": "yes"})
        assert applied.status == 200, (await applied.text())[:2000]
        page = unescape(await (await client.get("/policy")).text())
        assert "5 % of the eligible turns of\nplatform, web run on the next cheaper model" in page
        assert "turns under\n8,000 input tokens" in page
        live = yaml.safe_load(await (await client.get("/policy?format=yaml")).text())
        assert live["exploration"] == {"share_pct": "5", "teams": ["platform", "web"], "max_input_tokens": 8000}


BAD_PROPOSALS = [
    ({"proposal": "budgets: [", "days": "30"}, "is not YAML"),
    ({"proposal": "- a\n- b", "days": "30"}, "must be a mapping"),
    ({"proposal": "budgets:\n  - scope: galaxy:x\n    monthly: '1'", "days": "30"}, "galaxy:x"),
    ({"proposal": "budgets:\n  - scope: org\n    monthly: '-1'", "days": "30"}, "must be positive"),
    ({"proposal": PROPOSAL, "days": "0"}, "days: give a whole number"),
    ({"proposal": PROPOSAL, "days": "99999999999999999999"}, "days: give a whole number"),
    ({"proposal": "", "days": "30"}, "give a proposal"),
    ({"proposal": "exploration: {share_pct: 0, teams: [web], max_input_tokens: 8000}", "days": "30"},
     "exploration.share_pct"),
    ({"proposal": "x" * (600 * 1024), "days": "30"}, "proposal is too long"),
]


async def test_a_bad_proposal_gets_the_policy_page_again_with_a_400(pool: asyncpg.Pool) -> None:
    """The message says what is wrong and the proposal text stays in the form for correcting."""
    async with console_as(pool, FINOPS) as client:
        for fields, message in BAD_PROPOSALS:
            answer = await client.post("/policy/dry-run", data=fields)
            html = unescape(await answer.text())
            assert answer.status == 400 and message in html, (message, html[:3000])
            if 0 < len(fields["proposal"]) < 200:  # the text comes back for correcting
                assert f">{fields['proposal']}</textarea>" in html


async def test_replay_hands_a_dead_letter_back_to_the_alerter(pool: asyncpg.Pool) -> None:
    """The page lists the dead letter; replay makes its job pending again under a lease already run out,
    owned by the replaying identity, so a running alerter's next sweep sends it; a bad id is a 400."""
    job_id = await seed_dead_letter(pool, target="slack:platform-em")
    async with console_as(pool) as client:
        html = await (await client.get("/alerts", headers=auth())).text()
        assert "slack:platform-em" in html and "Replay dead letter" in html and "HTTP 503" in html
        dead_id = int(html.split('data-dead-letter="')[1].split('"')[0])
        bad = await client.post("/alerts/replay", data={"dead_letter_id": "1; DROP TABLE"}, headers=auth())
        assert bad.status == 400
        done = await client.post("/alerts/replay", data={"dead_letter_id": str(dead_id)}, headers=auth(),
                                 allow_redirects=False)
        assert done.status == 303 and done.headers["Location"] == "/alerts?replayed_now=1"
        job = await pool.fetchrow("SELECT status, claimed_by, claimed_until <= now() AS free FROM alert_jobs "
                                  "WHERE job_id = $1", job_id)
        assert (job["status"], job["claimed_by"], job["free"]) == (
            "pending", "console-replay/admin-token:break-glass", True)
        again = await client.get(done.headers["Location"], headers=auth())
        assert "1 dead letter(s) handed back" in await again.text()
        csv = await (await client.get("/alerts?format=csv&table=dead", headers=auth())).text()
        assert "slack:platform-em" in csv
        bad_kind = await client.get("/alerts?kind=<script>", headers=auth())
        assert bad_kind.status == 400 and "<script>" not in await bad_kind.text()
        for query in ("scope=team%00x", "since=yesterday"):
            bad = await client.get(f"/alerts?{query}", headers=auth())
            assert bad.status == 400 and bad.content_type == "text/html", query


def _budget(scope: str) -> Budget:
    return budget_of(scope, daily_micros=None, monthly_micros=100 * USD)
