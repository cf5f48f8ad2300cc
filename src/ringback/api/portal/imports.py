"""Bulk CSV import of listings: the file is sent with a progress bar, then imported by the
same code as `POST /v1/imports` (all rows or none), its progress polled; a refused file
names its line and the rule it broke, in the page's language."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
from aiohttp import web

from ringback.api.common import form_parts
from ringback.api.errors import ApiError
from ringback.api.imports import TASKS, _Spool
from ringback.api.portal.core import (
    PREFIX,
    PortalError,
    check_csrf,
    ctx_of,
    redirect,
    render,
    require,
    visit,
    wants_json,
)
from ringback.api.portal.i18n import Translator
from ringback.registry.import_csv import ImportRejected

_CHUNK = 1 << 16


@dataclass
class Progress:
    stage: str = "queued"
    rows: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    error: ImportRejected | None = None


PROGRESS: web.AppKey[dict[uuid.UUID, Progress]] = web.AppKey("portal_import_progress", dict)
_KEEP = 200  # progress of this many recent jobs is kept in memory


def _court(request: web.Request) -> uuid.UUID:
    court_id = require(request, "court").principal.court_id
    assert court_id is not None
    return court_id


def error_message(t: Translator, job: Any, error: ImportRejected | None) -> str | None:
    """Why a job failed, in the page's language, with its line."""
    if error is not None:
        key = f"import.rule.{error.rule}"
        if t.has(key):
            text = t(key, **error.params)
        else:
            text = (
                t(f"import.code.{error.code}")
                if t.has(f"import.code.{error.code}")
                else t("import.code.other")
            )
        line = error.line
    else:
        if job["error_code"] is None:
            return None
        code = job["error_code"]
        if t.lang == "en":
            text = job["error_message"]
            if text.startswith("line "):
                text = text.split(": ", 1)[-1]
        else:
            text = (
                t(f"import.code.{code}") if t.has(f"import.code.{code}") else t("import.code.other")
            )
        line = job["error_line"]
    return t("import.error_line", line=line, message=text) if line else text


def job_view(t: Translator, job: Any, progress: Progress | None) -> dict[str, Any]:
    done = job["status"] in ("done", "failed")
    fraction = 1.0 if done else 0.0
    if progress is not None and progress.bytes_total and not done:
        fraction = min(progress.bytes_done / progress.bytes_total, 0.99)
    return {
        "id": str(job["id"]),
        "status": job["status"],
        "status_text": t(f"import.status.{job['status']}"),
        "filename": job["filename"] or "",
        "rows": job["rows_processed"],
        "listed": job["listed"],
        "updated": job["updated"],
        "created_at": t.datetime(job["created_at"]),
        "finished": done,
        "percent": round(fraction * 100),
        "error": error_message(t, job, progress.error if progress else None),
    }


async def index(request: web.Request) -> web.Response:
    court_id = _court(request)
    ctx, t = ctx_of(request), visit(request).t
    jobs = await ctx.imports.recent(court_id, 20)
    progress = request.config_dict[PROGRESS]
    return render(
        request,
        "imports.html",
        jobs=[job_view(t, j, progress.get(j["id"])) for j in jobs],
        max_mb=f"{ctx.import_rules.max_bytes / 1024 / 1024:g}",
        notice_days=f"{ctx.listing_rules.notice_period_days:g}",
    )


