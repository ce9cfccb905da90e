"""What ``/readyz`` says about one worker, and the protocol its parts report through.

A worker is ready when it can answer reviews as configured: it always has an engine
(the policy store starts only with one), a live node inventory must have listed the
nodes once, and its decisions can be recorded (the audit log's disk has room). The
Service sends reviews only to ready endpoints, and kube-apiserver
applies failurePolicy while none is, so readiness must never stay false for ever: past
a grace period the worker serves and says what its decisions assume.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from webhook.server.policy_store import PolicyStore


class HealthCheck(Protocol):
    """A part of a worker that can keep it from being ready (a live node inventory,
    webhook.cluster.nodes.LiveNodeInventory)."""

    def status(self) -> Mapping[str, Any]:
        """This part's state for /readyz and debugging, JSON-ready, with ``ready``
        (bool): False while the part cannot yet serve as configured."""
        ...


#: Below this much free space on the audit log's filesystem a worker is not ready: a
#: record is about a kilobyte, and a checkpoint or a rotation needs a few more.
MIN_AUDIT_FREE_BYTES = 16 * 1024


class RecordingHealth:
    """Whether this worker can record decisions (the audit log's disk), for /readyz.

    Not ready while the audit log's filesystem has less than MIN_AUDIT_FREE_BYTES
    free (one ``statvfs`` per /readyz), or after a review could not be recorded (503)
    until a probe write and fsync of a scratch file beside the log succeeds (at most
    once a second): a worker that answers 503 to every review should not be sent
    reviews, and must become ready again by itself once the disk has room, without a
    review to tell it so (the Service sends none to an unready pod).
    """

    def __init__(self, audit_log: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = Path(audit_log).resolve().parent
        self._clock = clock
        self._lock = threading.Lock()
        #: The last failure to record, while it stands.
        self.failure: str | None = None
        self._probed = 0.0

    def failed(self, reason: str) -> None:
        self.failure = reason

    def recorded(self) -> None:
        self.failure = None

    def _free_bytes(self) -> int | None:
        try:
            st = os.statvfs(self.directory)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def _probe(self) -> str | None:
        """Write, fsync and remove a scratch file beside the log; None when it worked."""
        probe = self.directory / f".nfsguard-probe-{os.getpid()}"
        try:
            with probe.open("wb") as out:
                out.write(b"\0" * 4096)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            return f"audit log directory not writable: {exc}"
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
        return None

    def status(self) -> Mapping[str, Any]:
        free = self._free_bytes()
        if free is not None and free < MIN_AUDIT_FREE_BYTES:
            return {
                "ready": False,
                "reason": f"audit log filesystem has {free} bytes free "
                f"(needs {MIN_AUDIT_FREE_BYTES}): decisions cannot be recorded",
            }
        failure = self.failure
        if failure is None:
            return {"ready": True}
        with self._lock:
            now = self._clock()
            if now - self._probed >= 1.0:
                self._probed = now
                if self._probe() is None:
                    self.failure = None  # room again: the next review tells for sure
                    return {"ready": True, "recovered": failure}
        return {"ready": False, "reason": failure}


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
        recording: HealthCheck | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.nodes = nodes
        #: The audit trail (RecordingHealth): never waived, unlike the node inventory.
        self.recording = recording
        self.grace = grace
        self._clock = clock
        self._started = clock()

    def __call__(self) -> tuple[bool, dict[str, Any]]:
        details: dict[str, Any] = {
            "policies": self.store.status(),
            "reload": self.store.reload_status(),
        }
        recording_ready = True
        if self.recording is not None:
            audit = self.recording.status()
            details["audit"] = dict(audit)
            recording_ready = bool(audit.get("ready", True))
        if self.nodes is None:
            return recording_ready, details
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
        return ready and recording_ready, details
