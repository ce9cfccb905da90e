"""`nfsguard serve --register` on the real kube-apiserver: the server keeps its own
MutatingWebhookConfiguration (registered by url: this harness has no kube-proxy, and
no `service:` configuration is ever created here).

- the configuration appears only once the replica is ready, with its caBundle;
- a policy naming a new CSI driver makes that driver's PVs reviewed, no manual step;
- a server that loses its health never empties or rewrites the configuration;
- two serve instances never both write: one holds the Lease, the other stands by
  and takes over when the holder is gone;
- `certs sync --webhook-optional` (the install Job) does not fail before registration;
- uninstall: an ownerReference to the registration ClusterRole, `webhook-config
  --delete` removes only what nfsguard registered.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.e2e.conftest import WebhookFactory
from tests.e2e.kubecluster import (
    LOOPBACK,
    WebhookServer,
    free_port,
    mwc_model,
    pv_model,
    wait_until,
)
from webhook.registration.configuration import Endpoint, WebhookSettings
from webhook.server.registration_loop import RegisterSettings, Registrar

E2E = Path(__file__).resolve().parent
BASE_POLICY = (E2E / "policies" / "main.yaml").read_text()
NEW_DRIVER = "new.csi.example.com"
NEW_DRIVER_POLICY = f"""\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: e2e-new-driver
spec:
  version: "1"
  pin: "4.0"
  rules:
  - name: deny-new-driver
    match:
      provisioners: [{NEW_DRIVER}]
    action: deny
"""


def new_driver_pv(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "mountOptions": ["nfsvers=4.2"],
            "csi": {
                "driver": NEW_DRIVER,
                "volumeHandle": name,
                "volumeAttributes": {"server": "192.0.2.77", "share": "/n"},
            },
        },
    }


def read_config(admission: k8s.AdmissionregistrationV1Api, name: str) -> Any:
    try:
        return admission.read_mutating_webhook_configuration(name)
    except k8s.ApiException as e:
        if e.status == 404:
            return None
        raise


@contextlib.contextmanager
def deleted_afterwards(admission: k8s.AdmissionregistrationV1Api, name: str) -> Iterator[None]:
    try:
        yield
    finally:
        with contextlib.suppress(k8s.ApiException):
            admission.delete_mutating_webhook_configuration(name)


def register_args(kubeconfig: Path, name: str, lease: str) -> list[str]:
    return [
        "--kubeconfig",
        str(kubeconfig),
        "--register",
        "--webhook-name",
        name,
        "--url",
        f"https://{LOOPBACK}:{{port}}/mutate",
        "--lease-namespace",
        "default",
        "--lease-name",
        lease,
        "--register-interval",
        "0.5",
        "--lease-duration",
        "3",
    ]


def test_registered_once_ready_and_follows_a_policy_naming_a_new_driver(
    tmp_path: Path,
    kubeconfig: Path,
    core_v1: k8s.CoreV1Api,
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
) -> None:
    name = "nfsguard-e2e-selfreg"
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "main.yaml").write_text(BASE_POLICY)
    wh = WebhookServer(
        policies, tmp_path / "srv", extra_args=register_args(kubeconfig, name, "e2e-selfreg")
    )
    assert read_config(admissionregistration_v1, name) is None
    with deleted_afterwards(admissionregistration_v1, name):
        try:
            wh.start()
            wait_until("the registration", lambda: read_config(admissionregistration_v1, name))
            cfg = read_config(admissionregistration_v1, name)
            hook, pods_hook = cfg.webhooks
            assert pods_hook.name == "pods.nfsguard.io"
            assert pods_hook.client_config == hook.client_config
            assert hook.client_config.url == f"{wh.url}/mutate"
            assert base64.b64decode(hook.client_config.ca_bundle) == wh.ca_crt.read_bytes()
            assert cfg.metadata.labels["app.kubernetes.io/managed-by"] == "nfsguard-serve"
            assert NEW_DRIVER not in json.dumps([c.expression for c in hook.match_conditions])

            # Not reviewed yet: a PV of the new driver is admitted as it is.
            body = pv_model(new_driver_pv("selfreg-new-driver"))
            core_v1.create_persistent_volume(body, dry_run="All")

            # A policy naming the driver: the configuration follows, the PV is denied.
            (policies / "new.yaml").write_text(NEW_DRIVER_POLICY)

            def denied() -> bool:
                try:
                    core_v1.create_persistent_volume(body, dry_run="All")
                except k8s.ApiException as e:
                    return "deny-new-driver" in (e.body or "")
                return False

            wait_until("the new driver's PVs to be reviewed", denied)
            cfg = read_config(admissionregistration_v1, name)
            assert NEW_DRIVER in json.dumps(
                [c.expression for c in cfg.webhooks[0].match_conditions]
            )
        finally:
            wh.stop()
        # Stopped: the configuration stays (the last good one), it is never emptied.
        after = read_config(admissionregistration_v1, name)
        assert after is not None and after.webhooks[0].match_conditions


def test_a_replica_that_cannot_confirm_its_health_never_writes(
    tmp_path: Path,
    kubeconfig: Path,
    start_webhook: WebhookFactory,
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
) -> None:
    """The loop in-process (one ``step`` at a time), against the real apiserver and a
    real server's /readyz."""
    name = "nfsguard-e2e-health"
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "main.yaml").write_text(BASE_POLICY)
    server = start_webhook(policies)

    def registrar(readyz: str) -> Registrar:
        settings = RegisterSettings(
            webhook=WebhookSettings(
                name=name, endpoint=Endpoint(url=f"{server.url}/mutate"), managed=True
            ),
            ca_file=server.ca_crt,
            lease_namespace="default",
            lease_name="e2e-health",
            lease_duration=30,
            kubeconfig=str(kubeconfig),
        )
        return Registrar(settings, (str(policies),), readyz)

    with deleted_afterwards(admissionregistration_v1, name):
        # Nothing answers at its readyz: nothing is written.
        blind = registrar(f"https://{LOOPBACK}:{free_port()}/readyz")
        assert blind.step().startswith("not writing")
        assert read_config(admissionregistration_v1, name) is None
        blind.lease.release()

        loop = registrar(f"{server.url}/readyz")
        assert loop.step() == "created"
        assert loop.step() == "unchanged"
        # A hand edit while the server is healthy is repaired on the next period.
        admissionregistration_v1.patch_mutating_webhook_configuration(
            name, [{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}]
        )
        assert loop.step() == "updated"
        assert read_config(admissionregistration_v1, name).webhooks[0].failure_policy == "Fail"
        version = read_config(admissionregistration_v1, name).metadata.resource_version

        # The server goes away, and the policy files change to name a driver: the loop
        # cannot confirm the served policy, so the configuration stays exactly as it was.
        server.stop()
        (policies / "new.yaml").write_text(NEW_DRIVER_POLICY)
        assert loop.step().startswith("not writing")
        (policies / "main.yaml").write_text("")  # a broken/empty change: still nothing
        assert loop.step().startswith("not writing")
        kept = read_config(admissionregistration_v1, name)
        assert kept.metadata.resource_version == version
        assert kept.webhooks[0].match_conditions
        loop.lease.release()


