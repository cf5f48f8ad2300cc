"""`/openapi.json`, generated from the route table, and `/docs`, Swagger UI served from the
package itself (no CDN: the page works offline).

Each operation registered with `ringback.api.routes.Routes` becomes an operation of the
document: its path and query parameters, body and answers are the JSON schemas of the
pydantic models it names, so the description follows the code. Errors always have the one
shape `Error`; 401, 403 and 429 are added for operations that need a token, 503 for those
that use the database.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from pydantic_core import CoreSchema

from ringback import __version__ as VERSION
from ringback.api.errors import ApiError
from ringback.api.routes import OPERATIONS, Operation, Reply, Routes, Schema
from ringback.api.schemas.fields import Error
from ringback.api.schemas.operations import AssetPath

REF = "#/components/schemas/{model}"
ERROR_REF = {"$ref": REF.format(model="Error")}
DESCRIPTION = (
    "Court-ordered warning announcements in the SIP call-setup path: courts list judgment "
    "debtors' numbers, payment systems clear them, switches ask. "
    'Errors are always {"error": {"code", "message"}}.'
)
STATIC = Path(__file__).with_name("static")
# The docs page's files: Swagger UI (vendored, see static/swagger-ui/VENDORED.md) and
# the script that starts it on /openapi.json.
ASSETS = {
    "swagger-ui-bundle.js": ("swagger-ui/swagger-ui-bundle.js", "application/javascript"),
    "swagger-ui.css": ("swagger-ui/swagger-ui.css", "text/css"),
    "docs.js": ("docs.js", "application/javascript"),
}
Refs = Mapping[Any, Schema]  # (model, mode) → its $ref
DOCUMENT: web.AppKey[dict[str, Any]] = web.AppKey("openapi_document", dict)


class _Schemas(GenerateJsonSchema):
    """pydantic's JSON schemas without a title on every property."""

    def field_title_should_be_set(self, schema: CoreSchema) -> bool:
        return False


def _models(operations: Sequence[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Every body and answer model, once, in the order first used."""
    found: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(Error, "serialization"): None}
    for op in operations:
        for content in op.body.values():
            if isinstance(content, type):
                found[(content, "validation")] = None
        for reply in op.replies.values():
            if isinstance(reply.model, type):
                found[(reply.model, "serialization")] = None
    return list(found)


def _not_null(schema: Schema) -> Schema:
    """A parameter's schema without the null of an optional field (a query string has
    no null: an absent parameter is the default)."""
    options = schema.get("anyOf")
    if options is not None:
        rest = [s for s in options if s != {"type": "null"}]
        if len(rest) == 1:
            merged = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
            return {**rest[0], **merged}
    if schema.get("default") is None:
        schema = {k: v for k, v in schema.items() if k != "default"}
    return schema


def _parameters(op: Operation) -> Iterator[Schema]:
    names = re.findall(r"\{([^}]+)\}", op.path)
    for where, model in (("path", op.path_params), ("query", op.query)):
        if model is None:
            if where == "path" and names:
                raise TypeError(f"{op.path}: give path_params, a model of {names}")
            continue
        schema = model.model_json_schema(ref_template=REF, schema_generator=_Schemas)
        if "$defs" in schema:
            raise TypeError(f"{model.__name__}: a parameter model must not nest models")
        if where == "path" and list(schema["properties"]) != names:
            raise TypeError(f"{op.path}: {model.__name__} names {list(schema['properties'])}")
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            param: Schema = {
                "name": name,
                "in": where,
                "required": where == "path" or name in required,
            }
            if "description" in prop:
                param["description"] = prop.pop("description")
            param["schema"] = _not_null(prop)
            yield param
    for header in op.headers:
        yield {
            "name": header.name,
            "in": "header",
            "required": header.required,
            "schema": header.schema,
            **({"description": header.description} if header.description else {}),
        }


def _operation(op: Operation, refs: Refs) -> Schema:
    out: Schema = {"tags": [op.tag], "summary": op.summary, "operationId": op.handler.__name__}
    description = op.description
    if op.roles:
        description = f"{description}\n\nToken roles: {', '.join(op.roles)}.".strip()
    else:
        out["security"] = []
    if description:
        out["description"] = description
    params = list(_parameters(op))
    if params:
        out["parameters"] = params
    if op.body:
        out["requestBody"] = {
            "required": op.body_required,
            "content": {
                media: {
                    "schema": refs[(c, "validation")] if isinstance(c, type) else c,
                }
                for media, c in op.body.items()
            },
        }
    responses: Schema = {}
    for status, reply in sorted(op.replies.items()):
        responses[str(status)] = _reply(reply, refs)
    for status, when in sorted(op.errors.items()):
        responses[str(status)] = _error(when)
    if op.roles:
        responses.setdefault("401", _error("missing, unknown or revoked token"))
        responses.setdefault("403", _error("the token's role may not use this endpoint"))
        responses.setdefault(
            "429",
            _error(
                "over http.rate_limit_per_token: nothing was done; retry after the "
                "Retry-After header's seconds"
            ),
        )
    if op.database:
        responses.setdefault("503", _error("the database is unavailable; retry"))
    out["responses"] = responses
    return out


def _reply(reply: Reply, refs: Refs) -> Schema:
    out: Schema = {"description": reply.description}
    if reply.model is not None:
        model = reply.model
        schema = refs[(model, "serialization")] if isinstance(model, type) else model
        media = (reply.media,) if isinstance(reply.media, str) else reply.media
        out["content"] = {m: {"schema": schema} for m in media}
    return out


def _error(when: str) -> Schema:
    return {"description": when, "content": {"application/json": {"schema": ERROR_REF}}}


def document(operations: Sequence[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 description of `operations`."""
    refs, defs = models_json_schema(
        _models(operations), ref_template=REF, schema_generator=_Schemas
    )
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, None] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
        tags[op.tag] = None
    ids = [op.handler.__name__ for op in operations]
    if len(set(ids)) != len(ids):
        raise ValueError(f"operation ids are not unique: {sorted(ids)}")
    return {
        "openapi": "3.1.0",
        "info": {"title": "ringback", "version": VERSION, "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "roles: operator, court (its own data only), switch (dip)",
                }
            },
            "schemas": defs.get("$defs", {}),
        },
    }


