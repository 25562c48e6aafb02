"""Signed policy versions and routing rules through the real enforcing proxy, the fake upstream, the Postgres
bus, the ledger and real PostgreSQL: a rule sends a small turn to the cheaper model and the usage event names
the rule and the version; a rollback makes the older version active and the proxy follows; ``spendgate
policy verify`` finds a row changed by hand; the admin API applies, lists, verifies and rolls back."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import yaml
from click.testing import CliRunner, Result

from spendgate.admin.policy import live_policy
from spendgate.admin.policy_versions import VersionApplied, apply_version, rollback
from spendgate.cli import main
from spendgate.core.config import Settings
from spendgate.domain.enforcement import policy_from_document
from spendgate.domain.enforcement.policy import budget_of
from spendgate.domain.money import MICROS_PER_USD as USD
from spendgate.store.budgets import store as budgets
from spendgate.store.policies import store as versions
from tests.support.admin_server import ADMIN_TOKEN, TEST_SIGNING_KEY, admin_client, auth
from tests.support.enforced_proxy import Enforced, enforced_proxies
from tests.support.waiting import eventually

SMALL = "x" * 4_600  # ~1,000 estimated input tokens
LARGE = "x" * 60_000  # ~13,000 estimated input tokens: over the rule's limit
RULE = {"name": "platform-small", "scope": "team:platform", "max_input_tokens": 8000, "model": "gpt-5.1-mini"}
ROUTED: dict[str, Any] = {"routing_rules": [RULE]}


async def ask(e: Enforced, http: aiohttp.ClientSession, session: str, content: str = SMALL) -> int:
    body = {"model": "gpt-5.1", "stream": True, "input": [{"type": "message", "role": "user", "content": content}]}
    async with http.post(e.url(), json=body, headers=e.headers(**{"session-id": session})) as resp:
        await resp.read()
        return resp.status


async def event_of(pool: asyncpg.Pool, session: str) -> asyncpg.Record:
    return await eventually(lambda: pool.fetchrow("SELECT * FROM usage_events WHERE session_id = $1", session),
                            until=lambda r: r is not None, what=f"usage event of {session}")


async def proxy_follows(e: Enforced, version_id: str) -> None:
    view: Any = e.deciders[0].inner.enforcer.view

    async def active() -> str | None:
        return view.policy.version  # type: ignore[no-any-return]

    await eventually(active, until=lambda v: v == version_id, what=f"the proxy on version {version_id}")


async def apply_doc(e: Enforced, doc: dict[str, Any], reason: str) -> VersionApplied:
    settings = e.ledger_runtime.settings
    return await apply_version(e.pool, policy_from_document(doc, settings.enforcement), settings,
                               settings.pricing.table(), now=_now(), approver="test:alice", reason=reason)


def _now() -> datetime:
    return datetime.now(UTC)


async def test_a_rule_routes_small_turns_and_a_rollback_is_followed(db_url: str, pool: asyncpg.Pool,
                                                                    tmp_path: Path) -> None:
    """With the rule's version active a small gpt-5.1 turn is served by gpt-5.1-mini and its event names the
    rule and the version; a large one keeps gpt-5.1. After a rollback the proxy enforces the new version
    (no rule): the small turn keeps gpt-5.1, stamped with the rollback's version id. A version row written
    into the table without the key (a signature copied from another row) is not enforced: the proxy keeps
    the rollback's version."""
    keyed = {"policy": {"signing_key": TEST_SIGNING_KEY}}
    async with enforced_proxies(db_url, tmp_path, settings=keyed) as e, aiohttp.ClientSession() as http:
        plain = await apply_doc(e, {}, "baseline")
        routed = await apply_doc(e, ROUTED, "cheaper small platform turns")
        assert routed.parent == plain.version_id
        await proxy_follows(e, routed.version_id)

        served = e.upstream.fake.served
        assert await ask(e, http, "s-small") == 200 and served[-1].model == "gpt-5.1-mini"
        small = await event_of(pool, "s-small")
        assert (small["model_requested"], small["model_used"], small["route_reason"], small["routing_rule"],
                small["policy_version"]) == ("gpt-5.1", "gpt-5.1-mini", "routing_rule", "platform-small",
                                             routed.version_id)
        assert await ask(e, http, "s-large", LARGE) == 200 and served[-1].model == "gpt-5.1"
        large = await event_of(pool, "s-large")
        assert (large["route_reason"], large["routing_rule"], large["policy_version"]) == (
            "requested", None, routed.version_id)

        back = await rollback(e.pool, e.ledger_runtime.settings, e.ledger_runtime.settings.pricing.table(),
                              now=_now(), approver="test:bob", reason="quality dropped")
        await proxy_follows(e, back.version_id)
        assert await ask(e, http, "s-after") == 200 and served[-1].model == "gpt-5.1"
        after = await event_of(pool, "s-after")
        assert (after["model_used"], after["routing_rule"], after["policy_version"]) == (
            "gpt-5.1", None, back.version_id)
        stored = await versions.get_version(pool, back.version_id)
        assert stored is not None
        assert (stored.action, stored.source, stored.parent, stored.approver, stored.document["routing_rules"]) == (
            "rollback", plain.version_id, routed.version_id, "test:bob", [])

        forged = await pool.fetchval(
            """INSERT INTO policy_versions (version_id, parent, action, source, approver, reason, created_at, document,
                                            key_id, signature)
               SELECT 'forged', $1, action, source, approver, reason, created_at, document, key_id, signature
               FROM policy_versions WHERE version_id = $2 RETURNING seq""", back.version_id, routed.version_id)
        await pool.execute("SELECT pg_notify('spendgate_config', 'policy')")
        view: Any = e.deciders[0].inner.enforcer.view

        async def seen() -> int:
            return int(view._version_seq)

        await eventually(seen, until=lambda s: s == forged, what="the proxy reading the forged row")
        assert view.policy.version == back.version_id
        assert await ask(e, http, "s-forged") == 200 and served[-1].model == "gpt-5.1"
        assert (await event_of(pool, "s-forged"))["policy_version"] == back.version_id


