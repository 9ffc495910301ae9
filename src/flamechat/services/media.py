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
import unicodedata
import warnings
from typing import BinaryIO

import filetype
from PIL import Image, ImageOps

SNIFF_BYTES = 8192
THUMBNAIL_BOX = (480, 480)
MAX_THUMBNAIL_SOURCE = 64 * 1024 * 1024
MAX_PIXELS = 64_000_000

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


def sanitize_filename(name: str, *, fallback: str = "file") -> str:
    """A file name safe to show and to offer as a download name.

    Keeps the last path segment only (no ``..``, ``/`` or ``\\``), drops
    control and format characters (bidi overrides included), trims
    leading dots and spaces, and bounds the length while keeping the
    extension.
    """
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().lstrip(".").strip()
    if not name or name in {".", ".."}:
        return fallback
    if len(name) > 180:
        stem, dot, ext = name.rpartition(".")
        keep_ext = bool(dot) and 0 < len(ext) <= 16
        name = stem[: 180 - len(ext) - 1] + "." + ext if keep_ext else name[:180]
    return name


def make_thumbnail(source: BinaryIO) -> bytes | None:
    """A WebP thumbnail of an image, or ``None`` if it cannot (safely) be made."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                if image.width * image.height > MAX_PIXELS:
                    return None
                image.seek(0)
                picture = ImageOps.exif_transpose(image) or image
                picture.thumbnail(THUMBNAIL_BOX)
                if picture.mode not in ("RGB", "RGBA"):
                    picture = picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
                out = io.BytesIO()
                picture.save(out, format="WEBP", quality=80)
                return out.getvalue()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None
