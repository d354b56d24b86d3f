"""Group commit for the inbox: concurrent deliveries share one transaction and one commit.

Every request still gets its answer only after its own row is committed. A request hands its
verified delivery to the writer and awaits it; the writer, a task on the server's event loop, takes
everything that queued up while the previous commit was in flight, inserts it in one transaction,
commits once, and then resolves each waiting request with its own result (accepted or duplicate).
Under load one commit is shared by many deliveries; alone, a delivery waits only for its own.

The writer runs on the event loop, not in a thread: a thread would have to win the interpreter
lock back from a busy event loop for every database call, and that, not the database, would set
the pace. PostgreSQL is written through psycopg's async connections, up to ``PG_IN_FLIGHT``
batches at a time on connections of their own: while one batch's commit travels (a batch of 32
takes ~0.8 ms), the loop serves the next requests and the next batch can already be sent, so the
commit's latency is hidden instead of idling every waiting request. SQLite, an in-process library
whose commits take microseconds (plus an fsync), is written synchronously between two turns of the
loop, one batch at a time.

If a batch fails, its deliveries are stored one by one, so one bad delivery cannot make the others
fail; a delivery whose own insert fails gets the error (and the request answers 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy.dialects.postgresql.psycopg import dialect as PsycopgDialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from payments_core.config import get_settings
from payments_core.db import get_engine
from payments_core.services.inbox import (
    InboxItem,
    StoredWebhook,
    insert_sqlite,
    prepare_inbox_insert,
)

log = logging.getLogger("paydesk.intake")


@functools.lru_cache(maxsize=8)
def _is_postgresql(url: str) -> bool:
    # Parsing a URL costs ~50 us: once per URL, not once per batch.
    return make_url(url).get_backend_name() == "postgresql"


class InboxUnavailable(Exception):
    """The batch could not be committed (database down, connection lost, ...)."""


@dataclass
class _Pending:
    item: InboxItem
    result: asyncio.Future[StoredWebhook] = field(repr=False)


PG_IN_FLIGHT = 2  # PostgreSQL batches committing at once (each on its own connection)


class InboxWriter:
    def __init__(
        self, max_batch: int = 256, on_commit: Callable[[int], None] | None = None
    ) -> None:
        self.max_batch = max_batch
        self.on_commit = on_commit
        self.timeout = 30.0  # seconds a batch may take to commit before its requests answer 503
        self.batches = 0
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._pg_idle: list[tuple[str, psycopg.AsyncConnection[Any]]] = []  # (url, connection)
        self._slots: asyncio.Semaphore | None = None  # PostgreSQL batches that may be in flight
        self._in_flight: set[asyncio.Task[None]] = set()
        self._pg_dialect = PsycopgDialect()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sqlite: Any = None  # a pooled DB-API connection, checked out for the writer's life
        self._sqlite_url: str | None = None

    # --- requests ------------------------------------------------------------------------------

    async def store(self, item: InboxItem) -> StoredWebhook:
        """Store one delivery; returns once its row is committed (raises InboxUnavailable when
        it was not, or is not known to be)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (server restart in-process, tests)
            self._loop, self._pending, self._flusher = loop, [], None
            self._pg_idle, self._in_flight = [], set()
            self._slots = asyncio.Semaphore(PG_IN_FLIGHT)
        pending = _Pending(item, loop.create_future())
        self._pending.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        # No timer per request: each batch's commit is bounded (``_write``), and so is the wait.
        return await pending.result

    # --- the writer task -------------------------------------------------------------------------

    async def _flush(self) -> None:
        postgresql = _is_postgresql(get_settings().effective_database_url)
        # Let the requests that are already being read join the first batch. SQLite's write
        # stops the loop, so it waits while the loop keeps bringing more (a few turns at most; at
        # once when nothing else runs) and writes seldom. PostgreSQL's goes out at the next turn:
        # with batches in flight side by side, the next batch forms during the commit.
        waiting = -1
        for _ in range(1 if postgresql else 8):
            if len(self._pending) == waiting:
                break
            waiting = len(self._pending)
            await asyncio.sleep(0)
        while self._pending:
            if postgresql:
                # A free connection first, then the batch: what arrives meanwhile joins it.
                assert self._slots is not None
                await self._slots.acquire()
            batch, self._pending = (
                self._pending[: self.max_batch],
                self._pending[self.max_batch :],
            )
            if not postgresql:
                await self._write(batch)
                continue
            task = asyncio.get_running_loop().create_task(self._write_and_release(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _write_and_release(self, batch: Sequence[_Pending]) -> None:
        try:
            await self._write(batch)
        finally:
            assert self._slots is not None
            self._slots.release()

    async def _write(self, batch: Sequence[_Pending]) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                results = await self._commit([p.item for p in batch])
        except TimeoutError:
            # Not known to be committed: every delivery of the batch is answered 503 (a retry
            # finds the row if it did commit, and is acknowledged as a duplicate). The batch's
            # own connection was closed by ``_commit``.
            for pending in batch:
                if not pending.result.done():
                    pending.result.set_exception(InboxUnavailable("commit timed out"))
            return
        except (InboxUnavailable, SQLAlchemyError, psycopg.Error) as exc:
            if len(batch) == 1:
                if not batch[0].result.done():
                    batch[0].result.set_exception(InboxUnavailable(str(exc)))
                return
            log.warning("inbox batch of %d failed (%s); storing one by one", len(batch), exc)
            for pending in batch:
                await self._write([pending])
            return
        except BaseException as exc:  # never leave a request waiting
            for pending in batch:
                if not pending.result.done():
                    pending.result.set_exception(exc)
            raise
        self.batches += 1
        if self.on_commit is not None:
            self.on_commit(len(batch))
        for pending, result in zip(batch, results, strict=True):
            if not pending.result.done():
                pending.result.set_result(result)

    async def _commit(self, items: list[InboxItem]) -> list[StoredWebhook]:
        url = get_settings().effective_database_url
        if not _is_postgresql(url):
            return self._commit_sqlite(url, items)
        prepared = prepare_inbox_insert(items, self._pg_dialect)
        connection = await self._checkout(url)
        created: dict[tuple[str, str], int] = {}
        done = False
        try:
            # One statement in autocommit mode is one transaction: it is committed when the
            # answer arrives, one round trip for the whole batch.
            async with connection.cursor() as cursor:
                # Binary parameters: the arrays (1 KiB bodies among them) go unescaped.
                await cursor.execute(prepared.sql, prepared.columns(), binary=True)
                created.update(((p, e), i) for p, e, i in await cursor.fetchall())
            done = True
        finally:
            if done:
                self._pg_idle.append((url, connection))
            else:  # failed, timed out or cancelled: its state is unknown, never reuse it
                with contextlib.suppress(psycopg.Error):
                    await connection.close()
        return prepared.results(created)

    def _commit_sqlite(self, url: str, items: list[InboxItem]) -> list[StoredWebhook]:
        """SQLite: BEGIN IMMEDIATE, one multi-row INSERT, COMMIT on a connection the writer keeps
        (the engine's own, with its pragmas: WAL, synchronous=FULL, busy timeout)."""
        engine = get_engine()
        if self._sqlite is None or self._sqlite_url != url:
            self._close_sqlite()
            self._sqlite, self._sqlite_url = engine.raw_connection(), url
        prepared = prepare_inbox_insert(items, engine.dialect)
        cursor = self._sqlite.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
            try:
                created = insert_sqlite(cursor, prepared)
                cursor.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    cursor.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._close_sqlite()
            raise InboxUnavailable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            with contextlib.suppress(sqlite3.Error):
                cursor.close()
        return prepared.results(created)

    def _close_sqlite(self) -> None:
        connection, self._sqlite = self._sqlite, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.invalidate()  # not back to the pool: its state is ours

    async def _checkout(self, url: str) -> psycopg.AsyncConnection[Any]:
        """An idle connection to ``url`` for one batch (a new one when none is idle)."""
        while self._pg_idle:
            idle_url, connection = self._pg_idle.pop()
            if idle_url == url and not connection.closed:
                return connection
            with contextlib.suppress(psycopg.Error):
                await connection.close()
        conninfo = make_url(url).set(drivername="postgresql").render_as_string(False)
        try:
            return await psycopg.AsyncConnection.connect(
                conninfo, connect_timeout=5, autocommit=True
            )
        except psycopg.Error as exc:
            raise InboxUnavailable(f"cannot connect: {exc}") from exc

    async def close(self) -> None:
        """Finish the batch in flight and close the connection (server shutdown)."""
        if self._loop is not asyncio.get_running_loop():
            return  # nothing of ours runs on this loop
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        idle, self._pg_idle = self._pg_idle, []
        for _, connection in idle:
            with contextlib.suppress(psycopg.Error):
                await connection.close()
        self._close_sqlite()
        self._loop, self._flusher = None, None