async def test_the_downgrade_size_limit_and_retry_cap_go_live_with_a_version_and_back_with_a_rollback(
        db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """`policy suggest` proposes a larger downgrade size limit; applied, the proxies enforce it (they read it
    from the active version, as the routing rules), and the guard's rollback restores the parent's. (They
    used to stay at the settings' values: the version recorded the change and nothing enforced it.)"""
    keyed = {"policy": {"signing_key": TEST_SIGNING_KEY}}
    async with enforced_proxies(db_url, tmp_path, settings=keyed) as e:
        view: Any = e.deciders[0].inner.enforcer.view
        plain = await apply_doc(e, {}, "baseline")
        await proxy_follows(e, plain.version_id)
        assert (view.policy.downgrade_max_input_tokens, view.policy.retry_cap) == (10_000, 3)  # the settings'
        wider = await apply_doc(e, {"downgrade_max_input_tokens": 32_000, "retry_cap": 5}, "larger turns too")
        assert wider.settings_differences == []  # nothing reported as "lives in the settings file"
        await proxy_follows(e, wider.version_id)
        assert (view.policy.downgrade_max_input_tokens, view.policy.retry_cap) == (32_000, 5)
        shown = await live_policy(pool, e.ledger_runtime.settings.enforcement, _now())
        assert (shown.downgrade_max_input_tokens, shown.retry_cap) == (32_000, 5)  # `policy show` agrees
        back = await rollback(e.pool, e.ledger_runtime.settings, e.ledger_runtime.settings.pricing.table(),
                              now=_now(), approver="spendgate-guard", reason="regressed")
        await proxy_follows(e, back.version_id)
        assert (view.policy.downgrade_max_input_tokens, view.policy.retry_cap) == (10_000, 3)


async def cli(db_url: str, data_dir: Path, *args: str) -> Result:
    env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(data_dir), "SPENDGATE_LOG_LEVEL": "error",
           "SPENDGATE_ADMIN_URL": "", "SPENDGATE_ADMIN_TOKEN": ADMIN_TOKEN}
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env, catch_exceptions=False)


