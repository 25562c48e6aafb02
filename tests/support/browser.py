"""A real browser for tests: Debian's Chromium, driven headless by Playwright (no browser download).

``scripts/test`` installs the ``chromium`` package when it is missing; ``SPENDGATE_TEST_CHROMIUM`` names
another Chromium binary. Never ``playwright install``: it downloads browsers from outside.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, async_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


def chromium_path() -> Path:
    path = Path(os.environ.get("SPENDGATE_TEST_CHROMIUM", "/usr/bin/chromium"))
    if not path.exists():
        raise RuntimeError(f"no Chromium at {path}: run scripts/test (it installs Debian's chromium), "
                           "`apt-get install -y chromium`, or set SPENDGATE_TEST_CHROMIUM")
    return path


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium for the duration of the block."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(chromium_path()), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
