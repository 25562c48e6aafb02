"""The real Claude Code CLI for end-to-end tests: installed from npm (pinned in tests/e2e/package.json),
pointed at the gateway by ``ANTHROPIC_BASE_URL``, run headless (``claude -p``) with an empty environment
(see docs/claude-code.md)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from tests.support.codex import E2E_DIR, ensure_npm_cli

CLAUDE_CODE_VERSION = "2.1.197"
CLAUDE_BIN = E2E_DIR / "node_modules" / ".bin" / "claude"


def ensure_claude_code() -> Path:
    """The pinned Claude Code CLI (installed when missing)."""
    return ensure_npm_cli(CLAUDE_BIN, CLAUDE_CODE_VERSION)


@dataclass
class ClaudeRun:
    returncode: int
    stdout: str
    stderr: str


async def claude_print(binary: Path, *, home: Path, workdir: Path, base_url: str, virtual_key: str, prompt: str,
                       model: str, timeout_s: float = 120.0) -> ClaudeRun:
    """``claude -p`` in ``workdir`` through the gateway (``base_url`` without ``/v1``), nothing inherited
    from this environment but PATH, non-essential traffic off (so nothing goes to Anthropic's hosts)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home / "home"),
           "CLAUDE_CONFIG_DIR": str(home / "config"), "ANTHROPIC_BASE_URL": base_url,
           "ANTHROPIC_API_KEY": virtual_key, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "NO_COLOR": "1"}
    (home / "home").mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        str(binary), "-p", prompt, "--output-format", "json", "--allowedTools", "Bash", "--model", model,
        cwd=workdir, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"claude -p timed out:\n{out.decode()}\n{err.decode()}") from None
    return ClaudeRun(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))
