"""AWS event-stream frames (``application/vnd.amazon.eventstream``), read as the bytes arrive (pure).

A frame is a 12-byte prelude (total length, headers length, CRC32 of those eight bytes), typed headers
(name length, name, type, value), the payload, and a CRC32 of everything before it. Bedrock's
``converse-stream`` sends one frame per event with string headers ``:event-type`` (or
``:exception-type``), ``:message-type`` and ``:content-type`` and a JSON payload.

``botocore.eventstream`` reads the same format; its header parser walks the bytes in Python and costs
about 20 µs a frame here, four times the whole translation of the event to the client's SSE
(``benchmarks/bedrock_translation.py``). This reader checks both CRCs with ``binascii.crc32`` and slices
the headers; ``tests/unit/test_bedrock_signing.py`` holds it to botocore's results on the same bytes.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

MAX_FRAME_BYTES = 16 * 1024 * 1024
"""A frame claiming more is refused (Bedrock's events are kilobytes; botocore's own cap is 24 MiB)."""
_PRELUDE = struct.Struct(">III")
_CRC = struct.Struct(">I")
_FIXED = {2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
"""Header value sizes by type: byte, short, integer, long, timestamp, UUID (0 and 1 are true and false,
6 and 7 bytes and a string with a 2-byte length)."""

HeaderValue = str | bytes | int | bool


class FrameError(Exception):
    """The bytes are not a well-formed event stream (a checksum, a length or a header is wrong);
    :attr:`frames` holds the whole frames that came before the bad one in the same call."""

    frames: list[Frame]

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.frames = []


@dataclass(frozen=True, slots=True)
class Frame:
    headers: dict[str, HeaderValue]
    payload: bytes


class FrameReader:
    """Feed it the stream's bytes in any pieces; it returns each frame once it is whole."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buffer
        buf += data
        frames: list[Frame] = []
        try:
            at = self._read(buf, frames)
        except FrameError as exc:
            exc.frames = frames
            raise
        del buf[:at]
        return frames

    @staticmethod
    def _read(buf: bytearray, frames: list[Frame]) -> int:
        """Append the whole frames in ``buf`` to ``frames``; returns where the unread rest starts."""
        at = 0
        while len(buf) - at >= _PRELUDE.size:
            total, headers_len, prelude_crc = _PRELUDE.unpack_from(buf, at)
            if binascii.crc32(buf[at:at + 8]) != prelude_crc:
                raise FrameError("prelude checksum mismatch")
            if total > MAX_FRAME_BYTES or total < 16 or headers_len > total - 16:
                raise FrameError(f"impossible frame lengths ({total}, {headers_len})")
            if len(buf) - at < total:
                break
            end = at + total - 4
            if binascii.crc32(buf[at:end]) != _CRC.unpack_from(buf, end)[0]:
                raise FrameError("message checksum mismatch")
            start = at + _PRELUDE.size
            frames.append(Frame(_headers(bytes(buf[start:start + headers_len])), bytes(buf[start + headers_len:end])))
            at += total
        return at


def _headers(data: bytes) -> dict[str, HeaderValue]:
    out: dict[str, HeaderValue] = {}
    at, end = 0, len(data)
    try:
        while at < end:
            name_end = at + 1 + data[at]
            name = data[at + 1:name_end].decode()
            kind = data[name_end]
            at = name_end + 1
            value: HeaderValue
            if kind in (0, 1):
                value = kind == 0
            elif kind in _FIXED:
                size = _FIXED[kind]
                raw = data[at:at + size]
                value = raw if kind == 9 else int.from_bytes(raw, "big", signed=True)
                at += size
            elif kind in (6, 7):
                length = int.from_bytes(data[at:at + 2], "big")
                raw = data[at + 2:at + 2 + length]
                value = raw.decode() if kind == 7 else raw
                at += 2 + length
            else:
                raise FrameError(f"unknown header type {kind}")
            out[name] = value
    except (IndexError, UnicodeDecodeError) as exc:
        raise FrameError(f"malformed header ({type(exc).__name__})") from None
    if at != end:
        raise FrameError("headers overrun their length")
    return out
