"""A setting that cannot work stops `spendgate up` before it starts anything, with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_up_with_an_impossible_broker_address_is_one_line(tmp_path: Path) -> None:
    """`spendgate up` with ``kafka://host:notaport`` exits 2 with one error line before starting anything (it
    started the embedded PostgreSQL and then died with a ValueError traceback)."""
    env = {"PATH": "/usr/bin:/bin", "SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_BUS": "kafka://host:notaport"}
    done = subprocess.run([sys.executable, "-m", "spendgate", "up", "--port", "1"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].strip().startswith("bus: 'kafka://host:notaport' is not")
    assert not (tmp_path / "postgres").exists()