def test_two_servers_never_both_write(
    tmp_path: Path,
    kubeconfig: Path,
    core_v1: k8s.CoreV1Api,
    api_client: k8s.ApiClient,
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
) -> None:
    name = "nfsguard-e2e-two"
    lease = "e2e-two"
    policies = E2E / "policies" / "main.yaml"
    servers = [
        WebhookServer(
            policies, tmp_path / f"srv{i}", extra_args=register_args(kubeconfig, name, lease)
        )
        for i in range(2)
    ]
    coordination = k8s.CoordinationV1Api(api_client)
    with deleted_afterwards(admissionregistration_v1, name):
        try:
            for s in servers:
                s.start()
            wait_until("the registration", lambda: read_config(admissionregistration_v1, name))

            def roles() -> tuple[list[WebhookServer], list[WebhookServer]]:
                return (
                    [s for s in servers if "registration: created" in _log(s)],
                    [s for s in servers if "registration: standby" in _log(s)],
                )

            # Each server logs what it did after doing it, the writer possibly after a
            # "not writing" while its workers came up: wait for both roles to be said,
            # then check that only one server ever wrote.
            try:
                wait_until(
                    "one writer and one standby",
                    lambda: all(len(group) >= 1 for group in roles()),
                )
            except TimeoutError:
                raise AssertionError([_log(s)[-2000:] for s in servers]) from None
            writers, standby = roles()
            assert len(writers) == 1 and len(standby) == 1, [_log(s)[-2000:] for s in servers]
            assert writers[0] is not standby[0]
            assert "registration: updated" not in _log(standby[0])  # the standby never wrote
            spec = coordination.read_namespaced_lease(lease, "default").spec
            assert spec is not None and writers[0].process is not None
            assert str(spec.holder_identity).endswith(f"_{writers[0].process.pid}")
            # The writer's configuration names the writer's URL.
            cfg = read_config(admissionregistration_v1, name)
            assert cfg.webhooks[0].client_config.url == f"{writers[0].url}/mutate"

            # The writer goes: the other takes the Lease over and re-points the webhook.
            writers[0].stop()
            survivor = standby[0]
            wait_until(
                "the survivor to take over",
                lambda: (
                    read_config(admissionregistration_v1, name).webhooks[0].client_config.url
                    == f"{survivor.url}/mutate"
                ),
            )
        finally:
            for s in servers:
                s.stop()
        with contextlib.suppress(k8s.ApiException):
            coordination.delete_namespaced_lease(lease, "default")


