"""One audit log file holding one hash chain: lock, head, append, rotate, recover.

Shared by gunicorn's processes and threads. Every append happens under a
threading lock (threads of one process) and an exclusive ``fcntl.flock`` on a
lock file next to the log (``.<name>.lock``; processes). Under the lock a
writer learns the chain head (last ``seq`` and ``hash``) from the file itself:
it re-reads the tail unless the file's inode and size are what it last wrote.
It then appends the line(s) with one ``write``, ``fsync``s the file, copies
the lines to stdout when asked (still under the lock, so stdout has the chain
order), and only then returns.

Rotation: once the file has reached ``max_bytes`` it is renamed to
``<path>.<seq of its first record, 12 digits>`` and a new one is started whose
first record continues the chain (its ``prev`` is the last hash of the old
file). ``nfsguard audit verify <path>.* <path>`` verifies them in order.
Beyond ``keep_files`` rotated files the oldest are deleted; what remains still
verifies (from the first record left, with a note that earlier ones are gone).

Crash: a write cut short leaves a partial last line. The next writer sees it
(the file does not end with ``\\n``), terminates it and appends a ``recovery``
record naming its offset, length and SHA-256, chained to the last complete
record; verify accepts exactly that and reports it.

What goes into the chain (sealing, checkpoints) is decided by
:mod:`webhook.audit.writer`; this module only keeps the file true to it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from webhook.audit.record import (
    GENESIS,
    RecordError,
    check_envelope,
    parse_line,
    recovery_body,
    rfc3339,
    seal,
    to_line,
)


class AuditWriteError(RuntimeError):
    """The record could not be stored durably (one-line message)."""


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    reason = exc.strerror or str(exc)
    return f"{reason} ({name})" if name else reason


@dataclass(frozen=True)
class ChainHead:
    """The last record of the chain and the file it was read from (inode, size)."""

    ino: int
    size: int
    seq: int  # -1 before the first record
    hash: str
    type: str | None


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


class ChainFile:
    """The log at ``path`` with its lock file; every method but :meth:`locked` and
    :meth:`close` runs inside ``with locked():``.

    Opening it creates the directory, takes the lock and reads the head, so an
    unusable log fails at start-up rather than at the first review.
    ``copy_fd``: also write every appended line there (stdout, for the
    container log). ``clock`` stamps recovery records.
    """

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int,
        keep_files: int,
        clock: Callable[[], datetime],
        copy_fd: int | None = None,
    ) -> None:
        self.path = os.path.abspath(path)
        directory, name = os.path.split(self.path)
        self._directory = directory
        self._lock_path = os.path.join(directory, f".{name}.lock")
        self._max_bytes = max_bytes
        self._keep = keep_files
        self._clock = clock
        self._copy_fd = copy_fd
        self._copy_failed = False
        self.fsyncs = 0  # successful write+fsync rounds of this process (group commits)
        self.closed = False
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._cache: ChainHead | None = None
        self._pid = os.getpid()
        self._tlock = threading.Lock()
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
        with self.locked():
            self.head()

    # --- locking --------------------------------------------------------------

    def _reset_after_fork(self) -> None:
        # A file opened before fork() shares its open file descriptions with the
        # parent, and flock() would not exclude between them.
        self._pid = os.getpid()
        self._tlock = threading.Lock()
        self._fd = None
        self._lock_fd = None
        self._cache = None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the thread lock and the file lock (raises once :meth:`close` ran)."""
        if os.getpid() != self._pid:
            self._reset_after_fork()
        with self._tlock:
            if self.closed:
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

    def close(self) -> None:
        """Release the files; later calls of :meth:`locked` raise."""
        with self._tlock:
            self.closed = True
            for fd in (self._fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = None
            self._lock_fd = None

    # --- the chain head -------------------------------------------------------

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

    def head(self) -> ChainHead:
        """The head of the chain as the file at ``path`` has it, a torn tail recovered."""
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
        head = ChainHead(st.st_ino, st.st_size, seq, digest, kind)
        if torn:
            head = self._recover(head, torn)
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

    def _recover(self, head: ChainHead, torn: bytes) -> ChainHead:
        offset = head.size - len(torn)
        record = seal(
            recovery_body(time=rfc3339(self._clock()), torn=torn, offset=offset),
            seq=head.seq + 1,
            prev=head.hash,
        )
        return self.append(head, b"\n" + to_line(record), record)

    # --- appending and rotating -----------------------------------------------

    def append(self, head: ChainHead, data: bytes, last: Mapping[str, Any]) -> ChainHead:
        """Write ``data`` (whole lines, ``last`` the final record) after ``head`` and
        fsync; on failure truncate back to ``head`` and raise. Returns the new head."""
        fd = self._fd
        assert fd is not None, "append after head()"
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
        if self._copy_fd is not None:
            self._copy(data.lstrip(b"\n"))
        new = ChainHead(
            head.ino, head.size + len(data), int(last["seq"]), last["hash"], last["type"]
        )
        self._cache = new
        return new

    def _copy(self, data: bytes) -> None:
        assert self._copy_fd is not None
        try:
            _write_all(self._copy_fd, data)
        except OSError as exc:
            if not self._copy_failed:
                self._copy_failed = True
                print(
                    f"nfsguard audit: copy to stdout failed ({_describe(exc)}); "
                    f"the records are in {self.path}",
                    file=sys.stderr,
                )

    def due_for_rotation(self, head: ChainHead) -> bool:
        return self._max_bytes > 0 and head.size >= self._max_bytes

    def rotate(self, head: ChainHead) -> ChainHead:
        """Rename the file after the seq of its first record and start a new one,
        whose head is ``head`` (the chain goes on)."""
        fd = self._fd
        assert fd is not None, "rotate after head()"
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
        return ChainHead(os.fstat(new_fd).st_ino, 0, head.seq, head.hash, head.type)

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
