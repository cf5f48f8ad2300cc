"""The portal's languages: a message catalogue per language (`messages/<lang>.json`, the
same keys in each) and the formats of dates and numbers.

Every string a page shows comes from the catalogue by key; a key missing from a language
is an error (a page never falls back to another language), and a test checks that both
catalogues have the same keys and the same placeholders.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

LANGUAGES = ("zh", "en")
HTML_LANG = {"zh": "zh-CN", "en": "en"}


@functools.cache
def catalogue(lang: str) -> dict[str, str]:
    """The messages of `lang` (key -> text with {named} placeholders)."""
    text = resources.files("ringback.api.portal").joinpath(f"messages/{lang}.json")
    messages: dict[str, str] = json.loads(text.read_text(encoding="utf-8"))
    return messages


class Translator:
    """`t(key, **params)`: the message in this language, placeholders filled in."""

    def __init__(self, lang: str, timezone: str) -> None:
        if lang not in LANGUAGES:
            raise ValueError(f"unknown language {lang!r}")
        self.lang = lang
        self.html_lang = HTML_LANG[lang]
        self.tz = ZoneInfo(timezone)
        self._messages = catalogue(lang)

    def __call__(self, key: str, **params: Any) -> str:
        text = self._messages[key]
        return text.format(**params) if params else text

    def has(self, key: str) -> bool:
        return key in self._messages

    def local(self, value: dt.datetime) -> dt.datetime:
        return value.astimezone(self.tz)

    def datetime(self, value: dt.datetime | None) -> str:
        """A time, in the portal's time zone, as people of this language write it."""
        if value is None:
            return ""
        v = self.local(value)
        if self.lang == "zh":
            return f"{v.year}年{v.month}月{v.day}日 {v:%H:%M}"
        return f"{v.day} {v:%b} {v.year} {v:%H:%M}"

    def date(self, value: dt.date | dt.datetime | None) -> str:
        if value is None:
            return ""
        v = self.local(value) if isinstance(value, dt.datetime) else value
        if self.lang == "zh":
            return f"{v.year}年{v.month}月{v.day}日"
        return f"{v.day} {v:%b} {v.year}"

    def short_date(self, value: dt.date) -> str:
        """A day on a chart's axis."""
        return f"{value.month}月{value.day}日" if self.lang == "zh" else f"{value.day} {value:%b}"

    def number(self, value: float, digits: int = 0) -> str:
        return f"{value:,.{digits}f}"
