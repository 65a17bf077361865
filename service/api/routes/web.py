"""The dashboard and the OpenAPI docs UI: pages and their assets, all served from here with cache
headers. Nothing comes from a CDN, so both work on a machine without internet, and no page carries
an inline script, so both work under the Content-Security-Policy of service/api/security.py."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Scope
from swagger_ui_bundle import swagger_ui_path

WEB = Path(__file__).resolve().parents[2] / "web"


def _package_dir(name: str) -> Path:
    """Where an installed package lives, found without importing it."""
    spec = find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {name} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


PLOTLY_JS = _package_dir("plotly") / "package_data"  # plotly.js, as the plotly package ships it

router = APIRouter(include_in_schema=False)


class CachedStatic(StaticFiles):
    """Static files with a Cache-Control max-age, revalidated by ETag after it (304 when unchanged);
    `only` restricts a folder to the files named in it."""

    def __init__(self, *, directory: str | Path, max_age: int = 300, only: frozenset[str] | None = None):
        super().__init__(directory=directory)
        self.cache_control = f"public, max-age={max_age}"
        self.only = only

    async def get_response(self, path: str, scope: Scope) -> Response:
        if self.only is not None and path not in self.only:
            raise HTTPException(404)
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = self.cache_control
        return response


STATIC = CachedStatic(directory=WEB)


def _page(name: str, request: Request, cache: str = "no-cache") -> Response:
    """A file at the root, by default a page a browser revalidates on every visit: 304 while its ETag holds."""
    path = WEB / name
    page = FileResponse(path, stat_result=path.stat(), headers={"Cache-Control": cache})
    if STATIC.is_not_modified(page.headers, request.headers):
        return NotModifiedResponse(page.headers)
    return page


@router.get("/")
def dashboard(request: Request) -> Response:
    return _page("index.html", request)


@router.get("/docs")
def docs(request: Request) -> Response:
    # FastAPI's own /docs loads Swagger UI from a CDN and starts it with an inline script; this page
    # loads the same files, vendored by a package, and starts them from /static/docs.js.
    return _page("docs.html", request)


@router.get("/favicon.ico")
def favicon(request: Request) -> Response:
    # browsers ask for it at the root whatever the page says, the JSON of an API answer included
    return _page("favicon.ico", request, STATIC.cache_control)


def mount(app: FastAPI) -> None:
    app.include_router(router)
    # the two files docs.html loads: not the package's demo page (the petstore), its OAuth page, its maps
    swagger = frozenset({"swagger-ui.css", "swagger-ui-bundle.js"})
    app.mount("/static/swagger", CachedStatic(directory=swagger_ui_path, only=swagger), name="swagger")
    # megabytes that change only with the plotly package: a day before revalidating
    app.mount(
        "/static/vendor",
        CachedStatic(directory=PLOTLY_JS, max_age=86400, only=frozenset({"plotly.min.js"})),
        name="vendor",
    )
    app.mount("/static", STATIC, name="static")
