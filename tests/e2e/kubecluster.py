"""A real etcd + kube-apiserver, and the real nfsguard server, on 127.0.0.1.

(Over 400 lines: etcd, kube-apiserver, PKI and webhook servers of one harness.)

Shared by tests/e2e (through conftest.py) and bench/apiserver_latency.py. Plain library
code: no pytest in here. Everything binds to 127.0.0.1 only, and every process is started in
its own process group, is killed with its parent (PR_SET_PDEATHSIG) and is stopped again at
interpreter exit, so an aborted run leaves no orphan etcd/apiserver/gunicorn behind.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import copy
import ctypes
import datetime
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as k8s

from webhook import pki

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
KUBE_VERSION = (REPO / "hack" / "kube-version").read_text().strip()
ENABLE_HINT = (
    "run `make kube-assets` (builds kube-apiserver+etcd once into "
    "~/.cache/nfsguard/kube-assets) or set KUBEBUILDER_ASSETS=<dir with etcd, kube-apiserver>"
)

Json = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Assets


def default_assets_cache() -> Path:
    """Where hack/kube-assets.sh puts its build (keep in step with that script)."""
    override = os.environ.get("NFSGUARD_ASSETS_CACHE")
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "nfsguard" / "kube-assets" / f"v{KUBE_VERSION}"


def _has_assets(d: Path) -> bool:
    return all(os.access(d / b, os.X_OK) for b in ("etcd", "kube-apiserver"))


def find_assets() -> tuple[Path | None, str]:
    """The assets directory, or None and why not.

    KUBEBUILDER_ASSETS wins (envtest convention); without it, the cache that
    `make kube-assets` fills is used, so a contributor needs no extra export.
    """
    env = os.environ.get("KUBEBUILDER_ASSETS")
    if env:
        if _has_assets(Path(env)):
            return Path(env), ""
        return None, f"KUBEBUILDER_ASSETS={env} holds no executable etcd and kube-apiserver"
    cache = default_assets_cache()
    if _has_assets(cache):
        return cache, ""
    return None, "KUBEBUILDER_ASSETS is not set and no cached build was found"


# ---------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def loopback_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for children: no proxies, so loopback stays loopback."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


_LIVE: dict[int, ManagedProcess] = {}


class ManagedProcess:
    """A child in its own process group, output to a log file."""

    def __init__(
        self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # kill the child with us
            env=dict(env) if env is not None else loopback_env(),
            cwd=str(log_path.parent),
        )
        _LIVE[self.proc.pid] = self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the whole group, SIGKILL it after `timeout`; idempotent."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(10)
        # Children the leader left behind in its group (e.g. gunicorn workers).
        self._signal_group(signal.SIGKILL)
        _LIVE.pop(self.proc.pid, None)
        if not self._log.closed:
            self._log.close()


def stop_all() -> None:
    for p in list(_LIVE.values()):
        with contextlib.suppress(Exception):
            p.stop(timeout=5)


atexit.register(stop_all)


def _no_proxy_opener(ctx: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if ctx is not None:
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    return urllib.request.build_opener(*handlers)


def wait_http_ok(
    url: str,
    timeout: float,
    *,
    ctx: ssl.SSLContext | None = None,
    process: ManagedProcess | None = None,
    expect: Callable[[bytes], bool] | None = None,
) -> None:
    """Poll `url` until it answers 200 (and `expect(body)`), or fail with the log tail."""
    opener = _no_proxy_opener(ctx)
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise RuntimeError(
                f"{process.name} exited with {process.proc.returncode} before {url} was ready:\n"
                f"{process.tail()}"
            )
        try:
            with opener.open(url, timeout=5) as resp:
                body = resp.read()
                if resp.status == 200 and (expect is None or expect(body)):
                    return
                last = f"HTTP {resp.status}: {body[:200]!r}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}: {e.read()[:300]!r}"
        except (OSError, ssl.SSLError) as e:
            last = repr(e)
        time.sleep(0.25)
    tail = process.tail() if process is not None else ""
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s ({last})\n{tail}")


# ---------------------------------------------------------------------------------------------
# Certificates


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca_crt: Path
    ca_key: Path
    serving_crt: Path
    serving_key: Path
    admin_crt: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def client_cert(ca_pair: pki.KeyPair, cn: str, orgs: Sequence[str]) -> tuple[bytes, bytes]:
    """A client certificate (PEM cert, PEM key) for user `cn` in groups `orgs`: how the
    apiserver authenticates its admin here, and the node's kubelet and controllers."""
    ca, ca_key = ca_pair.cert, ca_pair.key
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    return _pem_cert(b.sign(ca_key, hashes.SHA256())), _pem_key(key)