async def test_verify_finds_a_row_changed_by_hand(pool: asyncpg.Pool, db_url: str, tmp_path: Path) -> None:
    """apply twice from the CLI (the key file made in the data dir), versions lists both and, below them, the
    baseline the first apply stored (whole ids in the table, whatever the reason's length; its action column says
    "baseline"), verify --all passes;
    after an UPDATE of one version's document in PostgreSQL, verify --all exits 1 naming that version, and a
    rollback to it is refused."""
    proposal = tmp_path / "p.yaml"
    proposal.write_text(yaml.safe_dump({"budgets": [{"scope": "team:platform", "daily": "40"}], **ROUTED}))
    long_reason = "first, " + "because " * 20
    first = await cli(db_url, tmp_path, "policy", "apply", str(proposal), "--reason", long_reason,
                      "--approver", "oidc:ann.example@finance.example.com")
    assert first.exit_code == 0, first.output
    proposal.write_text(yaml.safe_dump({"budgets": [{"scope": "team:platform", "daily": "50"}]}))
    second = await cli(db_url, tmp_path, "policy", "apply", str(proposal), "--reason", "second")
    assert second.exit_code == 0, second.output
    listed = await cli(db_url, tmp_path, "policy", "versions", "--format", "json")
    rows = json.loads(listed.output)["versions"]
    assert [(r["reason"], r["active"], r["routing_rules"], r["source"]) for r in rows] == [
        ("second", True, 0, None), (long_reason.strip(), False, 1, None),
        ("the policy in force before the first applied version", False, 0, "baseline")]
    assert rows[1]["approver"] == "oidc:ann.example@finance.example.com" and rows[0]["approver"].startswith("cli:")
    table = (await cli(db_url, tmp_path, "policy", "versions")).output
    assert all(r["version_id"] in table for r in rows) and max(map(len, table.splitlines())) <= 120
    assert [line.split()[4] for line in table.splitlines()[2:]] == ["apply", "apply", "baseline"], table
    ok = await cli(db_url, tmp_path, "policy", "verify", "--all")
    assert ok.exit_code == 0 and "3 policy versions verified" in ok.output

    old = rows[1]["version_id"]
    await pool.execute("UPDATE policy_versions SET document = jsonb_set(document::jsonb, '{budgets,0,daily}', "
                       "'\"4000\"')::text WHERE version_id = $1", old)
    bad = await cli(db_url, tmp_path, "policy", "verify", "--all")
    assert bad.exit_code == 1
    assert f"BAD: {old}: the signature does not match" in bad.output and "1 of 3 policy versions" in bad.output
    assert (await cli(db_url, tmp_path, "policy", "verify")).exit_code == 0  # the active one is intact
    refused = await cli(db_url, tmp_path, "policy", "rollback", "--to", old)
    assert refused.exit_code != 0 and "does not verify" in refused.output
    assert await pool.fetchval("SELECT count(*) FROM policy_versions") == 3


