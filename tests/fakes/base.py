"""Shared machinery for the fake provider servers: HTTP plumbing, routing, recording, faults.

A fake subclasses :class:`FakeServer`, registers routes in :meth:`FakeServer._register_routes`
and overrides :meth:`FakeServer.error_response` to shape errors the way its provider does.

The server is a standard-library :class:`http.server.ThreadingHTTPServer` bound to
``127.0.0.1:0`` and served from a daemon thread. Responses are HTTP/1.0 with
``Connection: close``: no keep-alive connection outlives :meth:`FakeServer.stop`, so a stopped
fake really refuses connections.

Every request is recorded in :attr:`FakeServer.requests` as
``RecordedRequest(method, path, headers, body)`` -- ``path`` is the raw request target
(including the query string), ``headers`` has lower-cased names, ``body`` is the raw bytes.

Fault injection (per path prefix, optionally per method, consumed in FIFO order):

* :meth:`FakeServer.fail_next` -- answer with an error status *without* processing the request.
* :meth:`FakeServer.malformed_next` -- process the request normally (state changes happen!), then
  send invalid JSON with the status the real handler chose: "the provider did it, but the
  client could not read the answer".
* :meth:`FakeServer.delay_next` -- process the request, then wait before answering (so a client
  timeout leaves the action done on the provider side, the classic unknown-outcome case).

Path prefixes match the path relative to the fake's mount point (``/payment/refunds``) or the
full path (``/api/v2.0/payment/refunds``); the query string is ignored.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Literal, NamedTuple, Self
from urllib.parse import parse_qsl, urlsplit

MALFORMED_BODY = b'{"this is": "not valid JSON", '


class RecordedRequest(NamedTuple):
    """One request as received by a fake (``headers`` names are lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Request:
    """A parsed request as handed to a route handler."""

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body parsed as JSON (raises :class:`json.JSONDecodeError` -> 400 by the base)."""
        return json.loads(self.body.decode("utf-8"))

    def header(self, name: str) -> str | None:
        """A header value by case-insensitive name."""
        return self.headers.get(name.lower())


@dataclass
class Response:
    """A response produced by a route handler."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        """A JSON response (compact separators, UTF-8)."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        return cls(status, body, "application/json", dict(headers or {}))


class HttpError(Exception):
    """Raised by handlers to short-circuit with a ready-made error :class:`Response`."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


Handler = Callable[[Request], Response]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


@dataclass
class _Fault:
    kind: Literal["fail", "malformed", "delay"]
    prefix: str
    method: str | None
    remaining: int
    status: int = 0
    body: bytes | None = None
    seconds: float = 0.0

    def matches(self, method: str, rel_path: str, full_path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return rel_path.startswith(self.prefix) or full_path.startswith(self.prefix)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return  # the client went away (e.g. it timed out during a delay_next): expected
        super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        response, delay = self.server.fake._dispatch(self.command, self.path, headers, body)
        if delay:
            time.sleep(delay)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Connection", "close")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class FakeServer:
    """Base class: a threaded loopback HTTP server with routing, recording and fault injection."""

    mount: ClassVar[str] = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []
        self._faults: list[_Fault] = []
        self._routes: list[_Route] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._register_routes()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind ``127.0.0.1:0`` and serve from a daemon thread. Returns ``self``."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        server = _Server(("127.0.0.1", 0), _RequestHandler)
        server.fake = self
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-{server.server_address[1]}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT`` (no mount prefix)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The URL clients are configured with: origin plus the mount prefix."""
        return self.origin + self.mount

    def url(self, path: str) -> str:
        """``base_url`` + ``path``."""
        return self.base_url + path

    # -- fault injection -------------------------------------------------------------------------

    def fail_next(
        self,
        path_prefix: str,
        status: int,
        times: int = 1,
        body: bytes | str | dict[str, Any] | list[Any] | None = None,
        *,
        method: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` without processing them.

        ``body`` may be bytes/str (sent as is) or a JSON-serialisable object; by default the
        provider-shaped error body from :meth:`error_response` is used.
        """
        raw: bytes | None
        if body is None:
            raw = None
        elif isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode("utf-8")
        else:
            raw = json.dumps(body, separators=(",", ":")).encode("utf-8")
        self._add_fault(_Fault("fail", path_prefix, _upper(method), times, status=status, body=raw))

    def malformed_next(
        self, path_prefix: str, times: int = 1, *, method: str | None = None
    ) -> None:
        """Process the next ``times`` matching requests, but answer with invalid JSON."""
        self._add_fault(_Fault("malformed", path_prefix, _upper(method), times))

    def delay_next(
        self, path_prefix: str, seconds: float, times: int = 1, *, method: str | None = None
    ) -> None:
        """Process the next ``times`` matching requests, then wait ``seconds`` before answering."""
        self._add_fault(_Fault("delay", path_prefix, _upper(method), times, seconds=seconds))

    def clear_faults(self) -> None:
        """Drop all pending injected faults."""
        with self._lock:
            self._faults.clear()

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(
        self, kinds: tuple[str, ...], method: str, rel_path: str, full_path: str
    ) -> _Fault | None:
        for fault in self._faults:
            if fault.kind in kinds and fault.matches(method, rel_path, full_path):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    # -- recording helpers -----------------------------------------------------------------------

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path (relative or full, query ignored) starts with a prefix."""
        wanted = _upper(method)
        with self._lock:
            recorded = list(self.requests)
        out = []
        for rec in recorded:
            full = urlsplit(rec.path).path
            rel = full[len(self.mount) :] if self.mount and full.startswith(self.mount) else full
            if (wanted is None or rec.method == wanted) and (
                rel.startswith(path_prefix) or full.startswith(path_prefix)
            ):
                out.append(rec)
        return out

    # -- routing ---------------------------------------------------------------------------------

    def _register_routes(self) -> None:
        """Subclasses call :meth:`route` here."""

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Register ``handler`` for ``method`` and a full-match regex on the relative path."""
        self._routes.append(_Route(method.upper(), re.compile(pattern), handler))

    def error_response(self, status: int, message: str) -> Response:
        """The provider-shaped error response (subclasses override)."""
        return Response.of_json(status, {"error": message})

    def _dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[Response, float]:
        split = urlsplit(target)
        full_path = split.path
        with self._lock:
            self.requests.append(RecordedRequest(method, target, dict(headers), body))
            rel_path = full_path
            if self.mount:
                rel_path = full_path[len(self.mount) :] if full_path.startswith(self.mount) else ""
            delay = self._take_fault(("delay",), method, rel_path, full_path)
            fault = self._take_fault(("fail", "malformed"), method, rel_path, full_path)
            if fault is not None and fault.kind == "fail":
                if fault.body is None:
                    response = self.error_response(fault.status, "Injected fault")
                else:
                    response = Response(fault.status, fault.body)
            else:
                request = Request(
                    method=method,
                    target=target,
                    path=rel_path,
                    query=dict(parse_qsl(split.query, keep_blank_values=True)),
                    headers=headers,
                    body=body,
                )
                response = self._route_request(request)
                if fault is not None:  # malformed
                    response = Response(response.status, MALFORMED_BODY, "application/json")
        return response, (delay.seconds if delay is not None else 0.0)

    def _route_request(self, request: Request) -> Response:
        path_matched = False
        if request.path:
            for route in self._routes:
                match = route.pattern.fullmatch(request.path)
                if match is None:
                    continue
                path_matched = True
                if route.method != request.method:
                    continue
                request.params = {k: v for k, v in match.groupdict().items() if v is not None}
                try:
                    return route.handler(request)
                except HttpError as exc:
                    return exc.response
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return self.error_response(400, "Malformed JSON request body")
                except Exception:  # report handler bugs as 500 and keep them for assertions
                    self.errors.append(traceback.format_exc())
                    return self.error_response(500, "Fake server error (see fake.errors)")
        if path_matched:
            return self.error_response(405, f"Method {request.method} not allowed")
        return self.error_response(404, f"No route for {request.method} {request.target}")


class CallbackReceiver(FakeServer):
    """A tiny catch-all HTTP endpoint that records what is POSTed to it (webhooks, callbacks).

    Every request on any path is answered with :attr:`status` and :attr:`body`; use
    :meth:`url` to build the callback URL and :attr:`requests` (or :meth:`wait_for`) to assert.
    """

    def __init__(self, status: int = 200, body: bytes | None = None) -> None:
        self.status = status
        self.body = body if body is not None else b'{"ResultCode":0,"ResultDesc":"Accepted"}'
        self._arrived = threading.Condition()
        super().__init__()

    def _register_routes(self) -> None:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            self.route(method, r"/.*", self._any)

    def _any(self, request: Request) -> Response:
        with self._arrived:
            self._arrived.notify_all()
        return Response(self.status, self.body)

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until at least ``count`` requests arrived; returns the recorded requests."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"expected {count} request(s), got {len(self.requests)}")
                self._arrived.wait(remaining)
        with self._lock:
            return list(self.requests)


def _upper(method: str | None) -> str | None:
    return method.upper() if method is not None else None
