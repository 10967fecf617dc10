"""Pixel checks of the browser tests' screenshots: a small PNG reader (8-bit RGB/RGBA,
non-interlaced: what Chromium writes) and colour counts in a box of the image."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type -> channels (RGB, RGBA)


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int
    rows: list[bytes]

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        at = x * self.channels
        row = self.rows[y]
        return row[at], row[at + 1], row[at + 2]


def read_png(path: Path) -> Image:
    data = path.read_bytes()
    assert data[:8] == _SIGNATURE, f"{path}: not a PNG"
    at = 8
    idat = b""
    width = height = channels = 0
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        body = data[at + 8 : at + 8 + length]
        at += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            supported = depth == 8 and colour in _CHANNELS and interlace == 0
            assert supported, (depth, colour, interlace)
            channels = _CHANNELS[colour]
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        filter_type = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            upper_left = previous[i - channels] if i >= channels else 0
            if filter_type == 1:
                line[i] = (line[i] + left) & 0xFF
            elif filter_type == 2:
                line[i] = (line[i] + up) & 0xFF
            elif filter_type == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif filter_type == 4:
                p = left + up - upper_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else upper_left
                line[i] = (line[i] + best) & 0xFF
        rows.append(bytes(line))
        previous = line
    return Image(width, height, channels, rows)


def count_colour(
    image: Image,
    box: tuple[float, float, float, float],
    rgb: tuple[int, int, int],
    tolerance: int = 12,
    step: int = 2,
) -> int:
    """Pixels within `tolerance` of `rgb` in `box` (x, y, width, height in CSS px at scale 1),
    sampled every `step` px."""
    x0, y0, w, h = (round(v) for v in box)
    found = 0
    for y in range(max(y0, 0), min(y0 + h, image.height), step):
        for x in range(max(x0, 0), min(x0 + w, image.width), step):
            r, g, b = image.pixel(x, y)
            if max(abs(r - rgb[0]), abs(g - rgb[1]), abs(b - rgb[2])) <= tolerance:
                found += 1
    return found
