"""A real single-node Kubernetes cluster on this machine, and everything it changes undone.

(Over 400 lines: the node's processes, network, PKI and teardown belong together.)

etcd + kube-apiserver + kube-controller-manager + kube-scheduler + containerd + kubelet +
kube-proxy, all of hack/kube-version, with containerd/runc/CNI plugins from Debian and a
pause image built here (hack/node-deps.sh). Pods run images imported into containerd
(`imagePullPolicy: Never`): no registry is reachable here.

The network never leaves the machine: the pod bridge carries the node IP (the apiserver
and kubelet bind to it, nothing binds 0.0.0.0), pods get no default route (only the pod
subnet and the service CIDR), IP forwarding is not turned on, and the service CIDR is
routed to the bridge before the apiserver starts, so a ClusterIP that kube-proxy does not
rewrite dies on the local bridge (docs/e2e.md, "The real node"; delivery.md).

Everything the cluster creates is recorded and removed by stop(): processes (by PID, also
the containerd shims, found by the socket address only this cluster uses), the bridge and
its routes, iptables chains that were not there before, the kernel settings kubelet sets,
mounts under the work directory, the kubepods cgroups and the work directory itself. Only
one such node runs on a machine at a time (a lock file): ports 10250-like defaults are not
used, but the bridge name and cgroup names are fixed.

Plain library code: no pytest in here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from tests.e2e.kubecluster import (
    KUBE_VERSION,
    LOOPBACK,
    ManagedProcess,
    Pki,
    client_cert,
    loopback_env,
    make_pki,
    wait_http_ok,
)
from webhook import pki as product_pki

REPO = Path(__file__).resolve().parents[2]
NODE_DEPS = REPO / "hack" / "node-deps.sh"
NODE_NAME = "nfsguard-node"
BRIDGE = "nfsgnode0"
LOCK_FILE = Path("/run/lock/nfsguard-node.lock")
ENABLE_HINT = (
    "run `make node-deps` as root (hack/node-deps.sh: containerd, runc and CNI plugins from "
    "Debian, kubelet/kube-proxy/controllers built once into ~/.cache/nfsguard/kube-assets, "
    "a pause image) and `make image`"
)
NODE_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kubectl",
    "kubelet",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
)
#: Kernel settings the kubelet (protectKernelDefaults: false), the CNI bridge plugin and
#: kube-proxy may change; stop() puts back any that changed.
SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTAINER_LOGS = Path("/var/log/containers")  # kubelet's symlinks; not configurable
#: Host paths the kubelet and containerd use whatever they are told (the device plugin
#: socket is a constant under /var/lib/kubelet): removed by stop() when they appeared.
FIXED_PATHS = (
    Path("/var/lib/kubelet"),
    Path("/var/log/pods"),
    Path("/run/containerd"),
    Path("/var/run/netns"),
    Path("/etc/kubernetes"),
    Path("/opt/containerd"),
)
Json = dict[str, Any]


def _run(argv: Sequence[str], *, timeout: float = 60, check: bool = True) -> str:
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, env=node_env()
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def node_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """loopback_env, with the node's own addresses kept off any proxy too."""
    env = loopback_env(extra)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,10.0.0.0/8,.svc,.cluster.local"
    return env


# ---------------------------------------------------------------------------------------------
# What the node needs


@dataclass(frozen=True)
class NodeAssets:
    """What hack/node-deps.sh printed."""

    assets: Path
    cni_bin: Path
    pause: Path
    pause_ref: str


def prerequisites() -> str:
    """Why the node cannot run here without building anything, or '' when it can."""
    if os.geteuid() != 0:
        return "not root (containerd, kubelet, a bridge and iptables need root)"
    missing = [
        t for t in ("containerd", "ctr", "runc", "ip", "iptables", "go") if not shutil.which(t)
    ]
    if not (Path("/usr/lib/cni") / "bridge").exists():
        missing.append("containernetworking-plugins")
    if missing:
        return f"missing {', '.join(missing)}"
    from tests.e2e.kubecluster import default_assets_cache

    d = Path(os.environ.get("KUBEBUILDER_ASSETS") or default_assets_cache())
    absent = [b for b in NODE_BINARIES if not os.access(d / b, os.X_OK)]
    if absent:
        return f"no {', '.join(absent)} in {d}"
    return ""