async def test_the_api_applies_lists_verifies_and_rolls_back(pool: asyncpg.Pool, db_url: str,
                                                             tmp_path: Path) -> None:
    """POST /v1/policy/apply stores a version approved by the caller's identity; a bad rule is a 400 naming it;
    GET versions and verify (and `policy verify --api`) report it; POST rollback makes the previous one active
    again."""
    settings = Settings(admin_token=ADMIN_TOKEN, data_dir=tmp_path)  # type: ignore[arg-type]
    async with admin_client(pool, settings) as client:
        bad = await client.post("/v1/policy/apply", headers=auth(),
                                json={"proposal": {"routing_rules": [{**RULE, "hours": "9-5"}]}})
        assert bad.status == 400 and "routing rule platform-small" in (await bad.json())["error"]["message"]
        unknown = await client.post("/v1/policy/apply", headers=auth(),
                                    json={"proposal": {"routing_rules": [{**RULE, "model": "gpt-9-nano"}]}})
        assert unknown.status == 400 and "gpt-9-nano" in (await unknown.json())["error"]["message"]
        first = await client.post("/v1/policy/apply", headers=auth(), json={"proposal": {}, "reason": "start"})
        assert first.status == 200, await first.text()
        second = await client.post("/v1/policy/apply", headers=auth(), json={"proposal": ROUTED, "reason": "route"})
        done = msgspec.json.decode(await second.read(), type=VersionApplied)
        listed = await (await client.get("/v1/policy/versions", headers=auth())).json()
        assert [(v["reason"], v["approver"], v["active"]) for v in listed["versions"]] == [
            ("route", "admin-token:break-glass", True), ("start", "admin-token:break-glass", False),
            ("the policy in force before the first applied version", "admin-token:break-glass", False)]
        one = await (await client.get(f"/v1/policy/versions/{done.version_id}", headers=auth())).json()
        assert one["document"]["routing_rules"][0]["name"] == "platform-small"
        verified = await (await client.get("/v1/policy/verify?all=true", headers=auth())).json()
        assert (verified["checked"], verified["bad"]) == (3, 0)
        assert (await client.get("/v1/policy/verify?all=maybe", headers=auth())).status == 400
        through = await cli(db_url, tmp_path / "elsewhere", "policy", "verify", "--all", "--api",
                            str(client.make_url("")).rstrip("/"))
        assert through.exit_code == 0 and "3 policy versions verified" in through.output, through.output
        back = await client.post("/v1/policy/rollback", headers=auth(), json={"reason": "undo"})
        assert back.status == 200
        active = await versions.active_version(pool)
        assert active is not None and active.action == "rollback" and active.document.get("routing_rules") == []
        audited = await pool.fetch("SELECT actor, action, detail::jsonb ->> 'version' AS version FROM audit_log "
                                   "WHERE action LIKE 'policy.%' ORDER BY at")
        assert [(a["actor"], a["action"], a["version"]) for a in audited] == [
            ("admin-token:break-glass", "policy.apply", listed["versions"][1]["version_id"]),
            ("admin-token:break-glass", "policy.apply", done.version_id),
            ("admin-token:break-glass", "policy.rollback", active.version_id)]
        missing = await client.post("/v1/policy/rollback", headers=auth(), json={"to": "no-such-version"})
        assert missing.status == 400
        assert "no policy version no-such-version" in (await missing.json())["error"]["message"]


async def test_cli_mistakes_are_one_error_line_and_change_nothing(pool: asyncpg.Pool, db_url: str,
                                                                  tmp_path: Path) -> None:
    """A bad rule, an unknown model, a 300-character approver, control characters in an approver or reason,
    verify without a key, a rollback with no
    versions and a bad signing key are each one `error:` line, exit non-zero, and store no version."""
    proposal = tmp_path / "p.yaml"
    cases = [
        ({"routing_rules": [{**RULE, "hours": "25:00-26:00"}]}, (), "routing rule platform-small: hours"),
        ({"routing_rules": [{**RULE, "timezone": "Moon/Base"}]}, (), "unknown timezone 'Moon/Base'"),
        ({"routing_rules": [{**RULE, "model": "gpt-9-nano"}]}, (), "gpt-9-nano"),
        ({}, ("--approver", "x" * 300), "approver is longer than 200 characters"),
        # an escape sequence was stored, signed and written raw to the terminal by `policy versions`
        ({}, ("--approver", "ops:ann\x1b[2J"), "approver has control characters: 'ops:ann\\x1b[2J'"),
        ({}, ("--reason", "why\x07"), "reason has control characters"),
    ]
    for doc, extra, message in cases:
        proposal.write_text(yaml.safe_dump(doc))
        result = await cli(db_url, tmp_path, "policy", "apply", str(proposal), *extra)
        assert result.exit_code != 0 and "error:" in result.output and message in result.output, result.output
        assert "Traceback" not in result.output
    for args in ((), ("--all",)):  # with no versions that is what is said, not "no key" (a newcomer has none yet)
        unsigned = await cli(db_url, tmp_path / "empty", "policy", "verify", *args)
        assert unsigned.exit_code == 1 and "no policy versions yet: nothing to verify" in unsigned.output, args
    nothing = await cli(db_url, tmp_path, "policy", "rollback")
    assert nothing.exit_code != 0 and "nothing to roll back" in nothing.output
    for args in (("verify", "a" * 5000), ("rollback", "--to", "a" * 5000), ("rollback", "--to", "../x")):
        bad_id = await cli(db_url, tmp_path, "policy", *args)  # echoed 2,000 characters of it before
        assert bad_id.exit_code == 1 and "bad version id" in bad_id.output and len(bad_id.output) < 300, args
    env_key = tmp_path / "bad.pem"
    env_key.write_text("not a key")
    proposal.write_text(yaml.safe_dump({}))
    bad_key = await asyncio.to_thread(
        CliRunner().invoke, main, ["policy", "apply", str(proposal)], catch_exceptions=False,
        env={"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_LOG_LEVEL": "error",
             "SPENDGATE_POLICY__SIGNING_KEY": str(env_key)})
    assert bad_key.exit_code != 0 and "policy.signing_key" in bad_key.output
    assert await pool.fetchval("SELECT count(*) FROM policy_versions") == 0


