"""/openapi.json describes every route the service serves, and /docs renders it."""

from __future__ import annotations

import re

from court_api_support import Api

from ringback.server import Service


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


async def test_openapi_describes_every_route(api: Api, service: Service) -> None:
    r = await api.get("/openapi.json")
    assert r.status == 200
    spec = r.body
    assert spec["openapi"].startswith("3.1")
    described = {
        (method.upper(), _shape(path)) for path, item in spec["paths"].items() for method in item
    }
    assert service.http_runner is not None
    served = set()
    for route in service.http_runner.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if route.method in ("HEAD", "*") or path is None:
            continue
        if path == "/portal" or path.startswith("/portal/"):
            continue  # the court portal's HTML pages, not the JSON API
        served.add((route.method, _shape(path)))
    missing = served - described
    assert not missing, f"routes missing from /openapi.json: {sorted(missing)}"
    for method, path in [
        ("POST", "/v1/recordings"),
        ("GET", "/v1/recordings/{}/audio.wav"),
        ("PUT", "/v1/courts/{}/default-recording"),
        ("POST", "/v1/imports"),
        ("GET", "/v1/imports/{}"),
        ("GET", "/v1/events/subscriptions"),
        ("POST", "/v1/events/subscriptions"),
        ("GET", "/v1/events/deliveries"),
    ]:
        assert (method, path) in described
    # Every error response points at the one error shape.
    for item in spec["paths"].values():
        for op in item.values():
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")) and "content" in response:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"} or status in ("503",), (
                        status,
                        op["summary"],
                    )


async def test_docs_page_is_swagger_ui_served_by_the_service_itself(api: Api) -> None:
    """/docs works offline: every file it references comes from this service."""
    spec = (await api.get("/openapi.json")).body
    async with api.http.get(api.base + "/docs") as r:
        assert r.status == 200 and r.content_type == "text/html"
        page = await r.text()
    for path in spec["paths"]:  # the list shown without JavaScript
        assert f"<code>{path}</code>" in page
    assert "http://" not in page and "https://" not in page
    refs = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page)
    kinds = {"js": "application/javascript", "css": "text/css", "json": "application/json"}
    assert {ref.rsplit(".", 1)[-1] for ref in refs} == set(kinds), refs
    files = {}
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
        async with api.http.get(api.base + ref) as r:
            assert r.status == 200, ref
            assert r.content_type == kinds[ref.rsplit(".", 1)[-1]], (ref, r.content_type)
            files[ref] = await r.read()
        assert files[ref], ref
    assert b"SwaggerUIBundle" in files["/docs/assets/swagger-ui-bundle.js"]
    starter = files["/docs/assets/docs.js"].decode()
    assert 'url: "/openapi.json"' in starter and "validatorUrl: null" in starter
    traversal = await api.get("/docs/assets/../openapi.py")
    assert traversal.status == 404
    missing = await api.get("/docs/assets/swagger-ui.js.map")
    assert missing.status == 404 and missing.code == "not_found"
