"""The policy set the server last accepted, shared by its workers through one file.

Every worker polls the policy files itself (webhook/server/policy_store.py), so
without a shared record a worker restarted by gunicorn after a good reload and a
later broken change could only fall back to what the master read at start: 30
identical reviews came back 15 denied and 15 pinned (issue 17). Here the worker
that accepts a set publishes it (file names, texts, fingerprint) with the next
generation number; a worker that starts while the files on disk do not load starts
from the published set, and a worker that sees a newer generation than its own
(a sibling accepted files it then saw broken) follows it. So every worker serves
one generation, and a generation number means the same set in every worker.

The file lives in a directory ``serve`` creates for the server's lifetime (one per
gunicorn master, like the metrics directory); it is replaced atomically (write,
fsync, rename) under an ``fcntl`` lock, so a reader never sees half a set.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "accepted-policies.json"


@dataclass(frozen=True)
class AcceptedSet:
    generation: int
    fingerprint: str
    sources: tuple[tuple[str, str], ...]


class AcceptedPolicies:
    """The published set in ``directory``; safe across processes and threads."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STATE_FILE
        self._lock_path = self.directory / (STATE_FILE + ".lock")
        self._seen: tuple[int, int, int] | None = None
        self._cached: AcceptedSet | None = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def read(self) -> AcceptedSet | None:
        """The published set, or None when none is (or it cannot be read). Cheap when
        nothing changed since the last call: one ``stat``."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key == self._seen and self._cached is not None:
            return self._cached
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            accepted = AcceptedSet(
                int(data["generation"]),
                str(data["fingerprint"]),
                tuple((str(name), str(text)) for name, text in data["sources"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        self._seen, self._cached = key, accepted
        return accepted

    def publish(self, fingerprint: str, sources: Sequence[tuple[str, str]]) -> int:
        """Record ``sources`` as accepted; their generation: the published one when it
        is the same set (another worker accepted it first), else the next."""
        with self._locked():
            current = self.read()
            if current is not None and current.fingerprint == fingerprint:
                return current.generation
            generation = current.generation + 1 if current is not None else 0
            payload = json.dumps(
                {"generation": generation, "fingerprint": fingerprint, "sources": list(sources)}
            )
            temporary = self.path.with_suffix(f".tmp.{os.getpid()}")
            with temporary.open("w", encoding="utf-8") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
            return generation
