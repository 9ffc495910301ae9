"""What a file really is, and its thumbnail: sniffed from content, never trusted.

The sender's declared type is shown but never used to serve: the node
sniffs the first bytes (``filetype``, magic numbers) and only a short list
of image, audio and video types is ever served inline. Everything else,
HTML and SVG included, is served as an ``application/octet-stream``
download. Thumbnails are made with Pillow, with its decompression-bomb
guard, from the decrypted file read through a seekable view.
"""

from __future__ import annotations

import io
import re
import threading
import unicodedata
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import filetype
from PIL import Image, ImageOps

SNIFF_BYTES = 8192
THUMBNAIL_BOX = (480, 480)
MAX_THUMBNAIL_SOURCE = 64 * 1024 * 1024
MAX_PIXELS = 64_000_000

# Decoding a picture is the largest single allocation a node makes: a
# 24-megapixel photo is ~96 MB as RGBA, a 64-megapixel one ~256 MB. So one
# picture is decoded at a time in a process, and a JPEG (most photos) is
# decoded straight to a reduced scale (libjpeg's DCT scaling, 1/2 to 1/8),
# never at full size when only a small picture is wanted.
_DECODING = threading.BoundedSemaphore(1)


@contextmanager
def decoding(image: Image.Image, box: tuple[int, int]) -> Iterator[Image.Image]:
    """Hold the one decoding slot while ``image`` is decoded for a picture of at most ``box``."""
    with _DECODING:
        image.draft("RGB", (box[0] * 2, box[1] * 2))  # a no-op for formats that cannot
        yield image


INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "audio/mpeg",
        "audio/ogg",
        "audio/x-wav",
        "audio/x-flac",
        "audio/mp4",
        "audio/webm",
        "video/mp4",
        "video/webm",
    }
)
THUMBNAIL_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
DOWNLOAD_TYPE = "application/octet-stream"
_DECLARED = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")


def sniff(head: bytes) -> str | None:
    """The MIME type the content's magic bytes name, if any."""
    kind = filetype.guess(head[:SNIFF_BYTES])
    return None if kind is None else str(kind.mime)


def media_kind(sniffed: str | None) -> str | None:
    """ "image", "audio" or "video" when the file may be shown inline."""
    if sniffed not in INLINE_TYPES:
        return None
    return sniffed.split("/", 1)[0]


def clean_declared_type(value: str) -> str:
    value = value.strip().lower()
    return value if _DECLARED.match(value) else DOWNLOAD_TYPE


# What a file shown inline may be called: its extension must say what it is.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image/png": ("png",),
    "image/jpeg": ("jpg", "jpeg", "jpe", "jfif"),
    "image/gif": ("gif",),
    "image/webp": ("webp",),
    "audio/mpeg": ("mp3",),
    "audio/ogg": ("ogg", "oga", "opus"),
    "audio/x-wav": ("wav",),
    "audio/x-flac": ("flac",),
    "audio/mp4": ("m4a", "mp4"),
    "audio/webm": ("weba", "webm"),
    "video/mp4": ("mp4", "m4v"),
    "video/webm": ("webm",),
}
MAX_NAME_BYTES = 200  # UTF-8: under the 255 bytes most file systems allow, with room to spare
_SEPARATORS = re.compile(r"[/\\]")
_LEADING = re.compile(r"^[\s.]+")  # dots and spaces: no hidden files, no "..."


def _allowed(ch: str) -> bool:
    """Not a control, format, surrogate or private-use character, nor a line or
    paragraph separator (all of Unicode's C* categories, Zl and Zp)."""
    category = unicodedata.category(ch)
    return category[0] != "C" and category not in ("Zl", "Zp")


def _bound(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """``name`` cut to at most ``limit`` UTF-8 bytes, keeping a short extension."""
    if len(name.encode()) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not (dot and stem and 0 < len(ext) <= 16):
        stem, ext = name, ""
    tail = "." + ext if ext else ""
    room = limit - len(tail.encode())
    cut = stem.encode()[:room].decode(errors="ignore").rstrip(" .")
    return (cut or "file") + tail


def sanitize_filename(name: str, *, fallback: str = "file") -> str:
    """A file name safe to show and to offer as a download name.

    Keeps the last path segment only (no ``..``, ``/`` or ``\\``), drops
    control and format characters (bidi overrides included) and line
    separators, trims leading dots and surrounding spaces, and bounds the
    length to ``MAX_NAME_BYTES`` UTF-8 bytes while keeping the extension.
    Never empty.
    """
    name = _SEPARATORS.split(unicodedata.normalize("NFC", name))[-1]
    name = unicodedata.normalize("NFC", "".join(ch for ch in name if _allowed(ch)))
    name = _LEADING.sub("", name).rstrip()
    if not name:
        return fallback
    return _bound(name)


def name_for_type(name: str, mime: str | None) -> str:
    """``name`` with an extension that says what the file is when served as ``mime``.

    A JPEG called ``poly.html`` shown inline becomes ``poly.html.jpg``, so that
    "Save as" in the browser writes a picture, not a page. Names whose
    extension already matches, and types without a known extension, are kept.
    """
    extensions = EXTENSIONS.get(mime or "")
    if not extensions:
        return name
    _, dot, ext = name.rpartition(".")
    if dot and ext.lower() in extensions:
        return name
    return _bound(f"{name}.{extensions[0]}")


def make_thumbnail(source: BinaryIO) -> bytes | None:
    """A WebP thumbnail of an image, or ``None`` if it cannot (safely) be made."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as opened:
                if opened.width * opened.height > MAX_PIXELS:
                    return None
                opened.seek(0)
                with decoding(opened, THUMBNAIL_BOX) as image:
                    picture = ImageOps.exif_transpose(image) or image
                    picture.thumbnail(THUMBNAIL_BOX)
                    if picture.mode not in ("RGB", "RGBA"):
                        picture = picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
                    out = io.BytesIO()
                    picture.save(out, format="WEBP", quality=80)
                    return out.getvalue()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None