def make_pki(
    d: Path, *, ip_addresses: Sequence[str] = (LOOPBACK, "10.0.0.1"), dns_names: Sequence[str] = ()
) -> Pki:
    """A CA; the apiserver's serving cert (IP SANs `ip_addresses`: 127.0.0.1 and the first
    service IP unless told); an admin client cert in group system:masters; the
    service-account signing key pair. The CA's own pair is kept as ca.key for more client
    certificates (client_cert)."""
    d.mkdir(parents=True, exist_ok=True)

    # The CA and the apiserver's serving certificate come from the product's own tooling.
    ca_pair = pki.generate_ca("nfsguard-e2e-ca", valid_days=1)
    serving_pair = pki.issue_serving_cert(
        ca_pair,
        dns_names=["localhost", "kubernetes.default.svc", *dns_names],
        ip_addresses=list(ip_addresses),
        valid_days=1,
    )

    serving = (serving_pair.cert_pem, serving_pair.key_pem)
    admin = client_cert(ca_pair, "nfsguard-e2e-admin", ["system:masters"])
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_pub = sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    files = {
        "ca.crt": ca_pair.cert_pem,
        "ca.key": ca_pair.key_pem,
        "apiserver.crt": serving[0],
        "apiserver.key": serving[1],
        "admin.crt": admin[0],
        "admin.key": admin[1],
        "sa.key": _pem_key(sa),
        "sa.pub": sa_pub,
    }
    for name, data in files.items():
        p = d / name
        p.write_bytes(data)
        if name.endswith(".key"):
            p.chmod(0o600)
    return Pki(
        dir=d,
        ca_crt=d / "ca.crt",
        ca_key=d / "ca.key",
        serving_crt=d / "apiserver.crt",
        serving_key=d / "apiserver.key",
        admin_crt=d / "admin.crt",
        admin_key=d / "admin.key",
        sa_key=d / "sa.key",
        sa_pub=d / "sa.pub",
    )


# ---------------------------------------------------------------------------------------------
# The control plane

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "resources": [
                {"group": "", "resources": ["persistentvolumes"]},
                {"group": "storage.k8s.io", "resources": ["storageclasses"]},
            ],
        },
        {"level": "None"},
    ],
}


def blackhole_service_cidr() -> str:
    """A service CIDR of this harness's own, routed to a blackhole before the apiserver
    starts: a webhook registered by ``service:`` makes kube-apiserver dial a ClusterIP,
    and with no kube-proxy here that packet would follow the default route off the
    machine (delivery.md, last section). A blackhole makes such a dial fail at once,
    locally. Each harness takes a /24 no other route uses (``ip route add`` refuses a
    taken one), so concurrent harnesses never remove each other's route."""
    for _ in range(64):
        cidr = f"10.{random.randrange(64, 250)}.{random.randrange(0, 256)}.0/24"
        proc = subprocess.run(
            ["ip", "route", "add", "blackhole", cidr], capture_output=True, text=True, check=False
        )
        if proc.returncode == 0:
            return cidr
        if "File exists" not in proc.stderr:
            raise RuntimeError(f"cannot blackhole a service CIDR: {proc.stderr.strip()}")
    raise RuntimeError("no free /24 for the service CIDR blackhole")


def remove_blackhole(cidr: str) -> None:
    subprocess.run(["ip", "route", "del", "blackhole", cidr], capture_output=True, check=False)


