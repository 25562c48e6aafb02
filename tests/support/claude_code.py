"""The real Claude Code CLI for end-to-end tests: installed from npm (pinned in tests/e2e/package.json),
pointed at the gateway by ``ANTHROPIC_BASE_URL``, run headless (``claude -p``) with an empty environment
(see docs/claude-code.md)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.agent_cli import E2E_DIR, AgentRun, ensure_npm_cli, run_agent

CLAUDE_CODE_VERSION = "2.1.197"
CLAUDE_BIN = E2E_DIR / "node_modules" / ".bin" / "claude"


def ensure_claude_code() -> Path:
    """The pinned Claude Code CLI (installed when missing)."""
    return ensure_npm_cli(CLAUDE_BIN, CLAUDE_CODE_VERSION)


async def claude_print(binary: Path, *, home: Path, workdir: Path, base_url: str, virtual_key: str, prompt: str,
                       model: str, timeout_s: float = 120.0) -> AgentRun:
    """``claude -p`` in ``workdir`` through the gateway (``base_url`` without ``/v1``), nothing inherited
    from this environment but PATH, non-essential traffic off (so nothing goes to Anthropic's hosts)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home / "home"),
           "CLAUDE_CONFIG_DIR": str(home / "config"), "ANTHROPIC_BASE_URL": base_url,
           "ANTHROPIC_API_KEY": virtual_key, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "NO_COLOR": "1"}
    (home / "home").mkdir(parents=True, exist_ok=True)
    return await run_agent(
        [str(binary), "-p", prompt, "--output-format", "json", "--allowedTools", "Bash", "--model", model],
        cwd=workdir, env=env, timeout_s=timeout_s)