async def create(request: web.Request) -> web.StreamResponse:
    court_id = _court(request)
    session = require(request, "court")
    ctx, t = ctx_of(request), visit(request).t
    header_csrf = request.headers.get("X-CSRF-Token")
    if header_csrf is not None:
        check_csrf(request, header_csrf)
    limit = ctx.import_rules.max_bytes
    if request.content_length is not None and request.content_length > limit + _CHUNK:
        return _refused(request, 413, t("import.too_large", megabytes=f"{limit / 2**20:g}"))
    if not request.content_type.startswith("multipart/"):
        return _refused(request, 400, t("import.no_file"))
    spool = _Spool(limit)
    handed_over = False
    try:
        csrf_seen = header_csrf is not None
        filename = None
        reason = None
        try:
            async for part in form_parts(request):
                if part.name == "csrf":
                    check_csrf(request, (await part.read_chunk(2048)).decode("utf-8", "replace"))
                    csrf_seen = True
                elif part.name == "file" and part.filename and filename is None:
                    if not csrf_seen:
                        raise PortalError(403, "error.csrf")
                    filename = part.filename[:200]
                    while chunk := await part.read_chunk(_CHUNK):
                        await spool.write(chunk)
                elif part.name == "effective_reason":
                    text = (await part.read_chunk(4096)).decode("utf-8", "replace").strip()
                    reason = text or None
                else:
                    await part.release()
        except ApiError as exc:
            if exc.status == 413:
                return _refused(request, 413, t("import.too_large", megabytes=f"{limit / 2**20:g}"))
            return _refused(request, exc.status, t("import.no_file"))
        if not csrf_seen:
            raise PortalError(403, "error.csrf")
        if filename is None:
            return _refused(request, 400, t("import.no_file"))
        if reason is not None and len(reason) > 1000:
            return _refused(request, 400, t("listing.error.reason_long"))
        await spool.finish()
        job_id = await ctx.imports.create_job(court_id, session.principal, filename)
        progress_of = request.config_dict[PROGRESS]
        while len(progress_of) >= _KEEP:
            progress_of.pop(next(iter(progress_of)))
        progress = progress_of[job_id] = Progress(bytes_total=spool.size)

        def on_progress(stage: str, rows: int, done: int, total: int) -> None:
            progress.stage, progress.rows = stage, rows
            progress.bytes_done, progress.bytes_total = done, total

        work = ctx.imports.run(
            job_id,
            court_id,
            session.principal,
            spool.path,
            replace(ctx.import_options, effective_reason=reason),
            filename=filename,
            sha256=spool.digest.digest(),
            progress=on_progress,
        )

        async def job() -> asyncpg.Record | None:
            try:
                return await work
            except ImportRejected as exc:
                progress.error = exc
                return None
            finally:
                spool.remove()

        task = asyncio.ensure_future(job())
        handed_over = True
        tasks = request.config_dict[TASKS]
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        location = f"{PREFIX}/imports/{job_id}"
        if wants_json(request):
            return web.json_response(
                {"id": str(job_id), "location": location, "progress": f"{location}/progress"},
                status=202,
            )
        await asyncio.shield(task)
        return redirect(location)
    finally:
        if not handed_over:
            spool.remove()


def _refused(request: web.Request, status: int, message: str) -> web.Response:
    if wants_json(request):
        return web.json_response({"error": {"code": "refused", "message": message}}, status=status)
    return render(request, "error.html", http_status=status, status_code=status, message=message)


async def _own_job(request: web.Request) -> Any:
    court_id = _court(request)
    try:
        job_id = uuid.UUID(request.match_info["id"])
    except ValueError:
        raise PortalError(404, "error.not_found") from None
    job = await ctx_of(request).imports.job(job_id)
    if job is None or job["court_id"] != court_id:
        raise PortalError(404, "error.not_found")
    return job


async def detail(request: web.Request) -> web.Response:
    job = await _own_job(request)
    t = visit(request).t
    view = job_view(t, job, request.config_dict[PROGRESS].get(job["id"]))
    return render(request, "import.html", job=view)


async def progress(request: web.Request) -> web.Response:
    job = await _own_job(request)
    t = visit(request).t
    view = job_view(t, job, request.config_dict[PROGRESS].get(job["id"]))
    return web.json_response(
        {k: view[k] for k in ("status", "status_text", "percent", "rows", "finished", "error")}
    )


async def redirect_home(request: web.Request) -> web.Response:
    return redirect(f"{PREFIX}/imports")