class ControlPlane:
    """etcd + kube-apiserver on free 127.0.0.1 ports, with an admin kubeconfig.

    No kube-controller-manager runs, so the StorageObjectInUseProtection admission plugin
    (which adds the kubernetes.io/pv-protection finalizer that only the controller would
    remove) is disabled: PVs delete at once.
    """

    def __init__(
        self,
        assets: Path,
        workdir: Path,
        *,
        extra_apiserver_args: Sequence[str] = (),
        ready_timeout: float = 120.0,
    ) -> None:
        self.assets = assets
        self.workdir = workdir
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.ready_timeout = ready_timeout
        self.etcd: ManagedProcess | None = None
        self.apiserver: ManagedProcess | None = None
        self.pki: Pki | None = None
        self.port = 0
        self.kubeconfig = workdir / "kubeconfig"
        self.audit_log = workdir / "apiserver-audit.log"
        self.service_cidr = ""

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        ctx.load_cert_chain(str(self.pki.admin_crt), str(self.pki.admin_key))
        return ctx

    def start(self) -> ControlPlane:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = make_pki(self.workdir / "pki")
        audit_policy = self.workdir / "audit-policy.yaml"
        audit_policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        try:
            self.service_cidr = blackhole_service_cidr()
            self._start_etcd()
            for attempt in range(3):  # a free port can be taken between probe and bind
                try:
                    self._start_apiserver(audit_policy)
                    break
                except RuntimeError as e:
                    if attempt == 2 or "address already in use" not in str(e):
                        raise
            self._write_kubeconfig()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_etcd(self) -> None:
        for attempt in range(3):
            client, peer = free_port(), free_port()
            data = self.workdir / f"etcd-data-{attempt}"
            argv = [
                str(self.assets / "etcd"),
                "--name=default",
                f"--data-dir={data}",
                f"--listen-client-urls=http://{LOOPBACK}:{client}",
                f"--advertise-client-urls=http://{LOOPBACK}:{client}",
                f"--listen-peer-urls=http://{LOOPBACK}:{peer}",
                f"--initial-advertise-peer-urls=http://{LOOPBACK}:{peer}",
                f"--initial-cluster=default=http://{LOOPBACK}:{peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ]
            self.etcd = ManagedProcess("etcd", argv, self.workdir / "etcd.log")
            try:
                wait_http_ok(
                    f"http://{LOOPBACK}:{client}/health",
                    60,
                    process=self.etcd,
                    expect=lambda b: b'"health":"true"' in b,
                )
                self.etcd_port = client
                return
            except RuntimeError as e:
                self.etcd.stop()
                if attempt == 2 or "address already in use" not in str(e):
                    raise

    def _start_apiserver(self, audit_policy: Path) -> None:
        assert self.pki is not None
        self.port = free_port()
        pki = self.pki
        argv = [
            str(self.assets / "kube-apiserver"),
            f"--etcd-servers=http://{LOOPBACK}:{self.etcd_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_crt}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_crt}",
            f"--secure-port={self.port}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--service-cluster-ip-range={self.service_cidr}",
            "--allow-privileged=true",
            "--authorization-mode=RBAC",
            f"--service-account-issuer=https://{LOOPBACK}:{self.port}/",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--disable-admission-plugins=StorageObjectInUseProtection",
            f"--audit-policy-file={audit_policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--profiling=false",
            "--v=1",
            *self.extra_apiserver_args,
        ]
        self.apiserver = ManagedProcess("kube-apiserver", argv, self.workdir / "apiserver.log")
        try:
            wait_http_ok(
                f"{self.url}/readyz",
                self.ready_timeout,
                ctx=self._ssl_context(),
                process=self.apiserver,
            )
        except BaseException:
            self.apiserver.stop()
            raise

    def _write_kubeconfig(self) -> None:
        assert self.pki is not None
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "e2e",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority": str(self.pki.ca_crt),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(self.pki.admin_crt),
                        "client-key": str(self.pki.admin_key),
                    },
                }
            ],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
            "current-context": "e2e",
        }
        self.kubeconfig.write_text(yaml.safe_dump(cfg))

    def api_client(self) -> k8s.ApiClient:
        """A client with the same credentials as the kubeconfig (no proxy)."""
        assert self.pki is not None
        cfg = k8s.Configuration()
        cfg.host = self.url
        cfg.ssl_ca_cert = str(self.pki.ca_crt)
        cfg.cert_file = str(self.pki.admin_crt)
        cfg.key_file = str(self.pki.admin_key)
        cfg.verify_ssl = True
        cfg.proxy = None
        return k8s.ApiClient(cfg)

    def metrics(self) -> str:
        with _no_proxy_opener(self._ssl_context()).open(f"{self.url}/metrics", timeout=30) as r:
            return str(r.read().decode())

    def stop(self) -> None:
        for p in (self.apiserver, self.etcd):
            if p is not None:
                p.stop()
        if self.service_cidr:
            remove_blackhole(self.service_cidr)
            self.service_cidr = ""


