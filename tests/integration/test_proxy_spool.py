"""The spool on a real filesystem: one line per event, torn tails skipped, one owner at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from spendgate.domain.errors import ConfigError
from spendgate.proxy.spool import Spool


def test_append_seal_read_remove(tmp_path: Path) -> None:
    """Appends land in the active segment; sealing starts a new one; segments read back in order."""
    spool = Spool(tmp_path / "s")
    spool.open()
    spool.append("k1", b'{"a":1}')
    first = spool.seal()
    spool.append(None, b'{"b":2}')
    second = spool.seal()
    assert first is not None and second is not None and spool.segments() == [first, second]
    assert [(r.key, r.value) for r in Spool.read(first)] == [("k1", b'{"a":1}')]
    assert [(r.key, r.value) for r in Spool.read(second)] == [(None, b'{"b":2}')]
    Spool.remove(first)
    assert spool.segments() == [second]
    spool.close()


def test_torn_last_record_is_skipped(tmp_path: Path) -> None:
    """A record cut off mid-write (a crash) is skipped; the complete ones before it are kept."""
    spool = Spool(tmp_path / "s")
    spool.open()
    spool.append("k", b'{"ok":1}')
    path = spool.seal()
    assert path is not None
    with path.open("ab") as f:
        f.write(b'k\t{"torn":')
    assert [r.value for r in Spool.read(path)] == [b'{"ok":1}']
    spool.close()


def test_second_owner_is_refused_and_numbering_continues(tmp_path: Path) -> None:
    """Only one process holds a spool; a reopened spool numbers new segments after the old ones."""
    first = Spool(tmp_path / "s")
    first.open()
    first.append("k", b"{}")
    old = first.seal()
    with pytest.raises(ConfigError):
        Spool(tmp_path / "s").open()
    first.close()
    again = Spool(tmp_path / "s")
    again.open()
    again.append("k", b"{}")
    new = again.seal()
    assert old is not None and new is not None and again.segments() == [old, new]
    again.close()


def test_multiline_values_are_refused(tmp_path: Path) -> None:
    """A value with a newline would corrupt the framing and is refused."""
    spool = Spool(tmp_path / "s")
    spool.open()
    with pytest.raises(ValueError):
        spool.append("k", b"a\nb")
    spool.close()


def test_orphaned_sibling_segments_are_adopted(tmp_path: Path) -> None:
    """Segments of a spool nobody holds (a proxy restarted on another port) move into the live spool."""
    old = Spool(tmp_path / "proxy-8080")
    old.open()
    old.append("k", b'{"old":1}')
    old.close()
    held = Spool(tmp_path / "proxy-9000")
    held.open()
    held.append("k", b'{"held":1}')
    held.seal()
    new = Spool(tmp_path / "proxy-8081")
    new.open()
    assert new.adopt_orphans() == 1
    [segment] = new.segments()
    assert [r.value for r in Spool.read(segment)] == [b'{"old":1}']
    assert len(held.segments()) == 1  # a live proxy's spool is left alone
    new.close()
    held.close()
