"""The ASGI application. For now it answers health checks; webhook intake and the host API are
added on top of it (see the issues for the webhook server and the host API)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from payments_core.db import get_engine, read_engine

app = FastAPI(title="Paydesk", version="0.1.0")


@app.get("/healthz")
def healthz() -> JSONResponse:
    """200 when the database answers, 503 when it does not (so a load balancer stops sending)."""
    try:
        with read_engine(get_engine()).connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return JSONResponse(
            {"status": "unavailable", "database": type(exc).__name__}, status_code=503
        )
    return JSONResponse({"status": "ok", "database": "ok"})
