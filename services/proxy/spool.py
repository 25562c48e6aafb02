"""The local spool: every usage event is on disk before the response that produced it completes.

Append-only segment files under ``<spool_dir>/<name>/``. ``append`` is one ``write(2)`` of one line
(``<key>\\t<CloudEvents JSON>\\n``) into the active segment, synchronous and a few microseconds: the
bytes are in the kernel's page cache before the handler finishes, so killing the process (even
SIGKILL) right after a response cannot lose its event. A segment is written as ``<n>.spool.open`` and
renamed ``<n>.spool`` when the writer seals it; the writer also creates the next segment's file
ahead of time (:meth:`Spool.prepare_next`), so a request only ever writes: no file creation (~0.3 ms)
and no rename (~0.1 ms) on the request path, which at low load every request paid, one segment per
flush. Open segments a crash left behind are replayed like sealed ones. The writer then seals the active segment,
fsyncs it (one fsync per batch, which also covers power loss), publishes its records and deletes the
file once the bus acknowledged them. Segments left behind by a crash or a bus outage are replayed,
oldest first. Replays may publish an event twice; consumers dedupe on the event id.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spendgate.core.logs import get_logger
from spendgate.domain.errors import ConfigError

log = get_logger(__name__)

SUFFIX = ".spool"
OPEN_SUFFIX = ".spool.open"


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    key: str | None
    value: bytes


class Spool:
    """One process's spool directory, held with an exclusive lock while open."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._active: Path | None = None
        self._active_records = 0
        self._next: tuple[int, Path] | None = None
        """A created, still empty ``.spool.open`` file the next append starts (not listed)."""
        self._seq = 0
        self.appended = 0

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise ConfigError(f"another spendgate proxy is using the spool {self.directory}") from None
        self._lock_fd = lock_fd
        for left in self.directory.glob(f"*{OPEN_SUFFIX}"):  # a previous process's, now closed
            if left.stat().st_size == 0:
                left.unlink(missing_ok=True)
            else:
                left.rename(_sealed_name(left))
        existing = self.segments()
        self._seq = max((_seq_of(p) for p in existing), default=0)

    def adopt_orphans(self) -> int:
        """Take over the segments of sibling spools no process holds (a proxy that ran on another port,
        or died): they are renamed into this spool, after its own, and replayed with them."""
        adopted = 0
        for sibling in sorted(p for p in self.directory.parent.iterdir() if p.is_dir() and p != self.directory):
            lock_path = sibling / "lock"
            if not lock_path.exists():
                continue
            fd = os.open(lock_path, os.O_RDWR)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live proxy owns it
                for segment in sorted([*sibling.glob(f"*{SUFFIX}"), *sibling.glob(f"*{OPEN_SUFFIX}")], key=_seq_of):
                    self._seq += 1
                    segment.rename(self.directory / f"{self._seq:012d}{SUFFIX}")
                    adopted += 1
            finally:
                os.close(fd)
        if adopted:
            log.info("adopted spool segments left by another proxy", segments=adopted)
        return adopted

    def close(self) -> None:
        self.seal()
        self._drop_next()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def segments(self) -> list[Path]:
        """Segments on disk, oldest first (the active one last, if any; the prepared empty one not)."""
        spare = self._next[1] if self._next is not None else None
        found = [*self.directory.glob(f"*{SUFFIX}"), *(p for p in self.directory.glob(f"*{OPEN_SUFFIX}") if p != spare)]
        return sorted(found, key=_seq_of)

    def prepare_next(self) -> None:
        """Create the file the next append starts, off the request path (the writer calls this)."""
        if self._fd is not None or self._next is not None or self._lock_fd is None:
            return
        self._seq += 1
        path = self.directory / f"{self._seq:012d}{OPEN_SUFFIX}"
        self._next = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), path

    def _drop_next(self) -> None:
        spare, self._next = self._next, None
        if spare is not None:
            os.close(spare[0])
            spare[1].unlink(missing_ok=True)

    def append(self, key: str | None, value: bytes) -> None:
        """Write one record to the active segment (no fsync: the writer batches those)."""
        if b"\n" in value or (key is not None and ("\t" in key or "\n" in key)):
            raise ValueError("spool records are single lines")
        if self._fd is None:
            if self._next is not None:
                (self._fd, self._active), self._next = self._next, None
            else:
                self._seq += 1
                self._active = self.directory / f"{self._seq:012d}{OPEN_SUFFIX}"
                self._fd = os.open(self._active, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        line = (key or "").encode() + b"\t" + value + b"\n"
        os.write(self._fd, line)
        self._active_records += 1
        self.appended += 1

    @property
    def pending_in_active(self) -> int:
        return self._active_records

    def detach(self) -> tuple[int, Path] | None:
        """Stop appending to the active segment (new appends start a new one); the caller then
        calls :meth:`finish` on the returned descriptor, possibly from a thread."""
        fd, path = self._fd, self._active
        if fd is None or path is None:
            return None
        self._fd, self._active, self._active_records = None, None, 0
        return fd, path

    @staticmethod
    def finish(fd: int, path: Path) -> Path:
        """fsync and close a detached segment, then rename it sealed; returns the sealed path."""
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        sealed = _sealed_name(path)
        os.rename(path, sealed)
        return sealed

    def seal(self) -> Path | None:
        """Close the active segment after fsyncing it (blocking)."""
        detached = self.detach()
        if detached is None:
            return None
        return self.finish(*detached)

    def sealed_segments(self) -> list[Path]:
        return [p for p in self.segments() if p != self._active]

    @staticmethod
    def read(path: Path) -> Iterator[SpoolRecord]:
        """Records of a segment; a torn last line (a crash mid-write) is skipped and logged."""
        data = path.read_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1]:
            log.warning("spool segment has a torn last record; skipping it", segment=path.name)
        for line in lines[:-1]:
            key, sep, value = line.partition(b"\t")
            if not sep or not value:
                log.warning("spool segment has a malformed record; skipping it", segment=path.name)
                continue
            yield SpoolRecord(key.decode() or None, value)

    @staticmethod
    def remove(path: Path) -> None:
        path.unlink(missing_ok=True)


def _seq_of(path: Path) -> int:
    return int(path.name.split(".", 1)[0])


def _sealed_name(path: Path) -> Path:
    return path.with_name(f"{_seq_of(path):012d}{SUFFIX}")
