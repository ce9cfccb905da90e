"""manifests/: strict schema validation for the pinned Kubernetes release, plus the
hardening and wiring properties the deployment depends on.

(Over 400 lines: one test per hardening property, all over one rendered set.)

manifests/ (but 00-namespace.yaml and gitops/) is charts/nfsguard rendered with its
default values (``make manifests``; tests/chart checks the drift). Regenerate the GitOps
webhook configuration from the shipped policies with
``python tests/unit/install/test_manifests.py --write-webhook-config``.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml

from tests.support import validation_version

REPO = Path(__file__).resolve().parents[3]
MANIFESTS = REPO / "manifests"
POLICIES = REPO / "policies"
KUSTOMIZATION = MANIFESTS / "Kustomization"
GITOPS = MANIFESTS / "gitops"
GITOPS_WEBHOOK = GITOPS / "90-webhook.yaml"
NAMESPACE = "nfsguard"
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}

Json = dict[str, Any]


def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.iterdir() if p.suffix in (".yaml", ".yml"))


def load_docs(path: Path) -> list[Json]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def all_docs() -> list[tuple[Path, Json]]:
    return [(p, d) for p in manifest_files() for d in load_docs(p)]


def one(kind: str, name: str | None = None) -> Json:
    found = [
        d
        for _, d in all_docs()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_templates() -> Iterator[tuple[str, Json]]:
    for _, d in all_docs():
        if d["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]
        elif d["kind"] == "CronJob":
            yield f"CronJob/{d['metadata']['name']}", d["spec"]["jobTemplate"]["spec"]["template"]


def deployment() -> Json:
    return one("Deployment", "nfsguard")


def webhook_container() -> Json:
    containers = deployment()["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "nfsguard")


def mwc() -> Json:
    """The GitOps option's static configuration (the base install registers itself)."""
    (doc,) = load_docs(GITOPS_WEBHOOK)
    assert doc["kind"] == "MutatingWebhookConfiguration"
    return doc


# ------------------------------------------------------------------ schema


