"""Every portal page in both languages, in headless Chromium: no untranslated string, no
serious or critical axe-core violation at desktop and phone width, a screenshot of each;
and the bulk import with its progress bar and line-precise errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from browser import (
    DESKTOP,
    PHONE,
    axe_violations,
    browser,
    describe,
    new_page,
    page_text,
    shoot,
    sign_in,
    untranslated,
)
from court_api_support import SETUP, Api, days, listing

from ringback.api.portal.i18n import catalogue
from ringback.server import Service


def tone(seconds: float = 2.0) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    pcm: bytes = (
        (np.sin(2 * np.pi * 440 * t) * 8000 * (1 + np.sin(2 * np.pi * 3 * t)) / 2)
        .astype("<i2")
        .tobytes()
    )
    return pcm


def chinese_ui_strings() -> list[str]:
    en, zh = catalogue("en"), catalogue("zh")
    return [
        text
        for key, text in zh.items()
        # Two-character words (法院) also occur in data such as court names.
        if text != en[key] and "{" not in text and len(text) >= 3 and key != "nav.other_language"
    ]


async def seed(service: Service, api: Api, operator: str) -> dict[str, Any]:
    """A court with something on every page: listings in each state, a recording, a done
    and a refused import, plays over the last days; a failed event delivery."""
    court = await api.court(operator, "北京市东城区人民法院")
    token, court_id = court["token"], uuid.UUID(court["court"]["id"])
    ids = {}
    for i, status in enumerate(("active", "suspended", "cleared")):
        r = await api.put(f"/v1/listings/+861380013800{i}", token, listing(f"(2026)京0105执{i}号"))
        assert r.status == 201, r.body
        ids[status] = r.body["id"]
        if status != "active":
            action = "suspend" if status == "suspended" else "clear"
            r = await api.post(
                f"/v1/listings/+861380013800{i}/{action}", token, {"reason": "上诉中"}
            )
            assert r.status == 200, r.body
    await api.put(
        "/v1/listings/+8613800138009",
        token,
        {"case_ref": "(2026)京0105执9号", "expires_at": days(60)},
    )
    rec = await service.store.recordings.add(
        court_id,
        "法院提示",
        tone(),
        SETUP,
        original={"filename": "提示.wav", "format": "wav"},
        loudness_lufs=-19.0,
    )
    good = f"number,case_ref,expires_at\n+8613900139001,(2026)京0105执77号,{days(30)}\n"
    r = await api.call(
        "POST",
        "/v1/imports",
        token,
        headers={"Content-Type": "text/csv"},
        data=good.encode(),
        params={"filename": "名单.csv"},
    )
    assert r.status == 201, r.body
    bad = good + "+8613900139002,(2026)京0105执78号,明天\n"
    r = await api.call(
        "POST",
        "/v1/imports",
        token,
        headers={"Content-Type": "text/csv"},
        data=bad.encode(),
        params={"filename": "有误.csv"},
    )
    assert r.status == 422 and r.body["error"]["line"] == 3, r.body
    bad_job = r.body["error"]["import_id"]
    now = datetime.now(UTC)
    plays = [
        (ids["active"], court_id, now - timedelta(days=d, minutes=m), outcome)
        for d in range(6)
        for m, outcome in enumerate(["completed"] * (d + 2) + ["cancelled"] * (d % 3))
    ]
    await service.pool.executemany(
        "INSERT INTO announcements (listing_id, court_id, node, codec, started_at, finished_at,"
        " outcome) VALUES ($1, $2, 'test', 'PCMU', $3::timestamptz,"
        " $3::timestamptz + interval '9 seconds', $4)",
        plays,
    )
    await service.store.events.subscribe("http://127.0.0.1:9/hook", "s" * 20, None, "测试", SETUP)
    await api.put("/v1/listings/+8613800138010", token, listing("(2026)京0105执10号"))
    await service.pool.execute(
        "UPDATE event_deliveries SET status = 'failed', attempts = 12, last_status = 502,"
        " last_error = 'connection refused', last_attempt_at = now()"
    )
    return {"court": court, "ids": ids, "recording": rec["id"], "bad_job": bad_job}


async def check_page(page: Any, lang: str, name: str, problems: list[str]) -> None:
    text = await page_text(page)
    if lang == "zh":
        leftovers = untranslated(text)
        if leftovers:
            problems.append(f"{name} (zh) shows English UI text: {leftovers}")
    else:
        leftovers = [s for s in chinese_ui_strings() if s in text]
        if leftovers:
            problems.append(f"{name} (en) shows Chinese UI text: {leftovers}")
    for size in (DESKTOP, PHONE):
        await page.set_viewport_size(size)
        violations = await axe_violations(page)
        if violations:
            problems.append(f"{name} ({lang}, {size['width']}px): {describe(violations)}")
    await page.set_viewport_size(DESKTOP)
    await shoot(page, f"{name}-{lang}")


async def test_every_page_in_both_languages(service: Service, api: Api, operator: str) -> None:
    data = await seed(service, api, operator)
    ids = data["ids"]
    court_pages = [
        ("listings", "/portal/listings", 200),
        ("listings-search", "/portal/listings?q=%2B8613800138001&status=suspended", 200),
        ("listings-bad-search", "/portal/listings?q=123", 200),
        ("listing-new", "/portal/listings/new", 200),
        ("listing-active", f"/portal/listings/{ids['active']}", 200),
        ("listing-suspended", f"/portal/listings/{ids['suspended']}", 200),
        ("listing-cleared", f"/portal/listings/{ids['cleared']}", 200),
        ("recordings", "/portal/recordings", 200),
        ("imports", "/portal/imports", 200),
        ("import-refused", f"/portal/imports/{data['bad_job']}", 200),
        ("stats", "/portal/stats", 200),
        ("not-found", "/portal/listings/999999", 404),
    ]
    problems: list[str] = []
    async with browser() as b:
        for lang in ("zh", "en"):
            page = await new_page(b, api.base, lang)
            response = await page.goto("/portal/signin")
            assert response.status == 200
            await check_page(page, lang, "signin", problems)
            await sign_in(page, data["court"]["token"])
            for name, path, status in court_pages:
                response = await page.goto(path)
                assert response.status == status, (path, response.status)
                await check_page(page, lang, name, problems)
            html_lang = await page.get_attribute("html", "lang")
            assert html_lang == ("zh-CN" if lang == "zh" else "en")
            # The same, refused: a listing form with errors, explained on the page.
            await page.goto("/portal/listings/new")
            await page.fill("#number", "12")
            await page.click("form.card button[type=submit]")
            await page.wait_for_load_state()
            await check_page(page, lang, "listing-new-errors", problems)
            await page.context.close()

            page = await new_page(b, api.base, lang)
            await sign_in(page, operator)
            assert page.url.endswith("/portal/operator")
            text = await page.inner_text("main")
            assert "北京市东城区人民法院" in text and "connection refused" in text
            await check_page(page, lang, "operator", problems)
            response = await page.goto("/portal/listings")
            assert response.status == 404  # court pages are not an operator's
            await page.context.close()
    assert not problems, "\n".join(problems)


async def test_csv_import_with_progress_and_line_errors(
    service: Service, api: Api, operator: str, tmp_path: Path
) -> None:
    court = await api.court(operator, "广州市天河区人民法院")
    expires = days(100)
    rows = [f"+86139{i:08d},(2026)粤0106执{i}号,{expires}" for i in range(3000)]
    good = tmp_path / "名单.csv"
    good.write_text("number,case_ref,expires_at\n" + "\n".join(rows) + "\n", encoding="utf-8")
    bad = tmp_path / "有误.csv"
    bad_rows = [*rows[:5], "+8613900000001,(2026)粤0106执1号,2020-01-01T00:00:00+08:00"]
    bad.write_text("number,case_ref,expires_at\n" + "\n".join(bad_rows) + "\n", encoding="utf-8")
    async with browser() as b:
        page = await new_page(b, api.base)
        await sign_in(page, court["token"])
        await page.goto("/portal/imports")
        await page.set_input_files("#import-file", str(good))
        async with page.expect_navigation():
            await page.click("form[data-upload] button[type=submit]")
        assert "/portal/imports/" in page.url
        assert "新增 3000 个" in await page.inner_text("main")
        assert await page.get_attribute("#job-progress", "value") == "100"
        await shoot(page, "import-done")
        await page.goto("/portal/imports")
        await page.set_input_files("#import-file", str(bad))
        async with page.expect_navigation():
            await page.click("form[data-upload] button[type=submit]")
        error = await page.inner_text("#job-error")
        assert "第 7 行" in error and "截止时间" in error, error
        await shoot(page, "import-refused")
    listed = await service.pool.fetchval("SELECT count(*) FROM listings")
    assert listed == 3000  # the refused file changed nothing
