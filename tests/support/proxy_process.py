"""spendgate processes for tests: the proxy (``python -m spendgate.proxy proxy``), ``spendgate up``, or any
``spendgate`` service command (``service_process``: ledger, alerter, forecaster, which listen on no port).

Each runs with its own data dir, the test's database (``SPENDGATE_DATABASE_URL``) and the fake
upstream; ``start`` returns once ``/healthz`` answers (a service without a port: once it is spawned),
``kill`` sends SIGKILL, ``terminate`` SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.support.ports import free_port
from tests.support.waiting import eventually


def spendgate_argv() -> list[str]:
    """The installed ``spendgate`` command (next to this interpreter), else the module form."""
    exe = Path(sys.executable).with_name("spendgate")
    return [str(exe)] if exe.exists() else [shutil.which("spendgate") or "spendgate"]


class SpendgateProcess:
    def __init__(self, argv: list[str], *, data_dir: Path, env: dict[str, str], port: int | None = None,
                 listens: bool = True) -> None:
        self.listens = listens
        self.port = (port or free_port()) if listens else 0
        self.argv = [*argv, "--port", str(self.port)] if listens else list(argv)
        self.data_dir = data_dir
        self.env = {**os.environ, "SPENDGATE_DATA_DIR": str(data_dir), "SPENDGATE_LOG_LEVEL": "warning", **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / (f"process-{self.port}.log" if listens else f"{Path(argv[-1]).name}.log")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self, timeout_s: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.to_thread(self._spawn)
        if not self.listens:
            return

        async def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.argv} exited {self.proc.returncode}:\n{self.output()}")
            try:
                async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{self.port}/healthz", timeout=aiohttp.ClientTimeout(total=2)
                ) as resp:
                    return resp.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        await eventually(healthy, timeout_s=timeout_s, interval_s=0.1, what=f"{self.argv[1:3]} healthy")

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def kill(self) -> None:
        """SIGKILL: no drain, no flush, nothing the process could still do."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(self.proc.wait, 10)
            self.proc = None

    async def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)
            raise AssertionError(f"process did not stop on SIGTERM:\n{self.output()}") from None


def proxy_process(data_dir: Path, env: dict[str, str]) -> SpendgateProcess:
    return SpendgateProcess([sys.executable, "-m", "spendgate.proxy", "proxy"], data_dir=data_dir, env=env)


def up_process(data_dir: Path, env: dict[str, str]) -> SpendgateProcess:
    return SpendgateProcess([*spendgate_argv(), "up"], data_dir=data_dir, env=env)


def service_process(command: str, data_dir: Path, env: dict[str, str]) -> SpendgateProcess:
    """``spendgate <command>`` for a service that listens on no port (ledger, alerter, forecaster)."""
    return SpendgateProcess([*spendgate_argv(), command], data_dir=data_dir, env=env, listens=False)
