"""The one markdown renderer. Raw HTML is off: untrusted text stays text."""

from markdown_it import MarkdownIt
from markupsafe import Markup

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)


def render_markdown(text: str) -> Markup:
    """Render markdown to HTML; any HTML in the source is escaped, unsafe link schemes dropped."""
    return Markup(_md.render(text))  # noqa: S704 - markdown-it escapes raw HTML (html=False)
