"""Message text to safe HTML: a Markdown subset, then an allow-list sanitiser.

markdown-it-py parses (raw HTML disabled, only emphasis, code, lists, links,
quotes and line breaks enabled); nh3 (Ammonia) then keeps only the allowed
tags and attributes and only http/https/mailto links. Either step alone
would already refuse ``<script>``; both together are the defence in depth,
with the page's Content-Security-Policy (no inline script) as a third.
"""

from __future__ import annotations

from typing import Any

import nh3
from markdown_it import MarkdownIt

_md = MarkdownIt("zero", {"html": False, "linkify": False, "breaks": True}).enable(
    ["emphasis", "backticks", "fence", "code", "list", "link", "blockquote", "newline", "escape"]
)

ALLOWED_TAGS = {"p", "em", "strong", "code", "pre", "ul", "ol", "li", "a", "blockquote", "br"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
ALLOWED_SCHEMES = {"http", "https", "mailto"}


def render_markdown(text: str) -> str:
    html = _md.render(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def with_html(view: dict[str, Any]) -> dict[str, Any]:
    """A message view with its body rendered for display (``html``)."""
    return {**view, "html": render_markdown(str(view.get("body", "")))}