@pytest.mark.parametrize("path", [*manifest_files(), GITOPS_WEBHOOK], ids=lambda p: p.name)
def test_strict_schema_validation(path: Path) -> None:
    version = validation_version()
    docs = load_docs(path)
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_really_rejects_unknown_fields() -> None:
    bad = copy.deepcopy(deployment())
    bad["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, validation_version(), strict=True)
    bad_mwc = copy.deepcopy(mwc())
    bad_mwc["webhooks"][0]["timeoutSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad_mwc, validation_version(), strict=True)
    bad_type = copy.deepcopy(mwc())
    bad_type["webhooks"][0]["timeoutSeconds"] = "5"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad_type, validation_version(), strict=True)


def test_every_object_is_namespaced_correctly_and_labelled() -> None:
    seen: set[tuple[str, str, str]] = set()
    for path, d in all_docs():
        meta = d["metadata"]
        key = (d["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in seen, f"{path.name}: duplicate {key}"
        seen.add(key)
        if d["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta, f"{path.name}: {d['kind']} is cluster-scoped"
        else:
            assert meta.get("namespace") == NAMESPACE, f"{path.name}: {d['kind']} {meta['name']}"
        assert meta.get("labels", {}).get("app.kubernetes.io/name") == "nfsguard", path.name


def test_kustomization_lists_exactly_the_manifest_files() -> None:
    """`kubectl apply -k manifests/` and `kubectl apply -f manifests/` deploy the same."""
    kust = yaml.safe_load(KUSTOMIZATION.read_text())
    assert kust["kind"] == "Kustomization"
    assert sorted(kust["resources"]) == [p.name for p in manifest_files()]
    # The Namespace sorts first, so `kubectl apply -f manifests/` creates it first.
    assert manifest_files()[0].name == "00-namespace.yaml"
    assert one("Namespace")["metadata"]["name"] == NAMESPACE


def test_namespace_enforces_restricted_pod_security() -> None:
    labels = one("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# ------------------------------------------------------------------ pods


@pytest.mark.parametrize("name,template", list(pod_templates()), ids=lambda v: str(v)[:40])
def test_every_pod_is_hardened(name: str, template: Json) -> None:
    spec = template["spec"]
    psc = spec["securityContext"]
    assert psc["runAsNonRoot"] is True, name
    assert isinstance(psc["runAsUser"], int) and psc["runAsUser"] >= 10000, name
    assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
        assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
        assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
        assert "add" not in sc["capabilities"], (name, c["name"])
        assert sc.get("privileged", False) is False, (name, c["name"])
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", (name, c["name"])
        res = c["resources"]
        assert {"cpu", "memory"} <= set(res["requests"]), (name, c["name"])
        assert {"cpu", "memory"} <= set(res["limits"]), (name, c["name"])
        image = c["image"]
        assert not image.endswith(":latest") and ":" in image, image
        for m in c.get("volumeMounts", []):
            # subPath mounts never receive the kubelet's updates (renewed certs, policies)
            assert "subPath" not in m and "subPathExpr" not in m, (name, m)
    for v in spec.get("volumes", []):
        assert set(v) & {"secret", "configMap", "emptyDir", "projected"}, (name, v)


def test_deployment_availability() -> None:
    d = deployment()
    assert d["spec"]["replicas"] >= 2
    ru = d["spec"]["strategy"]["rollingUpdate"]
    assert ru["maxUnavailable"] == 0 and ru["maxSurge"] >= 1
    pod = d["spec"]["template"]
    anti = pod["spec"]["affinity"]["podAntiAffinity"]
    terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution", []) + [
        t["podAffinityTerm"]
        for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])
    ]
    assert any(
        t["topologyKey"] == "kubernetes.io/hostname"
        and t["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        for t in terms
    )
    assert d["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_pdb_covers_the_deployment() -> None:
    pdb = one("PodDisruptionBudget")
    d = deployment()
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    min_available = pdb["spec"]["minAvailable"]
    assert isinstance(min_available, int) and 1 <= min_available < d["spec"]["replicas"]


def test_probes_over_https_on_8443() -> None:
    c = webhook_container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"https": 8443}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert get["scheme"] == "HTTPS", probe
        assert ports.get(get["port"], get["port"]) == 8443, probe
    assert c["livenessProbe"]["timeoutSeconds"] >= 1


def test_server_command_and_mounts_agree() -> None:
    c = webhook_container()
    args = c["args"]
    assert args[0] == "serve"
    opts = dict(zip(args[1::2], args[2::2], strict=False))
    assert opts["--policy"] == "/etc/nfsguard/policies"
    assert opts["--tls-dir"] == "/etc/nfsguard/tls"
    assert opts["--host"] == "0.0.0.0" and opts["--port"] == "8443"
    assert opts["--audit-log"] == "/var/log/nfsguard/audit.log"
    assert "--in-cluster" in args
    assert "--audit-stdout" in args  # the durable copy of the emptyDir audit log
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment()["spec"]["template"]["spec"]["volumes"]}
    policies = volumes[mounts["/etc/nfsguard/policies"]["name"]]
    assert policies["configMap"]["name"] == one("ConfigMap")["metadata"]["name"]
    tls = volumes[mounts["/etc/nfsguard/tls"]["name"]]["secret"]
    # only the serving pair: the CA key never enters the server's pod
    assert sorted(i["key"] for i in tls["items"]) == ["ca-bundle.crt", "tls.crt", "tls.key"]
    assert tls["defaultMode"] & 0o007 == 0
    audit = volumes[mounts["/var/log/nfsguard"]["name"]]
    assert "emptyDir" in audit and audit["emptyDir"]["sizeLimit"]
    assert mounts["/etc/nfsguard/tls"]["readOnly"] and mounts["/etc/nfsguard/policies"]["readOnly"]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]  # gunicorn heartbeat, RO root


def test_container_args_parse_with_the_real_cli() -> None:
    """Every argument the manifests pass is one the shipped `nfsguard` accepts."""
    from webhook.cli.main import cli

    argvs = [webhook_container()["args"], *cert_job_args()]
    for argv in argvs:
        ctx = cli.make_context("nfsguard", list(argv), resilient_parsing=False)
        with ctx:
            sub_name, sub, rest = cli.resolve_command(ctx, list(argv))
            assert sub is not None, argv
            if isinstance(sub, click.Group):
                _, leaf, rest = sub.resolve_command(ctx, rest)
                assert leaf is not None, argv
                sub = leaf
            sub_ctx = sub.make_context(str(sub_name), rest, parent=ctx)
            assert sub_ctx.params, argv


def test_service_routes_443_to_the_https_port() -> None:
    svc = one("Service", "nfsguard")
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (port,) = svc["spec"]["ports"]
    assert port["port"] == 443 and port["targetPort"] in ("https", 8443)


# ------------------------------------------------------------------ certificates + RBAC


def cert_job_args() -> list[list[str]]:
    out = []
    for name, tpl in pod_templates():
        if name.startswith(("Job/", "CronJob/")):
            assert tpl["spec"]["serviceAccountName"] == "nfsguard-certs"
            out.append(tpl["spec"]["containers"][0]["args"])
    return out


def test_cert_jobs_sync_the_secret_the_server_mounts() -> None:
    all_args = cert_job_args()
    assert len(all_args) == 2  # the install Job and the renewal CronJob
    secret = next(
        v["secret"]["secretName"]
        for v in deployment()["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
    )
    svc = one("Service")["metadata"]["name"]
    for args in all_args:
        assert args[:2] == ["certs", "sync"]
        opts = dict(zip(args[2::2], args[3::2], strict=False))
        assert opts["--secret"] == secret
        assert opts["--namespace"] == NAMESPACE
        assert opts["--webhook"] == mwc()["metadata"]["name"]
        assert opts["--service"] == svc
    assert one("CronJob")["spec"]["concurrencyPolicy"] == "Forbid"
    assert deployment()["spec"]["template"]["spec"]["serviceAccountName"] == "nfsguard"


def rbac_rules() -> Iterator[tuple[Json, Json]]:
    for _, d in all_docs():
        if d["kind"] in ("Role", "ClusterRole"):
            for rule in d.get("rules", []):
                yield d, rule


def test_rbac_has_no_wildcards() -> None:
    for role, rule in rbac_rules():
        for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)
            assert not any("*" in v for v in rule.get(key, []) if v != ""), rule


def test_rbac_is_least_privilege_for_certs() -> None:
    secret_name = "nfsguard-tls"
    for role, rule in rbac_rules():
        name = role["metadata"]["name"]
        if "secrets" in rule["resources"]:
            assert role["kind"] == "Role" and role["metadata"]["namespace"] == NAMESPACE, name
            names = rule.get("resourceNames")
            if names is None:  # create cannot be restricted by name
                assert rule["verbs"] == ["create"], rule
            elif names == ["nfsguard-audit-key"]:
                # the audit signing key: created once (immutable), only ever read after
                assert rule["verbs"] == ["get"], rule
            else:
                assert names == [secret_name] and set(rule["verbs"]) <= {"get", "update"}, rule
            assert not {"list", "watch", "delete", "deletecollection"} & set(rule["verbs"])
        if "mutatingwebhookconfigurations" in rule["resources"] and name == "nfsguard-certs":
            assert rule["resourceNames"] == [mwc()["metadata"]["name"]], rule
            assert set(rule["verbs"]) <= {"get", "patch"}, rule
    # bindings reach the cert service account, and only it
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        b = one(kind, "nfsguard-certs")
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": "nfsguard-certs", "namespace": NAMESPACE}
        ]
        assert b["roleRef"]["name"] == "nfsguard-certs"


