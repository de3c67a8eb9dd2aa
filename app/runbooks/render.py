"""Render a runbook: front matter, GitHub-flavoured markdown, anchors and a table of contents,
server-side highlighting, mermaid fences for the browser, and a sanitiser on the way out.

Raw HTML in a runbook passes only for a small set of harmless tags (line breaks, details,
keyboard keys...) and then through nh3; any other tag-like text (`<uid>`, `<my public IP>`,
`<script>`) is shown as text, so placeholders in commands never vanish.
"""

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date
from html import escape
from typing import Any

import nh3
import yaml
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from mdit_py_plugins.anchors import anchors_plugin
from mdit_py_plugins.gfm import gfm_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

RAW_HTML_TAGS = {
    "br",
    "details",
    "summary",
    "kbd",
    "sub",
    "sup",
    "nobr",
    "b",
    "i",
    "em",
    "strong",
    "code",
    "p",
    "div",
    "span",
    "ul",
    "ol",
    "li",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "hr",
    "img",
    "a",
    "dl",
    "dt",
    "dd",
    "mark",
    "s",
    "del",
    "ins",
    "u",
    "small",
    "pre",
    "blockquote",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "caption",
    "colgroup",
    "col",
    "input",
    "label",
}
DROPPED_TAGS = {"style", "svg"}  # decoration for another site: neither rendered nor shown
_IFRAME_SRC = re.compile(r"<iframe[^>]*\bsrc=[\"'](https://[^\"']+)[\"']", re.IGNORECASE)
OUTPUT_TAGS = RAW_HTML_TAGS | {"section", "input", "label", "figure"}
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "input": {"type", "checked", "disabled", "aria-label"},
    "th": {"colspan", "rowspan", "style"},
    "td": {"colspan", "rowspan", "style"},
    "ol": {"start"},
    "details": {"open"},
}
GENERIC_ATTRIBUTES = {"class", "id", "aria-hidden", "role"}
_TAG = re.compile(r"^\s*</?([A-Za-z][A-Za-z0-9-]*)(?=[\s/>])")
_COMMENT = re.compile(r"^\s*<!--")
_TOC_MARKER = re.compile(r"^\s*\[\[_TOC_\]\]\s*$", re.MULTILINE)
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)(?:\r?\n)(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_FORMATTER = HtmlFormatter(nowrap=True)
_ALIGN = re.compile(r"^text-align:(left|right|center)$")


@dataclass(frozen=True)
class Heading:
    level: int
    slug: str
    text: str


@dataclass
class RenderedRunbook:
    meta: dict[str, Any]
    meta_error: str | None
    title: str
    body: str
    html: str
    toc: list[Heading] = field(default_factory=list)
    has_mermaid: bool = False
    webhooks: list[str] = field(default_factory=list)


def _highlight(code: str, lang: str, _attrs: str) -> str:
    name = (lang or "").split()[0] if lang else ""
    if not name:
        return ""
    try:
        lexer = get_lexer_by_name(name, stripnl=False)
    except ClassNotFound:
        return ""
    return highlight(code, lexer, _FORMATTER)


def _raw_html(_renderer: Any, tokens: list[Token], idx: int, _options: Any, _env: Any) -> str:
    content = tokens[idx].content
    if _COMMENT.match(content):
        return ""
    match = _TAG.match(content)
    tag = match.group(1).lower() if match else ""
    if tag in DROPPED_TAGS:
        return ""
    if tag == "iframe":
        # An embedded video or page is not loaded here; a link to it is kept.
        src = _IFRAME_SRC.search(content)
        return (
            f'<p><a href="{escape(src.group(1))}">Embedded content: {escape(src.group(1))}</a></p>\n'
            if src
            else ""
        )
    if tag in RAW_HTML_TAGS:
        return content
    return (
        escape(content).replace("\n", "<br>\n")
        if tokens[idx].type == "html_inline"
        else ("<p>" + escape(content) + "</p>\n")
    )


def _task_item(renderer: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
    """A list item; a task item's checkbox is named by the item's text, as a screen reader needs."""
    html = RendererHTML.list_item_open(renderer, tokens, idx, options, env)
    text_token = tokens[idx + 2] if idx + 2 < len(tokens) else None
    if "checked" not in (tokens[idx].meta or {}) or text_token is None or text_token.type != "inline":
        return html
    name = escape(renderer.renderInlineAsText(text_token.children or [], options, env).strip())
    return html.replace("<input ", f'<input aria-label="{name}" ', 1)


def _build() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True, "highlight": _highlight})
    md.use(gfm_plugin)
    md.use(anchors_plugin, min_level=1, max_level=6)
    md.add_render_rule("html_inline", _raw_html)
    md.add_render_rule("html_block", _raw_html)
    md.add_render_rule("list_item_open", _task_item)
    default_fence = md.renderer.rules["fence"]

    def fence(_renderer: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
        info = tokens[idx].info.strip().split(maxsplit=1)
        if info and info[0] == "mermaid":
            return f'<pre class="mermaid">{escape(tokens[idx].content)}</pre>\n'
        return '<div class="code">' + default_fence(tokens, idx, options, env) + "</div>\n"

    md.add_render_rule("fence", fence)
    md.add_render_rule("table_open", lambda *_: '<div class="table-wrap"><table>\n')
    md.add_render_rule("table_close", lambda *_: "</table></div>\n")
    return md


_md = _build()


def _keep_attribute(tag: str, name: str, value: str) -> str | None:
    if name == "style":
        return value if _ALIGN.match(value.replace(" ", "")) else None
    if tag == "img" and name == "src" and not value.startswith("https://"):
        return None  # relative images point at files we do not serve; remote ones must be https
    return value


def sanitise(html: str) -> str:
    """The last word on what HTML leaves the renderer."""
    return nh3.clean(
        html,
        tags=OUTPUT_TAGS,
        attributes={**ATTRIBUTES, "*": GENERIC_ATTRIBUTES},
        attribute_filter=_keep_attribute,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        clean_content_tags={"script", "style", "iframe", "noscript", "textarea", "title"},
        strip_comments=True,
    )


def split_front_matter(text: str) -> tuple[dict[str, Any], str | None, str]:
    """(metadata, error or None, body). Only a block at the very top counts as front matter."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, None, text
    body = text[match.end() :]
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return {}, f"Front matter is not valid YAML{where}: {problem}", body
    if data is None:
        return {}, None, body
    if not isinstance(data, dict):
        return {}, "Front matter must be a mapping of keys to values", body
    return data, None, body


def _toc_and_webhooks(tokens: list[Token]) -> tuple[list[Heading], list[str], tuple[int, str] | None]:
    toc: list[Heading] = []
    webhooks: list[str] = []
    first_heading = None
    in_webhook_table = False
    header_cell = False
    column = 0
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            text = tokens[i + 1].content.strip()
            if token.tag == "h1" and not (first_heading and first_heading[0] == 1):
                first_heading = (1, text)
            first_heading = first_heading or (int(token.tag[1]), text)
            toc.append(Heading(int(token.tag[1]), token.attrGet("id") or "", text))
        elif token.type == "thead_open":
            header_cell = True
            column = 0
        elif token.type == "thead_close":
            header_cell = False
        elif token.type in ("th_open", "td_open"):
            column += 1
        elif token.type == "tr_open":
            column = 0
        elif token.type == "table_close":
            in_webhook_table = False
        elif token.type == "inline" and column == 1:
            if header_cell:
                in_webhook_table = token.content.strip().lower() in ("webhook", "webhooks", "action")
            elif in_webhook_table:
                codes = [c.content for c in token.children or [] if c.type == "code_inline"]
                webhooks.extend(c for c in codes if re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", c))
    return toc, webhooks, first_heading


def _clean_meta(meta: dict[str, Any]) -> dict[str, Any]:
    def as_list(value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        return [str(value)]

    updated = meta.get("updated")
    if isinstance(updated, str):
        try:
            updated = date.fromisoformat(updated)
        except ValueError:
            updated = None
    return {
        "id": str(meta["id"]).strip() if meta.get("id") else None,
        "title": str(meta["title"]).strip() if meta.get("title") else None,
        "tags": as_list(meta.get("tags")),
        "owner": str(meta.get("owner") or "").strip(),
        "updated": updated if isinstance(updated, date) else None,
        "services": [s.lower() for s in as_list(meta.get("services"))],
        "severity": str(meta["severity"]).strip().upper() if meta.get("severity") else None,
        "actions": as_list(meta.get("actions")),
    }


def render_runbook(text: str, *, fallback_title: str = "Untitled runbook") -> RenderedRunbook:
    """Render a runbook's text; never raises for bad content (errors are reported instead)."""
    raw_meta, meta_error, body = split_front_matter(text)
    meta = _clean_meta(raw_meta)
    source = _TOC_MARKER.sub("", body)
    env: dict[str, Any] = {}
    tokens = _md.parse(source, env)
    html = sanitise(_md.renderer.render(tokens, _md.options, env))
    toc, webhooks, first_heading = _toc_and_webhooks(tokens)
    return RenderedRunbook(
        meta=meta,
        meta_error=meta_error,
        title=meta["title"] or (first_heading[1] if first_heading else fallback_title),
        body=body,
        html=html,
        toc=toc,
        has_mermaid='<pre class="mermaid">' in html,
        webhooks=list(dict.fromkeys(webhooks)),
    )


# The stored HTML is kept while a file's hash is unchanged; the hash covers this number too, so
# raising it when the renderer's output changes re-renders every runbook on the next sync.
RENDERER_VERSION = 2  # 2: task-list checkboxes are named by their item's text


def content_hash(text: str) -> str:
    return hashlib.sha256(f"{RENDERER_VERSION}\n{text}".encode()).hexdigest()
