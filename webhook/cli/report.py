"""``nfsguard report``: the long-running reporter (webhook/server/reporter.py) that keeps
OpenReports ClusterReports current for every NFS PV and StorageClass, and namespaced
Reports for every Pod and workload with an inline NFS volume.

Its own command and Deployment (manifests/reporter/), not a mode of ``serve``: the
webhook's workers stay free of cluster-wide watches. Docs: docs/reporter.md.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

import click

from webhook.cli.errors import ExitCode, Refused
from webhook.cli.scanning import LiveSource, Where
from webhook.cluster.client import make_api_client

# webhook.server.* (and so prometheus-client) is imported inside the command, never when
# the CLI loads: prometheus-client picks its multiprocess mode at import, and `serve` sets
# PROMETHEUS_MULTIPROC_DIR first (webhook/cli/serve.py).
from webhook.cluster.lease import LeaseLock
from webhook.cluster.scan import ClusterError, ClusterObjects
from webhook.config.documents import PolicyError
from webhook.engine.engine import Engine
from webhook.files import packaged

log = logging.getLogger("nfsguard.report")


def _identity() -> str:
    return f"{socket.gethostname()}_{os.getpid()}"


@click.command()
@click.option("--policy", "policies", multiple=True, help="Policy file or directory (repeatable).")
@click.option(
    "--policy-configmap",
    metavar="NAMESPACE/NAME",
    help="Read the policies from this ConfigMap (shipped: nfsguard/nfsguard-policies).",
)
@click.option(
    "--kubeconfig", type=click.Path(dir_okay=False, exists=True), help="Use this kubeconfig."
)
@click.option("--in-cluster", is_flag=True, help="Use the pod's service account.")
@click.option(
    "--lease-namespace",
    default=lambda: os.environ.get("POD_NAMESPACE", "nfsguard"),
    show_default="$POD_NAMESPACE or nfsguard",
    help="Namespace of the Lease that picks the one writer.",
)
@click.option("--lease-name", default="nfsguard-report", show_default=True)
@click.option("--identity", default=None, help="Lease holder identity (default: host_pid).")
@click.option("--lease-duration", type=click.IntRange(1, 3600), default=15, show_default=True)
@click.option("--renew-every", type=click.FloatRange(0.1, 3600), default=5.0, show_default=True)
@click.option(
    "--resync",
    type=click.FloatRange(1, 86400),
    default=300.0,
    show_default=True,
    help="Seconds between relists of pods/PVCs/events (stranded pods) and full rewrites.",
)
@click.option(
    "--reload-interval",
    type=click.FloatRange(0.1, 3600),
    default=2.0,
    show_default=True,
    help="Seconds between policy polls (files, or the ConfigMap).",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=9102, show_default=True)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def report(
    policies: tuple[str, ...],
    policy_configmap: str | None,
    kubeconfig: str | None,
    in_cluster: bool,
    lease_namespace: str,
    lease_name: str,
    identity: str | None,
    lease_duration: int,
    renew_every: float,
    resync: float,
    reload_interval: float,
    metrics_host: str,
    metrics_port: int,
    log_level: str,
) -> ExitCode:
    """Keep one OpenReports ClusterReport per NFS PV and StorageClass, and one Report per
    Pod and workload with an inline NFS volume, current (one writer among replicas, by
    Lease), with Prometheus gauges on /metrics and /readyz."""
    from webhook.server.reporter import Reporter, Settings, serve_http

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if bool(policies) == bool(policy_configmap):
        raise Refused("nfsguard: give --policy PATH or --policy-configmap NAMESPACE/NAME")
    try:
        api = make_api_client(kubeconfig, in_cluster=in_cluster, watch=True)
        lease_api = make_api_client(kubeconfig, in_cluster=in_cluster, watch=True)
    except Exception as exc:  # kubernetes.config.ConfigException and file errors
        raise Refused(f"nfsguard: no usable cluster credentials: {exc}") from None
    cluster = ClusterObjects(api)
    engine, changed = _policies(policies, policy_configmap, cluster, reload_interval)
    who = identity or _identity()
    settings = Settings(
        namespace=lease_namespace,
        lease_name=lease_name,
        identity=who,
        lease_seconds=lease_duration,
        renew_every=renew_every,
        resync=resync,
        poll=reload_interval,
    )
    lease = LeaseLock(
        lease_api,
        namespace=lease_namespace,
        name=lease_name,
        identity=who,
        duration_seconds=lease_duration,
    )
    reporter = Reporter(cluster, lease, settings, engine, changed)
    try:
        http = serve_http(reporter, metrics_host, metrics_port)
    except OSError as exc:
        raise Refused(f"nfsguard: cannot listen on {metrics_host}:{metrics_port}: {exc}") from None

    def stop(signum: int, frame: FrameType | None) -> None:
        reporter.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "reporter %s: metrics on http://%s:%d/metrics, lease %s/%s",
        who,
        metrics_host,
        http.server_address[1],
        lease_namespace,
        lease_name,
    )
    reporter.run()
    http.shutdown()
    return ExitCode.OK


def _policies(
    paths: tuple[str, ...], configmap: str | None, cluster: ClusterObjects, interval: float
) -> tuple[Callable[[], Engine], Callable[[], bool]]:
    """The current engine and a poll saying whether the policies changed (rate-limited
    to one read per ``interval``): files as serve reloads them, or the ConfigMap."""
    from webhook.server.policy_store import PolicyStore

    last = [time.monotonic()]

    def due() -> bool:
        now = time.monotonic()
        if now - last[0] < interval:
            return False
        last[0] = now
        return True

    if paths:
        # PolicyError / SourceError propagate: Group prints every problem, one a line.
        store = PolicyStore(
            paths,
            builtin_profiles=packaged.builtin_profiles(),
            schemas=packaged.schemas(),
            counted=False,
        )
        return store.engine, lambda: due() and store.check() == "accepted"
    assert configmap is not None
    where = Where((), (), configmap, None, None, False, None, 500)
    source = LiveSource(cluster)
    current = [where.engine(source)]
    fp = [_cm_fingerprint(cluster, configmap)]

    def changed() -> bool:
        if not due():
            return False
        try:
            now = _cm_fingerprint(cluster, configmap)
            if now == fp[0]:
                return False
            current[0] = where.engine(source)
        except (Refused, ClusterError, PolicyError) as exc:
            log.error("policy ConfigMap %s: %s (keeping the last policies)", configmap, exc)
            return False
        fp[0] = now
        log.info("policy ConfigMap %s changed: re-evaluating everything", configmap)
        return True

    return lambda: current[0], changed


def _cm_fingerprint(cluster: ClusterObjects, ref: str) -> str:
    from webhook.server.reporter import configmap_fingerprint

    namespace, _, name = ref.partition("/")
    return configmap_fingerprint(cluster.get_namespaced("ConfigMap", namespace, name))


__all__ = ["report"]
