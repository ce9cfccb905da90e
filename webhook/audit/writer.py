"""The durable, chained audit writer: the ``record`` step of a review.

:class:`AuditWriter` puts decisions into the chain: it seals each record
(``seq``, ``prev``, ``time``, ``hash``) under the log lock, adds the signed
checkpoints that are due, and returns only once the lines are on disk. The
parts it is made of: :mod:`~webhook.audit.chain_file` (the file, its lock,
rotation and crash recovery), :mod:`~webhook.audit.group_commit` (one fsync
for the threads that wait meanwhile) and :mod:`~webhook.audit.checkpoints`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from webhook.api.decision import Decision, Outcome
from webhook.api.review import AdmissionRequest
from webhook.audit.chain_file import AuditWriteError, ChainFile, ChainHead
from webhook.audit.checkpoints import CheckpointTimer, anchored, checkpoint_record
from webhook.audit.group_commit import GroupCommit
from webhook.audit.record import (
    DEFAULT_CHECKPOINT_EVERY,
    RECOVERY,
    decision_body,
    decision_floatless,
    rfc3339,
    seal,
    to_line,
)
from webhook.audit.signing import Signer

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
__all__ = ["DEFAULT_CHECKPOINT_EVERY", "DEFAULT_MAX_BYTES", "AuditWriter"]
DEFAULT_CHECKPOINT_INTERVAL = 60.0


def _now() -> datetime:
    return datetime.now(UTC)


class AuditWriter:
    """Appends chained records to a chain of its own beside ``path`` (a slot:
    webhook/audit/chain_file.py); safe across threads, one writer per chain.

    ``record`` is the recorder port of :mod:`webhook.admission.recorder`: it
    returns only after the record is written and fsync'ed, and raises
    :class:`AuditWriteError` otherwise. Call :meth:`close` at clean shutdown
    (it writes a ``shutdown`` checkpoint); ``open_recorder`` also registers it
    with :mod:`atexit`.
    """

    def __init__(
        self,
        path: str,
        *,
        signer: Signer | None = None,
        stdout: bool = False,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep_files: int = 0,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL,
        clock: Callable[[], datetime] = _now,
        stdout_fd: int = 1,
    ) -> None:
        self._file = ChainFile(
            path,
            max_bytes=max_bytes,
            keep_files=keep_files,
            clock=clock,
            copy_fd=stdout_fd if stdout else None,
        )
        #: the configured path (slot 0); this writer's chain is :attr:`chain_path`
        self.path = self._file.base_path
        self._signer = signer
        self._every = checkpoint_every if signer is not None else 0
        self._clock = clock
        self._batches: GroupCommit[tuple[Mapping[str, Any], bool]] = GroupCommit(
            self.path, self._file.locked, self._write_batch
        )
        self._timer: CheckpointTimer | None = None
        if signer is not None and checkpoint_interval > 0:
            self._timer = CheckpointTimer(checkpoint_interval, self._interval_checkpoint)

    @property
    def chain_path(self) -> str:
        """The file of this writer's chain (``audit.log``, ``audit.1.log``, ...)."""
        return self._file.path

    @property
    def fsyncs(self) -> int:
        """Successful write+fsync rounds of this process (group commits)."""
        return self._file.fsyncs

    def record(self, request: AdmissionRequest, decision: Decision) -> None:
        """Record what the handler hands over (it chooses: webhook.admission.handler
        ``record``); an object out of scope is never a record."""
        if decision.outcome is Outcome.IGNORED:
            return
        body = decision_body(request, decision, time="")
        self._batches.submit((body, decision_floatless(body)))

    def append(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record (``body`` with ``type``; ``time`` is set here). Returns it."""
        return self._batches.submit((body, False))

    def _write_batch(
        self, bodies: Sequence[tuple[Mapping[str, Any], bool]]
    ) -> list[dict[str, Any]]:
        """Seal and write ``bodies`` in order, with the checkpoints due (under the lock);
        a body marked floatless is encoded without looking for floats."""
        file = self._file
        head = file.head()
        if file.due_for_rotation(head):
            if self._signer is not None and not anchored(head):
                closing = self._checkpoint(head, head.seq, head.hash, "rotate")
                head = file.append(head, to_line(closing), closing)
            head = file.rotate(head)
        every = self._every
        if every > 0 and head.type == RECOVERY and head.seq % every == 0:
            # A crash tore the count checkpoint due here and the recovery record took
            # its seq: sign the recovered head first, as audit verify expects.
            closing = self._checkpoint(head, head.seq, head.hash, "count")
            head = file.append(head, to_line(closing), closing)
        seq, digest, chain = head.seq, head.hash, head.chain
        chunks: list[bytes] = []
        records: list[dict[str, Any]] = []
        last: dict[str, Any] = {}
        for body, floatless in bodies:
            record = seal(
                {**body, "chain": chain, "time": rfc3339(self._clock())},
                seq=seq + 1,
                prev=digest,
                floatless=floatless,
            )
            chunks.append(to_line(record, floatless=floatless))
            records.append(record)
            last = record
            seq, digest = record["seq"], record["hash"]
            if every > 0 and (seq + 1) % every == 0:
                last = self._checkpoint(head, seq, digest, "count")
                chunks.append(to_line(last))
                seq, digest = last["seq"], last["hash"]
        file.append(head, b"".join(chunks), last)
        return records

    def _checkpoint(self, head: ChainHead, seq: int, digest: str, reason: str) -> dict[str, Any]:
        assert self._signer is not None
        return checkpoint_record(
            self._signer,
            head_seq=seq,
            head_hash=digest,
            reason=reason,
            time=rfc3339(self._clock()),
            every=self._every,
            chain=head.chain,
        )

    def checkpoint(self, reason: str = "manual") -> dict[str, Any] | None:
        """Sign the chain head now, unless it is already a checkpoint (or nothing to sign)."""
        if self._signer is None:
            return None
        with self._file.locked():
            head = self._file.head()
            if anchored(head):
                return None
            record = self._checkpoint(head, head.seq, head.hash, reason)
            self._file.append(head, to_line(record), record)
            return record

    def _interval_checkpoint(self) -> None:
        try:
            self.checkpoint("interval")
        except AuditWriteError as exc:
            print(f"nfsguard audit: {exc}", file=sys.stderr)

    def close(self) -> None:
        """Write a ``shutdown`` checkpoint (when signing) and release the files."""
        if self._file.closed:
            return
        if self._timer is not None:
            self._timer.stop()
        try:
            self.checkpoint("shutdown")
        finally:
            self._file.close()
