"""The server command the install runs, for the benchmark: ``nfsguard serve`` with the
arguments of the Deployment that ``make manifests`` renders from the chart's default
values (manifests/50-deployment.yaml), its in-pod paths replaced by the benchmark's.

So the bench measures what a cluster runs: the shipped policy directory (the knowledge
base, plus the N-rule site policy beside it), the audit log with signed checkpoints and
its stdout copy, metrics, the same workers and threads. Only what needs a cluster is left
out (``--in-cluster`` and self-registration: neither is on the path of a review).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOYMENT = REPO / "manifests" / "50-deployment.yaml"

#: Options that only concern the cluster (registration, the node watch): never on the path
#: of a review. Flags take no value; the others take one.
CLUSTER_FLAGS = frozenset({"--in-cluster", "--register"})
CLUSTER_OPTIONS = frozenset(
    {
        "--webhook-name",
        "--service-namespace",
        "--service-name",
        "--service-port",
        "--failure-policy",
        "--pods",
        "--timeout-seconds",
        "--ca-bundle",
        "--lease-name",
        "--lease-namespace",
        "--register-owner",
    }
)
#: In-pod paths (the Deployment's volumes) -> what the benchmark puts there.
POLICY_DIR = "/etc/nfsguard/policies"
TLS_DIR = "/etc/nfsguard/tls"
AUDIT_LOG = "/var/log/nfsguard/audit.log"
AUDIT_KEY = "/etc/nfsguard/audit-key/audit.key"


def deployment_args() -> list[str]:
    """``serve`` and its arguments, as the shipped Deployment has them."""
    doc = yaml.safe_load(DEPLOYMENT.read_text())
    (container,) = [
        c for c in doc["spec"]["template"]["spec"]["containers"] if c["name"] == "nfsguard"
    ]
    return [str(a) for a in container["args"]]


def shipped_argv(
    nfsguard: Path, work: Path, tls: Path, audit_key: Path, site_policy: Path, name: str
) -> tuple[list[str], Path]:
    """(argv, audit log) of the shipped server in ``work/name``, serving the chart's
    policies plus ``site_policy``."""
    home = work / name
    policies = home / "policies"
    policies.mkdir(parents=True)
    configmap = yaml.safe_load((REPO / "manifests" / "30-policies.yaml").read_text())
    for file, text in configmap["data"].items():
        (policies / file).write_text(text)
    shutil.copy(site_policy, policies / site_policy.name)
    audit_log = home / "audit" / "audit.log"
    paths = {
        POLICY_DIR: str(policies),
        TLS_DIR: str(tls),
        AUDIT_LOG: str(audit_log),
        AUDIT_KEY: str(audit_key),
    }
    args = deployment_args()
    assert args[0] == "serve", args
    argv = [str(nfsguard), "serve"]
    rest = iter(args[1:])
    for arg in rest:
        if arg in CLUSTER_FLAGS:
            continue
        if arg in CLUSTER_OPTIONS:
            next(rest)
            continue
        if arg in ("--host", "--port"):  # the benchmark picks a loopback port
            next(rest)
            continue
        argv.append(paths.get(arg, arg))
    return argv, audit_log
