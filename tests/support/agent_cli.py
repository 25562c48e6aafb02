"""The agent CLIs of the end-to-end tests (Codex, Claude Code), pinned in tests/e2e/package.json:
install when missing, and run one headless with a deadline."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parent.parent / "e2e"


def ensure_npm_cli(binary: Path, version: str) -> Path:
    """Install the agent CLIs pinned in tests/e2e/package.json into its node_modules when ``binary`` is
    missing; check ``binary`` is at ``version``; return it."""
    if not binary.exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=E2E_DIR, check=True, timeout=600,
                       stdout=subprocess.DEVNULL)
    found = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, check=True)
    assert version in found.stdout, f"expected {binary.name} {version}, got {found.stdout!r}"
    return binary


@dataclass
class AgentRun:
    returncode: int
    stdout: str
    stderr: str


async def run_agent(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout_s: float) -> AgentRun:
    """Run an agent CLI with no stdin; past ``timeout_s`` it is killed and the test fails with its output."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=dict(env), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"{Path(argv[0]).name} timed out:\n{out.decode()}\n{err.decode()}") from None
    return AgentRun(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))
