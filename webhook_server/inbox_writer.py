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

On PostgreSQL a batch is sent at the moment it is formed, not one loop turn later: once
``EAGER_BATCH`` deliveries wait and a connection is free, the request that completed the batch
sends it before handing the loop back (see ``_Started``). Under load a whole burst of requests is
handled in one turn of the loop; sent only at the end, its single batch would keep every client
waiting while it commits and leave the server idle. Sent as it forms, the first part commits while
the rest of the burst is still being verified.

If a batch fails, its deliveries are stored one by one, so one bad delivery cannot make the others
fail; a delivery whose own insert fails gets the error (and the request answers 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import Callable, Coroutine, Generator, Sequence
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
    PreparedInsert,
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
EAGER_BATCH = 16  # PostgreSQL: deliveries waiting that are sent at once when a connection is free


class _Started:
    """A coroutine run now up to its first suspension; awaiting this object finishes it.

    What Python 3.12's eager tasks do, for 3.11: here, psycopg's ``cursor.execute`` sends the
    query at once and then waits for the answer in the writer's task. Only psycopg's execute runs
    early (it needs no current task); the timeout around it is entered by the task that awaits.
    An exception of the early part is raised when awaited.
    """

    __slots__ = ("_coro", "_done", "_error", "_result", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self._yielded: Any = None
        self._done = False
        self._result: Any = None
        self._error: Exception | None = None
        try:
            self._yielded = coro.send(None)
        except StopIteration as stop:
            self._done, self._result = True, stop.value
        except Exception as exc:  # raised again where it is awaited
            self._done, self._error = True, exc

    def __await__(self) -> Generator[Any, Any, Any]:
        if self._error is not None:
            raise self._error
        if self._done:
            return self._result
        yielded = self._yielded
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                self._coro.close()
                raise
            except BaseException as exc:  # cancellation and timeouts reach psycopg's wait
                try:
                    yielded = self._coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = self._coro.send(sent)
                except StopIteration as stop:
                    return stop.value

    def close(self) -> None:
        """Never awaited (its task was cancelled before it ran): stop psycopg's wait."""
        self._coro.close()


@dataclass
class _Sent:
    """A PostgreSQL batch already sent on its connection, waiting for the answer."""

    url: str
    connection: psycopg.AsyncConnection[Any]
    prepared: PreparedInsert
    execute: _Started
    awaited: bool = False


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
        self._free_slots = PG_IN_FLIGHT  # PostgreSQL batches that may still be sent
        self._slot_freed: asyncio.Future[None] | None = None  # the flusher waiting for a slot
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
            self._free_slots, self._slot_freed = PG_IN_FLIGHT, None
        pending = _Pending(item, loop.create_future())
        self._pending.append(pending)
        if (
            len(self._pending) >= EAGER_BATCH
            and _is_postgresql(get_settings().effective_database_url)
            and self._take_slot()
        ):
            self._dispatch(self._take_batch())  # sent now; see the module docstring
        elif self._flusher is None or self._flusher.done():
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
            if not postgresql:
                await self._write(self._take_batch())
                continue
            # A free connection first, then the batch: what arrives meanwhile joins it.
            while not self._take_slot():
                self._slot_freed = asyncio.get_running_loop().create_future()
                await self._slot_freed
            if not self._pending:  # sent meanwhile by a request (``store``)
                self._release_slot()
                break
            self._dispatch(self._take_batch())

    def _take_batch(self) -> list[_Pending]:
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        return batch

    def _take_slot(self) -> bool:
        if self._free_slots > 0:
            self._free_slots -= 1
            return True
        return False

    def _release_slot(self) -> None:
        self._free_slots += 1
        if self._slot_freed is not None and not self._slot_freed.done():
            self._slot_freed.set_result(None)

    def _dispatch(self, batch: list[_Pending]) -> None:
        """PostgreSQL, holding a slot: send the batch now if a connection is idle (a new
        connection is opened by the task instead), and wait for its commit in a task."""
        sent = self._send_now([p.item for p in batch])
        task = asyncio.get_running_loop().create_task(self._write_and_release(batch, sent))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        if sent is not None:
            task.add_done_callback(lambda _: self._abandon(sent))

    async def _write_and_release(self, batch: Sequence[_Pending], sent: _Sent | None) -> None:
        try:
            await self._write(batch, sent)
        finally:
            self._release_slot()

    async def _write(self, batch: Sequence[_Pending], sent: _Sent | None = None) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                results = await self._commit([p.item for p in batch], sent)
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

    def _send_now(self, items: list[InboxItem]) -> _Sent | None:
        """Send a PostgreSQL batch on an idle connection before returning (None when no
        connection is idle). One statement in autocommit mode is one transaction: it is
        committed when the answer arrives, one round trip for the whole batch."""
        url = get_settings().effective_database_url
        connection = self._idle_connection(url)
        if connection is None:
            return None
        prepared = prepare_inbox_insert(items, self._pg_dialect)
        cursor = connection.cursor()
        # Binary parameters: the arrays (1 KiB bodies among them) go unescaped.
        execute = _Started(cursor.execute(prepared.sql, prepared.columns(), binary=True))
        return _Sent(url, connection, prepared, execute)

    def _abandon(self, sent: _Sent) -> None:
        """A sent batch whose task ended before awaiting it (cancelled at shutdown)."""
        if not sent.awaited:
            sent.execute.close()
            self._close_later(sent.connection)

    async def _commit(self, items: list[InboxItem], sent: _Sent | None) -> list[StoredWebhook]:
        url = get_settings().effective_database_url
        if not _is_postgresql(url):
            return self._commit_sqlite(url, items)
        if sent is None:
            connection = await self._checkout(url)
            prepared = prepare_inbox_insert(items, self._pg_dialect)
            execute = _Started(
                connection.cursor().execute(prepared.sql, prepared.columns(), binary=True)
            )
        else:
            sent.awaited = True
            url, connection, prepared, execute = (
                sent.url,
                sent.connection,
                sent.prepared,
                sent.execute,
            )
        done = False
        try:
            cursor = await execute
            created = {(p, e): i for p, e, i in await cursor.fetchall()}
            await cursor.close()
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

    def _idle_connection(self, url: str) -> psycopg.AsyncConnection[Any] | None:
        while self._pg_idle:
            idle_url, connection = self._pg_idle.pop()
            if idle_url == url and not connection.closed:
                return connection
            self._close_later(connection)
        return None

    def _close_later(self, connection: psycopg.AsyncConnection[Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._close_quietly(connection))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    @staticmethod
    async def _close_quietly(connection: psycopg.AsyncConnection[Any]) -> None:
        with contextlib.suppress(psycopg.Error):
            await connection.close()

    async def _checkout(self, url: str) -> psycopg.AsyncConnection[Any]:
        """An idle connection to ``url`` for one batch (a new one when none is idle)."""
        connection = self._idle_connection(url)
        if connection is not None:
            return connection
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
        while self._in_flight:  # batches, and connections being closed
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        idle, self._pg_idle = self._pg_idle, []
        for _, connection in idle:
            with contextlib.suppress(psycopg.Error):
                await connection.close()
        self._close_sqlite()
        self._loop, self._flusher = None, None
