"""A first run that says what it does (issue 12, item 6): the real `spendgate up` on a new data dir, in a
pseudo-terminal as a person starts it, then again with its output going to files."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.proxy_process import spendgate_argv
from tests.support.waiting import eventually

ANSI = re.compile(r"\x1b\[[0-9;]*m")
UNSET = ("SPENDGATE_DATABASE_URL", "SPENDGATE_UPSTREAM_KEY", "OPENAI_API_KEY", "SPENDGATE_ADMIN_TOKEN",
         "SPENDGATE_UPSTREAM_URL", "SPENDGATE_CONFIG", "SPENDGATE_LOG_FORMAT", "SPENDGATE_BUS")


def up_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    return {**env, "SPENDGATE_DATA_DIR": str(data_dir), "SPENDGATE_LOG_LEVEL": "info",
            "SPENDGATE_ADMIN_PORT": str(free_port()), **extra}


class OnTerminal:
    """`spendgate up` with a pseudo-terminal as stdin, stdout and stderr; everything it writes, read as it comes."""

    def __init__(self, data_dir: Path, port: int) -> None:
        main, child = pty.openpty()
        self.proc = subprocess.Popen([*spendgate_argv(), "up", "--port", str(port)], env=up_env(data_dir),
                                     stdin=child, stdout=child, stderr=child, close_fds=True)
        os.close(child)
        self.main, self.chunks = main, [b""]
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.main, 4096)
            except OSError:  # EIO: the child side closed
                return
            if not data:
                return
            self.chunks.append(data)

    def text(self) -> str:
        return ANSI.sub("", b"".join(self.chunks).decode(errors="replace")).replace("\r\n", "\n")

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.proc.wait, 60)
        os.close(self.main)
        return code


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A new data dir outside pytest's tmp root: a concurrent pytest session resets that root to mode 0700,
    which locks out the embedded server's own user in the middle of its set-up."""
    parent = Path(tempfile.mkdtemp(prefix="sg-up-"))
    yield parent / "data"
    shutil.rmtree(parent, ignore_errors=True)


async def test_a_first_up_on_a_terminal_shows_progress_urls_warnings_and_readable_logs(data_dir: Path) -> None:
    """New data dir, no key, no token: set-up progress, both warnings, the URLs, then human log lines."""
    port = free_port()
    up = OnTerminal(data_dir, port)
    try:
        await eventually(lambda: _text(up), until=lambda t: "spendgate is up" in t and "Codex CLI" in t,
                         timeout_s=120, interval_s=0.1, what="the ready banner")
    finally:
        assert await up.stop() == 0
    out = up.text()
    steps = ["warning: no upstream key", "warning: no admin token",
             f"First run: creating the embedded PostgreSQL database in {data_dir / 'postgres'}",
             "PostgreSQL is ready (",
             "Applying database migrations", "Database schema up to date (", "Starting ledger, proxy, alerter",
             "spendgate is up"]
    where = [out.index(step) for step in steps]
    assert where == sorted(where), out
    assert "run `spendgate fake-upstream` in another terminal" in out
    assert f"proxy      http://127.0.0.1:{port}/v1  -> upstream https://api.openai.com/v1" in out
    assert "admin API  off: set SPENDGATE_ADMIN_TOKEN to enable it" in out
    log_lines = [line for line in out.splitlines() if "services started" in line]
    assert log_lines and not any(line.lstrip().startswith("{") for line in log_lines), out  # human, not JSON
    assert re.search(r"\[info\s*\] services started", log_lines[0]), log_lines


async def test_a_second_up_writing_to_files_logs_json_and_names_both_urls(data_dir: Path, tmp_path: Path) -> None:
    """The same data dir again, output to files, token and fake upstream set: no first-run or warning lines."""
    port, admin_port = free_port(), free_port()
    env = up_env(data_dir, SPENDGATE_ADMIN_TOKEN="t0ken", SPENDGATE_ADMIN_PORT=str(admin_port),
                 SPENDGATE_UPSTREAM_URL="http://127.0.0.1:9/v1")
    for run in ("first", "second"):
        out_path, err_path = tmp_path / f"{run}.out", tmp_path / f"{run}.err"
        proc = await asyncio.to_thread(_spawn, [*spendgate_argv(), "up", "--port", str(port)], env, out_path, err_path)
        try:
            await eventually(functools.partial(_read, out_path), until=lambda t: "Codex CLI" in t, timeout_s=120,
                             interval_s=0.1, what=f"the {run} run's banner")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 60) == 0
    stdout, stderr = await _read(tmp_path / "second.out"), await _read(tmp_path / "second.err")
    assert f"Starting the embedded PostgreSQL in {data_dir / 'postgres'}" in stderr and "First run" not in stderr
    assert "warning:" not in stderr
    assert f"admin API  http://127.0.0.1:{admin_port}" in stdout and f"http://127.0.0.1:{port}/v1" in stdout
    logs = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(entry["event"] == "services started" for entry in logs)


async def _text(up: OnTerminal) -> str:
    return up.text()


async def _read(path: Path) -> str:
    return await asyncio.to_thread(lambda: path.read_text(errors="replace") if path.exists() else "")


def _spawn(argv: list[str], env: dict[str, str], out_path: Path, err_path: Path) -> subprocess.Popen[bytes]:
    with out_path.open("wb") as out, err_path.open("wb") as err:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=err)
