"""Item text: cleaning raw metadata strings and composing the configured fields into one text."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from typing import Any, Iterable

FIELD_SEP = " | "
_ENTITY = re.compile(r"&(#\d+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]{1,31});")
_MARKUP = re.compile(r"<[A-Za-z/!?]")  # what html.parser would take as a tag, comment or decl
# Terminal escape sequences (CSI like ESC[31m, OSC like ESC]0;title BEL) first, then any
# other C0/C1 control character: titles must not recolour or retitle a user's terminal.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
                      r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_control(text: str) -> str:
    """`text` with terminal escape sequences and control characters replaced by spaces."""
    return _CONTROL.sub(" ", text)


class _Text(HTMLParser):
    """Text content of an HTML fragment: tags become spaces, script/style bodies are dropped,
    entities decoded once (convert_charrefs); a lone `<` or `>` in prose stays text."""

    _SKIP = {"script", "style", "template", "noscript"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self._SKIP:
            self._skip += 1
        self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skip:
            self._skip -= 1
        self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(text: str) -> str:
    """Visible text of `text` by a real HTML parser (stdlib html.parser)."""
    parser = _Text()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def clean_text(value: Any, sep: str = ", ") -> str:
    """Visible text of an HTML-ish metadata string, whitespace normalised.

    Markup goes through a real HTML parser (script/style dropped, entities decoded, text
    between tags kept, a `<` in prose kept); entities left over from double escaping (Amazon
    has `&amp;amp;`) are decoded once more, as text. Control characters become spaces.
    Lists (Amazon descriptions, categories) are flattened and joined with `sep`, duplicates
    dropped in first-seen order; None gives "".
    """
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        parts: list[str] = []
        for v in _flatten(value):
            c = clean_text(v)
            if c and c not in parts:
                parts.append(c)
        return sep.join(parts)
    text = str(value)
    if _MARKUP.search(text):
        text = html_to_text(text)
    elif "&" in text:  # most strings have no entity: skip the unescape work
        text = html.unescape(text)
    if "&" in text and _ENTITY.search(text):  # `&amp;amp;` -> `&amp;` -> `&`, never re-parsed as tags
        text = html.unescape(text)
    if "\ufffd" in text:
        text = text.replace("\ufffd", " ")
    text = strip_control(text)
    # str.split() also splits on NBSP and other Unicode whitespace
    return " ".join(text.split())


def _flatten(values: Iterable[Any]) -> Iterable[Any]:
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _flatten(v)
        else:
            yield v


def cap_text(text: str, max_chars: int) -> str:
    """Cut at the last word boundary before `max_chars` (hard cut if there is none)."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return (cut[:space] if space > max_chars // 2 else cut).rstrip(" ,;|")


def compose_text(fields: dict[str, str], order: list[str], max_chars: int) -> str:
    """Join the non-empty cleaned `fields` named in `order` with " | ", capped to `max_chars`."""
    parts = [fields.get(name, "") for name in order]
    return cap_text(FIELD_SEP.join(p for p in parts if p), max_chars)
