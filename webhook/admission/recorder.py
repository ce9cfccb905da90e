"""Where decisions go before a review is answered."""

from __future__ import annotations

from typing import Protocol

from webhook.api.decision import Decision
from webhook.api.review import AdmissionRequest


class DecisionRecorder(Protocol):
    """Records one decision durably.

    ``record`` returns only once the record is safely stored; it raises
    (any exception) when it cannot be, and the review then fails with 503
    rather than pretend the decision was recorded.
    """

    def record(self, request: AdmissionRequest, decision: Decision) -> None: ...


class NullRecorder:
    """Records nothing (offline review, tests of the wire alone)."""

    def record(self, request: AdmissionRequest, decision: Decision) -> None:
        return None
