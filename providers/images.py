"""Checking an image a battle carries, from its bytes alone: type, size, pixels, completeness.

PNG, JPEG, WebP (still) and GIF are read by walking their container structure (chunks, segments,
blocks), never by decoding pixels: the dimensions come from the headers and are checked against the
limits before anything else reads the file, so a decompression bomb (a small file that claims a huge
canvas) is refused without ever being inflated. A file whose structure does not add up (cut short,
a bad PNG checksum, another kind of file renamed) is refused too.

What is sent on is rebuilt from the parts that draw the picture: metadata (EXIF, XMP, text chunks,
comments) is left out, so a photo's location never reaches a vendor, and a GIF keeps its first frame.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from django.conf import settings
from django.utils.translation import gettext
from rest_framework import status

from config.errors import DomainError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG chunks that only describe the file (text, time, EXIF) or animate it (APNG): left out.
PNG_DROPPED = {b"tEXt", b"zTXt", b"iTXt", b"tIME", b"eXIf", b"acTL", b"fcTL", b"fdAT"}
# JPEG markers that start a frame (SOF0-15 without DHT, JPG and DAC): they carry the dimensions.
JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# APP1 (EXIF, XMP), APP13 (IPTC) and comments: metadata, left out. APP0 (JFIF), APP2 (ICC) and
# APP14 (Adobe colour transform) change how the picture looks and stay.
JPEG_DROPPED = {0xE1, 0xED, 0xFE}
WEBP_DROPPED = {b"EXIF", b"XMP "}
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
NAMES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP", "image/gif": "GIF"}


class ImageError(DomainError):
    code = "bad_image"


class ImageTooLarge(ImageError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "image_too_large"


class _Broken(Exception):
    """The structure does not add up; the message says where."""


@dataclass(frozen=True)
class CheckedImage:
    mime_type: str
    width: int
    height: int
    data: bytes = field(repr=False)  # rebuilt without metadata

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.mime_type]


def check(data: bytes) -> CheckedImage:
    """The image in `data`, checked and stripped of metadata; ImageError (4xx) with the reason."""
    limit = settings.ARENA_IMAGE_MAX_BYTES
    if len(data) > limit:
        raise ImageTooLarge(
            gettext("The image is %(size)s bytes; the limit is %(limit)s bytes.")
            % {"size": len(data), "limit": limit}
        )
    if not data:
        raise ImageError(gettext("The image file is empty."), code="bad_image")
    readers = {"image/png": _png, "image/jpeg": _jpeg, "image/webp": _webp, "image/gif": _gif}
    mime_type = sniff(data)
    if mime_type is None:
        raise ImageError(gettext("The file is not a PNG, JPEG, WebP or GIF image."), code="image_type")
    try:
        width, height, clean = readers[mime_type](data)
    except _Broken as exc:
        kind = NAMES[mime_type]
        raise ImageError(
            gettext("The %(kind)s file is damaged or incomplete: %(why)s.") % {"kind": kind, "why": exc},
            code="bad_image",
        ) from exc
    except (struct.error, IndexError) as exc:
        kind = NAMES[mime_type]
        message = gettext("The %(kind)s file is damaged or incomplete.") % {"kind": kind}
        raise ImageError(message, code="bad_image") from exc
    side, pixels = settings.ARENA_IMAGE_MAX_SIDE, settings.ARENA_IMAGE_MAX_PIXELS
    if width < 1 or height < 1:
        raise ImageError(gettext("The image has no pixels."), code="bad_image")
    if width > side or height > side or width * height > pixels:
        raise ImageTooLarge(
            gettext(
                "The image is %(width)s×%(height)s pixels; the limit is %(side)s pixels a side and "
                "%(pixels)s pixels in all."
            )
            % {"width": width, "height": height, "side": side, "pixels": pixels},
            code="image_too_many_pixels",
        )
    return CheckedImage(mime_type, width, height, clean)


def sniff(data: bytes) -> str | None:
    """The type the first bytes say, whatever the file is called."""
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def _png(data: bytes) -> tuple[int, int, bytes]:
    pos, out, size = len(PNG_SIGNATURE), [PNG_SIGNATURE], None
    while True:
        if pos + 12 > len(data):
            raise _Broken("it ends inside a chunk, before IEND")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise _Broken(f"its {kind!r} chunk runs past the end of the file")
        body = data[pos + 8 : end - 4]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[end - 4 : end])[0]:
            raise _Broken(f"its {kind!r} chunk fails its checksum")
        if size is None:
            if kind != b"IHDR" or length != 13:
                raise _Broken("it does not start with IHDR")
            size = struct.unpack(">II", body[:8])
        if kind not in PNG_DROPPED:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            break
    if b"IDAT" not in {bytes(c[4:8]) for c in out[1:]}:
        raise _Broken("it has no image data")
    return size[0], size[1], b"".join(out)


def _jpeg(data: bytes) -> tuple[int, int, bytes]:
    pos, out, size = 2, [data[:2]], None
    while True:
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise _Broken("a segment is missing or cut short")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise _Broken("a segment runs past the end of the file")
        if marker in JPEG_FRAMES and size is None:
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            size = (width, height)
        if marker == 0xDA:  # start of scan: compressed data follows, up to the end marker
            break
        if marker not in JPEG_DROPPED:
            out.append(data[pos:end])
        pos = end
    if size is None:
        raise _Broken("it has no frame header")
    rest = data[pos:].rstrip(b"\x00")
    if not rest.endswith(b"\xff\xd9"):
        raise _Broken("it does not end with the end-of-image marker")
    out.append(rest)
    return size[0], size[1], b"".join(out)


def _webp(data: bytes) -> tuple[int, int, bytes]:
    riff_size = struct.unpack("<I", data[4:8])[0]
    if riff_size + 8 != len(data) or riff_size % 2:
        raise _Broken("its length does not match its RIFF header")
    pos, chunks, size = 12, [], None
    while pos < len(data):
        if pos + 8 > len(data):
            raise _Broken("it ends inside a chunk header")
        kind, length = struct.unpack("<4sI", data[pos : pos + 8])
        end = pos + 8 + length + (length % 2)
        if end > len(data):
            raise _Broken(f"its {kind!r} chunk runs past the end of the file")
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"VP8X":
            if body[0] & 0x02:
                raise _Broken("it is animated; send a still image")
            size = (1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little"))
            # Drop the EXIF and XMP flags with their chunks.
            chunks.append(kind + data[pos + 4 : pos + 8] + bytes([body[0] & ~0x0C]) + data[pos + 9 : end])
        elif kind in WEBP_DROPPED:
            pass
        else:
            if kind == b"VP8 " and size is None:
                if body[3:6] != b"\x9d\x01\x2a":
                    raise _Broken("its VP8 frame has no start code")
                w, h = struct.unpack("<HH", body[6:10])
                size = (w & 0x3FFF, h & 0x3FFF)
            elif kind == b"VP8L" and size is None:
                if body[0] != 0x2F:
                    raise _Broken("its VP8L frame has no signature")
                bits = int.from_bytes(body[1:5], "little")
                size = (1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF))
            chunks.append(data[pos:end])
        pos = end
    if size is None or not any(c[:4] in (b"VP8 ", b"VP8L") for c in chunks):
        raise _Broken("it has no image data")
    body = b"WEBP" + b"".join(chunks)
    return size[0], size[1], b"RIFF" + struct.pack("<I", len(body)) + body


def _gif(data: bytes) -> tuple[int, int, bytes]:
    width, height, flags = struct.unpack("<HHB", data[6:11])
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    out, first = [data[:pos]], True
    while True:
        if pos >= len(data):
            raise _Broken("it ends before its trailer")
        introducer = data[pos]
        if introducer == 0x3B:
            if first:
                raise _Broken("it has no frame")
            return width, height, b"".join(out) + b"\x3b"
        if introducer == 0x21:  # an extension: only the first frame's graphic control is kept
            end = _sub_blocks(data, pos + 2)
            if first and data[pos + 1] == 0xF9:
                out.append(data[pos:end])
        elif introducer == 0x2C:  # a frame: the first is kept; the others are walked, to be whole
            local = data[pos + 9]
            start = pos + 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            end = _sub_blocks(data, start + 1)
            if first:
                out.append(data[pos:end])
            first = False
        else:
            raise _Broken("a block has an unknown introducer")
        pos = end


def _sub_blocks(data: bytes, pos: int) -> int:
    """The position after a run of GIF sub-blocks ended by an empty one."""
    while True:
        if pos >= len(data):
            raise _Broken("it ends inside a block")
        length = data[pos]
        pos += 1 + length
        if length == 0:
            return pos
