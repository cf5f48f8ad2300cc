"""Recordings: upload (with the API's limits and audio preparation), listen to exactly
what callers hear (the prepared 8 kHz audio as WAV), see duration, loudness and the
waveform, and choose the court's default recording."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from ringback.api.common import form_parts
from ringback.api.errors import ApiError
from ringback.api.portal.charts import waveform_svg
from ringback.api.portal.core import (
    PREFIX,
    PortalError,
    check_csrf,
    ctx_of,
    form,
    redirect,
    render,
    require,
    visit,
    wants_json,
)
from ringback.api.portal.i18n import Translator
from ringback.api.recordings import (
    DECODES,
    _clean_name,
    _limits,
    _read_field,
    _spool,
)
from ringback.media.encode import EncodeError
from ringback.media.ingest import IngestError, prepare
from ringback.media.preview import PREVIEW_CODECS, preview_wav
from ringback.media.shipped import default_warning_8k

# what the recordings page offers to hear each recording as (codec query value, label)
PREVIEW_LINKS = (
    ("pcma", "G.711"),
    ("g722", "G.722"),
    ("opus", "Opus"),
    ("amr", "AMR"),
    ("amr-wb", "AMR-WB"),
)
DONE = {"uploaded": "recordings.done.uploaded", "default": "recordings.done.default"}


def _court(request: web.Request) -> uuid.UUID:
    court_id = require(request, "court").principal.court_id
    assert court_id is not None
    return court_id


def recording_view(t: Translator, row: Any, default_id: int | None) -> dict[str, Any]:
    lufs = row["loudness_lufs"]
    return {
        "id": row["id"],
        "name": row["name"],
        "own": row["court_id"] is not None,
        "duration": t("recordings.seconds", seconds=row["duration_ms"] / 1000),
        "loudness": t("recordings.lufs", lufs=lufs)
        if lufs is not None
        else t("recordings.unknown"),
        "original": row["original_filename"] or "",
        "format": row["original_format"] or "",
        "created_at": t.datetime(row["created_at"]),
        "is_default": row["id"] == default_id,
    }


async def index(
    request: web.Request, *, error: str | None = None, status: int = 200
) -> web.Response:
    court_id = _court(request)
    ctx, t = ctx_of(request), visit(request).t
    court = await ctx.courts.get(court_id)
    default_id = court["default_recording_id"] if court is not None else None
    rows = await ctx.recordings.page(0, 500, court_id=court_id, with_shipped=True)
    builtin_ms = len(default_warning_8k()) // 16
    return render(
        request,
        "recordings.html",
        http_status=status,
        recordings=[recording_view(t, r, default_id) for r in rows],
        builtin_duration=t("recordings.seconds", seconds=builtin_ms / 1000),
        builtin_is_default=default_id is None,
        preview_codecs=PREVIEW_LINKS,
        max_mb=f"{ctx.recording_rules.max_bytes / 1024 / 1024:g}",
        max_seconds=f"{ctx.recording_rules.max_duration_s:g}",
        error=error,
        done=DONE.get(request.query.get("done", "")),
    )


def ingest_message(t: Translator, exc: IngestError) -> str:
    key = f"ingest.{exc.rule}"
    if not t.has(key):
        key = f"ingest.{exc.code}" if t.has(f"ingest.{exc.code}") else "ingest.other"
    params = dict(exc.params)
    if "fraction" in params:
        params["percent"] = round(params.pop("fraction") * 100)
    return t(key, **params)


async def upload(request: web.Request) -> web.StreamResponse:
    """multipart/form-data: csrf (or the X-CSRF-Token header) first, then name and file."""
    court_id = _court(request)
    session = require(request, "court")
    ctx, t = ctx_of(request), visit(request).t
    limit = ctx.recording_rules.max_bytes
    header_csrf = request.headers.get("X-CSRF-Token")
    if header_csrf is not None:
        check_csrf(request, header_csrf)
    if not request.content_type.startswith("multipart/"):
        raise PortalError(400, "upload.no_file")
    try:
        if request.content_length is not None and request.content_length > limit + (1 << 16):
            raise PortalError(413, "upload.too_large", megabytes=f"{limit / 1024 / 1024:g}")
        fields: dict[str, str] = {}
        filename = None
        size, sha = 0, b""
        fd, tmp = tempfile.mkstemp(prefix="ringback-portal-upload-")
        os.close(fd)
        path = Path(tmp)
        try:
            async for part in form_parts(request):
                if part.name == "csrf":
                    check_csrf(request, await _read_field(part))
                    fields["csrf"] = "ok"
                elif part.name == "file":
                    if "csrf" not in fields and header_csrf is None:
                        raise PortalError(403, "error.csrf")  # the token must come first
                    if filename is not None or not part.filename:
                        await part.release()
                        continue
                    filename = _clean_name(part.filename)
                    size, sha = await _spool(part, path, limit)
                elif part.name == "name":
                    fields["name"] = await _read_field(part)
                else:
                    await part.release()
            if "csrf" not in fields and header_csrf is None:
                raise PortalError(403, "error.csrf")
            if filename is None:
                raise PortalError(400, "upload.no_file")
            async with request.config_dict[DECODES]:
                prepared = await prepare(path, _limits(ctx.recording_rules))
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
    except IngestError as exc:
        return await _refused(request, exc.status, ingest_message(t, exc), exc.code)
    except ApiError as exc:
        key = "upload.too_large" if exc.status == 413 else "upload.bad_request"
        message = t(key, megabytes=f"{limit / 1024 / 1024:g}")
        return await _refused(request, exc.status, message, exc.code)
    except PortalError as exc:
        if exc.status == 403:
            raise
        return await _refused(request, exc.status, t(exc.key, **exc.params), exc.key)
    name = _clean_name(fields.get("name") or "") or Path(filename).stem or "recording"
    row = await ctx.recordings.add(
        court_id,
        name,
        prepared.pcm,
        session.principal,
        original={
            "filename": filename,
            "format": prepared.original_format(),
            "bytes": size,
            "sha256": sha,
        },
        loudness_lufs=prepared.loudness_lufs,
        sample_rate=prepared.rate,
    )
    ctx.recording_added(row["id"])
    location = f"{PREFIX}/recordings?done=uploaded#recording-{row['id']}"
    if wants_json(request):
        return web.json_response({"id": row["id"], "location": location}, status=201)
    return redirect(location)


async def _refused(
    request: web.Request, status: int, message: str, code: str
) -> web.StreamResponse:
    """A refused upload: the reason, in the page's language, with the upload form again."""
    if wants_json(request):
        return web.json_response({"error": {"code": code, "message": message}}, status=status)
    return await index(request, error=message, status=status)


