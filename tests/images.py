"""Small images made byte by byte (no imaging library): valid PNG, JPEG, WebP and GIF files, with
metadata to strip, for the image battle tests."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int = 4, height: int = 3, *, exif: bytes = b"", rows: bool = True) -> bytes:
    """An RGB PNG a browser can draw (a red square); `rows=False` leaves the pixel data tiny, for a
    header that claims many pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height)) if rows else b"\x00"
    parts = [_chunk(b"IHDR", ihdr)]
    if exif:
        parts.append(_chunk(b"eXIf", exif))
        parts.append(_chunk(b"tEXt", b"Comment\x00" + exif))
    parts += [_chunk(b"IDAT", zlib.compress(raw)), _chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(parts)


def jpeg(width: int = 8, height: int = 8, *, exif: bytes = b"") -> bytes:
    """A JPEG's structure: JFIF, an EXIF APP1 segment, a frame header, a scan and its end marker."""
    segments = [
        b"\xff\xd8",
        b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
    ]
    if exif:
        body = b"Exif\x00\x00" + exif
        segments.append(b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body)
    sof = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    segments.append(b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof)
    sos = b"\x01\x01\x00\x00\x3f\x00"
    segments.append(b"\xff\xda" + struct.pack(">H", len(sos) + 2) + sos + b"\x12\x34\x56" + b"\xff\xd9")
    return b"".join(segments)


def webp(width: int = 16, height: int = 16, *, exif: bytes = b"", animated: bool = False) -> bytes:
    """An extended WebP: VP8X (flags, canvas), a lossless VP8L frame header, an EXIF chunk."""
    flags = (0x08 if exif else 0) | (0x02 if animated else 0)
    vp8x = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    bits = (width - 1) | ((height - 1) << 14)
    vp8l = b"\x2f" + bits.to_bytes(4, "little") + b"\x00\x00\x00"
    chunks = [b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x, b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l]
    if exif:
        chunks.append(b"EXIF" + struct.pack("<I", len(exif)) + exif + (b"\x00" if len(exif) % 2 else b""))
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def gif(width: int = 2, height: int = 2, *, frames: int = 2, comment: bytes = b"") -> bytes:
    """A GIF89a of `frames` frames with a global colour table and a comment extension."""
    out = [b"GIF89a", struct.pack("<HHBBB", width, height, 0x80, 0, 0), b"\x00\x00\x00\xff\xff\xff"]
    if comment:
        out.append(b"\x21\xfe" + bytes([len(comment)]) + comment + b"\x00")
    for _ in range(frames):
        out.append(b"\x21\xf9\x04\x00\x00\x00\x00\x00")
        out.append(b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00")
    out.append(b"\x3b")
    return b"".join(out)
