"""The shape of a PNG or JPEG image from its bytes, checked to be whole without decoding a
pixel: PNG chunks and their CRCs, the PNG pixel data inflated and measured (what passes, TF
decodes); JPEG markers and segments up to the image data, and its end marker (a truncated
JPEG is caught, damage inside its tables or entropy-coded data is not).
"""

from __future__ import annotations

import struct
import zlib

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_START = b"\xff\xd8"
# Samples per pixel of the PNG colour types (grey, RGB, palette, grey+alpha, RGBA), and the
# bit depths each allows.
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# The seven Adam7 passes of an interlaced PNG: first column, first row, column and row steps.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))
# JPEG frame headers (SOF0-SOF15 but DHT, JPG and DAC, which share the range).
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# JPEG markers without a length: TEM and the restart markers.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_END, _JPEG_SCAN = b"\xff\xd9", 0xDA
# What other files start with, to say what a file is rather than what it is not.
_OTHER_FORMATS = ((b"GIF8", "a GIF image"), (b"BM", "a BMP image"),
                  (b"RIFF", "a RIFF file (WebP?)"), (b"II*\x00", "a TIFF image"),
                  (b"MM\x00*", "a TIFF image"), (b"\x1f\x8b", "gzip-compressed data"),
                  (b"PK\x03\x04", "a zip archive"))
_TEXT_BYTES = frozenset(range(0x20, 0x7F)) | frozenset(b"\t\n\r")


def image_shape(data: bytes) -> tuple[int, int, int]:
    """The (height, width, channels) a PNG or JPEG file decodes to by default, checked to be
    whole: channels are 1 grey, 2 grey+alpha, 3 colour, 4 colour+alpha (TF's decoder's).

    Raises:
        ValueError: Saying what is wrong, for anything TF's decoder would fail on.
    """
    if data.startswith(_PNG_SIGNATURE):
        return _png_shape(data)
    if data.startswith(_JPEG_START):
        return _jpeg_shape(data)
    raise ValueError(f"expected a PNG or JPEG image, got {_what_is(data)}")


def _what_is(data: bytes) -> str:
    if not data:
        return "an empty file"
    for start, name in _OTHER_FORMATS:
        if data.startswith(start):
            return name
    head = data[:32]
    if _TEXT_BYTES.issuperset(head):
        return f"text ({head.decode()!r}{'...' if len(data) > len(head) else ''})"
    return f"bytes starting with {data[:8]!r}"


def _png_shape(data: bytes) -> tuple[int, int, int]:
    position, header, pixels, transparent = len(_PNG_SIGNATURE), None, [], False
    palette = False
    while True:
        if position + 12 > len(data):
            raise ValueError(f"truncated PNG: {len(data)} bytes, no IEND chunk at the end")
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > len(data):
            raise ValueError(f"truncated PNG: {len(data)} bytes, its {kind!r} chunk at byte "
                             f"{position} needs {end}")
        body = data[position + 8:end - 4]
        # Readers fail on a bad CRC in a critical chunk (an upper-case first letter) only.
        if kind[0] < 0x60 and zlib.crc32(kind + body) != int.from_bytes(data[end - 4:end],
                                                                          "big"):
            raise ValueError(f"corrupt PNG: the CRC of its {kind!r} chunk at byte {position} "
                             f"does not match")
        if header is None and (kind != b"IHDR" or length != 13):
            raise ValueError(f"corrupt PNG: expected an IHDR chunk of 13 bytes first, got "
                             f"{kind!r} of {length}")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = True
        elif kind == b"tRNS":
            transparent = True
        elif kind == b"IDAT":
            pixels.append(body)
        elif kind == b"IEND":
            break
        position = end
    width, height, depth, colour, _, _, interlaced = header
    if not width or not height or depth not in _PNG_DEPTHS.get(colour, ()) or (
            colour == 3 and not palette):
        raise ValueError(f"corrupt PNG: {width}x{height}, colour type {colour}, bit depth "
                         f"{depth}{', no palette' if colour == 3 and not palette else ''}")
    bits = _PNG_SAMPLES[colour] * depth
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    # Each row of each pass: a filter byte, then its pixels.
    expected = 0
    for x, y, dx, dy in passes:
        columns, rows = -(-(width - x) // dx), -(-(height - y) // dy)
        if columns > 0 and rows > 0:
            expected += rows * (1 + -(-columns * bits // 8))
    inflate = zlib.decompressobj()
    try:
        # One byte more than expected is enough to see that there is too much.
        found = len(inflate.decompress(b"".join(pixels), expected + 1))
    except zlib.error as error:
        raise ValueError(f"corrupt PNG: its pixel data does not inflate ({error})") from None
    if found != expected:
        raise ValueError(f"corrupt PNG: its pixel data inflates to {found} bytes"
                         f"{' or more' if found > expected else ''}, expected {expected} for "
                         f"{width}x{height}")
    # TF's decoder gives a palette image RGB, or RGBA with a transparency chunk.
    channels = (3 + transparent) if colour == 3 else _PNG_SAMPLES[colour]
    return height, width, channels


def _jpeg_shape(data: bytes) -> tuple[int, int, int]:
    position, frame = len(_JPEG_START), None
    while True:
        if position + 4 > len(data):
            raise ValueError(f"truncated JPEG: {len(data)} bytes, ending before its image data")
        if data[position] != 0xFF:
            raise ValueError(f"corrupt JPEG: expected a marker at byte {position}, got "
                             f"{data[position:position + 2]!r}")
        marker = data[position + 1]
        if marker == 0xFF:
            # A fill byte before a marker.
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        length = int.from_bytes(data[position + 2:position + 4], "big")
        end = position + 2 + length
        if length < 2 or end > len(data):
            raise ValueError(f"truncated JPEG: {len(data)} bytes, its segment at byte "
                             f"{position} needs {end}")
        if marker in _JPEG_FRAMES and length >= 8:
            frame = struct.unpack_from(">BHHB", data, position + 4)
        if marker == _JPEG_SCAN:
            break
        position = end
    if frame is None:
        raise ValueError("corrupt JPEG: no frame header (SOF) before its image data")
    _, height, width, components = frame
    if not height or not width or components not in (1, 3, 4):
        raise ValueError(f"unsupported JPEG: {width}x{height} with {components} components")
    # Entropy-coded data escapes 0xFF, so the end marker after the scan header ends the image.
    if data.find(_JPEG_END, end) < 0:
        raise ValueError(f"truncated JPEG: {len(data)} bytes, no end-of-image marker")
    # TF decodes CMYK (4 components) to RGB.
    return height, width, 1 if components == 1 else 3