# ---------------------------------------------------------------------------------------------
# The nfsguard server as a subprocess


class WebhookServer:
    """`nfsguard serve` as the product runs it: TLS with a dev CA the server generates."""

    def __init__(
        self,
        policy: Path,
        workdir: Path,
        *,
        kubeconfig: Path | None = None,
        extra_args: Sequence[str] = (),
        ready_timeout: float = 60.0,
    ) -> None:
        self.policy = policy
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.extra_args = list(extra_args)
        self.ready_timeout = ready_timeout
        self.tls_dir = workdir / "tls"
        #: the configured log (slot 0); each worker writes a chain of its own beside it
        self.audit_log = workdir / "audit" / "audit.log"
        self.port = 0
        self.process: ManagedProcess | None = None

    @property
    def ca_crt(self) -> Path:
        return self.tls_dir / "ca.crt"

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    def start(self) -> WebhookServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self.port = free_port()
            argv = [
                str(REPO / ".venv" / "bin" / "nfsguard"),
                "serve",
                "--policy",
                str(self.policy),
                "--tls-dir",
                str(self.tls_dir),
                "--host",
                LOOPBACK,
                "--port",
                str(self.port),
                "--audit-log",
                str(self.audit_log),
            ]
            if self.kubeconfig is not None:
                argv += ["--kubeconfig", str(self.kubeconfig)]
            # "{port}" in an extra argument: the port this attempt serves on (--url).
            argv += [a.replace("{port}", str(self.port)) for a in self.extra_args]
            self.process = ManagedProcess(
                "nfsguard", argv, self.workdir / f"nfsguard-{self.port}.log"
            )
            try:
                deadline = time.monotonic() + self.ready_timeout
                while not self.ca_crt.exists():  # the server writes its dev CA first
                    if not self.process.alive() or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"nfsguard wrote no {self.ca_crt} (exit {self.process.proc.poll()}):"
                            f"\n{self.process.tail()}"
                        )
                    time.sleep(0.2)
                ctx = ssl.create_default_context(cafile=str(self.ca_crt))
                wait_http_ok(
                    f"{self.url}/readyz",
                    max(1.0, deadline - time.monotonic()),
                    ctx=ctx,
                    process=self.process,
                )
                return self
            except (RuntimeError, TimeoutError) as e:
                self.process.stop()
                if attempt == 2 or "in use" not in str(e).lower():
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


# ---------------------------------------------------------------------------------------------
# The MutatingWebhookConfiguration, from the project's manifests/


def _yaml_docs(path: Path) -> Iterator[Json]:
    try:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                if doc.get("kind") == "List":
                    yield from (i for i in doc.get("items") or [] if isinstance(i, dict))
                else:
                    yield doc
    except yaml.YAMLError:
        return


FALLBACK_NAME = "nfsguard"


def fallback_webhook_configuration() -> Json:
    """What the deploy manifests register, for a tree that has no manifests/ file yet.

    Mirrors the conventions in the admission contract: v1 reviews, no side effects,
    CREATE/UPDATE on persistentvolumes and storageclasses only, an opt-out label,
    reinvocation IfNeeded, a short timeout, and failurePolicy Fail.
    """
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": FALLBACK_NAME},
        "webhooks": [
            {
                "name": "nfs-mounts.nfsguard.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "reinvocationPolicy": "IfNeeded",
                "timeoutSeconds": 5,
                "matchPolicy": "Equivalent",
                "objectSelector": {
                    "matchExpressions": [{"key": "nfsguard.io/ignore", "operator": "DoesNotExist"}]
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["persistentvolumes"],
                        "scope": "Cluster",
                    },
                    {
                        "apiGroups": ["storage.k8s.io"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["storageclasses"],
                        "scope": "Cluster",
                    },
                ],
                "clientConfig": {
                    "service": {"namespace": "nfsguard", "name": "nfsguard", "path": "/mutate"}
                },
            }
        ],
    }


