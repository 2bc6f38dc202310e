"""A minimal PNG reader (8-bit RGB/RGBA, not interlaced: what Chromium's screenshots are),
so tests can look at pixels without an imaging library."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int
    #: Unfiltered scanlines, ``width * channels`` bytes each.
    rows: tuple[bytes, ...]

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        """The RGB colour at (*x*, *y*)."""
        row = self.rows[y]
        i = x * self.channels
        return row[i], row[i + 1], row[i + 2]

    def count(self, colour: tuple[int, int, int], box: tuple[int, int, int, int], tol: int) -> int:
        """Pixels within *tol* per channel of *colour* in ``box = (x0, y0, x1, y1)``."""
        return self.counts([colour], box, tol)[0]

    def counts(
        self, colours: list[tuple[int, int, int]], box: tuple[int, int, int, int], tol: int
    ) -> list[int]:
        """:meth:`count` of each of *colours*, in one pass over the box."""
        x0, y0, x1, y1 = box
        found = [0] * len(colours)
        seen: dict[tuple[int, int, int], int | None] = {}
        for y in range(y0, y1):
            for x in range(x0, x1):
                p = self.pixel(x, y)
                if p not in seen:
                    seen[p] = next(
                        (
                            i
                            for i, colour in enumerate(colours)
                            if all(abs(a - b) <= tol for a, b in zip(p, colour, strict=True))
                        ),
                        None,
                    )
                index = seen[p]
                if index is not None:
                    found[index] += 1
        return found


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def read_png(data: bytes) -> Image:
    """Decode *data*; raises ``ValueError`` for anything but 8-bit RGB(A) non-interlaced."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG")
    pos = len(_SIGNATURE)
    idat = bytearray()
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or colour_type not in _CHANNELS or interlace:
                raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour_type}")
            channels = _CHANNELS[colour_type]
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:
            for i in range(stride):
                line[i] = (line[i] + previous[i]) & 0xFF
        elif kind == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                up_left = previous[i - channels] if i >= channels else 0
                line[i] = (line[i] + _paeth(left, previous[i], up_left)) & 0xFF
        elif kind != 0:
            raise ValueError(f"bad PNG filter {kind}")
        rows.append(bytes(line))
        previous = line
    return Image(width=width, height=height, channels=channels, rows=tuple(rows))
