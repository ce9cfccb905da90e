"""A live ``NodeInventory``: list then watch the cluster's Nodes in a daemon thread.

(About 500 lines: one job, client-go's reflector loop and the snapshot it keeps;
its metrics are in node_metrics.py, its ApiClient comes from client.py.)

One ``LiveNodeInventory`` per gunicorn worker (started after fork, see
docs/node-inventory.md for why per worker and not shared). The review path
(``kernels_in``) never performs I/O: it reads the in-memory snapshot kept by the
watch thread.

The watch loop follows client-go's reflector:

* LIST (paged, ``limit``/``continue``) -> replace the node set, remember
  ``metadata.resourceVersion``; the first list completing makes ``synced`` true.
  Lists are consistent (no ``resourceVersion``) on purpose: ``resourceVersion=0``
  would be served from the watch cache but makes many API server versions ignore
  ``limit``, and one unpaged list of thousands of Nodes (with their image lists)
  is tens of MB of JSON, several times that once parsed, in every worker at once.
  Paged, a worker holds one page (500 nodes) at a time.
* WATCH from that resourceVersion with ``allowWatchBookmarks``; ADDED and
  MODIFIED upsert, DELETED removes, BOOKMARK only advances the resourceVersion.
* A 410 Gone (HTTP status or ERROR event: "too old resource version") -> re-list.
* The server closing the watch after ``timeoutSeconds`` -> watch again at once.
  No bytes for ``idle_timeout`` seconds -> drop the connection and watch again
  (a silently dead connection is found that way; a quiet one just reconnects).
* Any other failure (connection refused/dropped, 5xx, 403, bad JSON) -> the
  watch is *broken*: exponential backoff with jitter (``backoff_initial`` doubling
  to ``backoff_max``), then watch again from the last resourceVersion.
* Broken for longer than ``stale_after`` seconds -> ``kernels_in`` answers
  ``KernelView(known=False, reason="node watch stale for Ns")`` and the policy's
  ``unknownNodes`` decides. The watch is healthy again as soon as a list
  completes or the API server accepts a watch.

Only a node's name, labels and ``status.nodeInfo.kernelVersion`` are kept
(strings interned), and a new ``NodeIndex`` snapshot is made only when one of
them changes: heartbeat/status-only MODIFIED events cost one JSON parse.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY, CollectorRegistry
from urllib3.exceptions import ReadTimeoutError

from webhook.cluster.client import make_api_client
from webhook.cluster.node_metrics import EVENT_TYPES, NodeInventoryMetrics, metrics_for
from webhook.nfs.inventory import KernelView, NodeIndex, node_from_object
from webhook.nfs.scope import Node, NodeScope

__all__ = ["LiveNodeInventory", "start_node_inventory"]

log = logging.getLogger("nfsguard.nodes")

_RELIST_GRACE = 10.0  # a 410 sooner than this after a list backs off before re-listing


class _Expired(Exception):
    """The resourceVersion we hold is gone (HTTP 410 / ERROR event code 410): re-list."""


class _WatchError(Exception):
    """The API server sent an ERROR event other than 410."""


def _interned(node: Node) -> Node:
    return Node(
        name=sys.intern(node.name),
        kernel=sys.intern(node.kernel),
        labels={sys.intern(k): sys.intern(v) for k, v in node.labels.items()},
    )


def _status_code(obj: Any) -> int | None:
    if isinstance(obj, Mapping):
        code = obj.get("code")
        if isinstance(code, int):
            return code
    return None


class _Backoff:
    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self._next = initial

    def reset(self) -> None:
        self._next = self.initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.maximum, self._next * 2)
        return delay * random.uniform(0.8, 1.2)


class LiveNodeInventory:
    """Nodes from a live list/watch; a ``NodeInventory`` that answers from memory."""

    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        *,
        stale_after: float = 60.0,
        watch_timeout: float = 300.0,
        idle_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        page_size: int = 500,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        metrics_interval: float = 1.0,
        metrics: NodeInventoryMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if stale_after <= 0:
            raise ValueError("stale_after must be positive")
        self._api = k8s_client.CoreV1Api(api_client)
        self._api_client = api_client
        self.stale_after = float(stale_after)
        self._watch_timeout = watch_timeout
        self._idle_timeout = idle_timeout
        self._connect_timeout = connect_timeout
        self._page_size = page_size
        self._backoff = _Backoff(backoff_initial, backoff_max)
        self._relist_backoff = _Backoff(backoff_initial, backoff_max)
        self._listed_at = -_RELIST_GRACE
        self._clock = clock

        self._lock = threading.Lock()
        self._nodes: dict[str, Node] = {}
        self._index: NodeIndex | None = NodeIndex(())
        self._generation = 0
        self._rv: str | None = None
        self._synced = threading.Event()
        self._broken_since: float | None = None
        self._last_error = ""
        self._last_sync: datetime | None = None
        self._relists = 0
        self._watches = 0
        self._errors = 0
        self._events: dict[str, int] = dict.fromkeys(EVENT_TYPES, 0)

        self._metrics = metrics
        self._metrics_interval = metrics_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._response: Any = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> LiveNodeInventory:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="nfsguard-node-watch", daemon=True
            )
            self._thread.start()
        if self._metrics is not None and self._ticker is None:
            self._ticker = threading.Thread(
                target=self._tick, name="nfsguard-node-metrics", daemon=True
            )
            self._ticker.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the watch thread (it is a daemon thread: exiting without this is fine)."""
        self._stop.set()
        self._interrupt()
        for thread in (self._thread, self._ticker):
            if thread is not None:
                thread.join(timeout)
        closer: Any = self._api_client.close
        closer()

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Block until the first list completed (for CLI use and tests, not the review path)."""
        return self._synced.wait(timeout)

    # -- what the engine and the server read -----------------------------------------

    @property
    def synced(self) -> bool:
        """True once the first list completed."""
        return self._synced.is_set()

    def broken_for(self) -> float:
        """Seconds the watch has been broken (0.0 while healthy)."""
        since = self._broken_since
        return 0.0 if since is None else max(0.0, self._clock() - since)

    @property
    def stale(self) -> bool:
        return self.broken_for() > self.stale_after or not self._thread_ok()

    def kernels_in(self, scope: NodeScope) -> KernelView:
        if not self._synced.is_set():
            reason = "node inventory not synced yet"
            if self._last_error:
                reason += f" ({self._last_error})"
            return KernelView(known=False, reason=reason)
        broken = self.broken_for()
        if broken > self.stale_after:
            return KernelView(known=False, reason=f"node watch stale for {broken:.0f}s")
        if not self._thread_ok():
            return KernelView(known=False, reason="node watch stopped")
        return self.index().kernels_in(scope)

    def index(self) -> NodeIndex:
        """The current snapshot (rebuilt here, once, after nodes changed)."""
        index = self._index
        if index is None:
            with self._lock:
                index = self._index
                if index is None:
                    index = NodeIndex(self._nodes.values(), generation=self._generation)
                    self._index = index
        return index

    def status(self) -> dict[str, Any]:
        """State for /readyz and debugging. ``ready`` means synced; staleness is reported
        separately because the policy's ``unknownNodes`` handles it."""
        index = self.index()
        broken = self.broken_for()
        stale = self.stale
        return {
            "ready": self.synced,
            "synced": self.synced,
            "stale": stale,
            "staleAfterSeconds": self.stale_after,
            "watchBrokenSeconds": round(broken, 3),
            "nodes": len(index),
            "kernels": {k: n for k, n in sorted(index.nodes_by_kernel().items())},
            "distinctKernels": len(index.kernels),
            "generation": index.generation,
            "resourceVersion": self._rv,
            "lastSync": self._last_sync.isoformat() if self._last_sync else None,
            "lastError": self._last_error or None,
            "relists": self._relists,
            "watches": self._watches,
            "errors": self._errors,
            "events": dict(self._events),
            "threadAlive": self._thread_ok(),
        }

    def publish_metrics(self) -> None:
        """Refresh the gauges (the metrics thread calls this every ``metrics_interval``)."""
        if self._metrics is not None:
            self._metrics.publish(self)

    # -- the watch thread ------------------------------------------------------------

    def _thread_ok(self) -> bool:
        thread = self._thread
        return thread is None or thread.is_alive() or self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._rv is None:
                    self._list()
                self._watch()
            except _Expired:
                # Our resourceVersion is too old: re-list right away (client-go does the
                # same), unless we just listed: a server that expires every fresh
                # resourceVersion must not get a tight loop of full lists.
                log.info("node watch: resourceVersion %s expired, re-listing", self._rv)
                self._mark_broken("resourceVersion expired (410)")
                self._rv = None
                if self._clock() - self._listed_at < _RELIST_GRACE:
                    self._stop.wait(self._relist_backoff.next())
                else:
                    self._relist_backoff.reset()
            except Exception as err:  # every failure is retried; the thread must not die
                if self._stop.is_set():
                    break
                message = _describe(err)
                self._mark_broken(message)
                with self._lock:
                    self._errors += 1
                if self._metrics is not None:
                    self._metrics.errors.inc()
                delay = self._backoff.next()
                log.warning("node list/watch failed: %s; retrying in %.1fs", message, delay)
                self._stop.wait(delay)

    def _tick(self) -> None:
        while not self._stop.wait(self._metrics_interval):
            try:
                self.publish_metrics()
            except Exception:  # metrics must never take the process down
                log.exception("node inventory metrics")

    def _mark_broken(self, message: str) -> None:
        with self._lock:
            if self._broken_since is None:
                self._broken_since = self._clock()
            self._last_error = message

    def _mark_healthy(self) -> None:
        with self._lock:
            self._broken_since = None
        self._backoff.reset()

    def _request_timeout(self) -> tuple[float, float]:
        return (self._connect_timeout, self._idle_timeout)

    def _list(self) -> None:
        nodes: dict[str, Node] = {}
        cont: str | None = None
        rv: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "limit": self._page_size,
                "_preload_content": False,
                "_request_timeout": self._request_timeout(),
            }
            if cont:
                kwargs["_continue"] = cont
            resp: Any = self._api.list_node(**kwargs)
            try:
                page = json.loads(resp.data)
            finally:
                resp.release_conn()
            if not isinstance(page, Mapping):
                raise ValueError("node list is not a JSON object")
            for item in page.get("items") or ():
                if isinstance(item, Mapping):
                    node = _interned(node_from_object(item))
                    nodes[node.name] = node
            meta = page.get("metadata")
            meta = meta if isinstance(meta, Mapping) else {}
            if rv is None:
                rv = str(meta.get("resourceVersion") or "") or None
            cont = str(meta.get("continue") or "") or None
            if not cont:
                break
        if rv is None:
            raise ValueError("node list carries no resourceVersion")
        self._listed_at = self._clock()
        with self._lock:
            self._nodes = nodes
            self._generation += 1
            self._index = None
            self._rv = rv
            self._relists += 1
            self._last_sync = datetime.now(UTC)
            self._last_error = ""
        self._mark_healthy()
        self._synced.set()
        if self._metrics is not None:
            self._metrics.relists.inc()
        self.index()  # build the snapshot here, not on the first review
        log.info(
            "node list: %d nodes, %d kernels, rv %s", len(nodes), len(self.index().kernels), rv
        )

    def _watch(self) -> None:
        timeout = int(self._watch_timeout * random.uniform(1.0, 2.0))
        log.debug("node watch from resourceVersion %s for %ds", self._rv, timeout)
        try:
            resp: Any = self._api.list_node(
                watch=True,
                allow_watch_bookmarks=True,
                resource_version=self._rv,
                timeout_seconds=timeout,
                _preload_content=False,
                _request_timeout=self._request_timeout(),
            )
        except ApiException as err:
            if err.status == 410:
                raise _Expired() from err
            raise
        self._response = resp
        with self._lock:
            self._watches += 1
        self._mark_healthy()
        finished = False
        try:
            if self._stop.is_set():  # stop() ran before _response was visible to it
                return
            for line in _lines(resp):
                if self._stop.is_set():
                    return
                if line:
                    self._apply(line)
            finished = True
        except ReadTimeoutError:
            # Nothing for idle_timeout seconds: reconnect (fails -> broken; works -> quiet cluster).
            log.debug("node watch idle for %.0fs, reconnecting", self._idle_timeout)
        finally:
            self._response = None
            if not finished:
                # Unread data may follow: never hand this connection back for reuse.
                with contextlib.suppress(Exception):
                    resp.close()
            resp.release_conn()

    def _apply(self, line: str) -> None:
        event = json.loads(line)
        if not isinstance(event, Mapping):
            raise ValueError("watch event is not a JSON object")
        kind = event.get("type")
        obj = event.get("object")
        obj = obj if isinstance(obj, Mapping) else {}
        if kind in self._events:
            with self._lock:
                self._events[str(kind)] += 1
            if self._metrics is not None:
                self._metrics.events.labels(kind).inc()
        if kind == "ERROR":
            code = _status_code(obj)
            if code == 410:
                raise _Expired()
            raise _WatchError(f"watch ERROR {code}: {obj.get('message', '')}")
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        rv = str(meta.get("resourceVersion") or "") or None
        if kind in ("ADDED", "MODIFIED"):
            node = node_from_object(obj)
            with self._lock:
                old = self._nodes.get(node.name)
                if old is None or old.kernel != node.kernel or old.labels != node.labels:
                    self._nodes[node.name] = _interned(node)
                    self._generation += 1
                    self._index = None
        elif kind == "DELETED":
            name = str(meta.get("name", ""))
            with self._lock:
                if self._nodes.pop(name, None) is not None:
                    self._generation += 1
                    self._index = None
        elif kind != "BOOKMARK":
            return
        if rv:
            self._rv = rv

    def _interrupt(self) -> None:
        resp = self._response
        if resp is None:
            return
        try:
            resp.shutdown()
        except Exception:
            with contextlib.suppress(Exception):
                resp.close()


