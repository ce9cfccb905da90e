"""The recorder port: where decisions go before a review is answered.

The handler depends on this protocol only; the audit trail's writer
(webhook.audit) satisfies it structurally, without importing this room.
"""

from __future__ import annotations

from typing import Protocol

from webhook.api.decision import Decision
from webhook.api.review import AdmissionRequest


class DecisionRecorder(Protocol):
    """Records decisions durably, one worker's for its lifetime."""

    def record(self, request: AdmissionRequest, decision: Decision) -> None:
        """Return only once the record is safely stored; raise (any exception) when it
        cannot be, and the review then fails with 503 rather than pretend the decision
        was recorded."""
        ...

    def close(self) -> None:
        """Flush and release what the recorder holds (at worker shutdown); no ``record``
        follows."""
        ...


class NullRecorder:
    """Records nothing (offline review, no audit log, tests of the wire alone)."""

    def record(self, request: AdmissionRequest, decision: Decision) -> None:
        return None

    def close(self) -> None:
        return None
