"""The durable, chained audit writer shared by gunicorn's processes and threads.

One log file holds one hash chain. Every append happens under a threading
lock (threads of one process) and an exclusive ``fcntl.flock`` on a lock file
next to the log (``.<name>.lock``; processes). Under the lock a writer learns
the chain head (last ``seq`` and ``hash``) from the file itself: it re-reads
the tail unless the file's inode and size are what it last wrote. It then
appends the line(s) with one ``write``, ``fsync``s the file, copies the lines
to stdout when asked (still under the lock, so stdout has the chain order),
and only then returns.

Rotation: when the file has reached ``max_bytes``, the writer (under the lock)
appends a ``rotate`` checkpoint when it can sign, renames the file to
``<path>.<seq of its first record, 12 digits>`` and starts a new one whose
first record continues the chain (its ``prev`` is the last hash of the old
file). ``nfsguard audit verify <path>.* <path>`` verifies them in order.
Beyond ``keep_files`` rotated files the oldest are deleted; what remains still
verifies (from the first record left, with a note that earlier ones are gone).

Crash: a write cut short leaves a partial last line. The next writer sees it
(the file does not end with ``\\n``), terminates it and appends a ``recovery``
record naming its offset, length and SHA-256, chained to the last complete
record; verify accepts exactly that and reports it.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from webhook.admission.recorder import NullRecorder
from webhook.api.decision import Decision
from webhook.api.review import AdmissionRequest
from webhook.audit.record import (
    CHECKPOINT,
    GENESIS,
    RecordError,
    check_envelope,
    checkpoint_body,
    decision_body,
    parse_line,
    recovery_body,
    rfc3339,
    seal,
    to_line,
)
from webhook.audit.signing import Signer, load_signer

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_KEEP_FILES = 8  # with the live file at most 9 x 64 MiB: fits the manifests' 1 GiB emptyDir
DEFAULT_CHECKPOINT_EVERY = 1000
DEFAULT_CHECKPOINT_INTERVAL = 60.0


class AuditWriteError(RuntimeError):
    """The record could not be stored durably (one-line message)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    reason = exc.strerror or str(exc)
    return f"{reason} ({name})" if name else reason


@dataclass(frozen=True)
class _Head:
    ino: int
    size: int
    seq: int  # -1 before the first record
    hash: str
    type: str | None


@dataclass
class _Pending:
    body: Mapping[str, Any]
    record: dict[str, Any] | None = None
    error: AuditWriteError | None = None
    done: bool = False


def rotated_name(path: str, first_seq: int) -> str:
    return f"{path}.{first_seq:012d}"


def rotated_files(path: str) -> list[str]:
    """The rotated files of ``path``, oldest first."""
    directory, name = os.path.split(os.path.abspath(path))
    pattern = re.compile(re.escape(name) + r"\.(\d{12})$")
    found = []
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    for entry in entries:
        match = pattern.match(entry)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, entry)))
    return [p for _, p in sorted(found)]


