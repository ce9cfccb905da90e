"""``serve --register``: this server keeps its own MutatingWebhookConfiguration.

The loop runs in ONE thread of the gunicorn master (started by the ``when_ready``
hook, before the first fork; a forked worker does not inherit threads, so a
restarted worker never starts a second writer), and among replicas only the holder
of a coordination.k8s.io Lease writes (webhook/cluster/lease.py). Each period:

1. poll the policy files (the same PolicyStore the workers run: a change that does
   not load leaves the last good engine in force);
2. hold the Lease, or stand by;
3. confirm this replica's own health: ``/readyz`` over its own TLS port answers
   ready with the same policies and the same policy-file fingerprint as this loop
   (so the configuration never names a driver the workers are not yet reviewing
   by, or a CA the server does not present);
4. only then write the configuration generated from the engine
   (webhook.registration), caBundle from the CA file: created, replaced when it
   differs, else untouched.

While health cannot be confirmed the loop writes NOTHING: the last good
configuration stays (never an empty or narrower one from a server that is not
serving). Kyverno's webhook controller and Kubewarden's policy server readiness
gate work the same way (/work/shared/reference/webhook-safety.md).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook.files import packaged
from webhook.registration.configuration import WebhookSettings, webhook_configuration
from webhook.server.policy_store import PolicyStore

log = logging.getLogger("nfsguard.registration")


@dataclass(frozen=True)
class RegisterSettings:
    webhook: WebhookSettings
    ca_file: Path
    lease_namespace: str = "nfsguard"
    lease_name: str = "nfsguard-registration"
    lease_duration: int = 15
    interval: float = 5.0
    owner_cluster_role: str | None = None
    kubeconfig: str | None = None
    in_cluster: bool = False


def identity() -> str:
    """Who holds the Lease: the pod (hostname) and the master's pid."""
    return f"{socket.gethostname()}_{os.getpid()}"


class Registrar:
    """One registration loop; ``step`` is one period (tests call it directly)."""

    def __init__(
        self,
        settings: RegisterSettings,
        policies: tuple[str, ...],
        readyz_url: str,
        policy_fallback: tuple[tuple[str, str], ...] = (),
    ) -> None:
        from webhook.cluster.client import make_api_client
        from webhook.cluster.lease import LeaseLock

        self.settings = settings
        self.readyz_url = readyz_url
        self.store = PolicyStore(
            policies,
            builtin_profiles=packaged.builtin_profiles(),
            schemas=packaged.schemas(),
            fallback=policy_fallback,
            counted=False,
        )
        self.api = make_api_client(settings.kubeconfig, in_cluster=settings.in_cluster, watch=True)
        self.lease = LeaseLock(
            self.api,
            namespace=settings.lease_namespace,
            name=settings.lease_name,
            identity=identity(),
            duration_seconds=settings.lease_duration,
        )
        self.state = "starting"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner: dict[str, Any] | None = None

    # ------------------------------------------------------------------ one period

    def step(self) -> str:
        """One period; returns (and logs on change) what it did."""
        state = self._step()
        if state != self.state:
            log.info("registration: %s", state)
        self.state = state
        return state

    def _step(self) -> str:
        from webhook.cluster.registration import apply_configuration

        self.store.check()
        if not self.lease.try_acquire_or_renew():
            return "standby (another replica holds the lease)"
        problem = self.own_health()
        if problem:
            return f"not writing, keeping the last configuration: {problem}"
        try:
            ca = self.settings.ca_file.read_bytes()
        except OSError as exc:
            return f"not writing: CA bundle {self.settings.ca_file}: {exc.strerror}"
        desired = webhook_configuration(self.store.engine(), self.settings.webhook, ca_bundle=ca)
        try:
            return apply_configuration(self.api, desired, self._owner_ref())
        except Exception as exc:
            return f"write failed: {_short(exc)}"

    def own_health(self) -> str:
        """'' when this replica's /readyz says ready, serving this loop's policies."""
        ctx = ssl.create_default_context(cafile=str(self.settings.ca_file))
        ctx.check_hostname = False  # the serving cert names the Service, not loopback
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
        )
        try:
            with opener.open(self.readyz_url, timeout=3) as resp:
                body = json.loads(resp.read())
        except Exception as exc:
            return f"own /readyz: {_short(exc)}"
        if not body.get("ready"):
            return "own /readyz: not ready"
        if body.get("policies") != self.store.status():
            return "own /readyz: the workers serve other policies than the files (reloading)"
        served = (body.get("reload") or {}).get("fingerprint")
        if served != self.store.reload_status()["fingerprint"]:
            return "own /readyz: the workers have not read the current policy files yet"
        return ""

    def _owner_ref(self) -> dict[str, Any] | None:
        if self.settings.owner_cluster_role is None or self._owner is not None:
            return self._owner
        from webhook.cluster.registration import owner_of_cluster_role

        try:
            self._owner = owner_of_cluster_role(self.api, self.settings.owner_cluster_role)
        except Exception as exc:
            log.warning(
                "registration: owner ClusterRole %s: %s (registered without an owner)",
                self.settings.owner_cluster_role,
                _short(exc),
            )
        return self._owner

    # ------------------------------------------------------------------ the thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nfsguard-register", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.lease.release()

    def _run(self) -> None:
        while True:
            try:
                self.step()
            except Exception:  # never let the loop die: the next period tries again
                log.exception("registration step failed")
            # Until the first write, retry each second: the workers come up after the
            # master's hook, and the configuration should follow them promptly.
            settled = self.state in ("created", "updated", "unchanged", "foreign")
            if self._stop.wait(
                self.settings.interval if settled else min(1.0, self.settings.interval)
            ):
                return


def _short(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    return " ".join(str(exc).split())[:200] or type(exc).__name__
