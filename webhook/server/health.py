"""What ``/readyz`` says about one worker, and the protocol its parts report through.

A worker is ready when it can answer reviews as configured: it always has an engine
(the policy store starts only with one), and a live node inventory must have listed the
nodes once. The Service sends reviews only to ready endpoints, and kube-apiserver
applies failurePolicy while none is, so readiness must never stay false for ever: past
a grace period the worker serves and says what its decisions assume.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from webhook.server.policy_store import PolicyStore


class HealthCheck(Protocol):
    """A part of a worker that can keep it from being ready (a live node inventory,
    webhook.cluster.nodes.LiveNodeInventory)."""

    def status(self) -> Mapping[str, Any]:
        """This part's state for /readyz and debugging, JSON-ready, with ``ready``
        (bool): False while the part cannot yet serve as configured."""
        ...


class WorkerReadiness:
    """``/readyz`` of one worker: the policies in force and their last reload, and the
    node inventory's status when it is a HealthCheck.

    A node inventory not ready after ``grace`` seconds (the node staleness bound) no
    longer holds the worker back: a missing RBAC grant or an unreachable apiserver must
    not keep every replica unready; nodeKernels rules then follow each policy's
    ``unknownNodes`` (assumeAffected by default), which ``assuming`` says.
    """

    def __init__(
        self,
        store: PolicyStore,
        nodes: HealthCheck | None,
        *,
        grace: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.nodes = nodes
        self.grace = grace
        self._clock = clock
        self._started = clock()

    def __call__(self) -> tuple[bool, dict[str, Any]]:
        details: dict[str, Any] = {
            "policies": self.store.status(),
            "reload": self.store.reload_status(),
        }
        if self.nodes is None:
            return True, details
        node_status = self.nodes.status()
        details["nodes"] = node_status
        ready = bool(node_status.get("ready", True))
        waited = self._clock() - self._started
        if not ready and waited > self.grace:
            ready = True
            details["assuming"] = (
                f"node inventory not synced after {waited:.0f}s: "
                "nodeKernels rules follow each policy's unknownNodes"
            )
        return ready, details
