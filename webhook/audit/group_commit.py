"""Group commit: the records that wait for the log lock meanwhile share one write and fsync.

An ``fsync`` costs from a fraction of a millisecond to several (docs/audit.md,
"Durability and throughput"), and the threads of a gthread worker record at
the same time. A thread that finds others already waiting for the lock leaves
its record in a queue; whichever thread gets the lock next writes every queued
record with one ``write`` and one ``fsync``, and each caller returns (or
raises) once its own record's batch is done. Nobody returns before its record
is on disk, and every record of a failed batch raises.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from webhook.audit.chain_file import AuditWriteError

#: what a caller submits (the writer: a body and whether it holds no float)
Item = TypeVar("Item")


@dataclass
class _Pending(Generic[Item]):
    body: Item
    record: dict[str, Any] | None = None
    error: AuditWriteError | None = None
    done: bool = False


class GroupCommit(Generic[Item]):
    """Batches :meth:`submit` calls of many threads into calls of ``write_batch``
    (which writes the items in order and returns their records, in order) made
    under ``locked`` (the chain's thread lock)."""

    def __init__(
        self,
        path: str,
        locked: Callable[[], AbstractContextManager[None]],
        write_batch: Callable[[Sequence[Item]], Sequence[dict[str, Any]]],
    ) -> None:
        self._path = path
        self._locked = locked
        self._write_batch = write_batch
        self._pid = os.getpid()
        self._qlock = threading.Lock()
        self._queue: list[_Pending[Item]] = []

    def submit(self, body: Item) -> dict[str, Any]:
        """Returns ``body``'s record once it is written and fsynced; raises
        :class:`AuditWriteError` if its batch failed or the log is closed."""
        if os.getpid() != self._pid:  # a fork copied another process's queue
            self._pid = os.getpid()
            self._qlock = threading.Lock()
            self._queue = []
        mine = _Pending(body)
        with self._qlock:
            self._queue.append(mine)
        try:
            with self._locked():
                if not mine.done:
                    with self._qlock:
                        batch, self._queue = self._queue, []
                    self._commit(batch)
        finally:
            if not mine.done:  # the lock could not be taken (closed): forget the record
                with self._qlock:
                    if mine in self._queue:
                        self._queue.remove(mine)
        if mine.error is not None:
            raise mine.error
        if mine.record is None:
            raise AuditWriteError(f"audit log {self._path}: the writer is closed")
        return mine.record

    def _commit(self, batch: list[_Pending[Item]]) -> None:
        try:
            records = self._write_batch([pending.body for pending in batch])
            for pending, record in zip(batch, records, strict=True):
                pending.record = record
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, AuditWriteError)
                else AuditWriteError(f"audit log {self._path}: unexpected error: {exc!r}")
            )
            for pending in batch:
                pending.record = None
                pending.error = error
        finally:
            for pending in batch:
                pending.done = True
