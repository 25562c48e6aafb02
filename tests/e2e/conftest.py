"""End-to-end fixtures: the pinned Codex and Claude Code CLIs, installed once per session when missing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.claude_code import ensure_claude_code
from tests.support.codex import ensure_codex


@pytest.fixture(scope="session")
async def codex_bin() -> Path:
    return await asyncio.to_thread(ensure_codex)


@pytest.fixture(scope="session")
async def claude_code_bin() -> Path:
    return await asyncio.to_thread(ensure_claude_code)
