"""The webhook server app plus a bare endpoint on the same stack, for the intake benchmark only."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from webhook_server.app import app


async def bare(request: Request) -> JSONResponse:
    """Reads the body and answers 200: no verification, no database. Routed exactly like the
    webhook endpoints (a plain Starlette route on the same app and middleware stack)."""
    await request.body()
    return JSONResponse({"status": "accepted"})


app.router.add_route("/_bench/bare", bare, methods=["POST"])

__all__ = ["app"]
