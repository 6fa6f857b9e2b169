"""The API docs pages, /docs (Swagger UI) and /redoc (ReDoc), with their scripts and styles served by
the service itself.

FastAPI's own pages load Swagger UI and ReDoc from a CDN (and ReDoc its fonts from Google), so on a
machine without internet access both pages stayed blank. The assets come from the fastapi-offline
package (a serve dependency), which ships them as plain files; the pages are FastAPI's
get_swagger_ui_html / get_redoc_html pointed at them.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

from socialens.core.errors import ConfigError

ASSETS_URL = "/docs/assets"
# file name -> media type; each is one fixed route, so no client-chosen path ever reaches the disk
ASSET_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
DOCS_URL, REDOC_URL, OAUTH2_REDIRECT_URL, OPENAPI_URL = (
    "/docs",
    "/redoc",
    "/docs/oauth2-redirect",
    "/openapi.json",
)
# What a browser fetches to show the docs: open even when the API needs a token (BearerAuth)
DOCS_PATHS = frozenset(
    {DOCS_URL, REDOC_URL, OAUTH2_REDIRECT_URL, OPENAPI_URL, *(f"{ASSETS_URL}/{name}" for name in ASSET_FILES)}
)


def assets_folder() -> Path:
    """The folder holding Swagger UI's and ReDoc's files, or a one-line ConfigError."""
    try:
        import fastapi_offline
    except ImportError:
        raise ConfigError(
            "the API docs need the fastapi-offline package (it ships Swagger UI and ReDoc); "
            "install it with: pip install 'socialens[serve]'"
        ) from None
    folder = Path(fastapi_offline.__file__).parent / "static"
    missing = [name for name in ASSET_FILES if not (folder / name).is_file()]
    if missing:
        raise ConfigError(f"{folder}: missing {', '.join(missing)}; reinstall fastapi-offline")
    return folder


def add_docs(app: FastAPI) -> None:
    """Add /docs, /docs/oauth2-redirect, /redoc and their assets to ``app``, which must have been
    created with ``docs_url=None, redoc_url=None`` (FastAPI's CDN pages)."""
    folder = assets_folder()

    def asset_route(path: Path, media_type: str):
        async def asset() -> FileResponse:
            return FileResponse(path, media_type=media_type)

        return asset

    for name, media_type in ASSET_FILES.items():
        app.add_api_route(
            f"{ASSETS_URL}/{name}",
            asset_route(folder / name, media_type),
            methods=["GET"],
            include_in_schema=False,
        )

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")  # behind a proxy that mounts the service under a prefix
        return get_swagger_ui_html(
            openapi_url=f"{root}{OPENAPI_URL}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
            # Swagger UI would send the spec to validator.swagger.io for its badge on any non-local host
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{OPENAPI_URL}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )


__all__ = ["ASSETS_URL", "ASSET_FILES", "DOCS_PATHS", "add_docs", "assets_folder"]
