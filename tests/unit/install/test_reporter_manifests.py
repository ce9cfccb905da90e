"""manifests/reporter/: the optional reporter Deployment, its identity and RBAC (the
chart's templates/85-reporter.yaml rendered by `make manifests`), checked as the base
install is (tests/unit/install/test_manifests.py): strict schema, hardening,
arguments the real CLI parses, least privilege."""

from __future__ import annotations

from typing import Any

import click
import kubernetes_validate
import yaml

from tests.support import validation_version
from tests.unit.install import test_manifests as base
from tests.unit.install.test_manifests import MANIFESTS, NAMESPACE, load_docs

REPORTER = MANIFESTS / "reporter"
FILE = REPORTER / "reporter.yaml"
Json = dict[str, Any]


def docs() -> list[Json]:
    return load_docs(FILE)


def one(kind: str) -> Json:
    (found,) = [d for d in docs() if d["kind"] == kind]
    return found


def test_component_lists_the_file() -> None:
    kust = yaml.safe_load((REPORTER / "Kustomization").read_text())
    assert (kust["apiVersion"], kust["kind"]) == ("kustomize.config.k8s.io/v1alpha1", "Component")
    assert kust["resources"] == [FILE.name]


def test_strict_schema_and_labels() -> None:
    for d in docs():
        kubernetes_validate.validate(d, validation_version(), strict=True)
        meta = d["metadata"]
        assert meta["labels"]["app.kubernetes.io/component"] == "reporter", meta["name"]
        assert meta["name"] == "nfsguard-reporter"
        if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            assert "namespace" not in meta
        else:
            assert meta["namespace"] == NAMESPACE


def test_pod_is_hardened() -> None:
    deployment = one("Deployment")
    # the base's check, called (imported by name it would be collected here again)
    base.test_every_pod_is_hardened("Deployment/nfsguard-reporter", deployment["spec"]["template"])
    spec = deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]


def test_args_parse_with_the_real_cli() -> None:
    from webhook.cli.main import cli

    (container,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    argv = container["args"]
    ctx = cli.make_context("nfsguard", list(argv), resilient_parsing=False)
    with ctx:
        name, sub, rest = cli.resolve_command(ctx, list(argv))
        assert isinstance(sub, click.Command) and name == "report"
        params = sub.make_context("report", rest, parent=ctx).params
    assert params["policies"] == ("/etc/nfsguard/policies",)  # the mounted ConfigMap
    (mount,) = container["volumeMounts"]
    (volume,) = one("Deployment")["spec"]["template"]["spec"]["volumes"]
    assert mount["mountPath"] == "/etc/nfsguard/policies" and mount["name"] == volume["name"]
    assert volume["configMap"]["name"] == "nfsguard-policies"
    assert params["lease_name"] == "nfsguard-report"
    port = container["ports"][0]["containerPort"]
    assert params["metrics_port"] == port
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def _rules(
    kind: str,
) -> list[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    return [
        (
            tuple(r["apiGroups"]),
            tuple(sorted(r["resources"])),
            tuple(sorted(r["verbs"])),
            tuple(r.get("resourceNames", ())),
        )
        for r in one(kind)["rules"]
    ]


def test_rbac_is_least_privilege() -> None:
    """Reads what it reports on, writes only ClusterReports, Reports and its own Lease;
    never patches a PV, StorageClass, Pod or workload (that is remediate's, or the
    manifest's, run by a person)."""
    assert _rules("ClusterRole") == [
        (
            ("",),
            (
                "events",
                "nodes",
                "persistentvolumeclaims",
                "persistentvolumes",
                "pods",
                "replicationcontrollers",
            ),
            ("list", "watch"),
            (),
        ),
        (("storage.k8s.io",), ("storageclasses",), ("list", "watch"), ()),
        (
            ("apps",),
            ("daemonsets", "deployments", "replicasets", "statefulsets"),
            ("list", "watch"),
            (),
        ),
        (("batch",), ("cronjobs", "jobs"), ("list", "watch"), ()),
        (
            ("openreports.io",),
            ("clusterreports", "reports"),
            ("create", "delete", "get", "list", "update"),
            (),
        ),
    ]


def test_rbac_lets_the_reporter_list_every_kind_it_watches() -> None:
    """Each kind the reporter lists and watches (webhook/server/reporter.py KINDS) has
    list and watch in the ClusterRole, so no watch thread retries a 403 forever."""
    from webhook.api.kube import POD_KIND_RESOURCES
    from webhook.server.reporter import KINDS

    granted = {
        (group, resource)
        for groups, resources, verbs, _ in _rules("ClusterRole")
        if {"list", "watch"} <= set(verbs)
        for group in groups
        for resource in resources
    }
    resources = {
        "PersistentVolume": ("", "persistentvolumes"),
        "StorageClass": ("storage.k8s.io", "storageclasses"),
        **POD_KIND_RESOURCES,
    }
    assert {resources[k] for k in KINDS} <= granted
    assert _rules("Role") == [
        (("coordination.k8s.io",), ("leases",), ("create",), ()),
        (("coordination.k8s.io",), ("leases",), ("get", "update"), ("nfsguard-report",)),
    ]
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        binding = one(kind)
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "nfsguard-reporter", "namespace": NAMESPACE}
        ]
        assert binding["roleRef"]["name"] == "nfsguard-reporter"
