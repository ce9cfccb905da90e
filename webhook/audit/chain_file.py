"""One audit chain in its own file, owned by one process: slot, head, append, rotate, recover.

Each writer process (gunicorn worker) holds a chain of its own, so appends
never wait on another process. ``--audit-log DIR/audit.log`` names slot 0;
slot k is ``DIR/audit.k.log``. A writer claims the first free slot with an
exclusive, non-blocking ``flock`` on its lock file (``.<name>.lock``) and
holds it until it closes or dies: a restarted worker finds its predecessor's
slot free again and continues that chain. Nobody else appends to an owned
file, so the chain head (last ``seq``, ``hash``, chain id) is read from the
file once, when the slot is claimed, and kept in memory after that: no
``stat`` per append. Appends happen under a threading lock (threads of one
process); each writes the line(s) with one ``write``, ``fsync``s the file,
copies the lines to stdout when asked (still under the lock, so stdout has
each chain's order), and only then returns.

Every record carries its chain's id (``chain``, 16 hex digits made when the
chain starts), so the stdout copies of several chains mixed in one container
log can be told apart and verified chain by chain.

Rotation: once the file has reached ``max_bytes`` it is renamed to
``<file>.<seq of its first record, 12 digits>`` and a new one is started whose
first record continues the chain (its ``prev`` is the last hash of the old
file). ``nfsguard audit verify DIR`` verifies every chain in the directory.
Beyond ``keep_files`` rotated files (counted over all the slots of the log,
so the disk budget does not grow with the number of workers) the oldest are
deleted; what remains still verifies (from the first record left, with a
note that earlier ones are gone).

Crash: a write cut short leaves a partial last line. The next writer of the
slot sees it (the file does not end with ``\\n``), terminates it and appends a
``recovery`` record naming its offset, length and SHA-256, chained to the last
complete record; verify accepts exactly that and reports it.

What goes into the chain (sealing, checkpoints) is decided by
:mod:`webhook.audit.writer`; this module only keeps the file true to it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from webhook.audit.record import (
    GENESIS,
    RecordError,
    chain_of,
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
    """The last record of the chain, the size of the live file, and the chain's id."""

    size: int
    seq: int  # -1 before the first record
    hash: str
    type: str | None
    chain: str


def rotated_name(path: str, first_seq: int) -> str:
    return f"{path}.{first_seq:012d}"


#: A writer tries this many slots before it gives up (far more than workers).
MAX_SLOTS = 256

_ROTATED = re.compile(r"\.\d{12}$")


def slot_path(path: str, slot: int) -> str:
    """The chain file of ``slot``: ``path`` itself for 0, ``stem.<slot>.ext`` after."""
    if slot == 0:
        return path
    stem, ext = os.path.splitext(path)
    return f"{stem}.{slot}{ext}"


def lock_path(path: str) -> str:
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.lock")


def slot_chains(path: str) -> list[tuple[str, list[str]]]:
    """The chains of ``path``'s slots: (live file, its files oldest first), slot 0
    first, up to the last slot that was ever claimed (a lock file or files)."""
    path = os.path.abspath(path)
    chains = []
    for slot in range(MAX_SLOTS):
        live = slot_path(path, slot)
        files = rotated_files(live)
        if os.path.isfile(live):
            files.append(live)
        if not files and not os.path.exists(lock_path(live)):
            break
        if files:
            chains.append((live, files))
    return chains


def chain_files_in(directory: str) -> list[tuple[str, list[str]]]:
    """Every chain in ``directory``: (its live file's path, its files oldest first),
    by live file name. A file ``NAME.<12 digits>`` is a rotated file of ``NAME``;
    hidden files (lock files) are not chains."""
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return []
    names: set[str] = set()
    for entry in entries:
        if entry.startswith(".") or not os.path.isfile(os.path.join(directory, entry)):
            continue
        names.add(_ROTATED.sub("", entry))
    chains = []
    for name in sorted(names, key=_slot_order):
        live = os.path.join(directory, name)
        files = rotated_files(live)
        if os.path.isfile(live):
            files.append(live)
        chains.append((live, files))
    return chains


def _slot_order(name: str) -> tuple[str, int, str]:
    """``audit.log``, ``audit.1.log``, ``audit.2.log``, ..., ``audit.10.log`` in slot order."""
    stem, ext = os.path.splitext(name)
    base, _, number = stem.rpartition(".")
    if base and number.isdigit():
        return (base + ext, int(number), name)
    return (name, 0, name)


def rotated_files(path: str) -> list[str]:
    """The rotated files of ``path``, oldest first."""
    directory, name = os.path.split(os.path.abspath(path))
    pattern = re.compile(re.escape(name) + r"\.(\d{12})$")
    found = []
    try:
        entries = os.listdir(directory)
    except OSError:  # no directory (yet), or not one
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


