"""File names (services/media.py): what a sender calls a file is shown and offered
for download only once it is safe, and a file shown inline is named for what it is."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flamechat.services.media import MAX_NAME_BYTES, name_for_type, sanitize_filename
from flamechat.web.files_api import content_disposition
from tests.unit.support import PROPERTY


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("report.pdf", "report.pdf"),
        ("C:\\Users\\alice\\Desktop\\payroll.xlsx", "payroll.xlsx"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("../", "file"),
        ("..", "file"),
        ("....", "file"),
        ("...hidden", "hidden"),
        (". . .profile", "profile"),
        ("  spaced out.txt  ", "spaced out.txt"),
        ("nul\x00byte.txt", "nulbyte.txt"),
        ("bell\x07.txt", "bell.txt"),
        ("line\r\nbreak.txt", "linebreak.txt"),
        ("para\u2029graph.txt", "paragraph.txt"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),  # the bidi override that shows "exe.jpg"
        ("zero\u200bwidth.txt", "zerowidth.txt"),
        ('say "cheese".jpg', 'say "cheese".jpg'),  # quotes are text here; the header escapes them
        ("", "file"),
        ("\x00\x01\x02", "file"),
        ("e\u0301te\u0301.txt", "\u00e9t\u00e9.txt"),  # NFC
    ],
)
def test_names_are_cleaned(sent: str, kept: str) -> None:
    assert sanitize_filename(sent) == kept


def test_a_long_name_is_cut_keeping_its_extension() -> None:
    name = sanitize_filename("a" * 300 + ".tar.gz")
    assert name.endswith(".gz")
    assert len(name.encode()) == MAX_NAME_BYTES
    wide = sanitize_filename("\U0001f525" * 300 + ".png")  # 4 bytes a character
    assert wide.endswith(".png")
    assert len(wide.encode()) <= MAX_NAME_BYTES
    wide.encode().decode()  # cut on a character boundary
    no_ext = sanitize_filename("b" * 300)
    assert no_ext == "b" * MAX_NAME_BYTES


@pytest.mark.parametrize(
    ("name", "mime", "served"),
    [
        ("poly.html", "image/jpeg", "poly.html.jpg"),
        ("photo.JPEG", "image/jpeg", "photo.JPEG"),
        ("photo.jpg", "image/jpeg", "photo.jpg"),
        ("scan", "image/png", "scan.png"),
        ("song.exe", "audio/mpeg", "song.exe.mp3"),
        ("clip.mp4", "video/mp4", "clip.mp4"),
        ("clip.svg", "video/webm", "clip.svg.webm"),
        ("page.html", "application/octet-stream", "page.html"),  # a download keeps its name
        ("notes.txt", None, "notes.txt"),
    ],
)
def test_a_file_served_inline_has_an_extension_that_says_what_it_is(
    name: str, mime: str | None, served: str
) -> None:
    assert name_for_type(name, mime) == served


def test_the_extension_fix_keeps_a_long_name_within_bounds() -> None:
    name = sanitize_filename("x" * 300 + ".html")
    served = name_for_type(name, "image/gif")
    assert served.endswith(".gif")
    assert len(served.encode()) <= MAX_NAME_BYTES


def test_the_download_header_carries_no_quote_or_control_character_of_the_name() -> None:
    header = content_disposition("attachment", 'say "cheese";\\ 100%.jpg')
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback == "say _cheese___ 100_.jpg"
    assert "filename*=UTF-8''say%20%22cheese%22%3B%5C%20100%25.jpg" in header


# Wide inputs: any code point (surrogates, controls, bidi, combining marks), path-like shapes.
_anything = st.text(st.characters(codec=None, exclude_categories=()), max_size=400)
_pathlike = st.lists(
    st.sampled_from(["..", ".", "/", "\\", "\x00", "\u202e", " ", "a", "é", "\U0001f525", "\n"])
)
names = _anything | _pathlike.map("".join) | st.builds(lambda a, b: a + "." + b, _anything, _anything)


def _no_control(name: str) -> bool:
    return all(
        unicodedata.category(ch)[0] != "C" and unicodedata.category(ch) not in ("Zl", "Zp") for ch in name
    )


@PROPERTY
@given(names)
def test_any_name_comes_out_non_empty_bounded_and_without_separators_or_controls(sent: str) -> None:
    name = sanitize_filename(sent)
    assert name
    assert "/" not in name
    assert "\\" not in name
    assert _no_control(name)
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert not name.startswith(".")
    assert name == name.strip()
    assert sanitize_filename(name) == name  # cleaning twice changes nothing


@PROPERTY
@given(names, st.sampled_from(["image/jpeg", "image/png", "audio/ogg", "video/webm", None]))
def test_any_served_name_stays_safe_and_bounded(sent: str, mime: str | None) -> None:
    served = name_for_type(sanitize_filename(sent), mime)
    assert served
    assert "/" not in served
    assert "\\" not in served
    assert _no_control(served)
    assert len(served.encode()) <= MAX_NAME_BYTES
