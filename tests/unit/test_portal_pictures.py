"""The portal's server-drawn pictures and its date formats: pure functions, no browser."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime

import numpy as np

from ringback.api.portal.charts import Bar, _nice_ceiling, plays_chart, waveform_svg
from ringback.api.portal.i18n import Translator


def test_waveform_is_valid_svg_with_its_title_escaped() -> None:
    pcm = (np.sin(np.arange(8000) / 5) * 20000).astype("<i2").tobytes()
    svg = waveform_svg(pcm, 'a <b> & "c"')
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg") and root.get("role") == "img"
    assert root.find("{http://www.w3.org/2000/svg}title").text == 'a <b> & "c"'  # type: ignore[union-attr]
    assert ET.fromstring(waveform_svg(b"", "empty")) is not None


def test_chart_draws_one_stack_per_day_and_round_axis() -> None:
    bars = [Bar(f"{d}日", d, d % 2) for d in range(1, 8)]
    root = ET.fromstring(plays_chart(bars, title="t", completed_label="c", cancelled_label="x"))
    ns = "{http://www.w3.org/2000/svg}"
    rects = [r for r in root.iter(f"{ns}rect") if r.find(f"{ns}title") is not None]
    assert len(rects) == 7 + 4  # completed every day, cancelled on odd days (1, 3, 5, 7)
    assert [_nice_ceiling(v) for v in (0, 4, 5, 9, 13, 99)] == [4, 4, 8, 12, 20, 120]


def test_dates_in_the_portals_time_zone_and_language() -> None:
    moment = datetime(2026, 6, 1, 16, 30, tzinfo=UTC)  # 00:30 next day in Shanghai
    zh, en = Translator("zh", "Asia/Shanghai"), Translator("en", "Asia/Shanghai")
    assert zh.datetime(moment) == "2026年6月2日 00:30"
    assert en.datetime(moment) == "2 Jun 2026 00:30"
    assert zh.date(date(2026, 6, 2)) == "2026年6月2日"
    assert zh("recordings.seconds", seconds=9.46) == "9.5 秒"
