"""CLI start-up: how long the common ``spendgate`` commands take, against ``python -c pass``.

    .venv/bin/python -m benchmarks.cli_startup [--runs 7]

Every figure is the median wall time of ``--runs`` runs of the installed ``spendgate`` command as a
new process, printed beside the baseline, ``python -c pass`` timed the same way in the same run, as a
ratio. One discarded run comes first, so the OS file cache holds the code and Python's bytecode cache
holds it compiled, as on a user's machine (``PYTHONDONTWRITEBYTECODE`` is dropped for the commands
timed; the cache goes to a scratch ``PYTHONPYCACHEPREFIX``, not into the tree). Two settings:

* **database URL**: ``SPENDGATE_DATABASE_URL`` names a migrated database on the benchmark's server.
  A command's time is its imports, the settings, one connection and its queries: no embedded
  server work, so this isolates what the command's code costs.
* **warm data dir**: a data dir made by ``spendgate init`` whose embedded PostgreSQL is already
  running: the state while ``spendgate up`` runs in another terminal (here the benchmark starts the
  server once and holds it open itself). A command attaches to the running server, as an
  operator's ``spendgate keys list`` does next to ``spendgate up``.

Both hold three keys and two budgets. Target (issue 12): ``keys list`` and ``budgets list`` answer
in under 0.5 s on the warm data dir (an absolute target, printed with its ratio to the baseline).
Exits non-zero when one is missed or a command fails. Beside each wall time the process's CPU time
(user + system) is printed, also as a ratio to the baseline's: on a shared machine the wall time
includes waiting for a core, the CPU time is the command's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python benchmarks/x.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.support import Verdict, scratch_database
from spendgate.core.db import EmbeddedPostgres

COMMANDS: list[tuple[str, ...]] = [
    ("--help",), ("keys", "list"), ("budgets", "list"), ("report", "chargeback"), ("sessions", "list"),
    ("forecast",), ("policy", "show"),
]
TARGETED = {("keys", "list"), ("budgets", "list")}
TARGET_S = 0.5


def spendgate_exe() -> str:
    exe = Path(sys.executable).with_name("spendgate")
    return str(exe) if exe.exists() else "spendgate"


PYCACHE = tempfile.mkdtemp(prefix="sg-bench-pyc-")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SPENDGATE_") and k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": PYCACHE, "SPENDGATE_CONFIG": "", "SPENDGATE_LOG_LEVEL": "error", **extra}


@dataclass(frozen=True)
class Timing:
    wall_s: float
    """Median wall time: what the target is about."""
    cpu_s: float
    """Median CPU time (user + system) of the process: the work itself, whatever else the machine runs."""
    error: str = ""


def timed(argv: list[str], env: dict[str, str], runs: int) -> Timing:
    """Median wall and CPU seconds of ``runs`` runs (after one discarded), or the first error line."""
    walls: list[float] = []
    cpus: list[float] = []
    for i in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            lines = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()
            return Timing(float("nan"), float("nan"), lines[-1][:100])
        if i:
            walls.append(elapsed)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return Timing(statistics.median(walls), statistics.median(cpus))


def seed(env: dict[str, str]) -> None:
    """Three keys and two budgets, so the lists have rows."""
    exe = spendgate_exe()
    for dev, team in (("alice", "platform"), ("bob", "platform"), ("carol", "payments")):
        subprocess.run([exe, "keys", "create", "--developer", dev, "--team", team], env=env, check=True,
                       capture_output=True)
    for scope, monthly in (("team:platform", "800"), ("org", "5000")):
        subprocess.run([exe, "budgets", "set", "--scope", scope, "--monthly", monthly], env=env, check=True,
                       capture_output=True)


def measure(setting: str, env: dict[str, str], runs: int, baseline: Timing, verdict: Verdict) -> None:
    print(f"\n{setting}")
    baseline_s = baseline.wall_s
    for args in COMMANDS:
        t = timed([spendgate_exe(), *args], env, runs)
        name = f"spendgate {' '.join(args)}"
        if t.error:
            print(f"  {name:<30} failed: {t.error}")
            if args in TARGETED:
                verdict.check(f"{name} ({setting})", f"failed: {t.error}", f"< {TARGET_S} s", False)
            continue
        seconds = t.wall_s
        print(f"  {name:<30} {seconds:6.3f} s  {seconds / baseline_s:5.1f}x python -c pass   "
              f"cpu {t.cpu_s:6.3f} s  {t.cpu_s / max(baseline.cpu_s, 1e-3):5.1f}x")
        if args in TARGETED and setting == "warm data dir":
            verdict.check(f"{name} ({setting})",
                          f"{seconds:.3f} s ({seconds / baseline_s:.1f}x python -c pass {baseline_s:.3f} s)",
                          f"< {TARGET_S} s", seconds < TARGET_S)


async def main(runs: int) -> int:
    verdict = Verdict("cli start-up")
    baseline = timed([sys.executable, "-c", "pass"], clean_env(), runs)
    print(f"baseline: python -c pass {baseline.wall_s:.3f} s, cpu {baseline.cpu_s:.3f} s (medians of {runs})")
    async with scratch_database() as url:
        env = clean_env(SPENDGATE_DATABASE_URL=url)
        await asyncio.to_thread(seed, env)
        await asyncio.to_thread(measure, "database URL", env, runs, baseline, verdict)
    data_dir = Path(tempfile.mkdtemp(prefix="sg-bench-cli-"))
    env = clean_env(SPENDGATE_DATA_DIR=str(data_dir))
    await asyncio.to_thread(subprocess.run, [spendgate_exe(), "init"], env=env, check=True, capture_output=True)
    server_ = EmbeddedPostgres(data_dir / "postgres")
    await asyncio.to_thread(server_.start)  # held open, as `spendgate up` would hold it
    try:
        await asyncio.to_thread(seed, env)
        await asyncio.to_thread(measure, "warm data dir", env, runs, baseline, verdict)
    finally:
        await asyncio.to_thread(server_.stop)
    return verdict.finish()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command (median reported)")
    sys.exit(asyncio.run(main(parser.parse_args().runs)))
