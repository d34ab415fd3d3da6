"""Item text: cleaning raw metadata strings and composing the configured fields into one text."""

from __future__ import annotations

import html
import re
from typing import Any, Iterable

_TAG = re.compile(r"<[^>]{0,500}>")
FIELD_SEP = " | "


def clean_text(value: Any, sep: str = ", ") -> str:
    """Unescape HTML entities (twice: Amazon has `&amp;amp;`), strip tags, normalise whitespace.

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
    if "&" in text:  # most strings have no entity: skip the unescape work
        for _ in range(2):
            unescaped = html.unescape(text)
            if unescaped == text:
                break
            text = unescaped
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "\ufffd" in text:
        text = text.replace("\ufffd", " ")
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
