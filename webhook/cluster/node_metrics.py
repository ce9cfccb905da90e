"""Prometheus metrics of the live node inventory (webhook/cluster/nodes.py)."""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Literal, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from webhook.nfs.inventory import NodeIndex

EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")


class InventoryState(Protocol):
    """What the gauges show of an inventory (``LiveNodeInventory`` has it)."""

    @property
    def synced(self) -> bool: ...

    @property
    def stale(self) -> bool: ...

    def broken_for(self) -> float: ...

    def index(self) -> NodeIndex: ...


_Mode = Literal["livemax", "livemin"]


class NodeInventoryMetrics:
    """This inventory's metrics. Plain prometheus-client metrics, so they also work in
    multiprocess mode (PROMETHEUS_MULTIPROC_DIR, one file per gunicorn worker): gauges
    aggregate over live workers (``mark_process_dead`` in gunicorn's ``child_exit``
    keeps "live" honest), counters are summed."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.collectors: list[Any] = []

        def gauge(name: str, doc: str, mode: _Mode, labels: tuple[str, ...] = ()) -> Gauge:
            metric = Gauge(name, doc, labels, registry=registry, multiprocess_mode=mode)
            self.collectors.append(metric)
            return metric

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            metric = Counter(name, doc, labels, registry=registry)
            self.collectors.append(metric)
            return metric

        self.nodes = gauge(
            "nfsguard_node_inventory_nodes", "Nodes in the live node inventory.", "livemax"
        )
        self.kernels = gauge(
            "nfsguard_node_inventory_kernels",
            "Distinct kernelVersion values in the live node inventory.",
            "livemax",
        )
        self.kernel_nodes = gauge(
            "nfsguard_node_inventory_kernel_nodes",
            "Nodes per kernelVersion.",
            "livemax",
            ("kernel",),
        )
        self.synced = gauge(
            "nfsguard_node_inventory_synced",
            "1 once the first node list completed (min over workers).",
            "livemin",
        )
        self.stale = gauge(
            "nfsguard_node_inventory_stale",
            "1 while the node watch is broken for longer than the staleness bound.",
            "livemax",
        )
        self.broken = gauge(
            "nfsguard_node_watch_broken_seconds",
            "Seconds the node watch has been broken (0 while healthy).",
            "livemax",
        )
        self.relists = counter(
            "nfsguard_node_inventory_relists", "Full node lists (initial and re-lists)."
        )
        self.errors = counter("nfsguard_node_watch_errors", "Failed node list/watch attempts.")
        self.events = counter("nfsguard_node_watch_events", "Node watch events by type.", ("type",))
        for kind in EVENT_TYPES:
            self.events.labels(kind)
        self._kernels_shown: set[str] = set()
        self._lock = threading.Lock()

    def publish(self, inventory: InventoryState) -> None:
        index = inventory.index()
        counts = index.nodes_by_kernel()
        with self._lock:
            self.nodes.set(len(index))
            self.kernels.set(len(index.kernels))
            for kernel, count in counts.items():
                self.kernel_nodes.labels(kernel).set(count)
            for gone in self._kernels_shown - counts.keys():
                self.kernel_nodes.labels(gone).set(0)
                self.kernel_nodes.remove(gone)
            self._kernels_shown = set(counts)
            self.synced.set(1 if inventory.synced else 0)
            self.stale.set(1 if inventory.stale else 0)
            self.broken.set(inventory.broken_for())

    def unregister(self, registry: CollectorRegistry) -> None:
        for metric in self.collectors:
            with contextlib.suppress(KeyError):
                registry.unregister(metric)


_default_metrics: NodeInventoryMetrics | None = None
_default_lock = threading.Lock()


def metrics_for(registry: CollectorRegistry | None) -> NodeInventoryMetrics:
    """New metrics in ``registry``; in the default registry they replace the previous
    inventory's, since one inventory per process exports there."""
    global _default_metrics
    if registry is not REGISTRY:
        return NodeInventoryMetrics(registry)
    with _default_lock:
        if _default_metrics is not None:
            _default_metrics.unregister(REGISTRY)
        _default_metrics = NodeInventoryMetrics(REGISTRY)
        return _default_metrics
