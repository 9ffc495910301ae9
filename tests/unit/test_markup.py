"""The Markdown subset and its sanitiser (web/markup.py).

Every message body is shown through ``render_markdown``. Whatever anyone
types, the HTML it produces holds only the allowed tags and attributes and
only http(s)/mailto (or relative) links: nothing that can run script.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flamechat.web.markup import ALLOWED_ATTRIBUTES, ALLOWED_SCHEMES, ALLOWED_TAGS, render_markdown, with_html
from tests.unit.support import PROPERTY


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser.tags


def assert_safe(html: str) -> None:
    lowered = html.lower()
    assert "<script" not in lowered
    assert "<img" not in lowered
    assert "<iframe" not in lowered
    assert "<style" not in lowered
    assert not re.search(r"<[^>]*\son\w+\s*=", lowered), html
    for tag, attrs in tags_of(html):
        assert tag in ALLOWED_TAGS, html
        allowed = ALLOWED_ATTRIBUTES.get(tag, set()) | ({"rel"} if tag == "a" else set())
        assert set(attrs) <= allowed, html
        href = attrs.get("href")
        if href is not None:
            scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*):", href)
            assert scheme is None or scheme.group(1).lower() in ALLOWED_SCHEMES, html


# --- the subset --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("*em* and _em_", "<p><em>em</em> and <em>em</em></p>\n"),
        ("**strong**", "<p><strong>strong</strong></p>\n"),
        ("`a < b`", "<p><code>a &lt; b</code></p>\n"),
        ("```\nif a < b:\n    pass\n```", "<pre><code>if a &lt; b:\n    pass\n</code></pre>\n"),
        ("- one\n- two", "<ul>\n<li>one</li>\n<li>two</li>\n</ul>\n"),
        ("1. one\n2. two", "<ol>\n<li>one</li>\n<li>two</li>\n</ol>\n"),
        ("3. three", '<ol start="3">\n<li>three</li>\n</ol>\n'),
        ("> quoted", "<blockquote>\n<p>quoted</p>\n</blockquote>\n"),
        ("line one\nline two", "<p>line one<br>\nline two</p>\n"),
        (
            '[docs](https://example.org/a?b=1 "Title")',
            '<p><a href="https://example.org/a?b=1" title="Title" rel="noopener noreferrer nofollow">'
            "docs</a></p>\n",
        ),
        (
            "[mail](mailto:bob@example.org)",
            '<p><a href="mailto:bob@example.org" rel="noopener noreferrer nofollow">mail</a></p>\n',
        ),
    ],
)
def test_the_markdown_subset_renders(text: str, html: str) -> None:
    assert render_markdown(text) == html


@pytest.mark.parametrize(
    "text",
    [
        "# not a heading",
        "| a | b |\n|---|---|\n| 1 | 2 |",
        "![alt](http://example.org/x.png)",
        "---",
        "http://bare.link",
    ],
)
def test_features_outside_the_subset_stay_plain(text: str) -> None:
    html = render_markdown(text)
    assert_safe(html)
    for tag, _attrs in tags_of(html):
        assert tag not in {"h1", "table", "img", "hr"}


def test_plain_text_is_escaped_not_interpreted() -> None:
    assert render_markdown("5 > 3 & 2 < 4") == "<p>5 &gt; 3 &amp; 2 &lt; 4</p>\n"


# --- attacks ---------------------------------------------------------------------------------


ATTACKS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<iframe src=javascript:alert(1)>",
    '<a href="http://x" onclick="alert(1)">x</a>',
    '<p style="background:url(javascript:alert(1))">x</p>',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x]( javascript:alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](java&#x09;script:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](vbscript:msgbox(1))",
    '[x](http://x "a\\" onmouseover=\\"alert(1))',
    "[x]: javascript:alert(1)\n\n[x]",
    "<a href='javascript:alert(1)'>x</a>",
    "`<script>alert(1)</script>`",
    "> <img src=x onerror=alert(1)>",
    "- <b onmouseover=alert(1)>x</b>",
    "**<script>**alert(1)",
    "<!-- <script>alert(1)</script> -->",
    "<<script>script>alert(1)<</script>/script>",
]


@pytest.mark.parametrize("text", ATTACKS)
def test_known_attacks_render_inert(text: str) -> None:
    html = render_markdown(text)
    assert_safe(html)


def test_script_tag_is_shown_as_text() -> None:
    assert render_markdown("<script>alert(1)</script>") == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n"


def test_javascript_link_is_not_a_link() -> None:
    html = render_markdown("[click me](javascript:alert(1))")
    assert "<a" not in html
    assert "click me" in html


def test_links_carry_rel_noopener() -> None:
    (tag, attrs), *_ = [t for t in tags_of(render_markdown("[x](https://example.org)")) if t[0] == "a"]
    assert tag == "a"
    assert attrs["rel"] == "noopener noreferrer nofollow"


fragments = st.sampled_from(
    [
        "<",
        ">",
        "<script>",
        "</script>",
        "<img src=x onerror=alert(1)>",
        " onload=",
        "javascript:",
        "data:",
        "[",
        "](",
        ")",
        "`",
        "*",
        "_",
        "\n",
        "> ",
        "- ",
        "1. ",
        '"',
        "'",
        "&#",
        ";",
        "x",
        " ",
        "<a href=",
        "&lt;",
        "\\",
        "\t",
    ]
)
texts = st.lists(fragments | st.text(max_size=8), max_size=30).map("".join)


@PROPERTY
@given(text=texts)
def test_any_input_renders_to_safe_html(text: str) -> None:
    assert_safe(render_markdown(text))


@PROPERTY
@given(text=st.text(max_size=200))
def test_arbitrary_unicode_renders_to_safe_html(text: str) -> None:
    assert_safe(render_markdown(text))


def test_with_html_adds_the_rendered_body_and_keeps_the_raw_one() -> None:
    view = {"id": "m1", "body": "*hi* <script>"}
    shown = with_html(view)
    assert shown["body"] == "*hi* <script>"  # the raw text is kept for copy/edit (escaped by templates)
    assert shown["html"] == "<p><em>hi</em> &lt;script&gt;</p>\n"
    assert view == {"id": "m1", "body": "*hi* <script>"}  # not modified in place