def _document(app: web.Application) -> dict[str, Any]:
    cache = app[DOCUMENT]
    if not cache:
        operations: list[Operation] = app[OPERATIONS]
        cache.update(document(operations))
    return cache


def docs_html(doc: dict[str, Any]) -> str:
    """Swagger UI on /openapi.json; without JavaScript, a plain list of the operations."""
    e = html.escape
    title = f"{doc['info']['title']} {doc['info']['version']} API"
    rows = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            rows.append(
                f"<li><b>{e(method.upper())}</b> <code>{e(path)}</code> "
                f"{e(op.get('summary', ''))}</li>"
            )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{e(title)}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='stylesheet' href='/docs/assets/swagger-ui.css'>"
        "</head><body><div id='swagger-ui'></div>"
        f"<noscript><h1>{e(title)}</h1><p>{e(doc['info']['description'])}</p>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>"
        f"<ul>{''.join(rows)}</ul></noscript>"
        "<script src='/docs/assets/swagger-ui-bundle.js'></script>"
        "<script src='/docs/assets/docs.js'></script>"
        "</body></html>"
    )


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(_document(request.app))


async def docs(request: web.Request) -> web.Response:
    return web.Response(
        text=docs_html(_document(request.app)), content_type="text/html", charset="utf-8"
    )


async def docs_asset(request: web.Request) -> web.FileResponse:
    asset = ASSETS.get(request.match_info["name"])
    if asset is None:
        raise ApiError(404, "not_found", "no such file")
    path, content_type = asset
    return web.FileResponse(
        STATIC / path,
        headers={"Content-Type": content_type, "Cache-Control": "public, max-age=86400"},
    )


def register(app: web.Application) -> None:
    app[DOCUMENT] = {}
    r = Routes(app, "operations")
    r.add(
        "GET",
        "/openapi.json",
        openapi_json,
        "This description",
        replies={200: Reply("OpenAPI 3.1", {"type": "object"})},
        database=False,
    )
    r.add(
        "GET",
        "/docs",
        docs,
        "This description as an HTML page (Swagger UI)",
        replies={200: Reply("HTML", {"type": "string"}, media="text/html")},
        database=False,
    )
    r.add(
        "GET",
        "/docs/assets/{name}",
        docs_asset,
        "A file of the docs page (script or style sheet)",
        path_params=AssetPath,
        replies={
            200: Reply(
                "the file", {"type": "string"}, media=("application/javascript", "text/css")
            ),
            304: Reply("not modified"),
        },
        errors={404: "no such file"},
        database=False,
    )