def test_rbac_nodes_is_not_duplicated_here() -> None:
    for role, rule in rbac_rules():
        if role["metadata"]["name"].startswith("nfsguard-certs"):
            assert "nodes" not in rule["resources"]


# ------------------------------------------------------------------ the webhook


def test_webhook_configuration() -> None:
    cfg = mwc()
    assert cfg["metadata"]["name"] == "nfsguard"
    wh, pods = cfg["webhooks"]
    assert wh["name"] == "pv.nfsguard.io"
    assert pods["name"] == "pods.nfsguard.io"
    assert pods["clientConfig"] == wh["clientConfig"]
    assert all(r["scope"] == "Namespaced" for r in pods["rules"])
    assert wh["admissionReviewVersions"] == ["v1"]
    assert wh["sideEffects"] in ("None", "NoneOnDryRun")
    assert wh["failurePolicy"] in ("Fail", "Ignore")
    assert 1 <= wh["timeoutSeconds"] <= 10
    assert wh["reinvocationPolicy"] == "IfNeeded"
    assert wh["matchPolicy"] == "Equivalent"
    rules = {
        (tuple(r["apiGroups"]), tuple(r["resources"])): (r["operations"], r["apiVersions"])
        for r in wh["rules"]
    }
    assert rules == {
        (("",), ("persistentvolumes",)): (["CREATE", "UPDATE"], ["v1"]),
        (("storage.k8s.io",), ("storageclasses",)): (["CREATE", "UPDATE"], ["v1"]),
    }
    assert all(r["scope"] == "Cluster" for r in wh["rules"])
    # points at the shipped Service, over its 443 port; caBundle is injected, not shipped
    svc = one("Service")
    ref = wh["clientConfig"]["service"]
    assert (ref["namespace"], ref["name"]) == (svc["metadata"]["namespace"], "nfsguard")
    assert ref["port"] == svc["spec"]["ports"][0]["port"] and ref["path"] == "/mutate"
    assert "caBundle" not in wh["clientConfig"] and "url" not in wh["clientConfig"]


def test_webhook_opt_out_and_own_namespace() -> None:
    wh, pods = mwc()["webhooks"]
    for entry in (wh, pods):
        assert {"key": "nfsguard.io/skip", "operator": "NotIn", "values": ["true"]} in entry[
            "objectSelector"
        ]["matchExpressions"]
    assert {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": [NAMESPACE],
    } in wh["namespaceSelector"]["matchExpressions"]
    # pods: never nfsguard's own namespace (its pods must start to end an outage) nor
    # kube-system's
    assert {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": sorted({NAMESPACE, "kube-system"}),
    } in pods["namespaceSelector"]["matchExpressions"]


