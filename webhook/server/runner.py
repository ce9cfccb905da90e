"""``nfsguard serve``: gunicorn with keep-alive threads and TLS 1.2+.

The workers are gthread's, reading connections in their event loop
(webhook/server/worker.py: no thread waits on a slow or idle client). They keep
HTTP/1.1 connections alive, as kube-apiserver reuses them (the sync worker would cost
a TLS handshake per review). Each worker builds its own engine, inventory and
recorder after fork (``load`` runs post-fork).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication

from webhook.admission.handler import ReviewHandler
from webhook.files import packaged
from webhook.files.sources import load_manifests, read_policy_sources, read_text
from webhook.nfs.inventory import (
    NodeInventory,
    StaticInventory,
    UnknownInventory,
    nodes_from_objects,
)
from webhook.server import metrics, worker
from webhook.server.app import WebhookApp
from webhook.server.boot import BootingApp
from webhook.server.health import HealthCheck, RecordingHealth, WorkerReadiness
from webhook.server.logs import GunicornLogger
from webhook.server.logs import configure as configure_logging
from webhook.server.policy_state import AcceptedPolicies
from webhook.server.policy_store import PolicyStore, fingerprint
from webhook.server.registration_loop import RegisterSettings, Registrar
from webhook.server.tls_reload import gunicorn_ssl_context

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


#: The gunicorn worker every server runs (bench/worker_ab.py swaps in "gthread" to
#: measure what reading in the loop costs).
WORKER_CLASS = "webhook.server.worker.GuardedThreadWorker"


@dataclass(frozen=True)
class ServeSettings:
    policies: tuple[str, ...]
    tls_dir: Path
    host: str = "127.0.0.1"
    port: int = 8443
    workers: int = 2
    threads: int = 4
    audit_log: str | None = None
    audit_key: str | None = None
    audit_stdout: bool = False
    nodes_file: str | None = None
    kubeconfig: str | None = None
    in_cluster: bool = False
    node_stale_after: float = 60.0
    reload_interval: float = 2.0
    log_level: str = "info"
    #: ``--register``: the master keeps the webhook configuration (registration_loop.py).
    register: RegisterSettings | None = None
    log_format: str = "text"
    access_log: bool = False
    audit_compliant: bool = False
    #: Seconds for a request's TLS handshake and headers, then for its body (worker.py).
    header_timeout: float = 5.0
    body_timeout: float = 10.0
    #: Open connections per worker; one more is refused at once.
    max_connections: int = 1000
    #: Seconds a worker leaves a new connection to a sibling holding fewer (balance.py).
    balance_patience: float = 0.02
    #: Serve a pair that is not valid now (expired, not yet valid, names missing).
    allow_invalid_certificate: bool = False
    #: Where the workers share the last accepted policy set (policy_state.py); the
    #: runner makes one for the server's lifetime when None.
    state_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def static_inventory(path: str) -> StaticInventory:
    return StaticInventory(nodes_from_objects(load_manifests(read_text(path), path)))


def _inventory(settings: ServeSettings) -> tuple[NodeInventory, HealthCheck | None]:
    """The worker's node inventory, and the same again when its health is reported (a
    live one: it is not ready before its first list)."""
    if settings.nodes_file:
        return static_inventory(settings.nodes_file), None
    if settings.kubeconfig or settings.in_cluster:
        from webhook.cluster.nodes import start_node_inventory

        live = start_node_inventory(settings.kubeconfig, stale_after=settings.node_stale_after)
        return live, live
    return UnknownInventory("no node inventory (serve without --nodes or --kubeconfig)"), None


def build_app(
    settings: ServeSettings, policy_fallback: Sequence[tuple[str, str]] = ()
) -> WebhookApp:
    """Everything one worker needs, built after fork; raises when a part cannot be
    built (an audit log that cannot be opened, ...). A worker that starts while the
    files on disk do not load (restarted after a bad policy change) serves the last
    set the server accepted (``settings.state_dir``), else ``policy_fallback`` (the
    policy files as the master read them at start). Threads start only once every
    part is built, so a failed attempt leaves nothing running."""
    recorder = None
    recording = None
    if settings.audit_log:
        from webhook.audit import open_recorder

        recorder = open_recorder(
            settings.audit_log, key_file=settings.audit_key, stdout=settings.audit_stdout
        )
        recording = RecordingHealth(settings.audit_log)
    try:
        store = PolicyStore(
            settings.policies,
            builtin_profiles=packaged.builtin_profiles(),
            schemas=packaged.schemas(),
            fallback=policy_fallback,
            shared=AcceptedPolicies(settings.state_dir) if settings.state_dir else None,
        )
        inventory, inventory_health = _inventory(settings)
    except BaseException:
        if recorder is not None:
            with contextlib.suppress(Exception):
                recorder.close()
        raise
    store.start(settings.reload_interval)  # hot reload: this worker polls its policy files
    handler = ReviewHandler(
        store.engine,
        inventory=inventory,
        recorder=recorder,
        record_compliant=settings.audit_compliant,
    )
    readiness = WorkerReadiness(
        store, inventory_health, grace=settings.node_stale_after, recording=recording
    )
    return WebhookApp(handler, readiness, recording)


def load_worker_app(
    settings: ServeSettings, policy_fallback: Sequence[tuple[str, str]] = ()
) -> WSGIApplication:
    """What a worker serves: the application, or, when its parts do not build, a
    BootingApp that answers 503, is not ready and retries (boot.py). Never raises:
    an exception here would make gunicorn's master halt the whole server."""
    metrics.initialise()

    def build() -> WSGIApplication:
        return build_app(settings, policy_fallback)

    try:
        return build()
    except Exception as exc:
        return BootingApp(build, exc)


