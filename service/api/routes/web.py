"""The dashboard: one HTML page and its static assets, served with cache headers."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB = Path(__file__).resolve().parents[2] / "web"

router = APIRouter(include_in_schema=False)


class CachedStatic(StaticFiles):
    """Static files revalidated by ETag after 5 minutes: fresh after an upgrade, cheap in between."""

    async def get_response(self, path: str, scope: Scope):
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "public, max-age=300"
        return response


@router.api_route("/", methods=["GET", "HEAD"])
def dashboard() -> FileResponse:
    return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", CachedStatic(directory=WEB), name="static")
