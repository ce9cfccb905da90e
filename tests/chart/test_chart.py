"""charts/nfsguard with the real helm (4 and 3): lint, strict schema validation of every
rendering, the hardening and wiring the install depends on, each value's effect, and the
values the chart refuses. The server-side dry run and a real install against kube-apiserver
are in tests/e2e/test_chart_e2e.py; manifests/ is the default rendering (make manifests).

(Over 400 lines: one test per value behaviour, all over real renderings.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml

from tests.chart.helm import (
    CHART,
    CI_VALUES,
    CRD_KINDS,
    REPO,
    Json,
    Rendering,
    helm,
    refused,
    render,
)
from tests.support import validation_version
from webhook.cli.main import cli

NATIVE_KINDS = {
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}


@pytest.fixture(scope="module", params=CI_VALUES, ids=lambda p: p.name)
def ci_rendering(request: pytest.FixtureRequest) -> Rendering:
    return render(values_files=[request.param])


def command_of(args: list[str]) -> tuple[click.Command, list[str]]:
    """The nfsguard (sub)command ARGS name, and the arguments left for it."""
    command: click.Command = cli
    rest = list(args)
    while isinstance(command, click.Group):
        name, rest = rest[0], rest[1:]
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, f"nfsguard has no command {name!r} ({args})"
        command = sub
    return command, rest


def parse(args: list[str]) -> dict[str, Any]:
    """ARGS parsed by the real CLI (a wrong flag or value fails here, not in a pod)."""
    command, rest = command_of([str(a) for a in args])
    ctx = command.make_context("nfsguard", rest)
    return dict(ctx.params)


# ------------------------------------------------------------------ lint and schema


@pytest.mark.parametrize("major", [4, 3])
@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_strict(values: Path, major: int) -> None:
    done = helm("lint", "--strict", str(CHART), "--values", str(values), major=major)
    assert "0 chart(s) failed" in done.stdout, done.stdout


def test_helm_3_and_4_render_the_same() -> None:
    from tests.chart.helm import render_text

    for values in CI_VALUES:
        four = render_text(values_files=[values]).stdout
        three = render_text(values_files=[values], major=3).stdout
        assert list(yaml.safe_load_all(four)) == list(yaml.safe_load_all(three)), values.name


def test_every_built_in_object_validates_strictly(ci_rendering: Rendering) -> None:
    for doc in ci_rendering.docs:
        if doc["kind"] in CRD_KINDS:
            continue
        # raises kubernetes_validate.ValidationError, naming the field
        kubernetes_validate.validate(doc, validation_version(), strict=True)


def test_strict_validation_really_rejects_unknown_fields() -> None:
    deployment = render().one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Never"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, validation_version(), strict=True)


def test_every_object_is_labelled_and_in_the_release_namespace(ci_rendering: Rendering) -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"} | NATIVE_KINDS
    for doc in ci_rendering.docs:
        meta = doc["metadata"]
        if doc["kind"] in cluster_scoped:
            assert "namespace" not in meta, meta["name"]
        else:
            assert meta["namespace"] == "nfsguard", (doc["kind"], meta["name"])
        labels = meta.get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "nfsguard", (doc["kind"], meta["name"])
        if doc["kind"] not in NATIVE_KINDS:  # compiled by `policy compile`, labelled by it
            assert labels["app.kubernetes.io/instance"] == "nfsguard"
            assert labels["app.kubernetes.io/part-of"] == "nfsguard"
        assert len(meta["name"]) <= 63, meta["name"]


def test_the_chart_never_ships_a_webhook_configuration(ci_rendering: Rendering) -> None:
    """The server registers it once a replica is ready (serve --register): a shipped one
    would send reviews to a server that is not there yet."""
    assert not ci_rendering.has("MutatingWebhookConfiguration")
    assert not ci_rendering.has("ValidatingWebhookConfiguration")


# ------------------------------------------------------------------ pods


def test_every_pod_is_hardened(ci_rendering: Rendering) -> None:
    for name, template in ci_rendering.pod_templates():
        spec = template["spec"]
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, name
        assert psc["runAsUser"] >= 10000, name
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["capabilities"] == {"drop": ["ALL"]}, (name, c["name"])
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", (name, c["name"])
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), (name, c["name"])
            assert not c["image"].endswith(":latest"), c["image"]
            for m in c.get("volumeMounts", []):
                assert "subPath" not in m, (name, m)  # subPath never sees kubelet updates


def test_every_command_the_chart_runs_parses_with_the_real_cli(ci_rendering: Rendering) -> None:
    seen = 0
    for _, template in ci_rendering.pod_templates():
        for c in template["spec"]["containers"] + template["spec"].get("initContainers", []):
            parse(c["args"])
            seen += 1
    assert seen >= 2


def test_the_cleanup_hook_command_parses_and_names_the_registration() -> None:
    hooks = render(release="acme", namespace="storage-system")
    job = hooks.one("Job", "acme-nfsguard-cleanup")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    params = parse(container["args"])
    assert params["delete"] is True and params["webhook_name"] == "acme-nfsguard"
    role = hooks.one("ClusterRole", "acme-nfsguard-cleanup")
    assert role["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": ["acme-nfsguard"],
            "verbs": ["get", "delete"],
        }
    ]
    without = render(sets=["cleanup.enabled=false"])
    assert not [d for d in without.all("Job") if d["metadata"]["name"].endswith("-cleanup")]


# ------------------------------------------------------------------ names agree


def test_names_agree_under_another_release_and_namespace() -> None:
    """Every name one object uses to find another, for release acme in storage-system."""
    r = render(release="acme", namespace="storage-system", hooks=False)
    full, ns = "acme-nfsguard", "storage-system"
    serve = parse(r.server_args())
    assert serve["webhook_name"] == full
    assert (serve["service_namespace"], serve["service_name"]) == (ns, full)
    assert serve["service_port"] == r.one("Service", full)["spec"]["ports"][0]["port"]
    assert serve["lease_name"] == f"{full}-registration"
    assert serve["register_owner"] == f"{full}-registration"
    pod = r.one("Deployment", full)["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == full
    assert r.one("ServiceAccount", full)
    selector = r.one("Service", full)["spec"]["selector"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert r.one("PodDisruptionBudget", full)["spec"]["selector"]["matchLabels"] == selector
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["policies"]["configMap"]["name"] == f"{full}-policies"
    assert r.one("ConfigMap", f"{full}-policies")
    # the registration RBAC names exactly what serve writes
    reg = r.one("ClusterRole", f"{full}-registration")
    named = [rule for rule in reg["rules"] if "resourceNames" in rule]
    assert {"resourceNames": [full]}.items() <= named[0].items()
    assert named[1]["resourceNames"] == [f"{full}-registration"]
    lease_role = r.one("Role", f"{full}-registration")
    assert lease_role["rules"][1]["resourceNames"] == [f"{full}-registration"]
    for binding in ("ClusterRoleBinding", "RoleBinding"):
        b = r.one(binding, f"{full}-registration")
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": full, "namespace": ns}]
    nodes = r.one("ClusterRoleBinding", f"{full}-nodes")
    assert nodes["subjects"][0] == {"kind": "ServiceAccount", "name": full, "namespace": ns}
    # the certs Job writes the Secrets the Deployment mounts, for the Service's name
    job = r.one("Job", f"{full}-certs-init-1")
    sync = parse(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert sync["namespace"] == ns and sync["service"] == full and sync["webhook_config"] == full
    assert sync["secret_name"] == volumes["tls"]["secret"]["secretName"] == f"{full}-tls"
    key = parse(job["spec"]["template"]["spec"]["initContainers"][0]["args"])
    assert key["name"] == volumes["audit-key"]["secret"]["secretName"] == f"{full}-audit-key"
    cron = r.one("CronJob", f"{full}-certs")["spec"]["jobTemplate"]["spec"]["template"]
    assert parse(cron["spec"]["containers"][0]["args"]) == sync
    certs_role = r.one("Role", f"{full}-certs")
    assert certs_role["rules"][0]["resourceNames"] == [f"{full}-tls"]
    assert certs_role["rules"][1]["resourceNames"] == [f"{full}-audit-key"]
    assert r.one("ClusterRole", f"{full}-certs")["rules"][0]["resourceNames"] == [full]
    for kind in ("Job", "CronJob"):
        obj = r.one(kind)
        spec = (
            obj["spec"]["template"]
            if kind == "Job"
            else obj["spec"]["jobTemplate"]["spec"]["template"]
        )
        assert spec["spec"]["serviceAccountName"] == f"{full}-certs"


def test_a_release_named_nfsguard_is_not_doubled() -> None:
    assert render(release="nfsguard").one("Deployment")["metadata"]["name"] == "nfsguard"
    assert render(release="my-nfsguard").one("Deployment")["metadata"]["name"] == "my-nfsguard"
    assert render(sets=["fullnameOverride=guard"]).one("Deployment")["metadata"]["name"] == "guard"


# ------------------------------------------------------------------ values


def policy_files(r: Rendering) -> dict[str, str]:
    data: dict[str, str] = r.one("ConfigMap")["data"]
    return data


def test_defaults_enforce_the_knowledge_base_only() -> None:
    """The example site rule (192.168.100.7) is never on by default."""
    r = render()
    files = policy_files(r)
    assert set(files) == {"known-issues.yaml"}
    assert files["known-issues.yaml"] == (REPO / "policies" / "known-issues.yaml").read_text()
    loaded = [yaml.safe_load_all(text) for text in files.values()]
    assert "192.168.100.7" not in yaml.safe_dump([list(docs) for docs in loaded])
    serve = parse(r.server_args())
    assert serve["policies"] == ("/etc/nfsguard/policies",)
    assert serve["failure_policy"] == "Fail" and serve["pods_policy"] == "Fail"
    assert serve["timeout_seconds"] == 5 and serve["register"] is True
    assert serve["audit_log"] == "/var/log/nfsguard/audit.log" and serve["audit_stdout"] is True
    assert serve["audit_key"] == "/etc/nfsguard/audit-key/audit.key"
    assert r.one("Deployment")["spec"]["replicas"] == 2
    assert r.one("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert r.server_container()["image"] == f"ghcr.io/nfsguard/nfsguard:{app_version}"


def test_the_policies_the_chart_ships_load(tmp_path: Path) -> None:
    r = render(sets=["policies.siteExample.enabled=true"])
    for name, text in policy_files(r).items():
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "webhook", "policy", "lint", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(policy_files(r)) == {"known-issues.yaml", "site-example.yaml"}


def test_site_policies_inline_as_text_or_map(tmp_path: Path) -> None:
    text = (CHART / "ci" / "site-values.yaml").read_text()
    doc = yaml.safe_load(text)["policies"]["site"]["incident.yaml"]
    as_map = yaml.safe_load(doc)
    r = render(values={"policies": {"site": {"a.yaml": doc, "b.yaml": as_map}}}, tmp_path=tmp_path)
    files = policy_files(r)
    assert yaml.safe_load(files["a.yaml"]) == yaml.safe_load(files["b.yaml"]) == as_map
    assert set(files) == {"known-issues.yaml", "a.yaml", "b.yaml"}


def test_an_existing_configmap_is_mounted_and_served() -> None:
    r = render(
        sets=["policies.existingConfigMap=team-policies", "policies.knowledgeBase.enabled=false"]
    )
    serve = parse(r.server_args())
    assert serve["policies"] == ("/etc/nfsguard/policies", "/etc/nfsguard/site-policies")
    spec = r.one("Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["site-policies"]["configMap"]["name"] == "team-policies"
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["site-policies"] == {
        "name": "site-policies",
        "mountPath": "/etc/nfsguard/site-policies",
        "readOnly": True,
    }
    assert policy_files(r) == {}


def test_the_reporter_is_off_by_default_and_reads_the_webhooks_policies() -> None:
    """reporter.enabled: its own identity and Deployment, the same policy mounts as the
    webhook (the chart's ConfigMap and yours), its own Lease; no ConfigMap access."""
    assert not [d for d in render().docs if "reporter" in d["metadata"]["name"]]
    r = render(
        sets=["reporter.enabled=true", "policies.existingConfigMap=team-policies"],
        release="acme",
        namespace="storage-system",
    )
    full, ns = "acme-nfsguard", "storage-system"
    reporter = r.deployment("reporter")
    assert reporter["metadata"]["name"] == f"{full}-reporter"
    spec = reporter["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == f"{full}-reporter"
    assert r.one("ServiceAccount", f"{full}-reporter")
    (container,) = spec["containers"]
    report = parse(container["args"])
    assert report["policies"] == parse(r.server_args())["policies"]
    assert report["policy_configmap"] is None and report["in_cluster"]
    assert (report["lease_namespace"], report["lease_name"]) == (ns, f"{full}-report")
    assert report["metrics_port"] == container["ports"][0]["containerPort"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v["configMap"]["name"] for v in spec["volumes"]}
    assert {path: volumes[name] for path, name in mounts.items()} == {
        "/etc/nfsguard/policies": f"{full}-policies",
        "/etc/nfsguard/site-policies": "team-policies",
    }
    role = r.one("Role", f"{full}-reporter")
    assert {res for rule in role["rules"] for res in rule["resources"]} == {"leases"}
    assert [n for rule in role["rules"] for n in rule.get("resourceNames", [])] == [
        f"{full}-report"
    ]
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        binding = r.one(kind, f"{full}-reporter")
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": f"{full}-reporter", "namespace": ns}
        ]
        assert binding["roleRef"]["name"] == f"{full}-reporter"
    # the NetworkPolicy is the webhook's: it never selects the reporter's metrics port
    policy = render(sets=["reporter.enabled=true", "networkPolicy.enabled=true"])
    selector = policy.one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "webhook"


def test_audit_off_and_signing_settings() -> None:
    off = render(sets=["audit.enabled=false"], hooks=False)
    args = off.server_args()
    assert not [a for a in args if a.startswith("--audit")]
    names = {v["name"] for v in off.one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert names == {"tls", "policies", "tmp"}
    job = off.one("Job")["spec"]["template"]["spec"]
    assert "initContainers" not in job  # no key to make
    own = render(sets=["audit.signingKey.existingSecret=corp-audit-key"], hooks=False)
    volumes = {v["name"]: v for v in own.one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["audit-key"]["secret"]["secretName"] == "corp-audit-key"
    assert "initContainers" not in own.one("Job")["spec"]["template"]["spec"]
    unsigned = render(sets=["audit.signingKey.enabled=false", "audit.compliant=true"])
    serve = parse(unsigned.server_args())
    assert serve["audit_key"] is None and serve["audit_compliant"] is True
    quiet = parse(render(sets=["audit.stdout=false"]).server_args())
    assert quiet["audit_stdout"] is False and quiet["audit_log"]


def test_replicas_and_the_disruption_budget() -> None:
    assert render(sets=["replicaCount=3"]).one("Deployment")["spec"]["replicas"] == 3
    assert render(sets=["replicas=4"]).one("Deployment")["spec"]["replicas"] == 4
    single = render(sets=["replicas=1"])
    assert not single.has("PodDisruptionBudget")  # with one replica it would block drains
    pdb = render(sets=["podDisruptionBudget.maxUnavailable=1"]).one("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    assert not render(sets=["podDisruptionBudget.enabled=false"]).has("PodDisruptionBudget")


def test_image_reference() -> None:
    digest = "sha256:" + "ab" * 32
    by_digest = render(sets=[f"image.digest={digest}", "image.tag=9.9"]).server_container()
    assert by_digest["image"] == f"ghcr.io/nfsguard/nfsguard@{digest}"
    mirrored = render(
        sets=["image.registry=mirror.local:5000", "image.repository=nfs/nfsguard", "image.tag=dev"]
    )
    assert mirrored.server_container()["image"] == "mirror.local:5000/nfs/nfsguard:dev"
    never = render(sets=["image.pullPolicy=Never"])
    for _, template in never.pod_templates():
        for c in template["spec"]["containers"]:
            assert c["imagePullPolicy"] == "Never"
    secrets = render(sets=["imagePullSecrets[0]=regcred"]).one("Deployment")
    assert secrets["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_webhook_settings_reach_serve(tmp_path: Path) -> None:
    r = render(
        sets=[
            "webhook.failurePolicy=Ignore",
            "webhook.timeoutSeconds=12",
            "webhook.pods.enabled=false",
            "service.port=8443",
            "server.workers=3",
            "server.threads=8",
            "server.logFormat=json",
            "server.accessLog=true",
        ],
        values={"server": {"extraArgs": ["--node-stale-after", "120"]}},
        tmp_path=tmp_path,
    )
    serve = parse(r.server_args())
    assert serve["failure_policy"] == "Ignore" and serve["timeout_seconds"] == 12
    assert serve["pods_policy"] == "off" and serve["service_port"] == 8443
    assert (serve["workers"], serve["threads"]) == (3, 8)
    assert serve["log_format"] == "json" and serve["access_log"] is True
    assert serve["node_stale_after"] == 120.0
    assert r.one("Service")["spec"]["ports"][0]["port"] == 8443
    ignore_pods = parse(render(sets=["webhook.pods.failurePolicy=Ignore"]).server_args())
    assert ignore_pods["pods_policy"] == "Ignore"


def test_scheduling_values() -> None:
    r = render(
        sets=[
            "priorityClassName=system-cluster-critical",
            "nodeSelector.kubernetes\\.io/os=linux",
            "podLabels.team=storage",
            "podAnnotations.note=x",
            "serviceAccount.annotations.role=r",
        ]
    )
    spec = r.one("Deployment")["spec"]["template"]
    assert spec["spec"]["priorityClassName"] == "system-cluster-critical"
    assert spec["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["metadata"]["labels"]["team"] == "storage"
    assert spec["metadata"]["annotations"] == {"note": "x"}
    assert r.one("ServiceAccount", "nfsguard")["metadata"]["annotations"] == {"role": "r"}
    default = render().one("Deployment")["spec"]["template"]["spec"]
    anti = default["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert default["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "ScheduleAnyway"
    prod = render(values_files=[CHART / "ci" / "production-values.yaml"])
    tsc = prod.one("Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert tsc[0]["whenUnsatisfiable"] == "DoNotSchedule"


def test_an_existing_service_account() -> None:
    r = render(sets=["serviceAccount.create=false", "serviceAccount.name=corp-sa"])
    assert r.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "corp-sa"
    assert [d["metadata"]["name"] for d in r.all("ServiceAccount")] == [
        "nfsguard-certs",
        "nfsguard-cleanup",
    ]
    assert r.one("ClusterRoleBinding", "nfsguard-nodes")["subjects"][0]["name"] == "corp-sa"


def test_cert_manager_replaces_the_certs_cronjob() -> None:
    r = render(values_files=[CHART / "ci" / "cert-manager-values.yaml"])
    assert not r.has("CronJob")
    assert not r.has("ClusterRole") or "nfsguard-certs" not in {
        d["metadata"]["name"] for d in r.all("ClusterRole")
    }
    cert = r.one("Certificate", "nfsguard-tls")
    assert cert["spec"]["secretName"] == "nfsguard-tls"
    assert "nfsguard.nfsguard.svc" in cert["spec"]["dnsNames"]
    assert cert["spec"]["issuerRef"] == {
        "name": "nfsguard-ca",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    assert r.one("Certificate", "nfsguard-ca")["spec"]["isCA"] is True
    tls = next(
        v for v in r.one("Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"
    )
    assert {"key": "ca.crt", "path": "ca-bundle.crt"} in tls["secret"]["items"]
    (job,) = r.all("Job")[:1]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["audit", "key-secret"]  # the audit key is still made
    monitor = r.one("ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["tlsConfig"]["ca"]["secret"]["key"] == "ca.crt"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    theirs = render(
        sets=[
            "certManager.enabled=true",
            "certManager.issuerRef.name=corp-ca",
            "certManager.issuerRef.kind=ClusterIssuer",
        ]
    )
    assert not theirs.has("Issuer")
    assert theirs.one("Certificate")["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }


def test_network_policy_admits_the_webhook_port_only() -> None:
    netpol = render(sets=["networkPolicy.enabled=true"]).one("NetworkPolicy")
    assert netpol["spec"]["policyTypes"] == ["Ingress"]
    assert netpol["spec"]["ingress"] == [{"ports": [{"port": 8443, "protocol": "TCP"}]}]
    assert not render().has("NetworkPolicy")


# ------------------------------------------------------------------ native policies


def test_native_policies_from_the_example_site_rule() -> None:
    r = render(values_files=[CHART / "ci" / "native-values.yaml"])
    kinds = {d["kind"] for d in r.docs}
    assert "MutatingAdmissionPolicy" in kinds and "MutatingAdmissionPolicyBinding" in kinds
    shipped = [
        d
        for d in yaml.safe_load_all(
            (REPO / "manifests" / "native" / "native-policies.yaml").read_text()
        )
        if d
    ]
    assert [d for d in r.docs if d["kind"] in NATIVE_KINDS] == shipped


def test_native_policies_of_the_knowledge_base_alone_are_none() -> None:
    r = render(sets=["nativePolicies.enabled=true"])
    assert not [d for d in r.docs if d["kind"] in NATIVE_KINDS]
    notes = helm(
        "install", "x", str(CHART), "--dry-run=client", "--set", "nativePolicies.enabled=true"
    ).stdout
    assert "compiles to no native policy" in notes


def test_native_policies_given_as_compiled_text(tmp_path: Path) -> None:
    compiled = (REPO / "manifests" / "native" / "native-policies.yaml").read_text()
    r = render(
        values={
            "nativePolicies": {"enabled": True, "manifests": compiled},
            "policies": {"existingConfigMap": "mine"},
        },
        tmp_path=tmp_path,
    )
    assert len([d for d in r.docs if d["kind"] in NATIVE_KINDS]) == len(
        [d for d in yaml.safe_load_all(compiled) if d]
    )


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "values,message",
    [
        ({"policies": {"knowledgeBase": {"enabled": False}}}, "nothing to enforce"),
        ({"policies": {"site": {"known-issues.yaml": "x"}}}, "name of a policy the chart ships"),
        ({"policies": {"site": {"bad name": "x"}}}, "bad name"),
        (
            {"policies": {"existingConfigMap": "x"}, "nativePolicies": {"enabled": True}},
            "nfsguard policy compile",
        ),
        ({"replica": 2}, "replica"),
        ({"webhook": {"failurePolicy": "fail"}}, "failurePolicy"),
        ({"webhook": {"timeoutSeconds": 31}}, "timeoutSeconds"),
        ({"image": {"digest": "sha256:short"}}, "digest"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"serviceAccount": {"create": False}}, "serviceAccount.name is required"),
        ({"server": {"logFormat": "xml"}}, "logFormat"),
        ({"certManager": {"enabled": True, "issuerRef": {"nam": "x"}}}, "nam"),
    ],
    ids=lambda v: str(v)[:50],
)
def test_values_the_chart_refuses(values: Json, message: str, tmp_path: Path) -> None:
    error = refused(values=values, tmp_path=tmp_path)
    assert message in error, error
    assert len(error.strip().splitlines()) <= 6, error


# ------------------------------------------------------------------ manifests/ and docs


def test_manifests_are_the_default_rendering() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "hack" / "render_manifests.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def leaf_keys(tree: Json, prefix: str = "") -> list[str]:
    """Dotted keys of values.yaml whose value is not a map of further keys."""
    keys = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            keys += leaf_keys(value, f"{path}.")
        else:
            keys.append(path)
    return keys


def test_every_value_is_documented() -> None:
    """Each key of values.yaml, or a map above it (resources, podSecurityContext), has a
    row in docs/helm.md, and every row names a real key."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    text = (REPO / "docs" / "helm.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", text, re.M))
    leaves = leaf_keys(values)
    missing = [k for k in leaves if not any(k == d or k.startswith(d + ".") for d in documented)]
    assert not missing, f"docs/helm.md lacks: {missing}"
    stale = sorted(d for d in documented if not _exists(values, d))
    assert not stale, f"docs/helm.md documents values the chart does not have: {stale}"


def _exists(tree: Json, path: str) -> bool:
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
