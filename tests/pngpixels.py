"""The pixels of a screenshot, for tests that check what a browser drew: Chromium's PNGs (8-bit RGB or
RGBA, not interlaced) decoded with zlib alone (PNG §7.3 scanlines, §9 filters), so no imaging library
is needed."""

from __future__ import annotations

import struct
import zlib
from collections import Counter

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type -> bytes per pixel at bit depth 8


def chunks(png: bytes, kind: bytes) -> list[bytes]:
    found, offset = [], 8
    while offset < len(png):
        length = struct.unpack(">I", png[offset:offset + 4])[0]
        if png[offset + 4:offset + 8] == kind:
            found.append(png[offset + 8:offset + 8 + length])
        offset += 12 + length
    return found


def colours(png: bytes) -> Counter[tuple[int, int, int]]:
    """How many pixels of each RGB colour the image has (alpha ignored)."""
    assert png[:8] == SIGNATURE
    width, height, depth, kind, _, _, interlace = struct.unpack(">IIBBBBB", chunks(png, b"IHDR")[0])
    assert depth == 8 and kind in _CHANNELS and interlace == 0, "a PNG as Chromium writes them"
    bpp = _CHANNELS[kind]
    stride = width * bpp
    data = zlib.decompress(b"".join(chunks(png, b"IDAT")))
    counted: Counter[tuple[int, int, int]] = Counter()
    previous = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        row = _unfilter(data[start], bytearray(data[start + 1:start + 1 + stride]), previous, bpp)
        counted.update(zip(row[0::bpp], row[1::bpp], row[2::bpp], strict=True))
        previous = row
    return counted


def _unfilter(kind: int, row: bytearray, up: bytes, bpp: int) -> bytes:
    if kind == 1:  # Sub
        for i in range(bpp, len(row)):
            row[i] = (row[i] + row[i - bpp]) & 0xFF
    elif kind == 2:  # Up
        row = bytearray((a + b) & 0xFF for a, b in zip(row, up, strict=True))
    elif kind == 3:  # Average
        for i in range(len(row)):
            row[i] = (row[i] + ((row[i - bpp] if i >= bpp else 0) + up[i]) // 2) & 0xFF
    elif kind == 4:  # Paeth
        for i in range(len(row)):
            a, b, c = (row[i - bpp], up[i], up[i - bpp]) if i >= bpp else (0, up[i], 0)
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    return bytes(row)


def rgb(hex_colour: str) -> tuple[int, int, int]:
    """``#d62728`` -> (214, 39, 40)."""
    value = int(hex_colour.lstrip("#"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF
