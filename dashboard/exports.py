"""CSV exports on disk, and the backend route that hands each one only to the person who made it.

An export is written to ``<VAR_DIR>/exports/<user id>/<random>.csv``: the folder is the owner.
``GET /exports/<random>.csv`` on the Reflex backend reads the same session cookie as
``AuthState``, turns it into an ``Actor`` with the same ``actor_for_session``, needs
VIEW_PAYMENTS, and looks only in that user's own folder, so another user's name is simply not
found. A name must have exactly the shape ``new_export_path`` makes (no path ever comes from the
request). Answers: 401 without a live session, 403 without the permission, 404 for any name that
is not one of the caller's exports; none of them carries file content.

The route is mounted around Reflex's backend (``rx.App(api_transformer=mount_exports)``), so the
browser fetches it from the backend's address; ``download_url`` builds that address the way
Reflex's frontend reaches its backend (``getBackendURL`` in ``.web/utils/state.js``).
Files older than ``KEPT_SECONDS`` are swept whenever a new export starts.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from reflex.config import get_config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from dashboard.state import SESSION_COOKIE, actor_for_session
from payments_core.config import get_settings
from payments_core.services.permissions import Actor, Permission

ROUTE = "/exports"
KEPT_SECONDS = 3600  # an export is fetched right after it is written; keep the folder small
# secrets.token_urlsafe(24): 32 characters of the URL-safe base64 alphabet.
_NAME = re.compile(r"[A-Za-z0-9_-]{32}\.csv")
# The hosts Reflex's frontend replaces with the page's own host to reach the backend.
_SAME_DOMAIN_HOSTS = frozenset({"localhost", "0.0.0.0", "::", "0:0:0:0:0:0:0:0"})  # noqa: S104


class ExportRefused(Exception):
    """The actor cannot own an export file (no user id: not a dashboard session)."""


def exports_root() -> Path:
    return get_settings().var_dir / "exports"


def _folder(actor: Actor, root: Path) -> Path:
    if actor.user_id is None:
        raise ExportRefused(f"{actor.name} is not signed in to the dashboard")
    return root / str(actor.user_id)


def sweep(root: Path, *, now: float | None = None) -> None:
    """Delete every user's exports older than ``KEPT_SECONDS``."""
    cutoff = (time.time() if now is None else now) - KEPT_SECONDS
    for old in root.glob("*/*.csv"):
        if old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)


def new_export_path(actor: Actor, *, root: Path | None = None) -> Path:
    """Where ``actor``'s next export goes (a fresh random name in their folder); sweeps first."""
    root = root or exports_root()
    folder = _folder(actor, root)
    folder.mkdir(parents=True, exist_ok=True)
    sweep(root)
    return folder / f"{secrets.token_urlsafe(24)}.csv"


def find_export(actor: Actor, name: str, *, root: Path | None = None) -> Path | None:
    """``actor``'s own export called ``name``, or None (bad name, someone else's, or gone)."""
    if actor.user_id is None or not _NAME.fullmatch(name):
        return None
    path = _folder(actor, root or exports_root()) / name
    return path if path.is_file() else None


def download_url(name: str, page_url: str, *, api_url: str | None = None) -> str:
    """The backend URL of export ``name``, as seen from the browser page at ``page_url``
    (``api_url``: the backend's configured address, Reflex's ``api_url`` by default)."""
    config = get_config()
    api = urlsplit(api_url or config.api_url)
    page = urlsplit(page_url)
    scheme, netloc = api.scheme, api.netloc
    if api.hostname in _SAME_DOMAIN_HOSTS and page.hostname:
        # As getBackendURL does: the backend is on the host the page came from, so the session
        # cookie (host-scoped, not port-scoped) goes along.
        host = f"[{page.hostname}]" if ":" in page.hostname else page.hostname
        if page.scheme == "https":
            scheme, netloc = "https", host
        else:
            netloc = f"{host}:{api.port}" if api.port else host
    path = api.path.rstrip("/") + config.prepend_backend_path(f"{ROUTE}/{name}")
    return urlunsplit((scheme, netloc, path, "", ""))


def serve_export(request: Request) -> Response:
    # A plain (sync) endpoint: Starlette runs it in a worker thread, off the event loop.
    actor = actor_for_session(request.cookies.get(SESSION_COOKIE, ""))
    if actor is None:
        return PlainTextResponse("Sign in to download exports.", status_code=401)
    if not actor.can(Permission.VIEW_PAYMENTS):
        return PlainTextResponse("You may not view payments.", status_code=403)
    path = find_export(actor, str(request.path_params.get("name", "")))
    if path is None:
        return PlainTextResponse("No such export.", status_code=404)
    written = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return FileResponse(
        path,
        media_type="text/csv; charset=utf-8",
        filename=f"paydesk-payments-{written:%Y%m%d-%H%M%S}.csv",  # Content-Disposition: attachment
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


def mount_exports(backend: ASGIApp) -> ASGIApp:
    """Reflex's backend with the export route in front of it."""
    route = get_config().prepend_backend_path(f"{ROUTE}/{{name}}")
    return Starlette(
        routes=[Route(route, serve_export, methods=["GET"]), Mount("", app=backend)],
    )
