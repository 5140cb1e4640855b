"""Copying a SQLite file's write-ahead log back into the database, on a thread of its own.

By default SQLite does it inside the commit that fills the log past 1,000 pages: that commit, and every write queued
behind it, waits for thousands of pages to be copied. Here the writer never checkpoints; this checkpointer does,
with its own connection, a PASSIVE checkpoint (it never waits for, nor blocks, the writer or readers) whenever the
log has grown past `wal_bytes`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger("core.storage")

DEFAULT_WAL_BYTES = 8 * 1024 * 1024
_CHECK_EVERY_WRITES = 64  # the log's size is looked at (one stat) after this many writes


class Checkpointer:
    """Keeps the log of one SQLite file short without the writer's help."""

    def __init__(self, path: Path, *, wal_bytes: int = DEFAULT_WAL_BYTES) -> None:
        self._path = path
        self._wal = path.with_name(path.name + "-wal")
        self._wal_bytes = wal_bytes
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-checkpoint")
        self._db: sqlite3.Connection | None = None
        self._running: Future[None] | None = None
        self._writes = 0
        self._lock = threading.Lock()
        self.checkpoints = 0

    def committed(self, writes: int) -> None:
        """Called by a writer after each commit (of `writes` writes): starts a checkpoint when the log has grown
        long enough."""
        with self._lock:  # both writers' threads (the event loop's and the database's) call it
            self._writes += writes
            if self._writes < _CHECK_EVERY_WRITES or not self.idle:
                return
            self._writes = 0
            try:
                size = self._wal.stat().st_size
            except OSError:
                return
            if size >= self._wal_bytes:
                self._running = self._executor.submit(self._checkpoint)

    @property
    def idle(self) -> bool:
        """No checkpoint is running."""
        return self._running is None or self._running.done()

    def close(self) -> None:
        """Wait for a running checkpoint, then close (the last writer's close checkpoints what is left)."""
        self._executor.submit(self._disconnect).result()
        self._executor.shutdown(wait=True)

    def _checkpoint(self) -> None:
        try:
            if self._db is None:
                self._db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as error:  # the next one will try again; the log only grows meanwhile
            log.warning("sqlite.checkpoint_failed", extra={"detail": str(error)})

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
