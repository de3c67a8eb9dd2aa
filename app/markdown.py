"""The one markdown renderer. Raw HTML is off: untrusted text stays text."""

from functools import lru_cache

from markdown_it import MarkdownIt
from markupsafe import Markup

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)


@lru_cache(maxsize=1024)
def _render(text: str) -> str:
    # Timeline entries are rendered on every view of the incident page and again by every
    # viewer's refresh after each change; the same text always gives the same HTML. 1,024 bodies
    # of at most 20,000 characters bound the memory (typical entries are a line or two).
    return _md.render(text)


def render_markdown(text: str) -> Markup:
    """Render markdown to HTML; any HTML in the source is escaped, unsafe link schemes dropped."""
    return Markup(_render(text))  # noqa: S704 - markdown-it escapes raw HTML (html=False)