def manifest_webhook_configuration(manifests: Path = REPO / "manifests") -> tuple[Json, str]:
    """The MutatingWebhookConfiguration the project ships, and where it came from.

    Read from the single file under manifests/ that holds one; the built-in fallback only
    while the tree has none.
    """
    found: list[tuple[Json, Path]] = []
    if manifests.is_dir():
        for path in sorted(manifests.rglob("*")):
            if path.suffix in (".yaml", ".yml") and path.is_file():
                found += [
                    (d, path)
                    for d in _yaml_docs(path)
                    if d.get("kind") == "MutatingWebhookConfiguration"
                ]
    if not found:
        return fallback_webhook_configuration(), "built-in fallback (no manifests yet)"
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(REPO)) for _, p in found)
        raise ValueError(f"several MutatingWebhookConfigurations in manifests: {names}")
    doc, path = found[0]
    return doc, str(path.relative_to(REPO))


def webhook_configuration_for(
    webhook_url_base: str,
    ca_pem: bytes,
    *,
    name: str | None = None,
    failure_policy: str | None = None,
    manifests: Path = REPO / "manifests",
) -> Json:
    """The shipped configuration, pointed at a webhook on 127.0.0.1.

    Only the client config changes (service -> url with the service's path, caBundle -> our
    CA), plus, when asked, the object name and failurePolicy (for the outage tests).
    """
    shipped, _ = manifest_webhook_configuration(manifests)
    cfg = copy.deepcopy(shipped)
    cfg.pop("status", None)
    meta = cfg.setdefault("metadata", {})
    for k in ("namespace", "resourceVersion", "uid", "creationTimestamp", "generation"):
        meta.pop(k, None)
    # cert-manager does not run here: the CA goes into caBundle directly.
    (meta.get("annotations") or {}).pop("cert-manager.io/inject-ca-from", None)
    if name is not None:
        meta["name"] = name
    bundle = base64.b64encode(ca_pem).decode()
    for wh in cfg.get("webhooks") or []:
        cc = wh.setdefault("clientConfig", {})
        service = cc.pop("service", None) or {}
        cc.pop("url", None)
        cc["url"] = f"{webhook_url_base}{service.get('path') or '/mutate'}"
        cc["caBundle"] = bundle
        if failure_policy is not None:
            wh["failurePolicy"] = failure_policy
    return cfg


# ---------------------------------------------------------------------------------------------
# Objects and registration

# Every e2e policy pins this export unconditionally: a dry-run create of a PV on it shows
# whether a registration is live (informer lag) without storing anything.
PROBE_SERVER = "192.0.2.254"
PROBE_SHARE = "/probe"
PROBE_ASKS = "nfsvers=4.1"
PIN = "nfsvers=4.0"

_VERSION_OPT = re.compile(r"^(?:nfsvers|vers|minorversion)=.*$|^v[234](?:\.[0-2])?$")


def pv_model(d: Json) -> k8s.V1PersistentVolume:
    m = k8s.V1PersistentVolume.from_dict(d)
    assert m is not None
    return m


def sc_model(d: Json) -> k8s.V1StorageClass:
    m = k8s.V1StorageClass.from_dict(d)
    assert m is not None
    return m


def mwc_model(d: Json) -> k8s.V1MutatingWebhookConfiguration:
    m = k8s.V1MutatingWebhookConfiguration.from_dict(d)
    assert m is not None
    return m


def split_options(entries: Sequence[str] | None) -> list[str]:
    """mountOptions entries (or one annotation string as a 1-list) as single options."""
    out: list[str] = []
    for e in entries or []:
        out += [o.strip() for o in e.split(",") if o.strip()]
    return out


def version_options(entries: Sequence[str] | None) -> list[str]:
    return [o for o in split_options(entries) if _VERSION_OPT.match(o)]


def nfs_pv(
    name: str,
    server: str,
    path: str,
    mount_options: Sequence[str] | None = None,
    *,
    csi: bool = False,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    storage_class: str = "",
) -> Json:
    """A PersistentVolume on an NFS export: in-tree `spec.nfs`, or csi-driver-nfs."""
    spec: Json = {
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteMany"],
        "persistentVolumeReclaimPolicy": "Retain",
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    if mount_options is not None:
        spec["mountOptions"] = list(mount_options)
    if csi:
        spec["csi"] = {
            "driver": "nfs.csi.k8s.io",
            "volumeHandle": f"{server}#{path.strip('/')}##{name}",
            "volumeAttributes": {"server": server, "share": path},
        }
    else:
        spec["nfs"] = {"server": server, "path": path}
    meta: Json = {"name": name}
    if annotations:
        meta["annotations"] = dict(annotations)
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta, "spec": spec}


