"""The web pages: merchant dashboard, promoter page and platform overview.

Plain HTML and JavaScript served from api/pages; they read the query routes like any
client. The Content-Security-Policy allows this origin only: no inline script, no CDN,
nothing a page could be made to fetch or send elsewhere.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from domain.exceptions import NotFound

router = APIRouter(include_in_schema=False)

PAGES = {"dashboard": "dashboard.html", "promoter": "promoter.html", "admin": "admin.html"}
ASSETS = {
    "kami.css": "text/css; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "promoter.js": "text/javascript; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    return resources.files("api").joinpath("pages", name).read_bytes()


def _page(name: str) -> HTMLResponse:
    return HTMLResponse(_read(PAGES[name]), headers=SECURITY_HEADERS)


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard_page() -> HTMLResponse:
    """The merchant dashboard; the merchant signs in with its API key."""
    return _page("dashboard")


@router.get("/promoter", response_class=HTMLResponse)
def promoter_page() -> HTMLResponse:
    """The promoter's payouts, level and referrals; signs in with the promoter token."""
    return _page("promoter")


@router.get("/admin", response_class=HTMLResponse)
def admin_page() -> HTMLResponse:
    """The platform overview; signs in with the admin token."""
    return _page("admin")


@router.get("/pages/{name}")
def page_asset(name: str) -> Response:
    """A stylesheet or script of the pages: a fixed list, so no path reaches the disk."""
    if name not in ASSETS:
        raise NotFound("no such page asset")
    return Response(_read(name), media_type=ASSETS[name], headers=SECURITY_HEADERS)
