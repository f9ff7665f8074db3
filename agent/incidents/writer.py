"""The daemon's only way to its state database: one thread, in order, never on the event loop.

SQLite calls block: on a lock held by another process (a backup, a ``sqlite3`` shell) for up to
the busy timeout, on a slow or full disk for as long as the kernel takes. None of that may stall
probing, so every call the daemon makes runs on one database thread (:meth:`StoreWriter.call`).

Writes that must not be lost (alert state changes with their events, timeline entries) are
*submitted*: they join an in-memory journal that a single task commits in order, in batches, one
transaction per batch. If a commit fails (disk full, database locked, an I/O error) the batch is
rolled back and kept, and the writer retries with capped backoff until it succeeds; meanwhile
probing goes on and new changes queue behind. Because state and events commit together, what
the database holds is always consistent: after a crash during an outage the agent restarts from
the last committed state and judges again, and a ``resolved`` never follows a firing that was
never committed (the two are in the journal in order).

While writes fail the writer reports trouble once per episode (``on_trouble``), then once when
it recovers (``on_recovered``, with how long it failed and how many writes waited).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from agent.incidents.store import Store

log = logging.getLogger("firstwatch.store")

T = TypeVar("T")
Write = Callable[[Store], None]


@dataclass
class Trouble:
    """Why writes fail now, since when (wall and monotonic), and how many wait."""

    error: str
    since: float
    since_mono: float
    waiting: int


class StoreWriter:
    def __init__(
        self,
        store: Store,
        *,
        on_trouble: Callable[[Trouble], None] | None = None,
        on_recovered: Callable[[Trouble], None] | None = None,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
    ) -> None:
        self.store = store
        self.on_trouble = on_trouble
        self.on_recovered = on_recovered
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.on_rollback: Callable[[], None] | None = None  # a failed batch was rolled back (outbox counts)
        self.trouble: Trouble | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="firstwatch-db")
        self._journal: list[tuple[Write, Callable[[], None] | None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    # --- reads and best-effort calls ------------------------------------------------------------

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the database thread (after every call queued before it)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # --- durable writes -------------------------------------------------------------------------

    def submit(self, write: Write, after: Callable[[], None] | None = None) -> None:
        """Queue ``write`` (called with the store inside a transaction, possibly more than once if
        a commit fails: it must only write, deriving nothing from what it cannot redo); ``after``
        runs on the loop once it is committed."""
        self._journal.append((write, after))
        self._idle.clear()
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="store-writer")

    @property
    def waiting(self) -> int:
        return len(self._journal)

    async def _run(self) -> None:
        delay = self.backoff
        while True:
            if not self._journal:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._journal[:]
            try:
                await self.call(self._apply, [w for w, _ in batch])
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc)
                await asyncio.sleep(delay)
                delay = min(self.max_backoff, delay * 2)
                continue
            del self._journal[: len(batch)]
            delay = self.backoff
            if self.trouble is not None:
                self._recovered(len(batch))
            for _, after in batch:
                if after is not None:
                    try:
                        after()
                    except Exception:
                        log.exception("after a state write (a firstwatch bug)")

    def _apply(self, writes: list[Write]) -> None:
        try:
            with self.store.transaction():
                for write in writes:
                    write(self.store)
        except BaseException:
            if self.on_rollback is not None:
                self.on_rollback()
            raise

    def _failed(self, exc: BaseException) -> None:
        text = str(exc) or type(exc).__name__
        if self.trouble is None:
            self.trouble = Trouble(text, time.time(), time.monotonic(), len(self._journal))
            log.critical(
                "state database %s cannot be written: %s; %d change(s) kept in memory and retried; probing goes on",
                self.store.path, text, len(self._journal),
            )  # fmt: skip
            if self.on_trouble is not None:
                self.on_trouble(self.trouble)
        else:
            self.trouble.error, self.trouble.waiting = text, len(self._journal)

    def _recovered(self, written: int) -> None:
        trouble, self.trouble = self.trouble, None
        assert trouble is not None
        trouble.waiting = written
        took = time.monotonic() - trouble.since_mono
        log.warning("state database writable again after %.0fs; %d waiting change(s) written", took, written)
        if self.on_recovered is not None:
            self.on_recovered(trouble)

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the journal to be committed; False if writes still wait."""
        if not self._journal:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 2.0) -> None:
        """Commit what waits (for up to ``timeout``), then stop. What cannot be written is lost
        with the process: the database keeps the last consistent state, and a restart judges
        again from there."""
        if not await self.drain(timeout):
            log.error(
                "shutdown: %d state change(s) could not be written (%s); they are judged again at the next start",
                len(self._journal), self.trouble.error if self.trouble else "timed out",
            )  # fmt: skip
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._pool.shutdown(wait=False, cancel_futures=True)