def nfs_storage_class(
    name: str, server: str, share: str, mount_options: Sequence[str] | None = None
) -> Json:
    sc: Json = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "nfs.csi.k8s.io",
        "parameters": {"server": server, "share": share},
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }
    if mount_options is not None:
        sc["mountOptions"] = list(mount_options)
    return sc


def probe_pv() -> Json:
    return nfs_pv("nfsguard-e2e-probe", PROBE_SERVER, PROBE_SHARE, [PROBE_ASKS])


def probe(core: k8s.CoreV1Api) -> list[str] | None:
    """Dry-run create the probe PV: its mountOptions as admitted, or None if refused."""
    try:
        pv = core.create_persistent_volume(pv_model(probe_pv()), dry_run="All")
    except k8s.ApiException:
        return None
    assert pv.spec is not None
    return list(pv.spec.mount_options or [])


def wait_until(
    what: str, cond: Callable[[], bool], timeout: float = 60.0, interval: float = 0.2
) -> float:
    """Poll `cond` until true; return the seconds it took."""
    t0 = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Registration:
    """A MutatingWebhookConfiguration registered and proven live (or proven gone)."""

    def __init__(self, api: k8s.ApiClient, config: Json) -> None:
        self.core = k8s.CoreV1Api(api)
        self.admission = k8s.AdmissionregistrationV1Api(api)
        self.config = config
        self.name = str(config["metadata"]["name"])
        self.registered = False

    def register(self, timeout: float = 60.0) -> float:
        self.admission.create_mutating_webhook_configuration(mwc_model(self.config))
        self.registered = True
        return wait_until(
            f"webhook {self.name} to pin the probe PV",
            lambda: probe(self.core) == [PIN],
            timeout,
        )

    def set_failure_policy(self, policy: str) -> None:
        current = self.admission.read_mutating_webhook_configuration(self.name)
        for wh in current.webhooks or []:
            wh.failure_policy = policy
        self.admission.replace_mutating_webhook_configuration(self.name, current)

    def unregister(self, timeout: float = 60.0) -> None:
        """Delete it and wait until the apiserver stops calling it: the probe is admitted
        unmutated (while the webhook runs it pins; when it is down, Fail refuses)."""
        if not self.registered:
            return
        with contextlib.suppress(k8s.ApiException):
            self.admission.delete_mutating_webhook_configuration(self.name)
        self.registered = False
        wait_until(
            f"webhook {self.name} to be gone", lambda: probe(self.core) == [PROBE_ASKS], timeout
        )


class Cleanup:
    """Deletes the PVs and StorageClasses a test created, whatever happens."""

    def __init__(self, core: k8s.CoreV1Api, storage: k8s.StorageV1Api) -> None:
        self.core, self.storage = core, storage
        self.pvs: list[str] = []
        self.scs: list[str] = []

    def pv(self, name: str) -> str:
        self.pvs.append(name)
        return name

    def sc(self, name: str) -> str:
        self.scs.append(name)
        return name

    def run(self) -> None:
        for n in self.pvs:
            try:
                self.core.delete_persistent_volume(n)
            except k8s.ApiException as e:
                if e.status != 404:
                    raise
        for n in self.scs:
            try:
                self.storage.delete_storage_class(n)
            except k8s.ApiException as e:
                if e.status != 404:
                    raise


# ---------------------------------------------------------------------------------------------
# What reaches the client, and what the apiserver recorded

_WARNING = re.compile(r'\d{3} \S+ "((?:[^"\\]|\\.)*)"')


def warnings_of(headers: Mapping[str, str] | None) -> list[str]:
    """The texts of the `Warning: 299 - "..."` response headers (joined ones too)."""
    raw = ", ".join(v for k, v in (headers or {}).items() if k.lower() == "warning")
    return [re.sub(r"\\(.)", r"\1", m.group(1)) for m in _WARNING.finditer(raw)]


def audit_events(log: Path, resource: str, name: str, verb: str | None = None) -> list[Json]:
    """The apiserver's own audit events (ResponseComplete) for one object."""
    events: list[Json] = []
    if not log.exists():
        return events
    for line in log.read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        ref = ev.get("objectRef") or {}
        if (
            ref.get("resource") == resource
            and ref.get("name") == name
            and ev.get("stage") == "ResponseComplete"
            and (verb is None or ev.get("verb") == verb)
        ):
            events.append(ev)
    return events