async def test_the_first_change_ever_applied_can_be_judged_and_rolled_back(pool: asyncpg.Pool, db_url: str,
                                                                            tmp_path: Path) -> None:
    """The first `policy apply` (a newcomer's first suggestion, usually) first stores the policy then in force as
    a signed baseline version: the guard judges every part the change made against it (not only its routing
    rules), and `policy rollback` restores it: the budget's amount and the settings' downgrade size limit; a
    second plain rollback is refused, naming the versions to pass to --to. (The
    first version used to have no parent: "nothing changed" from the guard, "there is none before it" from
    rollback.)"""
    await budgets.set_budget(pool, budget_of("team:platform", daily_micros=40 * USD, monthly_micros=None), actor="t")
    proposal = tmp_path / "p.yaml"
    proposal.write_text(yaml.safe_dump({"budgets": [{"scope": "team:platform", "daily": "20"}],
                                        "downgrade_max_input_tokens": 32_000}))
    applied = await cli(db_url, tmp_path, "policy", "apply", str(proposal), "--reason", "tighter")
    assert applied.exit_code == 0, applied.output
    first = await versions.active_version(pool)
    assert first is not None and first.parent is not None
    base = await versions.get_version(pool, first.parent)
    assert base is not None and (base.source, base.parent, base.document["downgrade_max_input_tokens"]) == (
        "baseline", None, 10_000)
    assert [(b["scope"], b["daily"]) for b in base.document["budgets"]] == [("team:platform", "40.000000")]

    judged = await cli(db_url, tmp_path, "policy", "guard", "--format", "json")
    assert judged.exit_code == 0, judged.output
    kinds = {s["kind"] for s in json.loads(judged.output)["segments"]}
    assert {"downgrade_limit", "budget"} <= kinds, judged.output

    back = await cli(db_url, tmp_path, "policy", "rollback", "--reason", "too tight")
    assert back.exit_code == 0, back.output
    live = await live_policy(pool, Settings(database_url=db_url).enforcement, _now())
    assert live.downgrade_max_input_tokens == 10_000
    assert live.budgets["team:platform"].daily_micros == 40 * USD
    verified = await cli(db_url, tmp_path, "policy", "verify", "--all")
    assert verified.exit_code == 0 and "3 policy versions verified" in verified.output
    # a second plain rollback re-applied the version just rolled back (the rollback's parent), silently
    again = await cli(db_url, tmp_path, "policy", "rollback", "--reason", "further back")
    assert again.exit_code == 1 and "is a rollback" in again.output, again.output
    assert f"undoing the rollback is {first.version_id}" in again.output
    live = await live_policy(pool, Settings(database_url=db_url).enforcement, _now())
    assert live.downgrade_max_input_tokens == 10_000 and await pool.fetchval(
        "SELECT count(*) FROM policy_versions") == 3
