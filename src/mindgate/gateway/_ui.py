"""The web dashboard at ``/ui``: memories, models, routing and a traffic plot, served by the gateway itself.

Design: ``/ui`` serves one static HTML shell plus one script and one stylesheet from
``mindgate/gateway/static`` (no CDN, no build step, works offline). The shell holds no data, so it is
public; every piece of data comes from authenticated endpoints: the public memory API (``/v1/memories``)
and the dashboard's own JSON under ``/ui/api`` (:mod:`.ui_api`). When API keys are configured the page
asks for a key, keeps it in ``sessionStorage`` (this tab only, gone when it closes) and sends it as
``Authorization: Bearer`` on every fetch; no cookie is set, so there is no ambient credential a
cross-site request could ride on. Every response of the shell carries a strict Content-Security-Policy
(scripts and styles from this origin only, no inline script), and the script renders user text with
``textContent`` only, never as HTML.

:func:`install` is the single hook into :func:`~mindgate.gateway._app.create_app`.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, FastAPI
from starlette.responses import Response

from mindgate.errors import NotFoundError
from mindgate.gateway import _ui_api as ui_api
from mindgate.gateway._state import Gateway

router = APIRouter(prefix="/ui", tags=["ui"], include_in_schema=False)

_ASSETS = {"index.html": "text/html; charset=utf-8", "ui.js": "text/javascript; charset=utf-8",
           "ui.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> Response:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFoundError(f"no dashboard asset {name!r}", hint=f"assets: {', '.join(sorted(_ASSETS))}")
    body = resources.files("mindgate.gateway").joinpath("static", name).read_bytes()
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("")
@router.get("/")
async def shell() -> Response:
    """The dashboard page (no data in it: the script fetches everything with the key)."""
    return _asset("index.html")


@router.get("/static/{name}")
async def asset(name: str) -> Response:
    return _asset(name)


def install(app: FastAPI) -> None:
    """Serve the dashboard from ``app``: pages and assets under ``/ui``, JSON under ``/ui/api``, and the
    traffic series fed by the gateway's request metrics (closed with the gateway)."""
    gateway: Gateway = app.state.gateway
    state = ui_api.UIState(gateway)
    app.state.ui = state
    gateway.metrics.observers.append(state.series.observe)
    gateway.owned.append(state)
    app.include_router(router)
    app.include_router(ui_api.router)
