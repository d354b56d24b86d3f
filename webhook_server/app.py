"""The ASGI application: provider webhooks, the host-application API (/api/v1, documented at
/docs), the dummy provider's /simulate pages, health and metrics.

Handlers are thin: webhook routes read the raw body and hand it to ``webhook_server.intake``
(verification, then the durable group-committed insert); API routes validate and call
``payments_core.services``.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from payments_core.config import get_settings
from payments_core.db import get_engine, read_engine
from payments_core.providers.base import RejectionReason, WebhookRejected
from webhook_server import api, simulate
from webhook_server.intake import BodyTooLarge, Delivery, Intake, read_body, request_headers
from webhook_server.metrics import IntakeMetrics
from webhook_server.worker import WorkerThread


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """`paydesk serve` runs a worker in the same process unless told not to (`--no-worker`)."""
    _freeze_startup_objects()
    worker = WorkerThread() if os.environ.get(IN_PROCESS_WORKER_ENV) == "1" else None
    if worker is not None:
        worker.start()
    try:
        yield
    finally:
        await intake.writer.close()
        if worker is not None:
            worker.stop()


_frozen = False


def _freeze_startup_objects() -> None:
    """Move what start-up created (modules, the SDKs, SQLAlchemy's metadata: about 300,000
    objects) out of the collector's reach, once per process. Otherwise every full collection
    walks them all (about 0.2 s, during which no request is answered); they live as long as the
    process anyway.

    Also collect the youngest generation every ``YOUNG_COLLECTION_THRESHOLD`` allocations instead
    of Python's 700. Each collection walks everything young that is still alive, and under load
    that is mostly the requests in flight (their suspended coroutines and frames), so at 700 the
    same live requests were walked over and over: 1-2% of the server's CPU during webhook intake.
    Reference cycles are still collected, just in larger steps."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)
        _frozen = True


YOUNG_COLLECTION_THRESHOLD = 10_000


IN_PROCESS_WORKER_ENV = "PAYDESK_IN_PROCESS_WORKER"
app = FastAPI(
    title="Paydesk",
    version="0.1.0",
    lifespan=lifespan,
    summary="Host-application API: create payments and checkouts, read their status, send proofs "
    "of manual payments. Authenticate with `Authorization: Bearer <api key>` "
    "(`paydesk apikey create --name NAME`).",
)
metrics = IntakeMetrics()
intake = Intake(metrics)
app.include_router(api.router)
app.include_router(simulate.router)
app.add_exception_handler(RequestValidationError, api.validation_error)
simulate.use_intake(intake)


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


@app.get("/metrics")
def prometheus_metrics() -> Response:
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _answer(body: dict[str, Any], status_code: int) -> Response:
    """A webhook answer: small JSON, encoded by orjson (the hot path answers thousands a second)."""
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


async def _receive(request: Request, provider: str, token: str | None = None) -> Response:
    client = request.scope.get("client")  # (host, port), or None
    source_ip = client[0] if client else None
    headers = request_headers(request.scope)
    limit = get_settings().webhook_max_body_bytes
    try:
        raw = await read_body(request.receive, limit, headers.get("content-length"))
    except BodyTooLarge:
        delivery = Delivery(provider, b"", headers, source_ip)
        rejected = WebhookRejected(RejectionReason.TOO_LARGE, "body over the size limit", 413)
        answer = await run_in_threadpool(intake.reject, delivery, rejected)
        return _answer(answer.body, answer.status_code)
    except ClientDisconnect:
        return _answer({"error": "client_disconnected"}, 400)
    delivery = Delivery(provider, raw, headers, source_ip, token)
    answer = await intake.areceive(delivery)
    return _answer(answer.body, answer.status_code)


async def mpesa_callback(request: Request) -> Response:
    """M-Pesa STK callbacks: unsigned, so the URL carries a secret per-payment token."""
    return await _receive(request, "mpesa", request.path_params["token"])


async def provider_webhook(request: Request) -> Response:
    provider = request.path_params["provider"]
    if provider == "mpesa":  # M-Pesa callbacks always come to their per-payment URL
        return await _receive(request, "mpesa", "")
    return await _receive(request, provider)


# Plain Starlette routes: providers post raw bytes, so there is nothing for FastAPI's parameter
# parsing and validation to do on this hot path (and no OpenAPI entry to show host applications).
app.router.add_route("/webhooks/mpesa/{token}", mpesa_callback, methods=["POST"])
app.router.add_route("/webhooks/{provider}", provider_webhook, methods=["POST"])
