"""The route table's guards: the answer check catches what the description does not say,
and the docs page's files are package data (a built wheel serves /docs too)."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ringback.api.common import body
from ringback.api.errors import json_errors
from ringback.api.openapi import ASSETS, STATIC
from ringback.api.routes import Reply, Routes, check_answers
from ringback.api.schemas.courts import Court, CourtNew, TokenNew

COURT = {
    "id": "0b0e7a9e-58a4-4d43-9a3c-6d0b7c1e8f10",
    "name": "Court",
    "default_recording_id": None,
    "created_at": "2026-07-01T00:00:00Z",
}


def _app(answer: Any, status: int = 200, model: type = CourtNew) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        await body(request, model)
        return web.json_response(answer, status=status)

    app = web.Application(middlewares=[check_answers, json_errors])
    Routes(app, "test").add(
        "POST",
        "/things",
        handler,
        "a thing",
        body=CourtNew,
        replies={200: Reply("the thing", Court)},
        errors={409: "conflict"},
        database=False,
    )
    return app


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    clients: list[TestClient[Any, Any]] = []

    async def make(app: web.Application) -> TestClient[Any, Any]:
        c = TestClient(TestServer(app))
        await c.start_server()
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.close()


@pytest.mark.parametrize(
    ("answer", "status", "model", "problem"),
    [
        ({**COURT, "default_recording_id": "7"}, 200, CourtNew, "is not a Court"),
        ({k: v for k, v in COURT.items() if k != "name"}, 200, CourtNew, "is not a Court"),
        (COURT, 201, CourtNew, "answered 201"),
        (COURT, 200, TokenNew, "validated its body with TokenNew"),
    ],
)
async def test_an_answer_the_description_does_not_say_is_a_500(
    client: Any, answer: Any, status: int, model: type, problem: str
) -> None:
    c = await client(_app(answer, status, model))
    sent = {"role": "switch"} if model is TokenNew else {"name": "x"}
    r = await c.post("/things", json=sent)
    body = await r.json()
    assert r.status == 500 and body["error"]["code"] == "undocumented_answer", body
    assert problem in body["error"]["message"]


async def test_documented_answers_and_errors_pass(client: Any) -> None:
    c = await client(_app(COURT))
    r = await c.post("/things", json={"name": "x"})
    assert r.status == 200 and (await r.json()) == COURT
    r = await c.post("/things", json={"name": ""})  # 400 is not documented here
    assert r.status == 500 and "answered 400" in (await r.json())["error"]["message"]


def test_docs_files_are_package_data(repo_root: Path) -> None:
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["ringback"]
    package = repo_root / "src" / "ringback"
    files = [STATIC / path for path, _ in ASSETS.values()]
    files += list((STATIC / "swagger-ui").iterdir())  # and the licences
    for file in files:
        assert file.is_file(), file
        relative = file.relative_to(package).as_posix()
        assert any(fnmatch(relative, p) for p in patterns), relative
