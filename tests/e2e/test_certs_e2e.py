"""Certificates and deploy manifests against the real kube-apiserver.

(Over 400 lines: the certificate lifecycle end to end, on one control plane.)

- Every shipped manifest passes the apiserver's own validation (server-side dry run:
  schema, CEL matchConditions, Pod Security "restricted" for the pod templates).
- `nfsguard certs sync`, running with exactly the shipped RBAC (impersonating the
  nfsguard-certs ServiceAccount), creates the Secret and injects the caBundle, writes
  nothing when nothing is due, and can do nothing else.
- The apiserver really trusts the injected caBundle: it calls the real `nfsguard serve`
  presenting the synced certificate, through a serving renewal and a CA rotation; and
  it refuses the webhook when the bundle does not hold the served certificate's CA.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from kubernetes import client as k8s

from tests.e2e.kubecluster import (
    LOOPBACK,
    PIN,
    PROBE_ASKS,
    PROBE_SERVER,
    PROBE_SHARE,
    ControlPlane,
    WebhookServer,
    free_port,
    loopback_env,
    mwc_model,
    nfs_pv,
    probe,
    pv_model,
    wait_until,
    webhook_configuration_for,
)
from webhook import pki
from webhook.cluster.certs import bundle_from_secret_data, secret_body, sync_certificates

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
POLICY = Path(__file__).resolve().parent / "policies" / "main.yaml"
NAMESPACE = "nfsguard"
SECRET = "nfsguard-tls"
WEBHOOK = "nfsguard"  # the name the shipped RBAC allows
SERVICE = "nfsguard"
CERTS_SA = f"system:serviceaccount:{NAMESPACE}:nfsguard-certs"
LABEL = "e2e.nfsguard.io/certs"

Json = dict[str, Any]


def docs(*names: str) -> list[Json]:
    out: list[Json] = []
    for name in names:
        out += [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]
    return out


def kubectl(assets: Path) -> str | None:
    candidate = assets / "kubectl"
    if os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("kubectl")


def apply_objects(api: k8s.ApiClient, objects: list[Json]) -> None:
    """Create-or-replace, as `kubectl apply` would for objects nobody else edits."""
    from kubernetes.dynamic import DynamicClient

    dyn: Any = DynamicClient(api)  # type: ignore[no-untyped-call]
    for obj in objects:
        res = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        ns = obj["metadata"].get("namespace")
        try:
            res.create(body=obj, namespace=ns)
        except k8s.ApiException as e:
            if e.status != 409:
                raise
            live = res.get(name=obj["metadata"]["name"], namespace=ns)
            body = copy.deepcopy(obj)
            body["metadata"]["resourceVersion"] = live.metadata.resourceVersion
            res.replace(body=body, namespace=ns)


@pytest.fixture(scope="module")
def certs_rbac(api_client: k8s.ApiClient) -> None:
    """The namespace, service accounts and certificate RBAC, exactly as shipped."""
    apply_objects(
        api_client, docs("00-namespace.yaml", "10-serviceaccounts.yaml", "20-rbac-certs.yaml")
    )


@pytest.fixture
def as_certs_sa(control_plane: ControlPlane) -> Iterator[k8s.ApiClient]:
    """A client that is the nfsguard-certs ServiceAccount (RBAC-wise)."""
    api = control_plane.api_client()
    api.set_default_header("Impersonate-User", CERTS_SA)  # type: ignore[no-untyped-call]
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


def resource_version(obj: Any) -> str:
    return str(obj.metadata.resource_version)


def delete_quietly(fn: Any, *args: Any) -> None:
    with contextlib.suppress(k8s.ApiException):
        fn(*args)


@pytest.fixture
def clean_slate(core_v1: k8s.CoreV1Api, admissionregistration_v1: Any) -> None:
    """No Secret and no configuration named like the shipped ones before a test."""
    delete_quietly(core_v1.delete_namespaced_secret, SECRET, NAMESPACE)
    delete_quietly(admissionregistration_v1.delete_mutating_webhook_configuration, WEBHOOK)


def registration(url_base: str) -> Json:
    """The shipped configuration under its shipped name, pointed at `url_base`, with no
    caBundle (sync injects it) and reachable only by objects labelled for this module."""
    cfg = webhook_configuration_for(url_base, b"")
    for wh in cfg["webhooks"]:
        wh["clientConfig"].pop("caBundle", None)
        wh["objectSelector"]["matchExpressions"].append(
            {"key": LABEL, "operator": "In", "values": ["true"]}
        )
    assert cfg["metadata"]["name"] == WEBHOOK
    return cfg


#: The shipped configuration's entries: PVs and StorageClasses, Pods and workloads.
BOTH = ("pv.nfsguard.io", "pods.nfsguard.io")


def ca_bundle_of(adm: Any) -> bytes:
    cfg = adm.read_mutating_webhook_configuration(WEBHOOK)
    pv_entry, pods_entry = cfg.webhooks
    # sync injects the same bundle into every entry of the configuration
    assert pods_entry.client_config.ca_bundle == pv_entry.client_config.ca_bundle
    return base64.b64decode(pv_entry.client_config.ca_bundle or "")


def read_bundle(core: k8s.CoreV1Api) -> tuple[k8s.V1Secret, pki.CertBundle]:
    secret = core.read_namespaced_secret(SECRET, NAMESPACE)
    bundle = bundle_from_secret_data(secret.data)
    assert bundle is not None
    return secret, bundle


def labelled_probe(core: k8s.CoreV1Api) -> list[str] | None:
    """Dry-run create of a labelled probe PV: its admitted mountOptions, None if refused."""
    pv = nfs_pv(
        "nfsguard-certs-probe", PROBE_SERVER, PROBE_SHARE, [PROBE_ASKS], labels={LABEL: "true"}
    )
    try:
        out = core.create_persistent_volume(pv_model(pv), dry_run="All")
    except k8s.ApiException:
        return None
    assert out.spec is not None
    return list(out.spec.mount_options or [])


def served_fingerprint(port: int, trust: bytes) -> str:
    ctx = ssl.create_default_context(cadata=trust.decode())
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=LOOPBACK) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def fingerprint(pem: bytes) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode())).hexdigest()


def set_url(adm: Any, url: str) -> None:
    live = adm.read_mutating_webhook_configuration(WEBHOOK)
    live.webhooks[0].client_config.url = url
    adm.replace_mutating_webhook_configuration(WEBHOOK, live)


def publish(tls_dir: Path, bundle: pki.CertBundle, n: int) -> None:
    """Write the pair the way the kubelet updates a Secret volume (atomic ..data swap)."""
    ts = tls_dir / f"..2026_11_27_{n:04d}"
    ts.mkdir(parents=True)
    (ts / "tls.crt").write_bytes(bundle.serving.cert_pem)
    (ts / "tls.key").write_bytes(bundle.serving.key_pem)
    tmp = tls_dir / "..data_tmp"
    tmp.symlink_to(ts.name)
    os.replace(tmp, tls_dir / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (tls_dir / name).is_symlink():
            (tls_dir / name).symlink_to(Path("..data") / name)
    pki.write_atomic(tls_dir / "ca.crt", bundle.ca_bundle)


# ------------------------------------------------------------------ manifests


def test_every_manifest_passes_server_side_dry_run(
    kube_assets: Path, kubeconfig: Path, api_client: k8s.ApiClient
) -> None:
    apply_objects(api_client, docs("00-namespace.yaml"))  # namespaced dry runs need it
    tool = kubectl(kube_assets)
    if tool is not None:  # exactly what the docs tell operators to run
        proc = subprocess.run(
            [
                tool,
                "--kubeconfig",
                str(kubeconfig),
                "apply",
                "--dry-run=server",
                "-f",
                "manifests/",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=loopback_env(),
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        # no warning (e.g. PodSecurity "restricted"), except kubectl's note on objects an
        # earlier test created without it
        warnings = [
            ln
            for ln in proc.stderr.splitlines()
            if ln.startswith("Warning") and "last-applied-configuration" not in ln
        ]
        assert warnings == [], proc.stderr
        applied = [ln for ln in proc.stdout.splitlines() if ln.endswith("(server dry run)")]
        n_objects = sum(len(docs(p.name)) for p in MANIFESTS.glob("*.yaml"))
        assert len(applied) == n_objects, proc.stdout
        kust = subprocess.run(
            [tool, "kustomize", "manifests/"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        assert kust.returncode == 0, kust.stderr
        assert len([d for d in yaml.safe_load_all(kust.stdout) if d]) == n_objects
    else:  # no kubectl: the same server-side validation through the API
        from kubernetes.dynamic import DynamicClient

        dyn: Any = DynamicClient(api_client)  # type: ignore[no-untyped-call]
        for path in sorted(MANIFESTS.glob("*.yaml")):
            for obj in docs(path.name):
                res = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
                try:
                    res.create(body=obj, namespace=obj["metadata"].get("namespace"), dry_run="All")
                except k8s.ApiException as e:
                    assert e.status == 409, f"{path.name} {obj['kind']}: {e.body}"


def test_match_condition_is_accepted_and_skips_non_nfs_pvs(
    api_client: k8s.ApiClient, core_v1: k8s.CoreV1Api, admissionregistration_v1: Any
) -> None:
    """The CEL compiles in the real apiserver, and with the webhook unreachable (Fail), a
    hostPath PV is admitted (never sent) while an NFS PV is refused (sent)."""
    cfg = webhook_configuration_for(f"https://{LOOPBACK}:{free_port()}", b"")
    cfg["metadata"]["name"] = "nfsguard-e2e-cel"
    for wh in cfg["webhooks"]:
        wh["clientConfig"].pop("caBundle", None)
        wh["failurePolicy"] = "Fail"
        wh["objectSelector"]["matchExpressions"].append(
            {"key": LABEL, "operator": "In", "values": ["cel"]}
        )
    admissionregistration_v1.create_mutating_webhook_configuration(mwc_model(cfg))
    try:
        host_pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "nfsguard-cel-hostpath", "labels": {LABEL: "cel"}},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": "/tmp/x"},
            },
        }
        nfs = nfs_pv("nfsguard-cel-nfs", PROBE_SERVER, PROBE_SHARE, [PROBE_ASKS])
        nfs["metadata"]["labels"] = {LABEL: "cel"}

        def nfs_refused() -> bool:
            try:
                core_v1.create_persistent_volume(pv_model(nfs), dry_run="All")
            except k8s.ApiException as e:
                return e.status == 500 and "pv.nfsguard.io" in str(e.body)
            return False

        wait_until("the webhook to be called for NFS PVs", nfs_refused, 60)
        core_v1.create_persistent_volume(pv_model(host_pv), dry_run="All")  # not sent: admitted
    finally:
        admissionregistration_v1.delete_mutating_webhook_configuration("nfsguard-e2e-cel")


# ------------------------------------------------------------------ certs sync + RBAC


@pytest.mark.usefixtures("certs_rbac", "clean_slate")
def test_sync_with_the_shipped_rbac_creates_injects_and_is_idempotent(
    as_certs_sa: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    admissionregistration_v1: Any,
    kubeconfig: Path,
) -> None:
    admissionregistration_v1.create_mutating_webhook_configuration(
        mwc_model(registration(f"https://{LOOPBACK}:{free_port()}"))
    )
    try:
        first = sync_certificates(
            as_certs_sa,
            namespace=NAMESPACE,
            secret_name=SECRET,
            webhook_config=WEBHOOK,
            service=SERVICE,
        )
        assert first.secret_created and "created CA" in first.secret_changes
        assert first.webhooks_patched == BOTH

        secret, bundle = read_bundle(core_v1)
        assert secret.type == "kubernetes.io/tls"
        assert set(secret.data or {}) == {"tls.crt", "tls.key", "ca.crt", "ca.key", "ca-bundle.crt"}
        assert ca_bundle_of(admissionregistration_v1) == bundle.ca_bundle == bundle.ca.cert_pem
        leaf = bundle.serving.cert
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "nfsguard.nfsguard.svc" in san.get_values_for_type(x509.DNSName)
        verifier = (
            PolicyBuilder()
            .store(Store(pki.load_pem_certificates(ca_bundle_of(admissionregistration_v1))))
            .build_server_verifier(x509.DNSName("nfsguard.nfsguard.svc"))
        )
        verifier.verify(leaf, [])

        # nothing due: nothing written
        rv_secret = resource_version(secret)
        rv_mwc = resource_version(
            admissionregistration_v1.read_mutating_webhook_configuration(WEBHOOK)
        )
        again = sync_certificates(
            as_certs_sa,
            namespace=NAMESPACE,
            secret_name=SECRET,
            webhook_config=WEBHOOK,
            service=SERVICE,
        )
        assert not again.changed
        assert resource_version(core_v1.read_namespaced_secret(SECRET, NAMESPACE)) == rv_secret
        live = admissionregistration_v1.read_mutating_webhook_configuration(WEBHOOK)
        assert resource_version(live) == rv_mwc

        # the CLI, as an operator runs it
        proc = subprocess.run(
            [
                str(Path(sys.executable).parent / "nfsguard"),
                "certs",
                "sync",
                "--kubeconfig",
                str(kubeconfig),
            ],
            capture_output=True,
            text=True,
            env=loopback_env(),
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "secret nfsguard/nfsguard-tls up to date" in proc.stdout
        assert "caBundle of nfsguard up to date" in proc.stdout

        # a webhook configuration re-applied from the manifests (no caBundle) is repaired
        live = admissionregistration_v1.read_mutating_webhook_configuration(WEBHOOK)
        live.webhooks[0].client_config.ca_bundle = None
        admissionregistration_v1.replace_mutating_webhook_configuration(WEBHOOK, live)
        repaired = sync_certificates(
            as_certs_sa,
            namespace=NAMESPACE,
            secret_name=SECRET,
            webhook_config=WEBHOOK,
            service=SERVICE,
        )
        assert repaired.secret_changes == () and repaired.webhooks_patched == ("pv.nfsguard.io",)
        assert ca_bundle_of(admissionregistration_v1) == bundle.ca_bundle
    finally:
        delete_quietly(admissionregistration_v1.delete_mutating_webhook_configuration, WEBHOOK)
        delete_quietly(core_v1.delete_namespaced_secret, SECRET, NAMESPACE)


@pytest.mark.usefixtures("certs_rbac", "clean_slate")
def test_the_certs_identity_can_do_nothing_else(
    as_certs_sa: k8s.ApiClient, core_v1: k8s.CoreV1Api, admissionregistration_v1: Any
) -> None:
    other = k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name="someone-elses", namespace=NAMESPACE),
        string_data={"password": "x"},
    )
    delete_quietly(core_v1.delete_namespaced_secret, "someone-elses", NAMESPACE)
    core_v1.create_namespaced_secret(NAMESPACE, other)
    cfg = registration(f"https://{LOOPBACK}:{free_port()}")
    cfg["metadata"]["name"] = "nfsguard-e2e-other"
    admissionregistration_v1.create_mutating_webhook_configuration(mwc_model(cfg))
    sa_core = k8s.CoreV1Api(as_certs_sa)
    sa_adm = k8s.AdmissionregistrationV1Api(as_certs_sa)
    try:
        attempts: dict[str, Callable[[], object]] = {
            "read another secret": lambda: sa_core.read_namespaced_secret(
                "someone-elses", NAMESPACE
            ),
            "list secrets": lambda: sa_core.list_namespaced_secret(NAMESPACE),
            "read a secret elsewhere": lambda: sa_core.read_namespaced_secret(
                SECRET, "kube-system"
            ),
            "delete its own secret": lambda: sa_core.delete_namespaced_secret(SECRET, NAMESPACE),
            "read another webhook": lambda: sa_adm.read_mutating_webhook_configuration(
                "nfsguard-e2e-other"
            ),
            "patch another webhook": lambda: sa_adm.patch_mutating_webhook_configuration(
                "nfsguard-e2e-other", [{"op": "remove", "path": "/webhooks/0/objectSelector"}]
            ),
            "list webhooks": lambda: sa_adm.list_mutating_webhook_configuration(),
            "delete its own webhook": lambda: sa_adm.delete_mutating_webhook_configuration(WEBHOOK),
            "list nodes": lambda: sa_core.list_node(),
        }
        for what, attempt in attempts.items():
            with pytest.raises(k8s.ApiException) as err:
                attempt()
            assert err.value.status == 403, what
    finally:
        delete_quietly(core_v1.delete_namespaced_secret, "someone-elses", NAMESPACE)
        delete_quietly(
            admissionregistration_v1.delete_mutating_webhook_configuration, "nfsguard-e2e-other"
        )


# ------------------------------------------------------------------ the apiserver's trust


@pytest.mark.usefixtures("certs_rbac", "clean_slate")
def test_apiserver_trusts_the_injected_bundle_through_renewal_and_ca_rotation(
    as_certs_sa: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    admissionregistration_v1: Any,
    tmp_path: Path,
) -> None:
    # Stored state: a CA with 650 days left and a serving certificate with 55 days left
    # (due for renewal), both for the Service and for 127.0.0.1 (the webhook runs there).
    now = dt.datetime.now(dt.UTC)
    names = [*pki.service_dns_names(SERVICE, NAMESPACE), "localhost"]
    ca0 = pki.generate_ca("nfsguard-webhook-ca", now=now - dt.timedelta(days=3000))
    serving0 = pki.issue_serving_cert(
        ca0, dns_names=names, ip_addresses=[LOOPBACK], now=now - dt.timedelta(days=310)
    )
    seeded = pki.CertBundle(ca=ca0, serving=serving0, ca_bundle=ca0.cert_pem)
    core: Any = core_v1
    core.create_namespaced_secret(NAMESPACE, secret_body(SECRET, NAMESPACE, seeded))

    workdir = tmp_path / "nfsguard"
    server = WebhookServer(POLICY, workdir)
    wh_url = None

    def sync(**kw: Any) -> Any:
        return sync_certificates(
            as_certs_sa,
            namespace=NAMESPACE,
            secret_name=SECRET,
            webhook_config=WEBHOOK,
            service=SERVICE,
            extra_dns_names=["localhost"],
            ip_addresses=[LOOPBACK],
            **kw,
        )

    def probe_is_via(host: str) -> bool:
        cfg = admissionregistration_v1.read_mutating_webhook_configuration(WEBHOOK)
        return host in cfg.webhooks[0].client_config.url and labelled_probe(core_v1) == [PIN]

    try:
        # 1. renewal of the serving certificate; the CA is kept
        renewed_run = sync()  # before the configuration exists: Secret yes, caBundle later
        assert any("renewed serving" in c for c in renewed_run.secret_changes)
        assert renewed_run.webhook_missing and renewed_run.webhooks_patched == ()
        _, b1 = read_bundle(core_v1)
        assert b1.ca == ca0 and b1.serving != serving0
        publish(server.tls_dir, b1, 1)
        server.start()
        wh_url = server.url
        admissionregistration_v1.create_mutating_webhook_configuration(
            mwc_model(registration(wh_url))
        )
        injected = sync()  # injects the bundle into the configuration just created
        assert not injected.webhook_missing and injected.secret_changes == ()
        assert injected.webhooks_patched == BOTH
        assert ca_bundle_of(admissionregistration_v1) == ca0.cert_pem
        wait_until("the apiserver to call the webhook", lambda: labelled_probe(core_v1) == [PIN])

        # 2. CA rotation (due a year early; here forced by a longer renew_before):
        #    the bundle holds new + old CA before the server presents the new certificate
        rotated_run = sync(policy=pki.RenewalPolicy(ca_renew_before=dt.timedelta(days=700)))
        assert any("rotated CA" in c for c in rotated_run.secret_changes)
        _, b2 = read_bundle(core_v1)
        trusted = pki.load_pem_certificates(ca_bundle_of(admissionregistration_v1))
        assert trusted == [b2.ca.cert, ca0.cert]
        # the server still presents the certificate from the old CA, and a handshake that
        # trusts exactly the injected bundle accepts it; so does the apiserver (with the
        # old or the new bundle, whichever its informer has by now)
        injected_now = ca_bundle_of(admissionregistration_v1)
        assert served_fingerprint(server.port, injected_now) == fingerprint(b1.serving.cert_pem)
        for _ in range(5):
            assert labelled_probe(core_v1) == [PIN]
        # the kubelet delivers the new Secret; the server takes it without a restart
        publish(server.tls_dir, b2, 2)
        wait_until(
            "the server to present the new certificate",
            lambda: (
                served_fingerprint(server.port, b2.ca_bundle) == fingerprint(b2.serving.cert_pem)
            ),
            30,
        )
        for _ in range(5):
            assert labelled_probe(core_v1) == [PIN]

        # The apiserver keeps a client per (url, caBundle) with keep-alive connections, and
        # a connection is verified once, at its handshake. A new url makes it connect anew:
        # the new certificate is verified against the synced bundle now.
        set_url(admissionregistration_v1, f"https://localhost:{server.port}/mutate")
        wait_until("a fresh handshake with the new certificate", lambda: probe_is_via("localhost"))
        for _ in range(5):
            assert labelled_probe(core_v1) == [PIN]

        # 3. negative control: a bundle that does not hold the served certificate's CA
        #    (a CA never seen before, so again a fresh handshake) makes the apiserver refuse
        stranger = pki.generate_ca("stranger")
        live = admissionregistration_v1.read_mutating_webhook_configuration(WEBHOOK)
        live.webhooks[0].client_config.ca_bundle = base64.b64encode(stranger.cert_pem).decode()
        admissionregistration_v1.replace_mutating_webhook_configuration(WEBHOOK, live)
        wait_until("the apiserver to distrust the webhook", lambda: labelled_probe(core_v1) is None)
        # and sync repairs it
        assert sync().webhooks_patched == ("pv.nfsguard.io",)  # only [0] was broken
        wait_until("the webhook to be trusted again", lambda: labelled_probe(core_v1) == [PIN])
    finally:
        with contextlib.suppress(k8s.ApiException):
            admissionregistration_v1.delete_mutating_webhook_configuration(WEBHOOK)
            if wh_url is not None:
                wait_until(
                    "the webhook to be gone", lambda: labelled_probe(core_v1) == [PROBE_ASKS], 60
                )
        server.stop()
        delete_quietly(core_v1.delete_namespaced_secret, SECRET, NAMESPACE)


@pytest.mark.usefixtures("certs_rbac", "clean_slate")
def test_concurrent_syncs_converge(
    control_plane: ControlPlane, core_v1: k8s.CoreV1Api, admissionregistration_v1: Any
) -> None:
    """Two runs at once (a CronJob run and a manual one) from nothing: one CA wins, the
    configuration trusts exactly what the Secret holds, and neither run fails."""
    import concurrent.futures

    admissionregistration_v1.create_mutating_webhook_configuration(
        mwc_model(registration(f"https://{LOOPBACK}:{free_port()}"))
    )
    clients = [control_plane.api_client() for _ in range(4)]
    for c in clients:
        c.set_default_header("Impersonate-User", CERTS_SA)  # type: ignore[no-untyped-call]
    try:
        with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
            results = list(
                pool.map(
                    lambda api: sync_certificates(
                        api,
                        namespace=NAMESPACE,
                        secret_name=SECRET,
                        webhook_config=WEBHOOK,
                        service=SERVICE,
                    ),
                    clients,
                )
            )
        assert sum(r.secret_created for r in results) == 1
        _, stored = read_bundle(core_v1)
        assert ca_bundle_of(admissionregistration_v1) == stored.ca_bundle == stored.ca.cert_pem
        stored.serving.cert.verify_directly_issued_by(stored.ca.cert)
        # and a run now has nothing to do
        quiet = sync_certificates(
            clients[0],
            namespace=NAMESPACE,
            secret_name=SECRET,
            webhook_config=WEBHOOK,
            service=SERVICE,
        )
        assert not quiet.changed
    finally:
        for c in clients:
            c.close()  # type: ignore[no-untyped-call]
        delete_quietly(admissionregistration_v1.delete_mutating_webhook_configuration, WEBHOOK)
        delete_quietly(core_v1.delete_namespaced_secret, SECRET, NAMESPACE)


@pytest.mark.usefixtures("certs_rbac", "clean_slate")
def test_reapplying_the_shipped_webhook_keeps_the_injected_ca_bundle(
    kube_assets: Path,
    kubeconfig: Path,
    api_client: k8s.ApiClient,
    as_certs_sa: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    admissionregistration_v1: Any,
) -> None:
    """`kubectl apply` (client-side) and server-side apply of gitops/90-webhook.yaml, which has no
    caBundle, leave the injected one in place. The shipped registration points at a
    Service with no pods here and fails closed, so it is removed again at once."""
    from kubernetes.dynamic import DynamicClient

    (shipped,) = docs("gitops/90-webhook.yaml")
    dyn: Any = DynamicClient(api_client)  # type: ignore[no-untyped-call]
    mwcs = dyn.resources.get(api_version=shipped["apiVersion"], kind=shipped["kind"])
    tool = kubectl(kube_assets)

    def kubectl_apply() -> None:
        assert tool is not None
        proc = subprocess.run(
            [
                tool,
                "--kubeconfig",
                str(kubeconfig),
                "apply",
                "-f",
                str(MANIFESTS / "gitops" / "90-webhook.yaml"),
            ],
            capture_output=True,
            text=True,
            env=loopback_env(),
            check=False,
        )
        assert proc.returncode == 0, proc.stderr

    try:
        if tool is not None:
            kubectl_apply()
        else:
            mwcs.server_side_apply(body=shipped, field_manager="kubectl", force_conflicts=True)
        result = sync_certificates(
            as_certs_sa,
            namespace=NAMESPACE,
            secret_name=SECRET,
            webhook_config=WEBHOOK,
            service=SERVICE,
        )
        assert result.webhooks_patched == BOTH
        _, stored = read_bundle(core_v1)
        assert ca_bundle_of(admissionregistration_v1) == stored.ca_bundle
        if tool is not None:
            kubectl_apply()
            assert ca_bundle_of(admissionregistration_v1) == stored.ca_bundle
        mwcs.server_side_apply(body=shipped, field_manager="nfsguard-e2e", force_conflicts=True)
        assert ca_bundle_of(admissionregistration_v1) == stored.ca_bundle
        live = admissionregistration_v1.read_mutating_webhook_configuration(WEBHOOK)
        assert live.webhooks[0].failure_policy == "Fail"  # the apply did take effect
    finally:
        delete_quietly(admissionregistration_v1.delete_mutating_webhook_configuration, WEBHOOK)
        delete_quietly(core_v1.delete_namespaced_secret, SECRET, NAMESPACE)
        # the next test must not meet the fail-closed registration in the apiserver's cache
        wait_until("the shipped registration to be gone", lambda: probe(core_v1) == [PROBE_ASKS])


@pytest.mark.usefixtures("certs_rbac")
def test_audit_key_secret_is_created_once_with_the_shipped_rbac(
    as_certs_sa: k8s.ApiClient, core_v1: k8s.CoreV1Api, tmp_path: Path
) -> None:
    """The install Job's init container creates the signing key Secret once, as the
    nfsguard-certs identity, immutable; a second run reports the same keyId; the stored
    key really signs checkpoints that verify with the stored public key."""
    from webhook.audit.signing import load_public_key, load_signer, verify_signature
    from webhook.cluster.audit_key import PRIVATE_KEY, PUBLIC_KEY, ensure_audit_key_secret

    name = "nfsguard-audit-key"
    delete_quietly(core_v1.delete_namespaced_secret, name, NAMESPACE)
    created, kid = ensure_audit_key_secret(as_certs_sa, NAMESPACE, name)
    again, kid_again = ensure_audit_key_secret(as_certs_sa, NAMESPACE, name)
    assert (created, again) == (True, False)
    assert kid == kid_again

    stored = core_v1.read_namespaced_secret(name, NAMESPACE)
    assert stored.immutable is True
    assert stored.metadata is not None and stored.metadata.annotations is not None
    assert stored.data is not None
    assert stored.metadata.annotations["nfsguard.io/audit-key-id"] == kid
    private = tmp_path / PRIVATE_KEY
    public = tmp_path / PUBLIC_KEY
    private.write_bytes(base64.b64decode(stored.data[PRIVATE_KEY]))
    public.write_bytes(base64.b64decode(stored.data[PUBLIC_KEY]))

    signer = load_signer(str(private))
    record = {"type": "checkpoint", "seq": 7, "head": {"seq": 6, "hash": "ab" * 32}, "keyId": kid}
    signed = {**record, "signature": signer.sign(record)}
    assert verify_signature(load_public_key(str(public)), signed)

    # The identity may read and create it, never change it (and the API refuses too).
    stored.data[PUBLIC_KEY] = stored.data[PRIVATE_KEY]
    with pytest.raises(k8s.ApiException) as refused:
        k8s.CoreV1Api(as_certs_sa).replace_namespaced_secret(name, NAMESPACE, stored)
    assert refused.value.status == 403
    with pytest.raises(k8s.ApiException) as immutable:
        core_v1.replace_namespaced_secret(name, NAMESPACE, stored)
    assert immutable.value.status == 422
