"""Web page: a page at ``/`` to try the service from a browser (files in ``app/static``).

Plain HTML, CSS and JavaScript shipped with the package: nothing is built at deploy time and
the page loads nothing from elsewhere (its Content-Security-Policy says so), so it works on a
machine without internet. It calls the same ``/api/v1/lipsync/*`` endpoints as any client.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.errors import problem

router = APIRouter(tags=["web"], include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
_ASSET = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(css|js|svg)$")
_MEDIA_TYPES = {
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "svg": "image/svg+xml",
}
_HEADERS = {
    # Same origin only: the page and its API; blob: for previews of the chosen files.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "media-src 'self' blob:; connect-src 'self' blob:; form-action 'none'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@router.get("/", response_class=FileResponse)
def index() -> FileResponse:
    """The page to try the service: upload, watch progress, play and download the result."""
    return FileResponse(
        STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=_HEADERS
    )


@router.get("/static/{name}", response_class=FileResponse)
def asset(name: str) -> FileResponse:
    """One of the page's own files (a flat name, never a path)."""
    match = _ASSET.fullmatch(name)
    path = STATIC_DIR / name
    if match is None or path.is_symlink() or not path.is_file():
        raise problem(404, "no such file", "not_found")
    return FileResponse(path, media_type=_MEDIA_TYPES[match.group(1)], headers=_HEADERS)
