"""The real ``spendgate`` command in a subprocess, on a test database (the event loop keeps running)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path


async def spendgate(*args: str, db_url: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m spendgate ARGS`` against ``db_url``; stdout and stderr captured as text."""
    full_env = {**os.environ, "SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(data_dir),
                "SPENDGATE_LOG_LEVEL": "warning", **env}
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "spendgate", *args], env=full_env,
                                   capture_output=True, text=True, timeout=120, check=False)
