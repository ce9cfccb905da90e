"""One writer among replicas: a ``coordination.k8s.io/v1`` Lease, as client-go's
leaderelection uses it (k8s.io/client-go/tools/leaderelection/resourcelock/leaselock.go).

Whoever holds the Lease (``holderIdentity``) renews it every ``renew_every`` seconds;
another candidate takes it only once ``renewTime + leaseDurationSeconds`` has passed
by its own clock. Every write is a replace at the read ``resourceVersion``, so two
candidates racing for an expired Lease cannot both win: the apiserver answers the
second with 409 Conflict. General: the webhook's registration loop uses it
(webhook/cluster/registration.py), and any other single-writer loop can.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("nfsguard.lease")

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaseLock:
    """``try_acquire_or_renew`` once per period; ``held`` says whether this candidate
    is the one writer now. ``release`` gives the Lease up on a clean stop (so the next
    writer need not wait out the duration)."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration_seconds: int = 15,
        clock: Clock = _utcnow,
    ) -> None:
        self.coordination = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration_seconds = duration_seconds
        self._clock = clock
        self.held = False

    def _spec(self, now: dt.datetime, acquired: dt.datetime | None, transitions: int) -> Any:
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self.duration_seconds,
            acquire_time=acquired or now,
            renew_time=now,
            lease_transitions=transitions,
        )

    def try_acquire_or_renew(self) -> bool:
        """Take or keep the Lease; False when another live holder has it, or on any API
        error (then this candidate must act as if it does not hold it)."""
        now = self._clock()
        try:
            self.held = self._try(now)
        except ApiException as exc:
            if exc.status != 409:
                log.warning("lease %s/%s: %s %s", self.namespace, self.name, exc.status, exc.reason)
            self.held = False
        except Exception as exc:  # network errors: not the holder until proven again
            log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            self.held = False
        return self.held

    def _try(self, now: dt.datetime) -> bool:
        try:
            lease = self.coordination.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(now, None, 0),
            )
            self.coordination.create_namespaced_lease(self.namespace, body)
            log.info("lease %s/%s acquired by %s", self.namespace, self.name, self.identity)
            return True
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity or ""
        mine = holder == self.identity
        if holder and not mine and not self._expired(spec, now):
            return False
        transitions = (spec.lease_transitions or 0) + (0 if mine else 1)
        lease.spec = self._spec(now, spec.acquire_time if mine else None, transitions)
        self.coordination.replace_namespaced_lease(self.name, self.namespace, lease)
        if not mine:
            log.info(
                "lease %s/%s taken over by %s (was %r)",
                self.namespace,
                self.name,
                self.identity,
                holder,
            )
        return True

    def _expired(self, spec: Any, now: dt.datetime) -> bool:
        renewed = spec.renew_time or spec.acquire_time
        if renewed is None:
            return True
        if renewed.tzinfo is None:
            renewed = renewed.replace(tzinfo=dt.UTC)
        duration = spec.lease_duration_seconds or self.duration_seconds
        return bool(now >= renewed + dt.timedelta(seconds=duration))

    def release(self) -> None:
        """Give the Lease up if held (holder cleared), so another takes it at once."""
        if not self.held:
            return
        self.held = False
        try:
            lease = self.coordination.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                self.coordination.replace_namespaced_lease(self.name, self.namespace, lease)
        except Exception as exc:
            log.warning("lease %s/%s: release failed: %s", self.namespace, self.name, exc)