def _rotated_of_slots(path: str) -> list[tuple[int, int, str]]:
    """(mtime ns, first seq, path) of the rotated files of every slot of ``path``."""
    directory, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    pattern = re.compile(re.escape(stem) + r"(?:\.\d+)?" + re.escape(ext) + r"\.(\d{12})$")
    found = []
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    for entry in entries:
        match = pattern.match(entry)
        if match:
            full = os.path.join(directory, entry)
            try:
                found.append((os.stat(full).st_mtime_ns, int(match.group(1)), full))
            except OSError:
                continue
    return sorted(found)


#: Space reserved past the end of a live file at a time (``fallocate`` with
#: ``FALLOC_FL_KEEP_SIZE``: the size, and so the file, stays as it was), so that an
#: append allocates no blocks and its ``fdatasync`` has less metadata to journal
#: (docs/performance.md: 0.26 against 0.33 ms here). Only while the file system has
#: at least PREALLOCATE_MIN_FREE free, so a small or nearly full disk sees no
#: reservation and fills exactly as before; released at rotation and close.
PREALLOCATE_BYTES = 1024 * 1024
PREALLOCATE_MIN_FREE = 64 * 1024 * 1024
_FALLOC_FL_KEEP_SIZE = 1


def _load_fallocate() -> Callable[[int, int, int], bool] | None:
    """``fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length)`` from libc (Linux), or None."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        call = libc.fallocate
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    call.restype = ctypes.c_int

    def reserve(fd: int, offset: int, length: int) -> bool:
        return bool(call(fd, _FALLOC_FL_KEEP_SIZE, offset, length) == 0)

    return reserve


_fallocate = _load_fallocate()


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ChainFile:
    """The chain of the first free slot of ``path``; every method but :meth:`locked`
    and :meth:`close` runs inside ``with locked():``.

    Opening it creates the directory, claims a slot and reads the head, so an
    unusable log fails at start-up rather than at the first review. ``path``
    is the chain file actually written (``audit.log``, ``audit.1.log``, ...),
    ``base_path`` the configured one. ``copy_fd``: also write every appended
    line there (stdout, for the container log). ``clock`` stamps recovery
    records.
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
        self.base_path = os.path.abspath(path)
        self.path = self.base_path
        self.slot = 0
        self._directory = os.path.dirname(self.base_path)
        self._max_bytes = max_bytes
        self._keep = keep_files
        self._clock = clock
        self._copy_fd = copy_fd
        self._copy_failed = False
        self.fsyncs = 0  # successful write+fsync rounds of this process (group commits)
        self._reserved = 0  # the live file has space reserved up to this offset
        self.closed = False
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._cache: ChainHead | None = None
        self._pid = os.getpid()
        self._tlock = threading.Lock()
        try:
            os.makedirs(self._directory, exist_ok=True)
        except FileExistsError:
            raise AuditWriteError(
                f"audit log {self.base_path}: {self._directory} exists and is not a directory"
            ) from None
        except OSError as exc:
            raise AuditWriteError(
                f"audit log {self.base_path}: cannot create directory: {_describe(exc)}"
            ) from None
        with self.locked():
            self.head()

    # --- the slot -------------------------------------------------------------

    def _claim(self) -> None:
        """Take the first slot whose lock no other writer holds, for good."""
        for slot in range(MAX_SLOTS):
            candidate = slot_path(self.base_path, slot)
            lock = lock_path(candidate)
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise AuditWriteError(
                    f"audit log {candidate}: cannot open lock file {lock}: {_describe(exc)}"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except OSError as exc:
                os.close(fd)
                raise AuditWriteError(
                    f"audit log {candidate}: cannot lock {lock}: {_describe(exc)}"
                ) from None
            self._lock_fd, self.slot, self.path = fd, slot, candidate
            return
        raise AuditWriteError(
            f"audit log {self.base_path}: all {MAX_SLOTS} slots are held by other writers"
        )

    def _reset_after_fork(self) -> None:
        # A child shares the parent's open file descriptions, and its flock with
        # them: it must claim a slot (a chain) of its own.
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._pid = os.getpid()
        self._tlock = threading.Lock()
        self._fd = None
        self._lock_fd = None
        self._cache = None
        self.path = self.base_path

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the thread lock, with the slot claimed (raises once :meth:`close` ran)."""
        if os.getpid() != self._pid:
            self._reset_after_fork()
        with self._tlock:
            if self.closed:
                raise AuditWriteError(f"audit log {self.path}: the writer is closed")
            if self._lock_fd is None:
                self._claim()
            yield

    def close(self) -> None:
        """Release the file (and its reserved space) and the slot; later calls of
        :meth:`locked` raise."""
        with self._tlock:
            self.closed = True
            self._release()
            for fd in (self._fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = None
            self._lock_fd = None

    # --- the chain head -------------------------------------------------------

    def _open(self) -> int:
        """The fd of this slot's live file (created when there is none)."""
        if self._fd is not None:
            return self._fd
        existed = os.path.lexists(self.path)
        try:
            self._fd = os.open(
                self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
            )
            if not existed:
                _fsync_dir(self._directory)
        except OSError as exc:
            raise AuditWriteError(f"audit log {self.path}: cannot open: {_describe(exc)}") from None
        return self._fd

    def head(self) -> ChainHead:
        """The head of this slot's chain: read from the file when the slot is claimed
        (or after a failed write), a torn tail recovered; kept in memory after."""
        cache = self._cache
        if cache is not None:
            return cache
        fd = self._open()
        self._release()  # what a killed predecessor had reserved
        try:
            size = os.fstat(fd).st_size
            last, torn = read_tail(fd, size)
        except OSError as exc:
            raise AuditWriteError(f"audit log {self.path}: cannot read: {_describe(exc)}") from None
        if last is None:
            seq, digest, kind, chain = self._head_of_rotated()
        else:
            seq, digest, kind, chain = self._parse_head(self.path, last)
        head = ChainHead(size, seq, digest, kind, chain or secrets.token_hex(8))
        if torn:
            head = self._recover(head, torn)
        self._cache = head
        return head

    def _parse_head(self, path: str, line: bytes) -> tuple[int, str, str | None, str]:
        try:
            obj = parse_line(line)
            check_envelope(obj)
        except RecordError as exc:
            raise AuditWriteError(
                f"audit log {path}: last line is not an audit record ({exc}); "
                "refusing to extend the chain"
            ) from None
        return int(obj["seq"]), str(obj["hash"]), str(obj["type"]), chain_of(obj)

    def _head_of_rotated(self) -> tuple[int, str, str | None, str]:
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
        return -1, GENESIS, None, ""

    def _recover(self, head: ChainHead, torn: bytes) -> ChainHead:
        offset = head.size - len(torn)
        body = recovery_body(time=rfc3339(self._clock()), torn=torn, offset=offset)
        record = seal({**body, "chain": head.chain}, seq=head.seq + 1, prev=head.hash)
        return self.append(head, b"\n" + to_line(record), record)

    # --- appending and rotating -----------------------------------------------

    def append(self, head: ChainHead, data: bytes, last: Mapping[str, Any]) -> ChainHead:
        """Write ``data`` (whole lines, ``last`` the final record) after ``head`` and
        fsync; on failure truncate back to ``head`` and raise. Returns the new head."""
        fd = self._fd
        assert fd is not None, "append after head()"
        if head.size + len(data) > self._reserved:
            self._reserve(fd, head.size + len(data))
        try:
            _write_all(fd, data)
            os.fdatasync(fd)  # the data and the size that reaches it: all a reader needs
        except OSError as exc:
            self._cache = None
            self._reserved = 0  # the truncation below releases it
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
            head.size + len(data), int(last["seq"]), last["hash"], last["type"], head.chain
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

    def _reserve(self, fd: int, end: int) -> None:
        """Reserve PREALLOCATE_BYTES from ``end`` on, when there is room to spare; at
        most one ``statvfs`` per reservation. A failure only means no reservation."""
        self._reserved = end + PREALLOCATE_BYTES
        if _fallocate is None:
            return
        try:
            st = os.fstatvfs(fd)
        except OSError:
            return
        if st.f_bavail * st.f_frsize >= PREALLOCATE_MIN_FREE:
            _fallocate(fd, end, PREALLOCATE_BYTES)

    def _release(self) -> None:
        """Give back the space reserved past the end of the live file."""
        self._reserved = 0
        if self._fd is not None:
            with suppress(OSError):
                os.ftruncate(self._fd, os.fstat(self._fd).st_size)

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
        self._release()  # a rotated file keeps no reserved space
        try:
            os.link(self.path, target)
            os.unlink(self.path)
            _fsync_dir(self._directory)
        except OSError as exc:
            raise AuditWriteError(
                f"audit log {self.path}: cannot rotate to {target}: {_describe(exc)}"
            ) from None
        os.close(fd)
        self._fd = None
        self._prune()
        self._open()
        new = ChainHead(0, head.seq, head.hash, head.type, head.chain)
        self._cache = new
        return new

    def _prune(self) -> None:
        """Delete the oldest rotated files beyond ``keep_files`` (0: keep all), over
        the rotated files of every slot: the budget is the log's, not one chain's."""
        if self._keep <= 0:
            return
        older = _rotated_of_slots(self.base_path)
        for _mtime, _seq, name in older[: max(0, len(older) - self._keep)]:
            try:
                os.unlink(name)
            except FileNotFoundError:
                continue  # another slot's writer pruned it first
            except OSError as exc:
                print(f"nfsguard audit: cannot delete {name}: {_describe(exc)}", file=sys.stderr)
