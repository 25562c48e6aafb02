"""``spendgate tokens create|list|revoke`` on the database: the secret printed once, the token working on
the admin API until revoked, bad usage as one-line errors, every change audited as cli:<user>; and the admin
service starting for a named token alone (no break-glass token, no sign-in)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import asyncpg
from click.testing import CliRunner, Result

from spendgate.admin.service import serve
from spendgate.cli import main
from spendgate.core.config import load_settings
from spendgate.runtime import open_runtime
from tests.support.admin_server import admin_client, auth
from tests.support.ports import free_port
from tests.support.waiting import eventually


async def cli(db_url: str, tmp_path: Path, *args: str) -> Result:
    env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_LOG_LEVEL": "error"}
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env, catch_exceptions=False)


async def test_tokens_cli_creates_lists_and_revokes(pool: asyncpg.Pool, db_url: str, tmp_path: Path) -> None:
    """The secret goes to stdout once; list never shows it; the manager token reads its team on the API
    until revoked; each change is in the audit trail."""
    made = await cli(db_url, tmp_path, "tokens", "create", "platform-lead", "--role", "manager", "--team", "platform",
                     "--days", "30")
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith("sg-at-") and len(secret) > 40
    listed = await cli(db_url, tmp_path, "tokens", "list", "--format", "json")
    tokens = json.loads(listed.stdout)["tokens"]
    assert [(t["name"], t["role"], t["teams"]) for t in tokens] == [("platform-lead", "manager", ["platform"])]
    assert secret not in listed.stdout and secret[:12] in listed.stdout
    async with admin_client(pool) as client:
        assert (await client.get("/v1/budgets", headers=auth(secret))).status == 200
        assert (await client.get("/v1/reconciliation", headers=auth(secret))).status == 403
        revoked = await cli(db_url, tmp_path, "tokens", "revoke", "platform-lead")
        assert revoked.exit_code == 0 and "revoked platform-lead" in revoked.stdout
        assert (await client.get("/v1/budgets", headers=auth(secret))).status == 401
    actions = [(r["action"], r["actor"].startswith("cli:")) for r in
               await pool.fetch("SELECT action, actor FROM audit_log ORDER BY at")]
    assert actions == [("token.create", True), ("token.revoke", True)]


async def test_tokens_cli_refuses_bad_usage_in_one_line(db_url: str, tmp_path: Path) -> None:
    """A manager without teams, teams on an admin, a bad name, too many days, a name taken, an unknown
    token: each one line ``error: …``, no traceback."""
    assert (await cli(db_url, tmp_path, "tokens", "create", "ci", "--role", "admin")).exit_code == 0
    cases = [
        (("create", "m", "--role", "manager"), "needs --team"),
        (("create", "a", "--role", "admin", "--team", "x"), "manager tokens only"),
        (("create", "bad name!", "--role", "admin"), "bad token name"),
        (("create", "long", "--role", "admin", "--days", "400"), "at most 365"),
        (("create", "ci", "--role", "admin"), "already named 'ci'"),
        (("revoke", "nobody"), "no live token 'nobody'"),
    ]
    for args, expected in cases:
        result = await cli(db_url, tmp_path, "tokens", *args)
        assert result.exit_code != 0, args
        assert result.stderr.startswith("error: ") and expected in result.stderr and "Traceback" not in result.output


async def test_the_admin_service_starts_for_a_named_token_alone(db_url: str, tmp_path: Path) -> None:
    """No SPENDGATE_ADMIN_TOKEN and no sign-in, but a usable named token: the admin API listens."""
    port = free_port()
    settings = load_settings(database_url=db_url, data_dir=tmp_path, admin_port=port, admin_token=None, bus="memory")
    secret = (await cli(db_url, tmp_path, "tokens", "create", "ops", "--role", "finops")).stdout.strip()
    assert secret.startswith("sg-at-")

    async def status() -> int:
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/v1/budgets",
                                                                 headers=auth(secret)) as resp:
                return resp.status
        except aiohttp.ClientConnectionError:
            return 0

    async with open_runtime(settings, run_migrations=False) as runtime:
        stop = asyncio.Event()
        task = asyncio.create_task(serve(runtime, stop))
        assert await eventually(status, until=lambda s: s == 200, what="admin API up for a named token") == 200
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_api_reads_with_a_named_token_see_what_its_role_may(pool: asyncpg.Pool, db_url: str,
                                                                 tmp_path: Path) -> None:
    """``--api`` presents SPENDGATE_API_TOKEN: a developer token lists only that developer's keys."""
    from spendgate.store.keys import store as vkeys

    for dev, team in (("alice", "platform"), ("bob", "platform")):
        await vkeys.create_key(pool, developer=dev, team=team)
    secret = (await cli(db_url, tmp_path, "tokens", "create", "alice", "--role", "developer",
                        "--developer", "alice")).stdout.strip()
    async with admin_client(pool) as client:
        url = str(client.make_url("")).rstrip("/")
        env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_API_TOKEN": secret,
               "SPENDGATE_LOG_LEVEL": "error"}
        listed = await asyncio.to_thread(CliRunner().invoke, main, ["keys", "list", "--format", "json", "--api", url],
                                         env=env, catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    assert [k["developer"] for k in json.loads(listed.stdout)["keys"]] == ["alice"]