def _log(server: WebhookServer) -> str:
    if server.process is None:
        return ""
    path = server.workdir / f"nfsguard-{server.port}.log"
    return path.read_text() if path.exists() else ""


@pytest.fixture(autouse=True)
def _no_leases_left(api_client: k8s.ApiClient) -> Iterator[None]:
    yield
    coordination = k8s.CoordinationV1Api(api_client)
    for lease in ("e2e-selfreg", "e2e-health"):
        with contextlib.suppress(k8s.ApiException):
            coordination.delete_namespaced_lease(lease, "default")


def test_certs_sync_leaves_the_registration_to_the_server(
    kubeconfig: Path, core_v1: k8s.CoreV1Api
) -> None:
    """The install Job runs before any replica has registered: with --webhook-optional a
    missing configuration is a note (exit 0), without it a finding (exit 1)."""
    import subprocess
    import sys

    from tests.e2e.kubecluster import loopback_env

    secret = "nfsguard-e2e-optional-tls"
    base = [
        str(Path(sys.executable).parent / "nfsguard"),
        "certs",
        "sync",
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        "default",
        "--secret",
        secret,
        "--webhook",
        "nfsguard-e2e-not-registered",
    ]
    try:
        run = subprocess.run(
            [*base, "--webhook-optional"], capture_output=True, text=True, env=loopback_env()
        )
        assert run.returncode == 0, run.stderr
        assert "not registered yet (serve --register writes it with the CA)" in run.stdout
        strict = subprocess.run(base, capture_output=True, text=True, env=loopback_env())
        assert strict.returncode == 1 and "caBundle NOT injected" in strict.stderr
    finally:
        with contextlib.suppress(k8s.ApiException):
            core_v1.delete_namespaced_secret(secret, "default")


def test_uninstall_removes_only_what_nfsguard_registered(
    tmp_path: Path,
    kubeconfig: Path,
    api_client: k8s.ApiClient,
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
) -> None:
    """The registered configuration is owned by the registration ClusterRole (the garbage
    collector removes it with the manifests), and `webhook-config --delete` removes it
    directly; one applied by GitOps (no managed-by label) is left alone."""
    import subprocess
    import sys

    from tests.e2e.kubecluster import loopback_env
    from tests.e2e.test_blast_radius import engine_for
    from webhook.cluster.registration import apply_configuration, owner_of_cluster_role
    from webhook.registration.configuration import webhook_configuration

    rbac = k8s.RbacAuthorizationV1Api(api_client)
    role = "nfsguard-e2e-registration"
    rbac.create_cluster_role(k8s.V1ClusterRole(metadata=k8s.V1ObjectMeta(name=role), rules=[]))
    eng = engine_for(E2E / "policies" / "main.yaml")
    url = Endpoint(url=f"https://{LOOPBACK}:{free_port()}/mutate")
    managed_name, foreign_name = "nfsguard-e2e-managed", "nfsguard-e2e-foreign"
    cli = [str(Path(sys.executable).parent / "nfsguard"), "webhook-config", "--delete"]
    cli += ["--kubeconfig", str(kubeconfig), "--webhook-name"]
    try:
        with (
            deleted_afterwards(admissionregistration_v1, managed_name),
            deleted_afterwards(admissionregistration_v1, foreign_name),
        ):
            owner = owner_of_cluster_role(api_client, role)
            doc = webhook_configuration(
                eng, WebhookSettings(name=managed_name, endpoint=url, managed=True)
            )
            doc["webhooks"][0]["failurePolicy"] = "Ignore"  # nothing listens: stay harmless
            assert apply_configuration(api_client, doc, owner) == "created"
            assert apply_configuration(api_client, doc, owner) == "unchanged"
            refs = read_config(admissionregistration_v1, managed_name).metadata.owner_references
            assert [(r.kind, r.name, r.uid) for r in refs] == [("ClusterRole", role, owner["uid"])]
            foreign = webhook_configuration(
                eng, WebhookSettings(name=foreign_name, endpoint=url, failure_policy="Ignore")
            )
            admissionregistration_v1.create_mutating_webhook_configuration(mwc_model(foreign))
            assert apply_configuration(api_client, {**foreign}, None) == "foreign"

            gone = subprocess.run(
                [*cli, managed_name], capture_output=True, text=True, env=loopback_env()
            )
            assert gone.returncode == 0 and "deleted" in gone.stdout, gone.stderr
            assert read_config(admissionregistration_v1, managed_name) is None
            kept = subprocess.run(
                [*cli, foreign_name], capture_output=True, text=True, env=loopback_env()
            )
            assert kept.returncode == 2 and "left alone" in kept.stderr, kept.stderr
            assert read_config(admissionregistration_v1, foreign_name) is not None
    finally:
        with contextlib.suppress(k8s.ApiException):
            rbac.delete_cluster_role(role)
