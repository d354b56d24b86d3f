"""Group commit for the inbox: concurrent deliveries share one transaction and one commit.

Every request still gets its answer only after its own row is committed. A request hands its
verified delivery to the writer and awaits it; the writer, on the server's event loop, takes
everything that queued up while the previous commit was in flight, inserts it in one transaction,
commits once, and then resolves each waiting request with its own result (accepted or duplicate).
Under load one commit is shared by many deliveries; alone, a delivery waits only for its own.

The writer runs on the event loop, not in a thread: a thread would have to win the interpreter
lock back from a busy event loop for every database call, and that, not the database, would set
the pace. SQLite, an in-process library whose commits take microseconds (plus an fsync), is
written synchronously between two turns of the loop, one batch at a time.

PostgreSQL is written on up to ``PG_IN_FLIGHT`` connections of the writer's own, one batch each:
while one batch's commit travels, the loop serves the next requests and the next batch can already
be sent, so the commit's latency is hidden instead of idling every waiting request.

- A batch is one prepared statement in autocommit mode (one transaction, committed when its answer
  arrives). It is sent the moment it is formed, by plain function calls: once ``EAGER_BATCH``
  deliveries wait and a connection is free, by the request that completed the batch, before it
  hands the loop back; otherwise by the writer's task at its next turn. Under load a whole burst
  of requests is handled in one turn of the loop; sent only at the end, its single batch would
  keep every client waiting while it commits and leave the server idle.
- Its answer is read by a callback the connection registered with the loop once, for its life
  (``_PgConnection``), which resolves the batch's requests directly: no task, no generator and no
  epoll registration per batch. psycopg opens and closes the connections; batches go through its
  documented low-level access to libpq (``AsyncConnection.pgconn``). psycopg's async cursor
  (a task, a generator and a reader registered and removed per query) cost the server more CPU
  per batch than the rest of storing it, and the server's CPU is what sets the pace under load.
- Each batch's wait is bounded (``timeout``): a batch that does not answer in time is answered
  503 and its connection closed, which also ends its statement on the server.

If a batch fails, its deliveries are stored one by one, so one bad delivery cannot make the others
fail; a delivery whose own insert fails gets the error (and the request answers 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import struct
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import pq
from psycopg.pq.abc import PGresult
from sqlalchemy.dialects.postgresql.psycopg import dialect as PsycopgDialect
from sqlalchemy.engine import make_url

from payments_core.config import get_settings
from payments_core.db import get_engine
from payments_core.services.inbox import (
    InboxItem,
    PreparedInsert,
    StoredWebhook,
    insert_sqlite,
    postgresql_inbox_insert_sql,
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

# --- PostgreSQL ----------------------------------------------------------------------------------

_PG_DIALECT = PsycopgDialect()  # the bind processors ``prepare_inbox_insert`` applies
_STATEMENT = b"paydesk_inbox_insert"  # prepared once per connection
_TEXT_OID, _BYTEA_OID = 25, 17  # pg_type oids of the two arrays' elements
_BINARY = (1, 1)  # both parameters in binary format
_ARRAY_HEADER = struct.Struct("!iiIii")  # dimensions, has-nulls flag, element type, length, base
_LENGTH = struct.Struct("!i")

Rows = list[tuple[str, str, int]]  # (provider, event_id, id) of the rows a batch created
Answered = Callable[[Rows | None, BaseException | None], None]


def _binary_array(values: Sequence[bytes], element_oid: int) -> bytes:
    """A one-dimensional array without NULLs in PostgreSQL's binary format (``array_recv``):
    header, then each element as its length and its bytes."""
    parts = [_ARRAY_HEADER.pack(1, 0, element_oid, len(values), 1)]
    for value in values:
        parts.append(_LENGTH.pack(len(value)))
        parts.append(value)
    return b"".join(parts)


def _pg_params(prepared: PreparedInsert) -> list[bytes]:
    fields, payloads = prepared.columns()
    return [_binary_array(fields, _TEXT_OID), _binary_array(payloads, _BYTEA_OID)]


def _error_from(result: PGresult) -> psycopg.Error:
    """A failed statement as the psycopg exception psycopg itself would raise for its SQLSTATE."""
    sqlstate = result.error_field(pq.DiagnosticField.SQLSTATE)
    message = result.error_message.decode("utf-8", "replace").strip() or "statement failed"
    try:
        error_class = psycopg.errors.lookup(sqlstate.decode()) if sqlstate else psycopg.Error
    except KeyError:
        error_class = psycopg.DatabaseError
    return error_class(message)


def _created(rows: Rows) -> dict[tuple[str, str], int]:
    return {(provider, event_id): row_id for provider, event_id, row_id in rows}


def _rows(result: PGresult) -> Rows:
    value = result.get_value
    return [
        (
            (value(row, 0) or b"").decode(),
            (value(row, 1) or b"").decode(),
            int(value(row, 2) or b"0"),
        )
        for row in range(result.ntuples)
    ]


class _PgConnection:
    """One of the writer's PostgreSQL connections, with at most one batch in flight.

    A batch is sent with ``send`` and answered through its callback, called by ``_readable``: the
    reader callback registered with the event loop for the connection's life. Until ``closed``
    the connection belongs to the writer alone, so nothing else reads its socket.
    """

    def __init__(self, url: str, connection: psycopg.AsyncConnection[Any]) -> None:
        self.url = url
        self.connection = connection
        self._pgconn = connection.pgconn
        self._pgconn.nonblocking = 1
        self._fd = self._pgconn.socket
        self._loop = asyncio.get_running_loop()
        self._answered: Answered | None = None
        self._results: list[PGresult] = []
        self._writing = False
        self.closed = False
        self._cancel = False
        self._loop.add_reader(self._fd, self._readable)

    @classmethod
    async def open(cls, url: str) -> _PgConnection:
        conninfo = make_url(url).set(drivername="postgresql").render_as_string(False)
        try:
            connection = await psycopg.AsyncConnection.connect(
                conninfo, connect_timeout=5, autocommit=True
            )
        except psycopg.Error as exc:
            raise InboxUnavailable(f"cannot connect: {exc}") from exc
        try:
            statement = postgresql_inbox_insert_sql()
            await connection.execute(
                f"PREPARE {_STATEMENT.decode()} (text[], bytea[]) AS {statement}".encode()
            )
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                await connection.close()
            raise
        return cls(url, connection)

    def send(self, params: Sequence[bytes], answered: Answered) -> None:
        """Send a batch; ``answered(rows, None)`` once it is committed, ``answered(None, error)``
        if it failed or the connection broke (called from a later turn of the loop)."""
        assert self._answered is None, "one batch at a time"
        assert not self.closed, "a closed connection"
        self._answered = answered
        try:
            self._pgconn.send_query_prepared(_STATEMENT, params, param_formats=_BINARY)
            if self._pgconn.flush():  # the rest when the socket takes it (a very large batch)
                self._writing = True
                self._loop.add_writer(self._fd, self._writable)
        except psycopg.Error as exc:
            self._loop.call_soon(functools.partial(self.close, exc, broken=True))

    async def insert(self, params: Sequence[bytes]) -> Rows:
        """``send``, awaited (the rare paths: a batch stored one delivery at a time)."""
        answer: asyncio.Future[Rows] = self._loop.create_future()

        def answered(rows: Rows | None, error: BaseException | None) -> None:
            if answer.done():
                return
            if rows is None:
                answer.set_exception(error or InboxUnavailable("not stored"))
            else:
                answer.set_result(rows)

        self.send(params, answered)
        return await answer

    def _writable(self) -> None:
        try:
            if not self._pgconn.flush():
                self._writing = False
                self._loop.remove_writer(self._fd)
        except psycopg.Error as exc:
            self.close(exc, broken=True)

    def _readable(self) -> None:
        try:
            self._pgconn.consume_input()  # also when idle: a closed socket, a notice
            while self._answered is not None and not self._pgconn.is_busy():
                result = self._pgconn.get_result()
                if result is not None:
                    self._results.append(result)
                    continue
                answered, self._answered = self._answered, None
                results, self._results = self._results, []
                failed = [r for r in results if r.status != pq.ExecStatus.TUPLES_OK]
                if failed or not results:
                    answered(None, _error_from(failed[0]) if failed else psycopg.Error("no result"))
                else:
                    answered(_rows(results[0]), None)
        except psycopg.Error as exc:  # the connection broke (PostgreSQL stopped, network)
            self.close(exc, broken=True)

    def close(self, error: BaseException | None = None, *, broken: bool = False) -> None:
        """Stop reading; a batch in flight is answered with ``error``. ``aclose`` then closes
        the connection, first cancelling on the server a statement that is still running there
        (one waiting for a lock, say) unless the connection is ``broken``."""
        if not self.closed:
            self.closed = True
            self._cancel = self._answered is not None and not broken
            self._loop.remove_reader(self._fd)
            if self._writing:
                self._loop.remove_writer(self._fd)
        answered, self._answered = self._answered, None
        if answered is not None:
            answered(None, error or InboxUnavailable("connection closed"))

    async def aclose(self) -> None:
        self.close()
        with contextlib.suppress(psycopg.Error):
            if self._cancel:
                await self.connection.cancel_safe(timeout=5)
        with contextlib.suppress(psycopg.Error):
            await self.connection.close()


@dataclass(slots=True)
class _Batch:
    """A PostgreSQL batch on its way: what it stores and who waits for it."""

    pending: list[_Pending]
    prepared: PreparedInsert
    connection: _PgConnection | None = None
    timer: asyncio.TimerHandle | None = None


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
        self._pg_idle: list[_PgConnection] = []
        self._free_slots = PG_IN_FLIGHT  # PostgreSQL batches that may still be sent
        self._slot_freed: asyncio.Future[None] | None = None  # woken when a slot frees
        self._in_flight: set[asyncio.Task[Any]] = set()  # connecting, retrying, closing
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
        # No timer per request: each batch's commit is bounded, and so is the wait.
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
                self._write_sqlite(self._take_batch())
                continue
            # A free connection first, then the batch: what arrives meanwhile joins it.
            while not self._take_slot():
                await self._slot_waiter()
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

    def _slot_waiter(self) -> asyncio.Future[None]:
        if self._slot_freed is None or self._slot_freed.done():
            self._slot_freed = asyncio.get_running_loop().create_future()
        return self._slot_freed

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    # --- PostgreSQL ------------------------------------------------------------------------------

    def _dispatch(self, pending: list[_Pending]) -> None:
        """Holding a slot: send the batch now on an idle connection, or open one for it."""
        try:
            prepared = prepare_inbox_insert([p.item for p in pending], _PG_DIALECT)
        except Exception as exc:  # a delivery that cannot be written: only it must fail
            log.warning("inbox batch of %d could not be prepared (%r)", len(pending), exc)
            if len(pending) > 1:
                self._spawn(self._one_by_one(pending))  # keeps the slot until done
            else:
                self._fail(pending, InboxUnavailable(f"{type(exc).__name__}: {exc}"))
                self._release_slot()
            return
        batch = _Batch(pending, prepared)
        connection = self._idle_connection(get_settings().effective_database_url)
        if connection is None:
            self._spawn(self._connect_and_send(batch))
        else:
            self._send(batch, connection)

    async def _connect_and_send(self, batch: _Batch) -> None:
        try:
            # Bounded like a commit: preparing the statement waits for a lock on the table.
            async with asyncio.timeout(self.timeout):
                connection = await _PgConnection.open(get_settings().effective_database_url)
        except (TimeoutError, InboxUnavailable, psycopg.Error) as exc:
            self._fail(batch.pending, InboxUnavailable(str(exc) or "connection timed out"))
            self._release_slot()
            return
        except BaseException as exc:  # never leave a request waiting
            self._fail(batch.pending, exc)
            self._release_slot()
            raise
        self._send(batch, connection)

    def _send(self, batch: _Batch, connection: _PgConnection) -> None:
        batch.connection = connection
        loop = asyncio.get_running_loop()
        batch.timer = loop.call_later(self.timeout, self._timed_out, batch)
        connection.send(_pg_params(batch.prepared), functools.partial(self._answered, batch))

    def _timed_out(self, batch: _Batch) -> None:
        # Not known to be committed: every delivery of the batch is answered 503 (a retry finds
        # the row if it did commit, and is acknowledged as a duplicate).
        if batch.connection is not None:
            batch.connection.close(TimeoutError("commit timed out"))

    def _answered(self, batch: _Batch, rows: Rows | None, error: BaseException | None) -> None:
        if batch.timer is not None:
            batch.timer.cancel()
        connection = batch.connection
        assert connection is not None
        if rows is not None:
            self._pg_idle.append(connection)
            self._resolve(batch.pending, batch.prepared.results(_created(rows)))
            self._release_slot()
            return
        self._close_later(connection)  # failed, timed out or broken: its state is unknown
        if isinstance(error, TimeoutError) or len(batch.pending) == 1:
            self._fail(batch.pending, InboxUnavailable(str(error) or type(error).__name__))
            self._release_slot()
            return
        log.warning("inbox batch of %d failed (%s); storing one by one", len(batch.pending), error)
        self._spawn(self._one_by_one(batch.pending))  # keeps the slot until done

    async def _one_by_one(self, pending: list[_Pending]) -> None:
        try:
            for one in pending:
                try:
                    async with asyncio.timeout(self.timeout):
                        results = await self._commit_alone(one)
                except TimeoutError:
                    self._fail([one], InboxUnavailable("commit timed out"))
                except Exception as exc:  # its own insert failed (or could not be prepared)
                    self._fail([one], InboxUnavailable(f"{type(exc).__name__}: {exc}"))
                else:
                    self._resolve([one], results)
        finally:
            self._fail(pending, InboxUnavailable("not stored"))  # only those still waiting
            self._release_slot()

    async def _commit_alone(self, one: _Pending) -> list[StoredWebhook]:
        prepared = prepare_inbox_insert([one.item], _PG_DIALECT)
        url = get_settings().effective_database_url
        connection = self._idle_connection(url) or await _PgConnection.open(url)
        try:
            rows = await connection.insert(_pg_params(prepared))
        except BaseException:
            self._close_later(connection)
            raise
        self._pg_idle.append(connection)
        return prepared.results(_created(rows))

    def _idle_connection(self, url: str) -> _PgConnection | None:
        while self._pg_idle:
            connection = self._pg_idle.pop()
            if connection.url == url and not connection.closed:
                return connection
            self._close_later(connection)
        return None

    def _close_later(self, connection: _PgConnection) -> None:
        """Stop reading it now; close it (cancelling what still runs there) in a task."""
        connection.close()
        self._spawn(connection.aclose())

    # --- answers -------------------------------------------------------------------------------

    def _resolve(self, pending: list[_Pending], results: list[StoredWebhook]) -> None:
        """A committed batch: each request gets its own result."""
        self.batches += 1
        if self.on_commit is not None:
            self.on_commit(len(pending))
        for one, result in zip(pending, results, strict=True):
            if not one.result.done():
                one.result.set_result(result)

    @staticmethod
    def _fail(pending: Sequence[_Pending], error: BaseException) -> None:
        for one in pending:
            if not one.result.done():
                one.result.set_exception(error)

    # --- SQLite --------------------------------------------------------------------------------

    def _write_sqlite(self, batch: list[_Pending]) -> None:
        url = get_settings().effective_database_url
        try:
            results = self._commit_sqlite(url, [p.item for p in batch])
        except Exception as exc:  # unavailable, or a delivery that cannot be written
            if len(batch) == 1:
                self._fail(batch, InboxUnavailable(str(exc)))
                return
            log.warning("inbox batch of %d failed (%s); storing one by one", len(batch), exc)
            for one in batch:
                self._write_sqlite([one])
            return
        except BaseException as exc:  # never leave a request waiting
            self._fail(batch, exc)
            raise
        self._resolve(batch, results)

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

    async def close(self) -> None:
        """Finish the batches in flight and close the connections (server shutdown)."""
        if self._loop is not asyncio.get_running_loop():
            return  # nothing of ours runs on this loop
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        # Batches answered by callbacks hold slots; tasks connect, retry and close connections.
        while self._in_flight or self._free_slots < PG_IN_FLIGHT:
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            else:
                await self._slot_waiter()
        idle, self._pg_idle = self._pg_idle, []
        for connection in idle:
            await connection.aclose()
        self._close_sqlite()
        self._loop, self._flusher = None, None
