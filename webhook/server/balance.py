"""Connections spread evenly over a server's workers.

Why: gunicorn's workers share one listening socket and whichever wakes first accepts,
so a burst of new connections lands on one worker. kube-apiserver keeps its
connections to a webhook alive, so that choice sticks: one worker's threads answer
every review while the other worker's core idles. Measured with wrk (8 keep-alive
connections, 2 workers x 4 threads, docs/performance.md "Connections per worker"):
8/0 or 7/1 in most runs, and the shipped server answered about 900 reviews/s at 8/0
against 1,430 at 4/4.

How: the master maps a small table of open-connection counts, one slot per worker,
before it forks (an anonymous shared mapping: every worker it forks sees the same
table). A worker claims a slot at boot and frees it at exit. A worker that holds more
connections than its least-loaded live sibling leaves a waiting connection to that
sibling, and takes it itself after ``patience`` seconds (a sibling that is busy,
stuck or gone never delays a client longer). Envoy's ``exact_balance`` connection
balancer makes the same choice (fewest connections), with a lock over its listeners.

The counts are a hint: a slot is written by its owner alone, read by everyone without
a lock, and a stale read only makes a worker accept a connection it could have left.
"""

from __future__ import annotations

import mmap
import os
import struct

#: One slot: its worker's pid (0: free; -1: claimed, the worker not forked yet) and the
#: worker's open connections.
_SLOT = struct.Struct("=qq")
_FREE, _FORKING = 0, -1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process has the pid now: not our worker
        return False
    return True


class ConnectionTable:
    """Open connections per worker, in memory shared with every process forked after
    it is made: make it in the master, before gunicorn forks (:data:`TABLE`).

    Slots are claimed by the master alone (gunicorn builds each worker object in the
    master, then forks), one at a time, so a claim needs no lock; a worker writes only
    its own slot."""

    def __init__(self, slots: int = 64) -> None:
        self.slots = slots
        # fileno -1: MAP_SHARED | MAP_ANONYMOUS, so forked children share the pages.
        self._map = mmap.mmap(-1, slots * _SLOT.size)

    def entries(self) -> list[tuple[int, int, int]]:
        """(slot, pid, open connections) of every worker that has taken its slot."""
        return [
            (index, pid, count)
            for index, (pid, count) in enumerate(_SLOT.iter_unpack(self._map))
            if pid > 0
        ]

    def claim(self) -> Share | None:
        """A slot for a worker about to be forked: a free one, or one whose worker is
        gone (killed before it could free it). None when every slot is held: that
        worker then accepts as gunicorn does, without balancing."""
        for index, (owner, _) in enumerate(_SLOT.iter_unpack(self._map)):
            if owner == _FREE or (owner > 0 and not _alive(owner)):
                self._write(index, _FORKING, 0)
                return Share(self, index)
        return None

    def _write(self, index: int, pid: int, count: int) -> None:
        _SLOT.pack_into(self._map, index * _SLOT.size, pid, count)

    def _owner(self, index: int) -> int:
        owner: int = _SLOT.unpack_from(self._map, index * _SLOT.size)[0]
        return owner


class Share:
    """One worker's slot in a :class:`ConnectionTable`."""

    def __init__(self, table: ConnectionTable, index: int) -> None:
        self.table = table
        self.index = index
        self.pid = _FORKING

    def take(self, pid: int) -> None:
        """In the forked worker: the slot is ``pid``'s, with no connection yet."""
        self.pid = pid
        self.table._write(self.index, pid, 0)

    def set(self, connections: int) -> None:
        """This worker now holds ``connections`` open connections."""
        self.table._write(self.index, self.pid, connections)

    def crowded(self) -> bool:
        """Whether a live sibling holds fewer connections than this worker: it should
        take the next one. A sibling that died without freeing its slot is ignored."""
        entries = self.table.entries()
        mine = next((count for _, pid, count in entries if pid == self.pid), 0)
        return any(pid != self.pid and count < mine and _alive(pid) for _, pid, count in entries)

    def release(self) -> None:
        """Free the slot (the worker exits); a slot already reused is left alone."""
        if self.table._owner(self.index) == self.pid:
            self.table._write(self.index, _FREE, 0)


#: This server's table, made when the master imports the worker class, before it
#: forks any worker.
TABLE = ConnectionTable()
