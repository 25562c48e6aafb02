"""The real Codex CLI on a Bedrock model through the gateway: a turn with a tool call reaches the fake
Bedrock as Converse streams (SigV4 checked), Codex runs the tool, and the ledger has the exact cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bedrock import bedrock_settings, hand_cost, use_fake_aws_credentials
from tests.support.codex import codex_exec, write_config
from tests.support.enforced_proxy import enforced_proxies
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_fake_aws_credentials(monkeypatch, tmp_path)


async def test_codex_turn_with_a_tool_call_on_a_bedrock_model(db_url: str, tmp_path: Path, codex_bin: Path,
                                                              aws: None) -> None:
    """codex exec with model claude-sonnet-4-5: Bedrock answers with a tool call, Codex runs it and sends
    the output back as a toolResult; every request is metered at Bedrock's exact counts."""
    async with enforced_proxies(db_url, tmp_path, settings=bedrock_settings) as e:
        fake = e.upstream.fake.bedrock
        fake.script.extend(["tool", "text"])
        repo = tmp_path / "repo"
        repo.mkdir()
        write_config(tmp_path / "codex-home", e.servers[0].base_url, model="claude-sonnet-4-5")
        run = await codex_exec(codex_bin, codex_home=tmp_path / "codex-home", workdir=repo, virtual_key=e.secret,
                               prompt="Run the check command and tell me what it printed.")
        assert run.returncode == 0, f"codex failed:\n{run.stdout}\n{run.stderr}"
        assert len(fake.served) >= 2 and all(s.action == "converse-stream" for s in fake.served)
        results = [b["toolResult"] for s in fake.served for m in s.request["messages"] for b in m["content"]
                   if "toolResult" in b]
        assert any("spendgate-tool-ran" in c.get("text", "") for r in results for c in r["content"]), \
            "Codex did not run the tool"
        rows = await eventually(lambda: e.pool.fetch("SELECT * FROM usage_events"),
                                until=lambda rows: len(rows) >= len(fake.served), what="every request in the ledger")
        assert {(r["status"], r["usage_source"], r["model_used"], r["client"]) for r in rows} == {
            ("ok", "reported", "claude-sonnet-4-5", "codex_exec")}
        assert sum(r["cost_micros"] for r in rows) == sum(hand_cost("claude-sonnet-4-5", s) for s in fake.served)
        assert len({r["session_id"] for r in rows}) == 1
