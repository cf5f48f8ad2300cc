"""The portal end to end in headless Chromium against a real service on loopback: what a
court clerk does, in the order they do it, plus what must be refused."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from browser import axe_violations, browser, describe, new_page, shoot, sign_in
from court_api_support import Api, caught_up, listing

from ringback.server import Service

NUMBER = "13800138000"
CASE = "(2026)京0105执123号"


def make_mp3(
    folder: Path, text: str = "本号码机主因拒不履行法院判决，已被列入失信被执行人名单。"
) -> Path:
    """A real MP3 of speech: espeak-ng speaks, ffmpeg encodes."""
    for tool, package in (("espeak-ng", "espeak-ng"), ("ffmpeg", "ffmpeg")):
        if shutil.which(tool) is None:
            raise AssertionError(f"{tool} is missing: apt-get install {package}")
    wav, mp3 = folder / "speech.wav", folder / "warning.mp3"
    subprocess.run(["espeak-ng", "-v", "cmn", "-w", str(wav), text], check=True)
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(wav),
            "-codec:a",
            "libmp3lame",
            "-b:a",
            "64k",
            str(mp3),
        ],
        check=True,
    )
    return mp3


def make_blip(folder: Path) -> Path:
    """A 0.2 s tone: too short to be a warning, so the server refuses it."""
    path = folder / "blip.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=0.2",
            str(path),
        ],
        check=True,
    )
    return path


async def test_clerk_journey(service: Service, api: Api, operator: str, tmp_path: Path) -> None:
    court = await api.court(operator, "北京市东城区人民法院")
    token, court_id = court["token"], court["court"]["id"]
    mp3 = make_mp3(tmp_path)
    async with browser() as b:
        page = await new_page(b, api.base)
        await sign_in(page, token)
        assert page.url.endswith("/portal/listings"), page.url
        cookies = {c["name"]: c for c in await page.context.cookies()}
        session = cookies["ringback_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict" and session["expires"] > 0

        # Upload a real MP3 with the progress bar, then play what callers will hear.
        await page.goto("/portal/recordings")
        await page.fill("#rec-name", "失信提示")
        await page.set_input_files("#rec-file", str(mp3))
        async with page.expect_navigation():
            await page.click("form[data-upload] button[type=submit]")
        assert "done=uploaded" in page.url
        rows = await service.store.recordings.page(
            0, 10, court_id=uuid.UUID(court_id), with_shipped=False
        )
        assert len(rows) == 1
        rid = rows[0]["id"]
        card = page.locator(f"#recording-{rid}")
        assert "失信提示" in await card.inner_text()
        responses: list[Any] = []
        page.on("response", lambda r: responses.append(r) if "audio.wav" in r.url else None)
        duration = await page.evaluate(
            """async (id) => {
                const a = document.querySelector(`#recording-${id} audio`);
                a.load();
                await new Promise((ok, ko) => { a.onloadedmetadata = ok; a.onerror = ko; });
                await a.play();
                await new Promise(ok => setTimeout(ok, 300));
                return [a.duration, a.currentTime];
            }""",
            rid,
        )
        assert abs(duration[0] - rows[0]["duration_ms"] / 1000) < 0.1, duration
        assert duration[1] > 0, "the preview did not play"
        wav = [r for r in responses if f"/recordings/{rid}/audio.wav" in r.url]
        assert wav and wav[0].headers["content-type"] == "audio/wav"
        assert "LUFS" in await card.locator(".loudness").inner_text()
        assert "秒" in await card.locator(".duration").inner_text()
        # Make it the court's default.
        async with page.expect_navigation():
            await card.locator("button", has_text="设为本法院默认录音").click()
        court_row = await service.store.courts.get(uuid.UUID(court_id))
        assert court_row is not None and court_row["default_recording_id"] == rid
        await shoot(page, "recordings")

        # List a number, starting today (inside the notice period: the reason is needed).
        await page.goto("/portal/listings/new")
        await page.fill("#number", NUMBER)
        await page.fill("#case_ref", CASE)
        expires = time.strftime("%Y-%m-%d", time.localtime(time.time() + 90 * 86400))
        today = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 8 * 3600))
        await page.fill("#expires_on", expires)
        await page.fill("#starts_on", today)
        async with page.expect_navigation():
            await page.click("form.card button[type=submit]")
        assert "提前开始的理由" in await page.inner_text("#reason-error")  # refused, explained
        await shoot(page, "listing-new-error")
        await page.fill("#reason", "被执行人已于判决当日当庭收到通知")
        async with page.expect_navigation():
            await page.click("form.card button[type=submit]")
        assert "done=listed" in page.url
        assert await page.inner_text("#listing-status") == "生效中"
        listing_url = page.url.split("?")[0]

        # Find it in the table, by number and by case reference.
        await page.goto("/portal/listings")
        await page.fill("#q", "+86 138 0013 8000")
        async with page.expect_navigation():
            await page.click("form.search button[type=submit]")
        table = await page.inner_text("table")
        assert "+8613800138000" in table and CASE in table and "生效中" in table
        await page.fill("#q", CASE)
        async with page.expect_navigation():
            await page.click("form.search button[type=submit]")
        assert "+8613800138000" in await page.inner_text("table")
        await shoot(page, "listings")

        # The payment system says the debt is paid: the listing is cleared at once.
        paid = await api.hook(
            court["webhook_secret"],
            {
                "court_id": court_id,
                "case_ref": CASE,
                "payment_id": "PAY-2026-0001",
                "paid_at": "2026-06-01T10:00:00+08:00",
                "amount": "1000.00",
                "currency": "CNY",
            },
        )
        assert paid.status == 200, paid.body
        await page.goto(listing_url)
        assert await page.inner_text("#listing-status") == "已解除"
        trail = await page.inner_text(".trail")
        assert "添加到名单" in trail and "解除" in trail
        assert "被执行人已于判决当日当庭收到通知" in trail  # why it started early
        assert "支付系统（付款编号 PAY-2026-0001）" in trail  # who cleared it
        assert "付款 PAY-2026-0001 已确认" in trail  # and why
        await shoot(page, "listing-cleared")
        assert await caught_up(service)

        # The same page in English, with the same facts.
        await page.goto(f"/portal/language/en?next={listing_url.split(api.base)[1]}")
        assert await page.inner_text("#listing-status") == "Cleared"
        trail = await page.inner_text(".trail")
        assert "Listed" in trail and "Cleared" in trail and "the payment system" in trail
        assert "payment PAY-2026-0001 confirmed" in trail
        violations = await axe_violations(page)
        assert not violations, describe(violations)


async def test_refused_upload_shows_the_servers_message(
    service: Service, api: Api, operator: str, tmp_path: Path
) -> None:
    court = await api.court(operator, "上海市浦东新区人民法院")
    blip = make_blip(tmp_path)
    # What the API says about this file...
    form = aiohttp.FormData()
    form.add_field("file", blip.read_bytes(), filename="blip.wav", content_type="audio/wav")
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{api.base}/v1/recordings",
            data=form,
            headers={"Authorization": f"Bearer {court['token']}"},
        ) as r,
    ):
        assert r.status == 422
        message = (await r.json())["error"]["message"]
    async with browser() as b:
        for lang, expected in (("en", message), ("zh", "有声部分仅")):
            page = await new_page(b, api.base, lang)
            await sign_in(page, court["token"])
            await page.goto("/portal/recordings")
            await page.set_input_files("#rec-file", str(blip))
            await page.click("form[data-upload] button[type=submit]")
            error = page.locator("#upload-error")
            await error.wait_for(state="visible")
            assert expected in await error.inner_text()
            # ...and without JavaScript's help: the form posts and the page says it too.
            await page.evaluate(
                "document.querySelector('form[data-upload]').removeAttribute('data-upload')"
            )
            await page.set_input_files("#rec-file", str(blip))
            async with page.expect_navigation():
                await page.evaluate("document.querySelector('form[enctype]').submit()")
            assert expected in await page.inner_text("#upload-error")
            await shoot(page, f"recordings-refused-{lang}")
            await page.context.close()


async def test_another_courts_listing_and_forms_without_csrf_are_refused(
    service: Service, api: Api, operator: str
) -> None:
    a = await api.court(operator, "甲法院")
    b_court = await api.court(operator, "乙法院")
    theirs = await api.put(
        "/v1/listings/+8613900139000", b_court["token"], listing("(2026)乙执9号")
    )
    assert theirs.status == 201
    ours = await api.put("/v1/listings/+8613700137000", a["token"], listing("(2026)甲执1号"))
    async with browser() as b:
        page = await new_page(b, api.base)
        await sign_in(page, a["token"])
        response = await page.goto(f"/portal/listings/{theirs.body['id']}")
        assert response.status == 404
        assert "属于其他法院" in await page.inner_text("main")
        await shoot(page, "not-found")
        for path in (f"/portal/listings/{theirs.body['id']}/clear",):
            # Posting to another court's listing: the same 404, and nothing changed.
            status = await page.evaluate(
                """async ([path, csrf]) => (await fetch(path, {method: 'POST',
                    headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                    body: 'reason=x&csrf=' + csrf})).status""",
                [path, await page.get_attribute("input[name=csrf]", "value")],
            )
            assert status == 404
        # A form posted without its CSRF token is refused.
        await page.goto(f"/portal/listings/{ours.body['id']}")
        await page.evaluate(
            "document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())"
        )
        await page.fill("#clear-reason", "已缴清")
        async with page.expect_navigation():
            await page.click("form[action$='/clear'] button[type=submit]")
        assert "安全令牌" in await page.inner_text("main")
        rows = await service.store.listings.of_number(8613700137000, None)
        assert rows[0]["status"] == "active"
        theirs_now = await service.store.listings.of_number(8613900139000, None)
        assert theirs_now[0]["status"] == "active"
        await shoot(page, "csrf-refused")
    await asyncio.sleep(0)