async def _pcm(request: web.Request) -> tuple[str, bytes, str, int]:
    """(reference, PCM, name, sample rate) of a recording this court may hear: its own, a
    shipped one, or the built-in warning ('default')."""
    court_id = _court(request)
    ref = request.match_info["id"]
    if ref == "default":
        return "default", default_warning_8k(), visit(request).t("recordings.builtin"), 8000
    if not ref.isascii() or not ref.isdigit() or not 0 < int(ref) < 2**63:
        raise PortalError(404, "error.not_found")
    recordings = ctx_of(request).recordings
    row = await recordings.audio(int(ref))
    if row is None or row["court_id"] not in (None, court_id):
        raise PortalError(404, "error.not_found")
    meta = await recordings.get(int(ref))
    name = meta["name"] if meta is not None else ref
    return ref, bytes(row["pcm"]), name, int(row["sample_rate"])


async def audio(request: web.Request) -> web.Response:
    ref, pcm, _, rate = await _pcm(request)
    codec = request.query.get("codec", "pcm")
    if codec not in PREVIEW_CODECS:
        raise PortalError(404, "error.not_found")
    try:
        body = await asyncio.to_thread(preview_wav, pcm, rate, codec)
    except EncodeError:
        raise PortalError(503, "error.preview_unavailable") from None
    return web.Response(
        body=body,
        content_type="audio/wav",
        headers={
            "Cache-Control": "private, max-age=3600",
            "Content-Disposition": f'inline; filename="recording-{ref}-{codec}.wav"',
        },
    )


async def waveform(request: web.Request) -> web.Response:
    _, pcm, name, _rate = await _pcm(request)
    title = visit(request).t("recordings.waveform_of", name=name)
    svg = await asyncio.to_thread(waveform_svg, pcm, title)
    return web.Response(
        text=svg,
        content_type="image/svg+xml",
        charset="utf-8",
        headers={"Cache-Control": "private, max-age=3600"},
    )


async def choose_default(request: web.Request) -> web.Response:
    court_id = _court(request)
    session = require(request, "court")
    fields = await form(request)
    choice = fields.get("recording_id", "")
    recording_id = None
    if choice and choice != "default":
        if not choice.isdigit() or not 0 < int(choice) < 2**63:
            raise PortalError(404, "error.not_found")
        recording_id = int(choice)
    # NotFound (not this court's recording) becomes the 404 page.
    await ctx_of(request).courts.set_default_recording(court_id, recording_id, session.principal)
    return redirect(f"{PREFIX}/recordings?done=default")
