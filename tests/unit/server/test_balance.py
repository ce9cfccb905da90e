"""The table of open connections per worker (webhook/server/balance.py), shared by
real forks as gunicorn's master shares it with the workers it forks."""

from __future__ import annotations

import os
from collections.abc import Callable

from webhook.server.balance import ConnectionTable, Share


def in_child(work: Callable[[], None]) -> int:
    """Run ``work`` in a forked child that exits once it is done (without freeing
    anything: as a worker killed at that point); returns the child's pid, reaped."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            work()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return pid


def forked_worker(share: Share, connections: int) -> int:
    """A worker that took ``share`` and held ``connections``; it has exited."""

    def work() -> None:
        share.take(os.getpid())
        share.set(connections)

    return in_child(work)


def test_a_forked_worker_writes_the_table_its_master_and_siblings_read() -> None:
    table = ConnectionTable(slots=4)
    share = table.claim()
    assert share is not None
    child = forked_worker(share, 3)
    assert table.entries() == [(share.index, child, 3)]


def test_a_worker_is_crowded_only_while_a_live_sibling_holds_fewer() -> None:
    table = ConnectionTable(slots=4)
    mine, sibling = table.claim(), table.claim()
    assert mine is not None and sibling is not None and mine.index != sibling.index
    mine.take(os.getpid())
    sibling.take(os.getppid())  # a live process other than this one
    for my_count, its_count, crowded in ((0, 0, False), (1, 0, True), (2, 2, False), (1, 3, False)):
        mine.set(my_count)
        sibling.set(its_count)
        assert mine.crowded() is crowded, (my_count, its_count)


def test_a_slot_claimed_but_not_yet_taken_holds_nobody_back() -> None:
    table = ConnectionTable(slots=4)
    mine, booting = table.claim(), table.claim()
    assert mine is not None and booting is not None
    mine.take(os.getpid())
    mine.set(5)
    assert not mine.crowded()  # the forking one is not in the table yet
    assert [pid for _, pid, _ in table.entries()] == [os.getpid()]


def test_a_killed_workers_slot_holds_nobody_back_and_is_claimed_again() -> None:
    table = ConnectionTable(slots=2)
    mine, dead = table.claim(), table.claim()
    assert mine is not None and dead is not None
    mine.take(os.getpid())
    mine.set(4)
    forked_worker(dead, 0)  # exited without release(): its slot says 0 connections
    assert not mine.crowded()
    again = table.claim()
    assert again is not None and again.index == dead.index
    assert table.claim() is None  # both slots held now: a further worker goes unbalanced


def test_release_frees_only_a_slot_still_the_workers_own() -> None:
    table = ConnectionTable(slots=2)
    share = table.claim()
    assert share is not None
    share.take(os.getpid())
    share.release()
    assert table.entries() == []
    reused = table.claim()
    assert reused is not None and reused.index == share.index
    reused.take(os.getppid())
    share.release()  # the old owner's late release leaves the new owner's slot alone
    assert table.entries() == [(share.index, os.getppid(), 0)]