def node_deps(timeout: float = 3600) -> NodeAssets:
    """Run hack/node-deps.sh (seconds when everything is cached)."""
    done = subprocess.run(
        [str(NODE_DEPS)], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"hack/node-deps.sh failed ({done.returncode}):\n{done.stderr[-3000:]}")
    out = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return NodeAssets(
        Path(out["assets"]), Path(out["cni_bin"]), Path(out["pause"]), out["pause_ref"]
    )


# ---------------------------------------------------------------------------------------------
# Small host helpers


def free_port_on(addr: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((addr, 0))
        return int(s.getsockname()[1])


def read_sysctl(name: str) -> str | None:
    try:
        return (Path("/proc/sys") / name).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        (Path("/proc/sys") / name).write_text(value + "\n")


def iptables_tools() -> list[str]:
    return [t for t in ("iptables", "ip6tables") if shutil.which(t)]


def iptables_chains(tool: str) -> dict[str, set[str]]:
    """Every chain of every table, as `<tool>-save` lists them."""
    out = _run([f"{tool}-save"], check=False)
    tables: dict[str, set[str]] = {}
    table = ""
    for line in out.splitlines():
        if line.startswith("*"):
            table = line[1:]
            tables[table] = set()
        elif line.startswith(":") and table:
            tables[table].add(line[1:].split()[0])
    return tables


def remove_new_chains(tool: str, before: Mapping[str, set[str]]) -> list[str]:
    """Delete the chains that were not there before (and every rule jumping to them)."""
    removed: list[str] = []
    for table, chains in iptables_chains(tool).items():
        new = chains - before.get(table, set())
        if not new:
            continue
        rules = _run([tool, "-w", "-t", table, "-S"], check=False).splitlines()
        for rule in rules:
            parts = rule.split()
            jumps = len(parts) > 2 and any(p in new for p in parts[2:])
            if jumps and parts[0] == "-A" and parts[1] not in new:
                _run([tool, "-w", "-t", table, "-D", *parts[1:]], check=False)
        for c in new:
            _run([tool, "-w", "-t", table, "-F", c], check=False)
        for c in new:
            _run([tool, "-w", "-t", table, "-X", c], check=False)
            removed.append(f"{tool}/{table}/{c}")
        # A table that did not exist before (iptables-nft creates it on first use) goes
        # too, if nothing but its empty built-in chains is left in it.
        rules = _run([tool, "-w", "-t", table, "-S"], check=False).splitlines()
        if table not in before and all(r.startswith("-P ") for r in rules) and shutil.which("nft"):
            family = "ip6" if tool == "ip6tables" else "ip"
            if _run(["nft", "delete", "table", family, table], check=False) is not None:
                removed.append(f"{tool}/{table}")
    return removed


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest last in mount order."""
    found: list[str] = []
    prefix = str(root).rstrip("/") + "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(root) or point.startswith(prefix):
            found.append(point)
    return found


def unmount_all(root: Path) -> None:
    for _ in range(5):
        points = mounts_under(root)
        if not points:
            return
        for p in reversed(points):
            if subprocess.run(["umount", p], capture_output=True, check=False).returncode:
                subprocess.run(["umount", "-l", p], capture_output=True, check=False)


def cgroup_hierarchies() -> list[Path]:
    if not CGROUP_ROOT.is_dir():
        return []
    return [d for d in CGROUP_ROOT.iterdir() if d.is_dir() and not d.is_symlink()]


def remove_cgroup_tree(top: Path) -> None:
    """Kill what still runs in a cgroup tree of ours (a container whose shim died), then
    rmdir it bottom-up (cgroupfs removes only empty directories)."""
    if not top.is_dir():
        return
    walk = sorted(os.walk(top), key=lambda w: -len(w[0]))
    for dirpath, _dirs, _files in walk:
        with contextlib.suppress(OSError, ValueError):
            for pid in (Path(dirpath) / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 9)
    deadline = time.monotonic() + 10
    for dirpath, _dirs, _files in walk:
        while True:
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:  # EBUSY while killed processes are still exiting
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)


def pids_with_arg(arg: str) -> list[int]:
    """Processes whose command line holds `arg` (the containerd socket only we use)."""
    found: list[int] = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arg.encode() in argv:
            found.append(int(d.name))
    return found


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path) -> Path:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "node", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": "u", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "node", "context": {"cluster": "node", "user": "u"}}],
        "current-context": "node",
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


# ---------------------------------------------------------------------------------------------
# The node


class NodeCluster:
    """One real node. start() brings it to Ready; stop() undoes everything, always."""

    def __init__(
        self,
        deps: NodeAssets,
        logdir: Path,
        *,
        images: Sequence[Path] = (),
        pod_cidr: str = "10.244.77.0/24",
        service_cidr: str = "10.96.77.0/24",
        ready_timeout: float = 180.0,
    ) -> None:
        self.deps = deps
        self.bin = deps.assets
        self.logdir = logdir
        self.images = list(images)
        self.pod_cidr = pod_cidr
        self.service_cidr = service_cidr
        self.ready_timeout = ready_timeout
        # Heavy state (image layers, rootfs, etcd) lives outside pytest's kept tmp dirs and
        # is removed by stop(); logs stay in `logdir` for a failing run.
        self.work = Path(tempfile.mkdtemp(prefix="nfsguard-node-", dir="/var/tmp"))
        self.procs: dict[str, ManagedProcess] = {}
        self.created: list[str] = []  # what stop() must undo, for the report
        self._lock: Any = None
        self._sysctls: dict[str, str | None] = {}
        self._chains: dict[str, dict[str, set[str]]] = {}
        self._cgroups_before: set[Path] = set()
        self._logs_dir_existed = CONTAINER_LOGS.exists()
        self._fixed_existed = {p for p in FIXED_PATHS if p.exists()}
        self.pki: Pki | None = None
        self.port = 0
        self.kubeconfig = self.work / "admin.kubeconfig"
        self.ctr_sock = self.work / "containerd" / "containerd.sock"
        self.timings: dict[str, float] = {}

    # -- addresses ------------------------------------------------------------------------

    @property
    def node_ip(self) -> str:
        return self.pod_cidr.rsplit(".", 1)[0] + ".1"

    @property
    def kubernetes_ip(self) -> str:
        return self.service_cidr.rsplit(".", 1)[0] + ".1"

    @property
    def url(self) -> str:
        return f"https://{self.node_ip}:{self.port}"

    # -- start ------------------------------------------------------------------------------

    def start(self) -> NodeCluster:
        t0 = time.monotonic()
        try:
            self._take_lock()
            self._record_host()
            self._network()
            self._control_plane()
            self._containerd()
            self._kubelet()
            self._kube_proxy()
            self._wait_usable()
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - t0
        return self

    def _step(self, name: str, t0: float) -> None:
        self.timings[name] = time.monotonic() - t0

    def _take_lock(self, timeout: float = 900) -> None:
        LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        self._lock = LOCK_FILE.open("w")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"another node cluster holds {LOCK_FILE}") from None
                time.sleep(1)
        # We hold the lock: a bridge of this name is an aborted run's; its routes go with it.
        if _run(["ip", "-o", "link", "show", BRIDGE], check=False).strip():
            _run(["ip", "link", "del", BRIDGE], check=False)

    def _record_host(self) -> None:
        self._sysctls = {n: read_sysctl(n) for n in SYSCTLS}
        self._chains = {t: iptables_chains(t) for t in iptables_tools()}
        self._cgroups_before = {
            h / "kubepods" for h in cgroup_hierarchies() if (h / "kubepods").exists()
        }

    def _network(self) -> None:
        prefix = self.pod_cidr.split("/")[1]
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        self.created.append(f"bridge {BRIDGE}")
        _run(["ip", "addr", "add", f"{self.node_ip}/{prefix}", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])
        # The service CIDR to the bridge, before the apiserver can dial a ClusterIP. A /24
        # another route holds (the apiserver-only harness picks random ones) is skipped.
        for _ in range(32):
            done = subprocess.run(
                ["ip", "route", "add", self.service_cidr, "dev", BRIDGE],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode == 0:
                self.created.append(f"route {self.service_cidr} dev {BRIDGE}")
                return
            if "File exists" not in done.stderr:
                raise RuntimeError(f"ip route add {self.service_cidr}: {done.stderr.strip()}")
            self.service_cidr = f"10.96.{random.randrange(78, 250)}.0/24"
        raise RuntimeError("no free /24 for the service CIDR")

    # -- control plane ------------------------------------------------------------------------

    def _client(self, name: str, cn: str, orgs: Sequence[str]) -> tuple[Path, Path]:
        assert self.pki is not None
        ca = product_pki.KeyPair(self.pki.ca_crt.read_bytes(), self.pki.ca_key.read_bytes())
        crt, key = client_cert(ca, cn, orgs)
        (self.pki.dir / f"{name}.crt").write_bytes(crt)
        (self.pki.dir / f"{name}.key").write_bytes(key)
        (self.pki.dir / f"{name}.key").chmod(0o600)
        return self.pki.dir / f"{name}.crt", self.pki.dir / f"{name}.key"

    def _kubeconfig_for(self, name: str, cn: str, orgs: Sequence[str] = ()) -> Path:
        assert self.pki is not None
        crt, key = self._client(name, cn, orgs)
        return write_kubeconfig(
            self.work / f"{name}.kubeconfig", self.url, self.pki.ca_crt, crt, key
        )

    def _proc(self, name: str, argv: Sequence[str]) -> ManagedProcess:
        p = ManagedProcess(name, argv, self.logdir / f"{name}.log", env=node_env())
        self.procs[name] = p
        return p

    def _control_plane(self) -> None:
        t0 = time.monotonic()
        self.pki = make_pki(
            self.work / "pki",
            ip_addresses=[self.node_ip, self.kubernetes_ip, LOOPBACK],
            dns_names=["kubernetes", "kubernetes.default", "kubernetes.default.svc.cluster.local"],
        )
        pki = self.pki
        client, peer = free_port_on(LOOPBACK), free_port_on(LOOPBACK)
        etcd = self._proc(
            "etcd",
            [
                str(self.bin / "etcd"),
                "--name=default",
                f"--data-dir={self.work / 'etcd'}",
                f"--listen-client-urls=http://{LOOPBACK}:{client}",
                f"--advertise-client-urls=http://{LOOPBACK}:{client}",
                f"--listen-peer-urls=http://{LOOPBACK}:{peer}",
                f"--initial-advertise-peer-urls=http://{LOOPBACK}:{peer}",
                f"--initial-cluster=default=http://{LOOPBACK}:{peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        wait_http_ok(
            f"http://{LOOPBACK}:{client}/health",
            60,
            process=etcd,
            expect=lambda b: b'"health":"true"' in b,
        )
        kubelet_client = self._client(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"]
        )
        self.port = free_port_on(self.node_ip)
        api = self._proc(
            "kube-apiserver",
            [
                str(self.bin / "kube-apiserver"),
                f"--etcd-servers=http://{LOOPBACK}:{client}",
                f"--cert-dir={self.work / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_crt}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_crt}",
                f"--secure-port={self.port}",
                # The node IP only: pods reach it through the kubernetes ClusterIP (kube-proxy
                # DNAT), the host through the bridge address; nothing listens on eth0.
                f"--bind-address={self.node_ip}",
                f"--advertise-address={self.node_ip}",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--allow-privileged=true",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                # The kubelet by its node IP: the default tries the Hostname first, a DNS
                # query to the host's resolver that would leave the machine.
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={kubelet_client[0]}",
                f"--kubelet-client-key={kubelet_client[1]}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--profiling=false",
                "--v=1",
            ],
        )
        wait_http_ok(f"{self.url}/readyz", 120, ctx=self.ssl_context(), process=api)
        write_kubeconfig(self.kubeconfig, self.url, pki.ca_crt, pki.admin_crt, pki.admin_key)
        self._step("apiserver", t0)

        cm_cfg = self._kubeconfig_for("controller-manager", "system:kube-controller-manager")
        cm_port = free_port_on(LOOPBACK)
        cm = self._proc(
            "kube-controller-manager",
            [
                str(self.bin / "kube-controller-manager"),
                f"--kubeconfig={cm_cfg}",
                f"--authentication-kubeconfig={cm_cfg}",
                f"--authorization-kubeconfig={cm_cfg}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={cm_port}",
                "--leader-elect=false",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_crt}",
                f"--cluster-signing-cert-file={pki.ca_crt}",
                f"--cluster-signing-key-file={pki.ca_key}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--profiling=false",
                "--v=1",
            ],
        )
        sched_cfg = self._kubeconfig_for("scheduler", "system:kube-scheduler")
        sched_port = free_port_on(LOOPBACK)
        sched = self._proc(
            "kube-scheduler",
            [
                str(self.bin / "kube-scheduler"),
                f"--kubeconfig={sched_cfg}",
                f"--authentication-kubeconfig={sched_cfg}",
                f"--authorization-kubeconfig={sched_cfg}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={sched_port}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # their self-signed serving certs; /healthz only
        wait_http_ok(f"https://{LOOPBACK}:{cm_port}/healthz", 120, ctx=insecure, process=cm)
        wait_http_ok(f"https://{LOOPBACK}:{sched_port}/healthz", 120, ctx=insecure, process=sched)
        self._step("controllers", t0)

    # -- containerd ---------------------------------------------------------------------------

    def _containerd(self) -> None:
        t0 = time.monotonic()
        d = self.work / "containerd"
        cni_conf = self.work / "cni-conf"
        for sub in (d, cni_conf):
            sub.mkdir(parents=True, exist_ok=True)
        # The bridge plugin without isGateway/ipMasq: it neither turns on IP forwarding nor
        # gives pods a default route; host-local hands out the pod subnet with one route,
        # to the service CIDR via the node IP (where kube-proxy's DNAT applies).
        conflist = {
            "cniVersion": "0.4.0",
            "name": "nfsguard-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": False,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.pod_cidr, "gateway": self.node_ip}]],
                        "routes": [{"dst": self.service_cidr, "gw": self.node_ip}],
                        "dataDir": str(self.work / "cni-ipam"),
                    },
                }
            ],
        }
        (cni_conf / "10-nfsguard-node.conflist").write_text(json.dumps(conflist, indent=2))
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""\
version = 2
root = "{d / "root"}"
state = "{d / "state"}"
[grpc]
  address = "{self.ctr_sock}"
[ttrpc]
  address = "{d / "containerd.sock.ttrpc"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"
[{cri}]
  sandbox_image = "{self.deps.pause_ref}"
  # runc cannot set oom_score_adj -998 without CAP_SYS_RESOURCE (root lacks it here)
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.cni]
    bin_dir = "{self.deps.cni_bin}"
    conf_dir = "{cni_conf}"
  [{cri}.containerd]
    default_runtime_name = "runc"
  [{cri}.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [{cri}.containerd.runtimes.runc.options]
      SystemdCgroup = false
      BinaryName = "{shutil.which("runc")}"
      Root = "{d / "runc"}"
"""
        (d / "config.toml").write_text(config)
        p = self._proc("containerd", ["containerd", "--config", str(d / "config.toml")])
        deadline = time.monotonic() + 60
        while not self.ctr("version", check=False):
            if not p.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not come up:\n{p.tail()}")
            time.sleep(0.2)
        for image in [self.deps.pause, *self.images]:
            self.ctr("images", "import", str(image), timeout=600)
        self._step("containerd", t0)

    def ctr(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        argv = ["ctr", "--address", str(self.ctr_sock), "--namespace", "k8s.io", *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout if done.returncode == 0 else ""

    # -- kubelet and kube-proxy ---------------------------------------------------------------

    def _kubelet(self) -> None:
        t0 = time.monotonic()
        assert self.pki is not None
        cfg = self._kubeconfig_for("kubelet", f"system:node:{NODE_NAME}", ["system:nodes"])
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.node_ip,
            "port": free_port_on(self.node_ip),
            "readOnlyPort": 0,
            "healthzBindAddress": LOOPBACK,
            "healthzPort": free_port_on(LOOPBACK),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.pki.ca_crt)},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.ctr_sock}",
            # This machine: cgroups v1 (hybrid), no systemd as PID 1, no swap accounting.
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "podLogsDir": str(self.work / "pod-logs"),
            # A shared disk: no eviction or image GC because other jobs fill it (the
            # images are imported, never pulled, so GC would lose them for good).
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            # ConfigMap/Secret volume refresh: at most ~10 s instead of ~1 min, for the hot
            # policy reload test (the kubelet's own mechanism, only sooner).
            "syncFrequency": "10s",
            "serializeImagePulls": False,
            "resolvConf": str(self._resolv_conf()),
        }
        (self.work / "kubelet.yaml").write_text(yaml.safe_dump(config))
        kubelet = self._proc(
            "kubelet",
            [
                str(self.bin / "kubelet"),
                f"--config={self.work / 'kubelet.yaml'}",
                f"--kubeconfig={cfg}",
                f"--root-dir={self.work / 'kubelet'}",
                f"--cert-dir={self.work / 'kubelet-pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={self.node_ip}",
                "--v=1",
            ],
        )
        core = k8s.CoreV1Api(self.api)

        def ready() -> bool:
            if not kubelet.alive():
                raise RuntimeError(f"kubelet exited:\n{kubelet.tail()}")
            try:
                node = core.read_node(NODE_NAME)
            except k8s.ApiException:
                return False
            conds = (node.status.conditions if node.status else None) or []
            return any(c.type == "Ready" and c.status == "True" for c in conds)

        self.wait("node Ready", ready, self.ready_timeout, proc=kubelet)
        self._step("node-ready", t0)

    def _resolv_conf(self) -> Path:
        """Pods resolve nothing (no CoreDNS, no route out): an empty resolv.conf of our own
        keeps the host's name servers out of them."""
        p = self.work / "resolv.conf"
        p.write_text("options ndots:1\n")
        return p

    def _kube_proxy(self) -> None:
        t0 = time.monotonic()
        cfg = self._kubeconfig_for("kube-proxy", "system:kube-proxy")
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(cfg)},
            "hostnameOverride": NODE_NAME,
            "bindAddress": self.node_ip,
            "healthzBindAddress": f"{LOOPBACK}:{free_port_on(LOOPBACK)}",
            "metricsBindAddress": f"{LOOPBACK}:{free_port_on(LOOPBACK)}",
            "nodePortAddresses": [f"{self.node_ip}/32"],
            "clusterCIDR": self.pod_cidr,
            "detectLocalMode": "ClusterCIDR",
            # Leave the host's conntrack sysctls alone.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
        }
        (self.work / "kube-proxy.yaml").write_text(yaml.safe_dump(config))
        proxy = self._proc(
            "kube-proxy",
            [str(self.bin / "kube-proxy"), f"--config={self.work / 'kube-proxy.yaml'}", "--v=1"],
        )

        def synced() -> bool:
            if not proxy.alive():
                raise RuntimeError(f"kube-proxy exited:\n{proxy.tail()}")
            try:
                with socket.create_connection((self.kubernetes_ip, 443), timeout=1):
                    return True
            except OSError:
                return False

        # The kubernetes Service answers on its ClusterIP: kube-proxy has written its rules.
        self.wait("the kubernetes ClusterIP via kube-proxy", synced, 60, proc=proxy)
        self._step("kube-proxy", t0)

    def _wait_usable(self) -> None:
        core = k8s.CoreV1Api(self.api)

        def usable() -> bool:
            try:
                core.read_namespaced_service_account("default", "default")
                core.read_namespaced_config_map("kube-root-ca.crt", "default")
                return True
            except k8s.ApiException:
                return False

        self.wait("default ServiceAccount and kube-root-ca.crt", usable, 60)

    # -- clients --------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        ctx.load_cert_chain(str(self.pki.admin_crt), str(self.pki.admin_key))
        return ctx

    _api: k8s.ApiClient | None = None

    def new_api_client(self) -> k8s.ApiClient:
        """A client with the admin's credentials (no proxy); one per thread."""
        assert self.pki is not None
        cfg = k8s.Configuration()
        cfg.host = self.url
        cfg.ssl_ca_cert = str(self.pki.ca_crt)
        cfg.cert_file = str(self.pki.admin_crt)
        cfg.key_file = str(self.pki.admin_key)
        cfg.verify_ssl = True
        cfg.proxy = None
        return k8s.ApiClient(cfg)

    @property
    def api(self) -> k8s.ApiClient:
        if self._api is None:
            self._api = self.new_api_client()
        return self._api

    def kubectl(
        self, *args: str, timeout: float = 120, check: bool = True, stdin: str | None = None
    ) -> str:
        argv = [str(self.bin / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=node_env(),
            input=stdin,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"kubectl {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}"
            )
        return done.stdout

    def wait(
        self,
        what: str,
        cond: Callable[[], bool],
        timeout: float,
        *,
        proc: ManagedProcess | None = None,
    ) -> float:
        t0 = time.monotonic()
        while True:
            if cond():
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                tail = f"\n{proc.tail()}" if proc is not None else ""
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")
            time.sleep(0.25)

    def pod_dir(self, uid: str) -> Path:
        """The kubelet's directory of one pod (volumes live under it)."""
        return self.work / "kubelet" / "pods" / uid

    # -- stop -----------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Undo everything; returns what was left behind and had to be forced (for a report)."""
        problems: list[str] = []

        def attempt(what: str, fn: Callable[[], object]) -> None:
            try:
                fn()
            except Exception as e:  # teardown goes on whatever one step does
                problems.append(f"{what}: {e}")

        # No new pods: controllers first, then every pod deleted while the kubelet still
        # runs, so that it tears down sandboxes (CNI DEL, netns, cgroups) the normal way.
        for name in ("kube-controller-manager", "kube-scheduler"):
            if name in self.procs:
                attempt(name, self.procs[name].stop)
        if "kubelet" in self.procs and self.procs["kubelet"].alive():
            attempt("delete pods", self._delete_all_pods)
        if "kubelet" in self.procs:
            attempt("kubelet", self.procs["kubelet"].stop)
        if "kube-proxy" in self.procs:
            attempt("kube-proxy", self.procs["kube-proxy"].stop)
            attempt(
                "kube-proxy --cleanup",
                lambda: _run(
                    [
                        str(self.bin / "kube-proxy"),
                        "--cleanup",
                        f"--config={self.work / 'kube-proxy.yaml'}",
                    ],
                    check=False,
                    timeout=60,
                ),
            )
        if "containerd" in self.procs:
            attempt("containers", self._remove_containers)
            attempt("containerd", self.procs["containerd"].stop)
        attempt("shims", self._kill_shims)
        for name in ("kube-apiserver", "etcd"):  # the apiserver first: it hangs without etcd
            if name in self.procs:
                attempt(name, self.procs[name].stop)
        if self._api is not None:
            self._api.close()  # type: ignore[no-untyped-call]
            self._api = None
        attempt("mounts", lambda: unmount_all(self.work))
        attempt("cgroups", self._remove_cgroups)
        for tool, before in self._chains.items():
            attempt(f"{tool} chains", lambda t=tool, b=before: remove_new_chains(t, b))  # type: ignore[misc]
        for name, value in self._sysctls.items():
            if value is not None and read_sysctl(name) != value:
                write_sysctl(name, value)
        attempt("container log links", self._remove_log_links)
        for path in FIXED_PATHS:
            if path not in self._fixed_existed and path.exists() and not mounts_under(path):
                shutil.rmtree(path, ignore_errors=True)
        attempt("bridge", self._remove_bridge)
        if not mounts_under(self.work):
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            problems.append(f"mounts left under {self.work}: {mounts_under(self.work)}")
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        return problems

    def leftovers(self) -> list[str]:
        """What the stopped node left on the host (empty when teardown was complete)."""
        found: list[str] = []
        if _run(["ip", "-o", "link", "show", BRIDGE], check=False).strip():
            found.append(f"bridge {BRIDGE}")
        if self.work.exists():
            found.append(f"directory {self.work}")
        found += [f"mount {m}" for m in mounts_under(self.work)]
        found += [f"path {p}" for p in FIXED_PATHS if p not in self._fixed_existed and p.exists()]
        if not self._logs_dir_existed and CONTAINER_LOGS.exists():
            found.append(f"path {CONTAINER_LOGS}")
        found += [f"process {p}" for p in pids_with_arg(str(self.ctr_sock))]
        found += [f"process {p.name} {p.pid}" for p in self.procs.values() if p.alive()]
        for tool, before in self._chains.items():
            for table, chains in iptables_chains(tool).items():
                if table not in before:
                    found.append(f"{tool} table {table}")
                else:
                    found += [f"{tool}/{table}/{c}" for c in chains - before[table]]
        for h in cgroup_hierarchies():
            if (h / "kubepods").exists() and h / "kubepods" not in self._cgroups_before:
                found.append(f"cgroup {h / 'kubepods'}")
        changed = [n for n, v in self._sysctls.items() if v is not None and read_sysctl(n) != v]
        found += [f"sysctl {n}" for n in changed]
        return found

    def _delete_all_pods(self) -> None:
        core = k8s.CoreV1Api(self.api)
        for pod in core.list_pod_for_all_namespaces().items:
            meta = pod.metadata
            assert meta is not None and meta.name and meta.namespace
            with contextlib.suppress(k8s.ApiException):
                core.delete_namespaced_pod(meta.name, meta.namespace, grace_period_seconds=0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.ctr("tasks", "ls", "-q", check=False).split():
                return
            time.sleep(0.5)

    def _remove_containers(self) -> None:
        for task in self.ctr("tasks", "ls", "-q", check=False).split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        deadline = time.monotonic() + 20
        while self.ctr("tasks", "ls", "-q", check=False).split() and time.monotonic() < deadline:
            time.sleep(0.2)
        for task in self.ctr("tasks", "ls", "-q", check=False).split():
            self.ctr("tasks", "delete", "-f", task, check=False)
        for c in self.ctr("containers", "ls", "-q", check=False).split():
            self.ctr("containers", "delete", c, check=False)

    def _kill_shims(self) -> None:
        for pid in pids_with_arg(str(self.ctr_sock)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)

    def _remove_cgroups(self) -> None:
        for h in cgroup_hierarchies():
            top = h / "kubepods"
            if top not in self._cgroups_before:
                remove_cgroup_tree(top)

    def _remove_log_links(self) -> None:
        if not CONTAINER_LOGS.is_dir():
            return
        ours = str(self.work)
        for link in CONTAINER_LOGS.iterdir():
            if link.is_symlink() and os.readlink(link).startswith(ours):
                link.unlink()
        if not self._logs_dir_existed and not any(CONTAINER_LOGS.iterdir()):
            CONTAINER_LOGS.rmdir()

    def _remove_bridge(self) -> None:
        if not _run(["ip", "-o", "link", "show", BRIDGE], check=False).strip():
            return
        ports = _run(["ip", "-o", "link", "show", "master", BRIDGE], check=False)
        for line in ports.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            _run(["ip", "link", "del", name], check=False)
        _run(["ip", "link", "del", BRIDGE])  # its address and the service route go with it


__all__ = ["KUBE_VERSION", "NodeAssets", "NodeCluster", "node_deps", "prerequisites"]