def _child_exit(server: Any, worker: Any) -> None:
    """Forget a dead worker's live gauges (prometheus-client multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _freeze_heap(worker: Any) -> None:
    """Move everything allocated so far (modules, engine, policies) out of the collector's
    sight. A process stopping on SIGTERM otherwise spends most of its shutdown in the
    final collection over those objects: the kubelet's SIGTERM must stop a pod quickly
    (tests/image measure it). Also what the gc docs advise for a pre-fork server
    (docs.python.org/3/library/gc.html#gc.freeze): fewer copy-on-write page faults."""
    gc.freeze()


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        # Read before fork: the policy every (re)started worker can fall back to,
        # published as generation 0 of the set the workers share.
        self.policy_sources = read_policy_sources(settings.policies)
        if settings.state_dir is None:
            self._own_state_dir = tempfile.mkdtemp(prefix="nfsguard-state-")
            settings = dataclasses.replace(settings, state_dir=self._own_state_dir)
            self.settings = settings
        assert settings.state_dir is not None
        AcceptedPolicies(settings.state_dir).publish(
            fingerprint(self.policy_sources), self.policy_sources
        )
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        tls = s.tls_dir
        options: dict[str, Any] = {
            "bind": [f"[{s.host}]:{s.port}" if ":" in s.host else f"{s.host}:{s.port}"],
            "workers": s.workers,
            "threads": s.threads,
            "worker_class": WORKER_CLASS,
            "worker_connections": s.max_connections,
            "keepalive": 75,  # longer than the apiserver's idle connection reuse
            "timeout": 30,
            "graceful_timeout": 10,
            "certfile": str(tls / "tls.crt"),
            "keyfile": str(tls / "tls.key"),
            "ssl_context": gunicorn_ssl_context(tls, allow_invalid=s.allow_invalid_certificate),
            "loglevel": s.log_level,
            "accesslog": "-" if s.access_log else None,
            "logger_class": GunicornLogger,
            "errorlog": "-",
            "control_socket_disable": True,
            "child_exit": _child_exit,
            "post_worker_init": _freeze_heap,
        }
        options["on_exit"] = self._on_exit
        if s.register is not None:
            # The master, once: before the first fork, so no worker inherits the thread.
            options["when_ready"] = self._start_registrar
        for key, value in options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def _start_registrar(self, server: Any) -> None:
        s = self.settings
        assert s.register is not None
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(s.host, s.host)
        netloc = f"[{host}]:{s.port}" if ":" in host else f"{host}:{s.port}"
        self.registrar = Registrar(
            s.register, s.policies, f"https://{netloc}/readyz", tuple(self.policy_sources)
        )
        self.registrar.start()

    def _on_exit(self, server: Any) -> None:
        registrar = getattr(self, "registrar", None)
        if registrar is not None:
            registrar.stop()
        own = getattr(self, "_own_state_dir", None)
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)

    def load(self) -> WSGIApplication:
        return load_worker_app(self.settings, self.policy_sources)


def run(settings: ServeSettings) -> None:
    """Run until stopped. Policies are checked by the caller before this starts."""
    configure_logging(settings.log_format, settings.log_level)
    worker.limits = worker.ConnectionLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        balance_patience=settings.balance_patience,
    )
    app = _Gunicorn(settings)
    gc.freeze()  # the master's own heap, before any fork (see _freeze_heap)
    app.run()
