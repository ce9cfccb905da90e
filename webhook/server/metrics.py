"""Prometheus metrics, shared across gunicorn workers (multiprocess mode).

``nfsguard serve`` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before
gunicorn forks, so every worker's samples are summed on /metrics.

Every series whose labels can be known at start-up exists from the start, at 0
(:func:`initialise` per worker, :func:`policies_loaded` after every accepted policy
load): an alert on ``increase(...)`` or ``rate(...)`` sees the first event, not a
series that appears with it. Labels are bounded: kinds, operations and outcomes are
enums, policy and rule names are those loaded; never an object or user name.
docs/operations.md lists every series.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

from webhook.api.decision import Action, Outcome
from webhook.api.kube import POD_SPEC_POINTERS
from webhook.api.policy import Policy

KINDS = ("PersistentVolume", "StorageClass")
#: Pods and workloads are counted under their own kind; their review series exist from
#: the start (decision series appear with the first decision: rules x kinds would
#: multiply every policy's series by five).
POD_KINDS = tuple(POD_SPEC_POINTERS)
OPERATIONS = ("CREATE", "UPDATE")
#: HTTP statuses /mutate refuses with (webhook/server/http.py, admission/errors.py).
ERROR_CODES = ("400", "413", "415", "500", "503")

REVIEWS = Counter(
    "nfsguard_reviews_total", "AdmissionReviews answered, by outcome", ["kind", "outcome"]
)
DECISIONS = Counter(
    "nfsguard_decisions_total",
    "Decisions on reviewed objects, by kind, operation, outcome and deciding policy and rule "
    '("" when no rule decided: compliant, unmatched)',
    ["kind", "operation", "outcome", "policy", "rule"],
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
POLICY_INFO = Gauge(
    "nfsguard_policy_info",
    "1 for each policy (name, spec.version, content digest) a live worker serves; 0 once replaced",
    ["policy", "version", "digest"],
    multiprocess_mode="livemax",
)
TLS_RELOADS = Counter(
    "nfsguard_tls_reload_total",
    "Renewed tls.crt/tls.key taken into service (accepted) or refused and the pair in "
    "service kept (rejected: does not load, expired, not yet valid, names missing), by worker",
    ["result"],
)
CONNECTIONS_REFUSED = Counter(
    "nfsguard_connections_refused_total",
    "Connections closed at once because a worker had its maximum open, and requests "
    "refused because unfinished requests held the worker's buffer budget",
)
CONNECTIONS_TIMED_OUT = Counter(
    "nfsguard_connections_timed_out_total",
    "Connections closed because the TLS handshake, the headers or the body did not "
    "arrive in time (--header-timeout, --body-timeout)",
)
REVIEW_SECONDS = Histogram(
    "nfsguard_review_duration_seconds",
    "Time to answer one AdmissionReview (parse, decide, record)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)

#: The outcomes a rule's action can decide (verdict.py): pins may also be denied
#: (onExplicit/onUnsupportedPin deny) or warned (a pin the driver cannot take).
ACTION_OUTCOMES = {
    Action.PIN: (Outcome.MUTATED, Outcome.DENIED, Outcome.WARNED),
    Action.DENY: (Outcome.DENIED, Outcome.WARNED),
    Action.WARN: (Outcome.WARNED,),
    Action.AUDIT: (Outcome.AUDITED,),
    Action.EXEMPT: (Outcome.EXEMPT,),
}
#: Outcomes no rule decides (policy and rule labels "").
UNDECIDED = (Outcome.COMPLIANT, Outcome.UNMATCHED)

_served: set[tuple[str, str, str]] = set()


def initialise() -> None:
    """The series every worker has before its first review."""
    for result in ("accepted", "rejected"):
        POLICY_RELOADS.labels(result)
        TLS_RELOADS.labels(result)
    for code in ERROR_CODES:
        REVIEW_ERRORS.labels(code)
    for kind in (*KINDS, *POD_KINDS):
        for outcome in Outcome:
            if outcome is not Outcome.IGNORED:
                REVIEWS.labels(kind, outcome.value)
    REVIEWS.labels("", Outcome.IGNORED.value)


def policies_loaded(policies: Iterable[Policy]) -> None:
    """After a policy load is accepted: ``nfsguard_policy_info`` says what is served
    (the replaced set drops to 0) and every rule's decision series exists."""
    served = {(p.name, p.version, p.digest) for p in policies}
    for labels in _served - served:
        POLICY_INFO.labels(*labels).set(0)
    for labels in served:
        POLICY_INFO.labels(*labels).set(1)
    _served.clear()
    _served.update(served)
    for kind in KINDS:
        for operation in OPERATIONS:
            for outcome in UNDECIDED:
                DECISIONS.labels(kind, operation, outcome.value, "", "")
            for policy in policies:
                for rule in policy.rules:
                    for outcome in ACTION_OUTCOMES.get(rule.action, ()):
                        DECISIONS.labels(kind, operation, outcome.value, policy.name, rule.name)


def exposition() -> tuple[bytes, str]:
    """The text exposition of all workers' metrics (or this process's alone)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
