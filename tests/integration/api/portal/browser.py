"""Headless Chromium (the system's `chromium`, driven by Playwright) for the portal tests:
a browser per test, screenshots of every page at desktop and phone width, axe-core checks,
and a check that Chinese pages show no English UI string."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ringback.api.portal.i18n import catalogue

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
AXE = Path(__file__).with_name("axe") / "axe.min.js"

_shots: Path | None = None


def screenshot_dir() -> Path:
    """RINGBACK_SCREENSHOTS, or one temporary folder for the whole run."""
    global _shots
    if _shots is None:
        wanted = os.environ.get("RINGBACK_SCREENSHOTS")
        _shots = Path(wanted) if wanted else Path(tempfile.mkdtemp(prefix="ringback-shots-"))
        _shots.mkdir(parents=True, exist_ok=True)
    return _shots


def require_tools() -> None:
    """A missing tool fails the test naming the package that brings it (never a skip)."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        raise AssertionError("headless Chromium is missing: apt-get install chromium")
    try:
        import playwright  # noqa: F401
    except ImportError:
        raise AssertionError("Playwright is missing: pip install playwright") from None


@asynccontextmanager
async def browser() -> AsyncIterator[Any]:
    require_tools()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


async def new_page(b: Any, base: str, lang: str = "zh", phone: bool = False) -> Any:
    context = await b.new_context(
        viewport=PHONE if phone else DESKTOP,
        base_url=base,
        locale="zh-CN" if lang == "zh" else "en-US",
        timezone_id="Asia/Shanghai",
    )
    if lang != "zh":
        host = base.split("//", 1)[1].split(":")[0]
        await context.add_cookies(
            [{"name": "ringback_lang", "value": lang, "domain": host, "path": "/"}]
        )
    page = await context.new_page()
    page.set_default_timeout(15_000)
    return page


async def sign_in(page: Any, token: str) -> None:
    await page.goto("/portal/signin")
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()


async def shoot(page: Any, name: str) -> None:
    """A full-page screenshot at this page's width and at the other width."""
    folder = screenshot_dir()
    size = page.viewport_size
    kind = "phone" if size["width"] < 600 else "desktop"
    await page.screenshot(path=str(folder / f"{name}-{kind}.png"), full_page=True)
    other = PHONE if kind == "desktop" else DESKTOP
    await page.set_viewport_size(other)
    other_kind = "phone" if kind == "desktop" else "desktop"
    await page.screenshot(path=str(folder / f"{name}-{other_kind}.png"), full_page=True)
    await page.set_viewport_size(size)


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        # add_script_tag would be refused by the page's CSP; evaluate runs outside it.
        await page.evaluate(AXE.read_text(encoding="utf-8"))
    result = await page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})); }"
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


def english_ui_strings() -> list[str]:
    """English catalogue texts that a Chinese page must never show: those that differ from
    their Chinese text, have no placeholder, and have a word of Latin letters."""
    en, zh = catalogue("en"), catalogue("zh")
    out = []
    for key, text in en.items():
        if text == zh[key] or "{" in text or not re.search(r"[A-Za-z]{3,}", text):
            continue
        out.append(text)
    return out


async def page_text(page: Any) -> str:
    """What a person (or a screen reader) gets from the page: visible text, the title,
    and the accessible names given by attributes."""
    text: str = await page.evaluate(
        "() => [document.title, document.body.innerText].concat("
        "Array.from(document.querySelectorAll('[aria-label],[alt],[title],[placeholder]'))"
        ".map(e => [e.getAttribute('aria-label'), e.getAttribute('alt'),"
        " e.getAttribute('title'), e.getAttribute('placeholder')].filter(Boolean).join(' ')))"
        ".join('\\n')"
    )
    return text


def untranslated(text: str) -> list[str]:
    return [
        s
        for s in english_ui_strings()
        if re.search(rf"(?<![A-Za-z]){re.escape(s)}(?![A-Za-z])", text)
    ]


def describe(violations: list[dict[str, Any]]) -> str:
    return json.dumps(violations, ensure_ascii=False, indent=1)
