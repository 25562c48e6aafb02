"""The real Codex CLI for end-to-end tests: installed from npm (pinned in tests/e2e/package.json),
configured with a custom provider pointing at the gateway (see ../shared/CODEX.md), run headless."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.support.agent_cli import E2E_DIR, AgentRun, ensure_npm_cli, run_agent

CODEX_VERSION = "0.169.0"
CODEX_BIN = E2E_DIR / "node_modules" / ".bin" / "codex"


def ensure_codex() -> Path:
    """The pinned Codex CLI (installed when missing)."""
    return ensure_npm_cli(CODEX_BIN, CODEX_VERSION)


def write_config(codex_home: Path, base_url: str, *, model: str = "gpt-5.1") -> None:
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "spendgate"\n\n'
        "[model_providers.spendgate]\n"
        'name = "spendgate"\n'
        f'base_url = "{base_url}"\n'
        'env_key = "SPENDGATE_KEY"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 2\n"
        "stream_max_retries = 1\n"
    )


async def codex_exec(binary: Path, *, codex_home: Path, workdir: Path, virtual_key: str, prompt: str,
                     timeout_s: float = 90.0) -> AgentRun:
    """``codex exec`` headless in ``workdir`` with the virtual key in ``SPENDGATE_KEY`` (custom provider)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))}
    env.update({"CODEX_HOME": str(codex_home), "SPENDGATE_KEY": virtual_key, "NO_COLOR": "1"})
    return await run_agent(
        [str(binary), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "--json", prompt],
        cwd=workdir, env=env, timeout_s=timeout_s)


def write_builtin_config(codex_home: Path, base_url: str, *, model: str = "gpt-5.1") -> None:
    """The built-in OpenAI provider pointed at the gateway (``openai_base_url``); it tries a WebSocket first."""
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(f'model = "{model}"\nopenai_base_url = "{base_url}"\n')


async def codex_login_with_api_key(binary: Path, *, codex_home: Path, api_key: str) -> None:
    """``codex login --with-api-key`` (the built-in provider reads its key from CODEX_HOME, not the env)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))}
    env["CODEX_HOME"] = str(codex_home)
    proc = await asyncio.create_subprocess_exec(
        str(binary), "login", "--with-api-key", env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(api_key.encode()), 60)
    assert proc.returncode == 0, (out, err)
