"""``nfsguard serve``: gunicorn with keep-alive threads and TLS 1.2+.

gthread workers keep HTTP/1.1 connections alive, as kube-apiserver reuses them
(the sync worker would cost a TLS handshake per review). Each worker builds its
own engine, inventory and recorder after fork (``load`` runs post-fork).
"""

from __future__ import annotations

import gc
import os
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
from webhook.server import metrics
from webhook.server.app import WebhookApp
from webhook.server.health import HealthCheck, WorkerReadiness
from webhook.server.logs import GunicornLogger
from webhook.server.logs import configure as configure_logging
from webhook.server.policy_store import PolicyStore
from webhook.server.registration_loop import RegisterSettings, Registrar
from webhook.server.tls_reload import gunicorn_ssl_context

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


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
    """Everything one worker needs, built after fork. ``policy_fallback`` (the policy
    files as the master read them at start) serves a worker that starts while the
    files on disk do not load (a worker restarted after a bad policy change)."""
    metrics.initialise()
    store = PolicyStore(
        settings.policies,
        builtin_profiles=packaged.builtin_profiles(),
        schemas=packaged.schemas(),
        fallback=policy_fallback,
    )
    store.start(settings.reload_interval)  # hot reload: this worker polls its policy files
    inventory, inventory_health = _inventory(settings)
    recorder = None
    if settings.audit_log:
        from webhook.audit import open_recorder

        recorder = open_recorder(
            settings.audit_log, key_file=settings.audit_key, stdout=settings.audit_stdout
        )
    handler = ReviewHandler(
        store.engine,
        inventory=inventory,
        recorder=recorder,
        record_compliant=settings.audit_compliant,
    )
    readiness = WorkerReadiness(store, inventory_health, grace=settings.node_stale_after)
    return WebhookApp(handler, readiness)


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
        # Read before fork: the policy every (re)started worker can fall back to.
        self.policy_sources = read_policy_sources(settings.policies)
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        tls = s.tls_dir
        options: dict[str, Any] = {
            "bind": [f"[{s.host}]:{s.port}" if ":" in s.host else f"{s.host}:{s.port}"],
            "workers": s.workers,
            "threads": s.threads,
            "worker_class": "gthread",
            "keepalive": 75,  # longer than the apiserver's idle connection reuse
            "timeout": 30,
            "graceful_timeout": 10,
            "certfile": str(tls / "tls.crt"),
            "keyfile": str(tls / "tls.key"),
            "ssl_context": gunicorn_ssl_context(tls),
            "loglevel": s.log_level,
            "accesslog": "-" if s.access_log else None,
            "logger_class": GunicornLogger,
            "errorlog": "-",
            "control_socket_disable": True,
            "child_exit": _child_exit,
            "post_worker_init": _freeze_heap,
        }
        if s.register is not None:
            # The master, once: before the first fork, so no worker inherits the thread.
            options["when_ready"] = self._start_registrar
            options["on_exit"] = self._stop_registrar
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

    def _stop_registrar(self, server: Any) -> None:
        registrar = getattr(self, "registrar", None)
        if registrar is not None:
            registrar.stop()

    def load(self) -> WSGIApplication:
        return build_app(self.settings, self.policy_sources)


def run(settings: ServeSettings) -> None:
    """Run until stopped. Policies are checked by the caller before this starts."""
    configure_logging(settings.log_format, settings.log_level)
    app = _Gunicorn(settings)
    gc.freeze()  # the master's own heap, before any fork (see _freeze_heap)
    app.run()
