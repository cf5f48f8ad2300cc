"""Recordings: upload (any format ffmpeg reads), metadata, preview audio, a court's default.

A court sees its own recordings and the shipped ones (court_id NULL); another court's
recording ids answer 404. Operators see all; switch tokens may fetch audio (the HTTP dip
hands switches the audio URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from ringback.api.common import (
    body,
    court_of_request,
    form_parts,
    iso,
    path_int,
    path_uuid,
    query,
)
from ringback.api.context import CONTEXT, context
from ringback.api.errors import ApiError
from ringback.api.routes import Reply, Routes, principal
from ringback.api.schemas.courts import CourtPath
from ringback.api.schemas.recordings import (
    AudioPath,
    AudioQuery,
    CourtDefault,
    DefaultRecording,
    Recording,
    RecordingFilter,
    RecordingPath,
    Recordings,
    RecordingUpload,
    RecordingUploaded,
)
from ringback.config import RecordingsConfig
from ringback.media.encode import EncodeError
from ringback.media.ingest import IngestError, IngestLimits, PreparedAudio, prepare
from ringback.media.preview import preview_wav
from ringback.media.shipped import default_warning_8k
from ringback.registry.common import Principal

DECODES: web.AppKey[asyncio.Semaphore] = web.AppKey("recording_decodes", asyncio.Semaphore)

_FIELD_LIMIT = 1000  # bytes of a text form field
_CHUNK = 1 << 16
_FLUSH = 1 << 20

log = logging.getLogger(__name__)


def recording_json(row: Any) -> dict[str, Any]:
    sha = row["original_sha256"]
    return {
        "id": row["id"],
        "court_id": str(row["court_id"]) if row["court_id"] is not None else None,
        "name": row["name"],
        "duration_ms": row["duration_ms"],
        "loudness_lufs": row["loudness_lufs"],
        "created_at": iso(row["created_at"]),
        "original": {
            "filename": row["original_filename"],
            "format": row["original_format"],
            "bytes": row["original_bytes"],
            "sha256": bytes(sha).hex() if sha is not None else None,
        },
        "audio_url": f"/v1/recordings/{row['id']}/audio.wav",
    }


def _limits(r: RecordingsConfig) -> IngestLimits:
    return IngestLimits(
        max_duration_s=r.max_duration_s,
        min_duration_s=r.min_duration_s,
        decode_timeout_s=r.decode_timeout_s,
        target_lufs=r.target_lufs,
        peak_dbfs=r.peak_dbfs,
        silence_dbfs=r.silence_dbfs,
    )


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the upload is larger than the limit of {limit} bytes")


def _clean_name(text: str) -> str:
    text = re.sub(r"[\x00-\x1f\x7f]", "", text).strip()
    return text[:200]


async def _read_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(_CHUNK):
        data += chunk
        if len(data) > _FIELD_LIMIT:
            raise ApiError(400, "bad_request", f"form field {part.name!r} is too long")
    return data.decode("utf-8", errors="replace").strip()


async def _spool(part: BodyPartReader, path: Path, limit: int) -> tuple[int, bytes]:
    """Stream a file part to `path`; 413 as soon as it passes `limit`. (size, sha256)."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray()
    with path.open("wb") as out:
        while chunk := await part.read_chunk(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            digest.update(chunk)
            buffer += chunk
            if len(buffer) >= _FLUSH:
                data, buffer = bytes(buffer), bytearray()
                await asyncio.to_thread(out.write, data)
        if buffer:
            await asyncio.to_thread(out.write, bytes(buffer))
    return size, digest.digest()


async def upload(request: web.Request) -> web.Response:
    who = principal(request)
    ctx = context(request)
    limit = ctx.recording_rules.max_bytes
    if request.content_length is not None and request.content_length > limit + _CHUNK:
        raise _too_large(limit)
    if not request.content_type.startswith("multipart/"):
        raise ApiError(
            415, "unsupported_media_type", "send multipart/form-data with the audio in field 'file'"
        )
    fields: dict[str, str] = {}
    filename = None
    size, sha = 0, b""
    fd, tmp = tempfile.mkstemp(prefix="ringback-upload-")
    os.close(fd)
    path = Path(tmp)
    try:
        async for part in form_parts(request):
            if part.name == "file" or (part.filename and filename is None and part.name != "name"):
                if filename is not None:
                    raise ApiError(400, "bad_request", "send one file per upload")
                filename = _clean_name(part.filename or "upload")
                size, sha = await _spool(part, path, limit)
            elif part.name in ("name", "court_id"):
                fields[part.name] = await _read_field(part)
            else:
                await part.release()
        if filename is None:
            raise ApiError(400, "bad_request", "no file: send the audio in form field 'file'")
        court_id = await court_of_request(request, who, fields.get("court_id"))
        async with request.app[DECODES]:
            try:
                prepared: PreparedAudio = await prepare(path, _limits(ctx.recording_rules))
            except IngestError as exc:
                raise ApiError(exc.status, exc.code, exc.message) from None
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    name = _clean_name(fields.get("name") or "") or Path(filename).stem or "recording"
    row = await ctx.recordings.add(
        court_id,
        name,
        prepared.pcm,
        who,
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
    body = recording_json({**dict(row), "original_sha256": sha})
    body["processing"] = {
        "decoded_duration_ms": int(prepared.decoded_duration_s * 1000),
        "trimmed_start_ms": prepared.trimmed_start_ms,
        "trimmed_end_ms": prepared.trimmed_end_ms,
        "gain_db": prepared.gain_db,
        "peak_dbfs": prepared.peak_dbfs,
        "sample_rate": prepared.rate,
    }
    return web.json_response(body, status=201, headers={"Location": f"/v1/recordings/{row['id']}"})


def _visible(who: Principal, court_id: uuid.UUID | None) -> bool:
    return who.role in ("operator", "switch") or court_id is None or court_id == who.court_id


async def list_recordings(request: web.Request) -> web.Response:
    who = principal(request)
    params = query(request, RecordingFilter)
    limit, after, court_filter = params.limit, params.after, params.court_id
    page = context(request).recordings.page
    if who.role == "court":
        if court_filter is None:  # its own and the shipped ones
            rows = await page(after, limit + 1, court_id=who.court_id, with_shipped=True)
        elif court_filter == who.court_id:
            rows = await page(after, limit + 1, court_id=who.court_id, with_shipped=False)
        else:
            rows = []  # another court's: nothing to show
    else:
        rows = await page(after, limit + 1, court_id=court_filter, with_shipped=False)
    more = len(rows) > limit
    rows = rows[:limit]
    return web.json_response(
        {
            "recordings": [recording_json(r) for r in rows],
            "next": f"/v1/recordings?after={rows[-1]['id']}&limit={limit}" if more else None,
        }
    )


def _visible_or_404(who: Principal, row: Any) -> Any:
    if row is None or not _visible(who, row["court_id"]):
        raise ApiError(404, "not_found", "no such recording")
    return row


async def get_recording(request: web.Request) -> web.Response:
    rid = path_int(request, "id", "recording")
    row = _visible_or_404(principal(request), await context(request).recordings.get(rid))
    return web.json_response(recording_json(row))


async def get_audio(request: web.Request) -> web.Response:
    who = principal(request)
    codec = query(request, AudioQuery).codec
    if request.match_info["id"] == "default":  # the shipped warning (recording id 0)
        ref, pcm, rate = "default", default_warning_8k(), 8000
    else:
        rid = path_int(request, "id", "recording")
        row = _visible_or_404(who, await context(request).recordings.audio(rid))
        ref, pcm, rate = str(row["id"]), bytes(row["pcm"]), int(row["sample_rate"])
    etag = f'"rec-{ref}-{codec}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    try:
        body = await asyncio.to_thread(preview_wav, pcm, rate, codec)
    except EncodeError as exc:
        log.warning("preview of recording %s in %s failed: %s", ref, codec, exc)
        raise ApiError(503, "unavailable", f"cannot make the {codec} preview here") from None
    return web.Response(
        body=body,
        content_type="audio/wav",
        headers={
            **headers,
            "Content-Disposition": f'inline; filename="recording-{ref}-{codec}.wav"',
        },
    )


async def set_default(request: web.Request) -> web.Response:
    who = principal(request)
    court_id = path_uuid(request, "court_id", "court")
    if who.role == "court" and court_id != who.court_id:
        raise ApiError(404, "not_found", "no such court")
    rid = (await body(request, DefaultRecording)).recording_id
    await context(request).courts.set_default_recording(court_id, rid, who)
    return web.json_response({"court_id": str(court_id), "default_recording_id": rid})


def register(app: web.Application) -> None:
    app[DECODES] = asyncio.Semaphore(app[CONTEXT].recording_rules.max_concurrent_decodes)
    r = Routes(app, "recordings")
    mine = ("court", "operator")
    gone = {404: "no such recording (or another court's)"}
    r.add(
        "POST",
        "/v1/recordings",
        upload,
        "Upload a warning (multipart: file, name, court_id for operators)",
        roles=mine,
        body={"multipart/form-data": RecordingUpload},
        replies={201: Reply("transcoded and stored", RecordingUploaded)},
        errors={
            400: "malformed upload, empty or silent file",
            404: "no such court",
            413: "too large",
            415: "not an audio file ffmpeg can decode",
            422: "too long or otherwise unusable",
        },
    )
    r.add(
        "GET",
        "/v1/recordings",
        list_recordings,
        "Recordings (court: its own and the shipped ones)",
        roles=mine,
        query=RecordingFilter,
        replies={200: Reply("a page of recordings", Recordings)},
        errors={400: "invalid parameter"},
    )
    r.add(
        "GET",
        "/v1/recordings/{id}",
        get_recording,
        "One recording's metadata",
        roles=mine,
        path_params=RecordingPath,
        replies={200: Reply("the recording", Recording)},
        errors=gone,
    )
    r.add(
        "GET",
        "/v1/recordings/{id}/audio.wav",
        get_audio,
        "What callers hear, as 8 kHz WAV (pcm, pcmu or pcma)",
        roles=("court", "operator", "switch"),
        path_params=AudioPath,
        query=AudioQuery,
        replies={
            200: Reply("WAV audio", {"type": "string"}, media="audio/wav"),
            304: Reply("not modified (If-None-Match)"),
        },
        errors={400: "unknown codec", **gone},
    )
    r.add(
        "PUT",
        "/v1/courts/{court_id}/default-recording",
        set_default,
        "Set (or unset with null) the court's default recording",
        roles=mine,
        path_params=CourtPath,
        body=DefaultRecording,
        replies={200: Reply("the new default", CourtDefault)},
        errors={
            400: "not JSON",
            404: "no such court or recording",
            422: "invalid body",
        },
    )
