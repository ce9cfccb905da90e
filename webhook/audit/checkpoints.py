"""Signed checkpoints: an Ed25519 signature (webhook/audit/signing.py) over the chain head.

A checkpoint anchors the record before it, so verify can tell a cut tail from
a complete log up to there (docs/audit.md, "What is and is not detectable").
The writer makes one after every record whose ``seq + 1`` is a multiple of
``checkpoint_every`` (reason ``count``), every ``checkpoint_interval``
seconds when the head is not anchored yet (``interval``, on the
:class:`CheckpointTimer` thread), before a rotation (``rotate``) and at
``close()`` (``shutdown``). Each declares ``checkpointEvery`` (signed), the
cadence ``audit verify`` then holds the rest of the chain to.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from webhook.audit.chain_file import ChainHead
from webhook.audit.record import CHECKPOINT, checkpoint_body, seal
from webhook.audit.signing import Signer


def anchored(head: ChainHead) -> bool:
    """Nothing to sign: the chain is empty or already ends in a checkpoint."""
    return head.seq < 0 or head.type == CHECKPOINT


def checkpoint_record(
    signer: Signer,
    *,
    head_seq: int,
    head_hash: str,
    reason: str,
    time: str,
    every: int = 0,
    chain: str | None = None,
) -> dict[str, Any]:
    """The sealed checkpoint anchoring ``head_seq``/``head_hash`` (its ``seq`` is
    ``head_seq + 1``). The signature covers the record without ``hash``; the
    ``hash`` then covers the signature. ``chain``: the chain's id (signed too)."""
    body = checkpoint_body(
        time=time,
        head_seq=head_seq,
        head_hash=head_hash,
        reason=reason,
        key_id=signer.key_id,
        every=every,
    )
    if chain is not None:
        body["chain"] = chain
    record = seal(
        body,
        seq=head_seq + 1,
        prev=head_hash,
    )
    del record["hash"]
    record["signature"] = signer.sign(record)
    return seal(record, seq=head_seq + 1, prev=head_hash)


class CheckpointTimer:
    """Calls ``tick`` every ``interval`` seconds on a daemon thread until :meth:`stop`."""

    def __init__(self, interval: float, tick: Callable[[], None]) -> None:
        self._interval = interval
        self._tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="nfsguard-audit-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._tick()

    def stop(self) -> None:
        """Stop ticking; waits (up to 5 s) for a tick in progress, unless called from it."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
