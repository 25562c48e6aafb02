"""``spendgate ratelimits``: set, list, delete, and hostile values refused with one clear line (no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from spendgate.store.keys import store as vkeys
from spendgate.store.ratelimits import store as ratelimits
from tests.integration.test_admin_cli import cli


async def test_set_list_and_delete(pool: asyncpg.Pool, db_url: str, tmp_path: Path) -> None:
    """A key named by its prefix is stored by id; list shows both limits in JSON; delete removes one."""
    created = await vkeys.create_key(pool, developer="alice", team="platform")
    done = await cli(db_url, tmp_path, "ratelimits", "set", "--scope", f"key:{created.key.key_prefix}",
                     "--rpm", "60", "--tpm", "200000")
    assert done.exit_code == 0, done.output
    assert f"key:{created.key.key_id}: 60 requests/min, 200000 tokens/min" in done.output
    assert (await cli(db_url, tmp_path, "ratelimits", "set", "--scope", "team:platform", "--rpm", "600")).exit_code == 0
    listed = await cli(db_url, tmp_path, "ratelimits", "list", "--format", "json")
    assert json.loads(listed.output) == [{"scope": f"key:{created.key.key_id}", "rpm": 60, "tpm": 200_000},
                                         {"scope": "team:platform", "rpm": 600, "tpm": None}]
    gone = await cli(db_url, tmp_path, "ratelimits", "delete", "--scope", "team:platform")
    assert gone.exit_code == 0 and "deleted the rate limit of team:platform" in gone.output
    again = await cli(db_url, tmp_path, "ratelimits", "delete", "--scope", "team:platform")
    assert again.exit_code == 1 and again.output.strip() == "error: no rate limit for team:platform"
    assert len(await ratelimits.list_rate_limits(pool)) == 1
    audited = [(r["action"], r["target"], r["actor"].startswith("cli:"))
               for r in await pool.fetch("SELECT action, target, actor FROM audit_log ORDER BY at")]
    assert audited == [("ratelimit.set", f"key:{created.key.key_id}", True), ("ratelimit.set", "team:platform", True),
                       ("ratelimit.delete", "team:platform", True)]


@pytest.mark.parametrize(("args", "says"), [
    (["--scope", "developer:alice", "--rpm", "-5"], "must be between 1 and 1,000,000, not -5"),
    (["--scope", "developer:alice", "--rpm", "0"], "must be between 1 and 1,000,000, not 0"),
    (["--scope", "developer:alice", "--tpm", "99999999999999"], "must be between 1 and 1,000,000,000"),
    (["--scope", "developer:alice", "--rpm", "ten"], "'ten' is not a valid integer"),
    (["--scope", "developer:alice"], "give --rpm, --tpm or both"),
    (["--scope", "org", "--rpm", "5"], "use key:<id>, developer:<name> or team:<name>"),
    (["--scope", "key:nope", "--rpm", "5"], "no key 'nope'"),
])
async def test_hostile_values_are_one_line_errors(pool: asyncpg.Pool, db_url: str, tmp_path: Path,
                                                  args: list[str], says: str) -> None:
    """Negative, zero, huge, non-numeric, missing or mis-scoped limits: one 'error:' line, nothing stored."""
    result = await cli(db_url, tmp_path, "ratelimits", "set", *args)
    lines = result.output.strip().splitlines()
    assert result.exit_code in (1, 2) and len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert says in lines[0] and "Traceback" not in result.output
    assert await ratelimits.list_rate_limits(pool) == []
