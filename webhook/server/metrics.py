"""Prometheus metrics, shared across gunicorn workers (multiprocess mode).

``nfsguard serve`` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before
gunicorn forks, so every worker's samples are summed on /metrics.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

REVIEWS = Counter(
    "nfsguard_reviews_total", "AdmissionReviews answered, by outcome", ["kind", "outcome"]
)
REVIEW_ERRORS = Counter(
    "nfsguard_review_errors_total",
    "AdmissionReviews refused, by HTTP status (400: also an object refused in band)",
    ["code"],
)
POLICY_RELOADS = Counter(
    "nfsguard_policy_reload_total",
    "Policy hot reloads by result (accepted, rejected), counted by every worker",
    ["result"],
)
REVIEW_SECONDS = Histogram(
    "nfsguard_review_duration_seconds",
    "Time to answer one AdmissionReview (parse, decide, record)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


def exposition() -> tuple[bytes, str]:
    """The text exposition of all workers' metrics (or this process's alone)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