def read_tail(fd: int, size: int) -> tuple[bytes | None, bytes]:
    """(last complete line without ``\\n`` or None, partial bytes after the last ``\\n``)."""
    if size <= 0:
        return None, b""
    block = 64 * 1024
    end = size
    buf = b""
    while True:
        start = max(0, end - block)
        buf = os.pread(fd, end - start, start) + buf
        end = start
        last_nl = buf.rfind(b"\n")
        if last_nl == -1:
            if start == 0:
                return None, buf
            continue
        prev_nl = buf.rfind(b"\n", 0, last_nl)
        if prev_nl != -1 or start == 0:
            return buf[prev_nl + 1 : last_nl], buf[last_nl + 1 :]
        block *= 2


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AuditWriter:
    """Appends chained records to ``path``; safe across processes and threads.

    ``record`` is the :class:`~webhook.admission.recorder.DecisionRecorder`
    method: it returns only after the record is written and fsync'ed, and
    raises :class:`AuditWriteError` otherwise. Call :meth:`close` at clean
    shutdown (it writes a ``shutdown`` checkpoint); ``open_recorder`` also
    registers it with :mod:`atexit`.
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
        self.path = os.path.abspath(path)
        directory, name = os.path.split(self.path)
        self._directory = directory
        self._lock_path = os.path.join(directory, f".{name}.lock")
        self._signer = signer
        self._stdout = stdout
        self._stdout_fd = stdout_fd
        self._stdout_failed = False
        self._max_bytes = max_bytes
        self._keep = keep_files
        self.fsyncs = 0  # successful write+fsync rounds of this process (group commits)
        self._every = checkpoint_every
        self._interval = checkpoint_interval
        self._clock = clock
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._cache: _Head | None = None
        self._closed = False
        self._pid = os.getpid()
        self._tlock = threading.Lock()
        self._qlock = threading.Lock()
        self._queue: list[_Pending] = []
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        try:
            os.makedirs(directory, exist_ok=True)
        except FileExistsError:
            raise AuditWriteError(
                f"audit log {self.path}: {directory} exists and is not a directory"
            ) from None
        except OSError as exc:
            raise AuditWriteError(
                f"audit log {self.path}: cannot create directory: {_describe(exc)}"
            ) from None
        # Fail at start-up, not at the first review: open, lock, read the head.
        with self._locked():
            self._head()
        if signer is not None and checkpoint_interval > 0:
            self._timer = threading.Thread(
                target=self._tick, name="nfsguard-audit-checkpoint", daemon=True
            )
            self._timer.start()

    # --- locking and the chain head -----------------------------------------

    def _reset_after_fork(self) -> None:
        # A writer created before fork() shares its open file descriptions with
        # the parent, and flock() would not exclude between them.
        self._pid = os.getpid()
        self._tlock = threading.Lock()
        self._qlock = threading.Lock()
        self._queue = []
        self._fd = None
        self._lock_fd = None
        self._cache = None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if os.getpid() != self._pid:
            self._reset_after_fork()
        with self._tlock:
            if self._closed:
                raise AuditWriteError(f"audit log {self.path}: the writer is closed")
            if self._lock_fd is None:
                try:
                    self._lock_fd = os.open(
                        self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
                    )
                except OSError as exc:
                    raise AuditWriteError(
                        f"audit log {self.path}: cannot open lock file {self._lock_path}: "
                        f"{_describe(exc)}"
                    ) from None
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _open(self) -> int:
        """The fd of the file now at ``path`` (reopened after another process rotated it)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise AuditWriteError(f"audit log {self.path}: cannot stat: {_describe(exc)}") from None
        if self._fd is not None and st is not None and os.fstat(self._fd).st_ino == st.st_ino:
            return self._fd
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._cache = None
        try:
            self._fd = os.open(
                self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
            )
            if st is None:
                _fsync_dir(self._directory)
        except OSError as exc:
            raise AuditWriteError(f"audit log {self.path}: cannot open: {_describe(exc)}") from None
        return self._fd

    def _head(self) -> _Head:
        fd = self._open()
        st = os.fstat(fd)
        cache = self._cache
        if cache is not None and cache.ino == st.st_ino and cache.size == st.st_size:
            return cache
        try:
            last, torn = read_tail(fd, st.st_size)
        except OSError as exc:
            raise AuditWriteError(f"audit log {self.path}: cannot read: {_describe(exc)}") from None
        if last is None:
            seq, digest, kind = self._head_of_rotated()
        else:
            seq, digest, kind = self._parse_head(self.path, last)
        head = _Head(st.st_ino, st.st_size, seq, digest, kind)
        if torn:
            head = self._recover(fd, head, torn)
        self._cache = head
        return head

    def _parse_head(self, path: str, line: bytes) -> tuple[int, str, str | None]:
        try:
            obj = parse_line(line)
            check_envelope(obj)
        except RecordError as exc:
            raise AuditWriteError(
                f"audit log {path}: last line is not an audit record ({exc}); "
                "refusing to extend the chain"
            ) from None
        return int(obj["seq"]), str(obj["hash"]), str(obj["type"])

    def _head_of_rotated(self) -> tuple[int, str, str | None]:
        for older in reversed(rotated_files(self.path)):
            try:
                fd = os.open(older, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                last, _torn = read_tail(fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)
            if last is not None:
                return self._parse_head(older, last)
        return -1, GENESIS, None

    def _recover(self, fd: int, head: _Head, torn: bytes) -> _Head:
        offset = head.size - len(torn)
        record = seal(
            recovery_body(time=rfc3339(self._clock()), torn=torn, offset=offset),
            seq=head.seq + 1,
            prev=head.hash,
        )
        return self._append(fd, head, b"\n" + to_line(record), record)

    # --- appending ------------------------------------------------------------

    def _append(self, fd: int, head: _Head, data: bytes, last: Mapping[str, Any]) -> _Head:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as exc:
            self._cache = None
            try:  # leave no partial line behind (truncating works on a full disk)
                os.ftruncate(fd, head.size)
                os.fsync(fd)
            except OSError:
                pass
            raise AuditWriteError(
                f"audit log {self.path}: cannot write record seq {head.seq + 1}: {_describe(exc)}"
            ) from None
        self.fsyncs += 1
        if self._stdout:
            self._copy_to_stdout(data.lstrip(b"\n"))
        new = _Head(head.ino, head.size + len(data), int(last["seq"]), last["hash"], last["type"])
        self._cache = new
        return new

    def _copy_to_stdout(self, data: bytes) -> None:
        try:
            _write_all(self._stdout_fd, data)
        except OSError as exc:
            if not self._stdout_failed:
                self._stdout_failed = True
                print(
                    f"nfsguard audit: copy to stdout failed ({_describe(exc)}); "
                    f"the records are in {self.path}",
                    file=sys.stderr,
                )

    def _checkpoint_record(self, head_seq: int, head_hash: str, reason: str) -> dict[str, Any]:
        assert self._signer is not None
        record = seal(
            checkpoint_body(
                time=rfc3339(self._clock()),
                head_seq=head_seq,
                head_hash=head_hash,
                reason=reason,
                key_id=self._signer.key_id,
            ),
            seq=head_seq + 1,
            prev=head_hash,
        )
        del record["hash"]
        record["signature"] = self._signer.sign(record)
        return seal(record, seq=head_seq + 1, prev=head_hash)

    def _rotate(self, fd: int, head: _Head) -> _Head:
        if self._signer is not None and head.type != CHECKPOINT and head.seq >= 0:
            ck = self._checkpoint_record(head.seq, head.hash, "rotate")
            head = self._append(fd, head, to_line(ck), ck)
        first = os.pread(fd, 4096, 0).split(b"\n", 1)[0]
        try:
            first_seq = int(parse_line(first)["seq"])
        except (RecordError, KeyError, TypeError, ValueError):
            first_seq = head.seq
        target = rotated_name(self.path, first_seq)
        try:
            os.link(self.path, target)
            os.unlink(self.path)
            _fsync_dir(self._directory)
        except OSError as exc:
            raise AuditWriteError(
                f"audit log {self.path}: cannot rotate to {target}: {_describe(exc)}"
            ) from None
        self._prune()
        new_fd = self._open()
        return _Head(os.fstat(new_fd).st_ino, 0, head.seq, head.hash, head.type)

    def _prune(self) -> None:
        """Delete the oldest rotated files beyond ``keep_files`` (0: keep all)."""
        if self._keep <= 0:
            return
        older = rotated_files(self.path)
        for name in older[: max(0, len(older) - self._keep)]:
            try:
                os.unlink(name)
            except OSError as exc:
                print(f"nfsguard audit: cannot delete {name}: {_describe(exc)}", file=sys.stderr)

    def append(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record (``body`` with ``type``; ``time`` is set here). Returns it.

        Group commit: a thread that finds others already waiting for the lock
        leaves its record in a queue; whichever thread gets the lock next
        writes every queued record with one ``write`` and one ``fsync``, and
        each caller returns (or raises) once its own record's batch is done.
        """
        if os.getpid() != self._pid:
            self._reset_after_fork()
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
            raise AuditWriteError(f"audit log {self.path}: the writer is closed")
        return mine.record

    def _commit(self, batch: list[_Pending]) -> None:
        """Seal and write ``batch`` in order (under both locks)."""
        try:
            head = self._head()
            fd = self._open()
            if self._max_bytes > 0 and head.size >= self._max_bytes:
                head = self._rotate(fd, head)
                fd = self._open()
            seq, digest = head.seq, head.hash
            chunks: list[bytes] = []
            last: dict[str, Any] = {}
            for pending in batch:
                record = seal(
                    {**pending.body, "time": rfc3339(self._clock())}, seq=seq + 1, prev=digest
                )
                chunks.append(to_line(record))
                pending.record = record
                last = record
                seq, digest = record["seq"], record["hash"]
                if self._signer is not None and self._every > 0 and (seq + 1) % self._every == 0:
                    last = self._checkpoint_record(seq, digest, "count")
                    chunks.append(to_line(last))
                    seq, digest = last["seq"], last["hash"]
            self._append(fd, head, b"".join(chunks), last)
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, AuditWriteError)
                else AuditWriteError(f"audit log {self.path}: unexpected error: {exc!r}")
            )
            for pending in batch:
                pending.record = None
                pending.error = error
        finally:
            for pending in batch:
                pending.done = True

    def record(self, request: AdmissionRequest, decision: Decision) -> None:
        if not decision.recorded:
            return
        self.append(decision_body(request, decision, time=""))

    def checkpoint(self, reason: str = "manual") -> dict[str, Any] | None:
        """Sign the chain head now, unless it is already a checkpoint (or nothing to sign)."""
        if self._signer is None:
            return None
        with self._locked():
            head = self._head()
            if head.seq < 0 or head.type == CHECKPOINT:
                return None
            record = self._checkpoint_record(head.seq, head.hash, reason)
            self._append(self._open(), head, to_line(record), record)
            return record

    def _tick(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.checkpoint("interval")
            except AuditWriteError as exc:
                print(f"nfsguard audit: {exc}", file=sys.stderr)

    def close(self) -> None:
        """Write a ``shutdown`` checkpoint (when signing) and release the files."""
        if self._closed:
            return
        self._stop.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(timeout=5)
        try:
            self.checkpoint("shutdown")
        finally:
            with self._tlock:
                self._closed = True
                for fd in (self._fd, self._lock_fd):
                    if fd is not None:
                        os.close(fd)
                self._fd = None
                self._lock_fd = None


class AuditRecorder(Protocol):
    """What ``open_recorder`` returns: a DecisionRecorder that must be closed at shutdown."""

    def record(self, request: AdmissionRequest, decision: Decision) -> None: ...

    def close(self) -> None: ...


class NullAuditRecorder(NullRecorder):
    """No audit log configured: records nothing."""

    def close(self) -> None:
        return None


def open_recorder(
    path: str | None,
    *,
    key_file: str | None = None,
    stdout: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    keep_files: int = DEFAULT_KEEP_FILES,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL,
) -> AuditRecorder:
    """The server's recorder; call once per worker process, after fork.

    ``path`` None: no audit trail (a :class:`NullAuditRecorder`); asking for a
    stdout copy without a file is an error, since the worker processes can only
    share one chain through the file. ``max_bytes``/``keep_files``: rotate at
    this size, keep this many rotated files (0: all; the stdout copy is the
    long-term store). ``key_file``: Ed25519 PEM private key for
    signed checkpoints (every ``checkpoint_every`` records, every
    ``checkpoint_interval`` seconds when there is something new, at rotation
    and at :meth:`close`). Raises :class:`AuditWriteError` or ``ValueError``
    with a one-line message when the log or key cannot be used.
    """
    if path is None:
        if stdout:
            raise ValueError("audit: a stdout copy needs an audit log file (--audit-log)")
        return NullAuditRecorder()
    signer = load_signer(key_file) if key_file is not None else None
    writer = AuditWriter(
        path,
        signer=signer,
        stdout=stdout,
        max_bytes=max_bytes,
        keep_files=keep_files,
        checkpoint_every=checkpoint_every,
        checkpoint_interval=checkpoint_interval,
    )
    atexit.register(_close_quietly, writer)
    return writer


def _close_quietly(writer: AuditWriter) -> None:
    try:
        writer.close()
    except AuditWriteError as exc:
        print(f"nfsguard audit: {exc}", file=sys.stderr)