def _lines(resp: Any) -> Iterator[str]:
    """Newline-delimited watch events from a streamed (chunked) response."""
    buffer = bytearray()
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer.extend(chunk)
        start = 0
        while (end := buffer.find(b"\n", start)) != -1:
            yield buffer[start:end].decode("utf-8", errors="replace").strip()
            start = end + 1
        del buffer[:start]
    if buffer.strip():
        raise ValueError("node watch ended inside an event")


def _describe(err: BaseException) -> str:
    if isinstance(err, ApiException):
        reason = err.reason or ""
        return f"HTTP {err.status} {reason}".strip()
    text = str(err) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:300]


def start_node_inventory(
    kubeconfig: str | None,
    *,
    stale_after: float = 60.0,
    context: str | None = None,
    registry: CollectorRegistry | None = REGISTRY,
    **tuning: Any,
) -> LiveNodeInventory:
    """Start a live node inventory (call once per gunicorn worker, after fork).

    ``kubeconfig`` None means in-cluster (service account). Returns at once; the
    inventory answers ``known=False`` until its first list completes (``synced``).
    Metrics go to ``registry`` (None: created but not registered; in multiprocess mode
    they reach /metrics through the multiprocess files either way). ``tuning`` passes through to
    ``LiveNodeInventory`` (watch_timeout, idle_timeout, page_size, backoff_initial,
    backoff_max, connect_timeout).
    """
    inventory = LiveNodeInventory(
        make_api_client(kubeconfig, context=context, in_cluster=not kubeconfig, watch=True),
        stale_after=stale_after,
        metrics=metrics_for(registry),
        **tuning,
    )
    return inventory.start()
