"""The one Kubernetes client factory: every adapter in webhook/cluster gets its ApiClient here.

Which credentials, in order: a kubeconfig file when one is given; else the
pod's service account when asked (``in_cluster``) or when the process runs in
a pod (the kubelet sets ``KUBERNETES_SERVICE_HOST`` in every container); else
the default kubeconfig (``$KUBECONFIG``, ``~/.kube/config``), as kubectl.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes import config as _config

config: Any = _config  # the kubernetes config loaders are untyped

__all__ = ["make_api_client"]


def make_api_client(
    kubeconfig: str | Path | None = None,
    *,
    context: str | None = None,
    in_cluster: bool = False,
    watch: bool = False,
) -> client.ApiClient:
    """An ``ApiClient`` for ``kubeconfig`` (its ``context``, default its current one),
    or the service account, or the default kubeconfig (see the module's docstring).

    ``watch``: for a long-lived list/watch in the server (the node inventory):
    urllib3 does not retry on its own (the watch loop's backoff decides), TCP
    keepalive finds a dead peer on a quiet watch (as client-go does), and
    refreshed credentials are not written back into the kubeconfig file.
    Without it (a CLI run), urllib3's default retries apply and refreshed
    credentials are kept in the kubeconfig, as kubectl keeps them.

    Raises ``kubernetes.config.ConfigException`` when there are no usable
    credentials.
    """
    cfg = client.Configuration()
    if kubeconfig:
        config.load_kube_config(
            config_file=str(kubeconfig),
            context=context,
            client_configuration=cfg,
            persist_config=not watch,
        )
    elif in_cluster or os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)
    else:
        config.load_kube_config(context=context, client_configuration=cfg, persist_config=not watch)
    if watch:
        cfg.retries = False
        cfg.keep_alive = True
    return client.ApiClient(cfg)
