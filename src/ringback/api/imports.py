"""Bulk CSV import of listings: `POST /v1/imports`, `GET /v1/imports[/{id}]`.

The upload (a CSV body, or multipart with the CSV in field `file`) is streamed to a
temporary file under the byte limit, then validated row by row and loaded in one
transaction (see `ringback.registry.imports`). By default the request waits for the
result: 201 with the finished job, or 422 naming the bad row's line (nothing changed).
With `Prefer: respond-async` it answers 202 with the job at once; poll
`GET /v1/imports/{id}` for progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from ringback.api.common import court_of_request, form_parts, iso, path_uuid, query
from ringback.api.context import context
from ringback.api.errors import ApiError
from ringback.api.routes import COURT_OR_OPERATOR, Reply, Routes, principal
from ringback.api.schemas.imports import (
    ImportForm,
    ImportJob,
    ImportJobs,
    ImportList,
    ImportPath,
    ImportQuery,
)
from ringback.registry.import_csv import ImportRejected

TASKS: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("import_tasks")
_CHUNK = 1 << 16
_FLUSH = 1 << 20
_CSV_TYPES = ("text/csv", "application/csv", "text/plain", "application/octet-stream", "")


def import_json(row: Any) -> dict[str, Any]:
    sha = row["sha256"]
    error = None
    if row["error_code"] is not None:
        error = {
            "code": row["error_code"],
            "message": row["error_message"],
            "line": row["error_line"],
        }
    return {
        "id": str(row["id"]),
        "court_id": str(row["court_id"]),
        "status": row["status"],
        "filename": row["filename"],
        "bytes": row["bytes"],
        "sha256": bytes(sha).hex() if sha is not None else None,
        "rows_processed": row["rows_processed"],
        "rows_total": row["rows_total"],
        "listed": row["listed"],
        "updated": row["updated"],
        "error": error,
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "finished_at": iso(row["finished_at"]),
    }


class _Spool:
    """Streams chunks to a temporary file, enforcing the byte limit and hashing."""

    def __init__(self, limit: int) -> None:
        fd, name = tempfile.mkstemp(prefix="ringback-import-", suffix=".csv")
        self.file = os.fdopen(fd, "wb")
        self.path = Path(name)
        self.limit = limit
        self.size = 0
        self.digest = hashlib.sha256()
        self._buffer = bytearray()

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise ApiError(413, "too_large", f"the file is larger than {self.limit} bytes")
        self.digest.update(chunk)
        self._buffer += chunk
        if len(self._buffer) >= _FLUSH:
            data, self._buffer = bytes(self._buffer), bytearray()
            await asyncio.to_thread(self.file.write, data)

    async def finish(self) -> None:
        if self._buffer:
            await asyncio.to_thread(self.file.write, bytes(self._buffer))
            self._buffer = bytearray()
        self.file.close()

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


async def _receive(
    request: web.Request, spool: _Spool, params: ImportQuery
) -> tuple[str | None, dict[str, str]]:
    """Stream the CSV into `spool`; (filename, form fields)."""
    fields: dict[str, str] = {}
    if request.content_type.startswith("multipart/"):
        filename: str | None = None
        async for part in form_parts(request):
            if part.name == "file":
                if filename is not None:
                    raise ApiError(400, "bad_request", "send one file per import")
                filename = (part.filename or "import.csv")[:200]
                while chunk := await part.read_chunk(_CHUNK):
                    await spool.write(chunk)
            elif part.name in ("court_id", "effective_reason"):
                value = await part.read_chunk(2048)
                fields[part.name] = bytes(value).decode("utf-8", "replace").strip()
            else:
                await part.release()
        if filename is None:
            raise ApiError(400, "bad_request", "no file: send the CSV in form field 'file'")
        return filename, fields
    if request.content_type not in _CSV_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send text/csv, or multipart/form-data with the CSV in field 'file'",
        )
    async for chunk in request.content.iter_chunked(_CHUNK):
        await spool.write(chunk)
    return params.filename, fields


async def create_import(request: web.Request) -> web.Response:
    who = principal(request)
    ctx = context(request)
    params = query(request, ImportQuery)
    limit = ctx.import_rules.max_bytes
    if request.content_length is not None and request.content_length > limit + _CHUNK:
        raise ApiError(413, "too_large", f"the file is larger than {limit} bytes")
    spool = _Spool(limit)
    handed_over = False
    try:
        filename, fields = await _receive(request, spool, params)
        await spool.finish()
        court_id = await court_of_request(request, who, fields.get("court_id") or params.court_id)
        reason = fields.get("effective_reason") or params.effective_reason
        if reason is not None and not 1 <= len(reason) <= 1000:
            raise ApiError(422, "invalid", "effective_reason must be 1-1000 characters")
        job_id = await ctx.imports.create_job(court_id, who, filename)
        options = replace(ctx.import_options, effective_reason=reason)
        work = ctx.imports.run(
            job_id,
            court_id,
            who,
            spool.path,
            options,
            filename=filename,
            sha256=spool.digest.digest(),
        )

        async def job() -> asyncpg.Record:
            try:
                return await work
            finally:
                spool.remove()

        task = asyncio.ensure_future(job())
        handed_over = True
        tasks = request.app[TASKS]
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if "respond-async" in request.headers.get("Prefer", ""):
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            row = await ctx.imports.job(job_id)
            return web.json_response(
                import_json(row),
                status=202,
                headers={
                    "Location": f"/v1/imports/{job_id}",
                    "Preference-Applied": "respond-async",
                },
            )
        try:
            result = await asyncio.shield(task)
        except ImportRejected as exc:
            return web.json_response(
                {
                    "error": {
                        "code": exc.code,
                        "message": exc.message,
                        "line": exc.line,
                        "import_id": str(job_id),
                    }
                },
                status=422,
            )
        return web.json_response(
            import_json(result), status=201, headers={"Location": f"/v1/imports/{job_id}"}
        )
    finally:
        if not handed_over:
            spool.remove()


async def get_import(request: web.Request) -> web.Response:
    who = principal(request)
    row = await context(request).imports.job(path_uuid(request, "id", "import"))
    if row is None or (who.role == "court" and row["court_id"] != who.court_id):
        raise ApiError(404, "not_found", "no such import")
    return web.json_response(import_json(row))


async def list_imports(request: web.Request) -> web.Response:
    who = principal(request)
    limit = query(request, ImportList).limit
    scope = who.court_id if who.role == "court" else None
    rows = await context(request).imports.recent(scope, limit)
    return web.json_response({"imports": [import_json(r) for r in rows]})


async def _cancel_jobs(app: web.Application) -> None:
    running: set[asyncio.Task[Any]] = app[TASKS]
    tasks = list(running)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def register(app: web.Application) -> None:
    app[TASKS] = set()
    app.on_shutdown.append(_cancel_jobs)
    r = Routes(app, "imports")
    r.add(
        "POST",
        "/v1/imports",
        create_import,
        "Bulk import of listings from CSV (number, case_ref, expires_at)",
        description="By default the request waits for the result. With 'Prefer: "
        "respond-async' it answers 202 at once; poll GET /v1/imports/{id}. A refused row "
        "answers 422 with the error's line and import_id; nothing is changed.",
        roles=COURT_OR_OPERATOR,
        query=ImportQuery,
        body={"text/csv": {"type": "string"}, "multipart/form-data": ImportForm},
        replies={
            201: Reply("the finished import job", ImportJob),
            202: Reply("the import job, running", ImportJob),
        },
        errors={
            400: "not a CSV file, or a malformed upload",
            404: "no such court",
            413: "too large",
            415: "neither text/csv nor multipart/form-data",
            422: "a bad row or header (its line and the reason), or no court_id",
        },
    )
    r.add(
        "GET",
        "/v1/imports",
        list_imports,
        "Import jobs, newest first",
        roles=COURT_OR_OPERATOR,
        query=ImportList,
        replies={200: Reply("import jobs", ImportJobs)},
        errors={400: "invalid parameter"},
    )
    r.add(
        "GET",
        "/v1/imports/{id}",
        get_import,
        "An import job and its progress",
        roles=COURT_OR_OPERATOR,
        path_params=ImportPath,
        replies={200: Reply("the job", ImportJob)},
        errors={404: "no such import"},
    )
