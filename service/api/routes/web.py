"""The dashboard and the OpenAPI docs UI: pages and their assets, all served from here with cache
headers. Nothing comes from a CDN, so both work on a machine without internet."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope
from swagger_ui_bundle import swagger_ui_path

WEB = Path(__file__).resolve().parents[2] / "web"

router = APIRouter(include_in_schema=False)


class CachedStatic(StaticFiles):
    """Static files revalidated by ETag after 5 minutes: fresh after an upgrade, cheap in between."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "public, max-age=300"
        return response


@router.api_route("/", methods=["GET", "HEAD"])
def dashboard() -> FileResponse:
    return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/docs")
def docs() -> HTMLResponse:
    # FastAPI's own /docs loads Swagger UI from a CDN; these are the same files, vendored by a package.
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="mlplab API",
        swagger_favicon_url="data:,",
        swagger_js_url="/static/swagger/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger/swagger-ui.css",
    )


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static/swagger", CachedStatic(directory=swagger_ui_path), name="swagger")
    app.mount("/static", CachedStatic(directory=WEB), name="static")