def generated_webhook_config() -> str:
    """What `nfsguard webhook-config` prints for the policies the ConfigMap ships."""
    from click.testing import CliRunner

    from webhook.cli.main import cli

    args = ["webhook-config"]
    for name in policy_files():
        args += ["--policy", str(POLICIES / name)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_gitops_webhook_config_is_generated_from_the_shipped_policies() -> None:
    assert GITOPS_WEBHOOK.read_text() == generated_webhook_config(), (
        "manifests/gitops/90-webhook.yaml drifted from `nfsguard webhook-config`: regenerate "
        "with `python tests/unit/install/test_manifests.py --write-webhook-config`"
    )


def test_match_conditions_guard_deletion_binds_and_scope() -> None:
    wh, _ = mwc()["webhooks"]
    names = [c["name"] for c in wh["matchConditions"]]
    assert names == ["not-being-deleted", "not-a-bind-or-finalizer-update", "nfs-in-scope"]
    assert len(names) <= 64
    scope = wh["matchConditions"][2]["expression"]
    assert "'nfs.csi.k8s.io'" in scope and "has(object.spec.nfs)" in scope
    assert "ebs.csi.aws.com" not in scope


def test_base_install_registers_itself_and_ships_no_webhook_configuration() -> None:
    kinds = {d["kind"] for _, d in all_docs()}
    assert "MutatingWebhookConfiguration" not in kinds
    args = webhook_container()["args"]
    assert "--register" in args
    assert args[args.index("--ca-bundle") + 1] == "/etc/nfsguard/tls/ca-bundle.crt"
    owner = args[args.index("--register-owner") + 1]
    assert one("ClusterRole", owner)["metadata"]["name"] == owner


def test_gitops_kustomization_is_the_base_plus_the_static_configuration() -> None:
    kust = yaml.safe_load((GITOPS / "Kustomization").read_text())
    assert kust["resources"] == ["..", "90-webhook.yaml"]


def test_rbac_is_least_privilege_for_registration() -> None:
    role = one("ClusterRole", "nfsguard-registration")
    for rule in role["rules"]:
        if rule["resources"] == ["mutatingwebhookconfigurations"]:
            if "resourceNames" not in rule:
                assert rule["verbs"] == ["create"], rule
            else:
                assert rule["resourceNames"] == [mwc()["metadata"]["name"]], rule
                assert set(rule["verbs"]) <= {"get", "update"}, rule
        else:
            assert rule["resources"] == ["clusterroles"] and rule["verbs"] == ["get"]
            assert rule["resourceNames"] == ["nfsguard-registration"]
    lease = one("Role", "nfsguard-registration")
    for rule in lease["rules"]:
        assert rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
        if "resourceNames" not in rule:
            assert rule["verbs"] == ["create"]
        else:
            assert rule["resourceNames"] == ["nfsguard-registration"]
            assert set(rule["verbs"]) <= {"get", "update"}
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        b = one(kind, "nfsguard-registration")
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": "nfsguard", "namespace": NAMESPACE}
        ]


# ------------------------------------------------------------------ policy ConfigMap


def policy_files() -> dict[str, str]:
    if not POLICIES.is_dir():
        return {}
    return {
        p.name: p.read_text()
        for p in sorted(POLICIES.iterdir())
        if p.is_file() and p.suffix in (".yaml", ".yml") and not p.name.startswith(".")
    }


def test_policy_configmap_holds_policy_documents() -> None:
    cm = one("ConfigMap", "nfsguard-policies")
    assert cm["data"], "empty policy ConfigMap"
    for key, text in cm["data"].items():
        assert re.fullmatch(r"[-._a-zA-Z0-9]+\.ya?ml", key), key
        for doc in yaml.safe_load_all(text):
            assert doc["apiVersion"] == "nfsguard.io/v1alpha1"
            assert doc["kind"] == "NFSMountPolicy"
            assert doc["spec"]["version"] and doc["spec"]["rules"]


def test_policy_configmap_is_the_knowledge_base_only() -> None:
    """The default install enforces the knowledge base; the example site rule (the
    incident's 192.168.100.7) is never on unless asked for (the chart's
    policies.siteExample.enabled)."""
    cm = one("ConfigMap", "nfsguard-policies")
    assert cm["data"] == {"known-issues.yaml": policy_files()["known-issues.yaml"]}


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-webhook-config"]:
        GITOPS_WEBHOOK.write_text(generated_webhook_config())
        print(f"wrote {GITOPS_WEBHOOK}")
    else:
        sys.exit(__doc__)
