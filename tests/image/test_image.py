"""The image hack/image.sh builds, run the way the Deployment runs it.

podman with the Deployment's securityContext (uid/gid 10001, read-only root filesystem,
drop ALL, no privilege escalation, RuntimeDefault seccomp), its volumes (the TLS Secret, the
policy ConfigMap and the audit key read-only; an audit emptyDir; /tmp in memory) and no
network at all: the review is sent over TLS from inside the container's network namespace.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

import webhook
from tests.image.images import (
    APP_UID,
    REPO,
    BuiltImage,
    Container,
    hardened_run,
    podman,
    wait_gone,
)
from webhook.audit.chain_file import slot_chains

NFSGUARD = REPO / ".venv" / "bin" / "nfsguard"
PYTHON = REPO / ".venv" / "bin" / "python"
SERVER = "192.0.2.10"  # TEST-NET-1: nothing is ever mounted or contacted

POLICY = f"""\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: image-test
spec:
  version: "image-test-1"
  pin: "4.0"
  rules:
  - name: pin-test-filer
    description: the image test's filer; 4.1/4.2 mounts hang against it
    match:
      exports:
      - server: {SERVER}
    action: pin
"""

#: The Deployment's container args, less --in-cluster/--register (no apiserver here;
#: tests/node runs the real ones).
SERVE = [
    "serve",
    "--policy",
    "/etc/nfsguard/policies",
    "--tls-dir",
    "/etc/nfsguard/tls",
    "--host",
    "0.0.0.0",
    "--port",
    "8443",
    "--audit-log",
    "/var/log/nfsguard/audit.log",
    "--audit-stdout",
    "--audit-key",
    "/etc/nfsguard/audit-key/audit.key",
]


@dataclass
class Volumes:
    """Host directories laid out as the kubelet projects the Deployment's volumes."""

    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "pki" / "ca.crt"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit" / "audit.log"

    @property
    def audit_pub(self) -> Path:
        return self.root / "audit.pub"

    def mounts(self) -> list[str]:
        r = self.root
        return [
            f"--volume={r / 'tls'}:/etc/nfsguard/tls:ro",
            f"--volume={r / 'policies'}:/etc/nfsguard/policies:ro",
            f"--volume={r / 'audit-key'}:/etc/nfsguard/audit-key:ro",
            f"--volume={r / 'audit'}:/var/log/nfsguard:rw",
        ]


def _run(*argv: str | Path) -> None:
    subprocess.run([str(a) for a in argv], check=True, capture_output=True, timeout=60)


def _secret_file(src: Path, dst: Path) -> None:
    """A Secret key as the kubelet writes it: defaultMode 0440, group fsGroup."""
    shutil.copyfile(src, dst)
    os.chown(dst, 0, APP_UID)
    dst.chmod(0o440)


def make_volumes(root: Path) -> Volumes:
    v = Volumes(root)
    pki = root / "pki"
    _run(NFSGUARD, "certs", "generate", "--tls-dir", pki, "--ip", "127.0.0.1")
    for d in ("tls", "policies", "audit-key", "audit"):
        (root / d).mkdir(parents=True)
    for name in ("tls.crt", "tls.key", "ca-bundle.crt"):
        _secret_file(pki / name, root / "tls" / name)
    _run(
        NFSGUARD,
        "audit",
        "keygen",
        "--private-key",
        root / "audit.key",
        "--public-key",
        v.audit_pub,
    )
    _secret_file(root / "audit.key", root / "audit-key" / "audit.key")
    (root / "policies" / "image-test.yaml").write_text(POLICY)
    (root / "policies" / "image-test.yaml").chmod(0o444)
    os.chown(root / "audit", APP_UID, APP_UID)  # the audit emptyDir
    return v


def probe(
    pid: int, volumes: Volumes, path: str, *, post: Path | None = None, wait: float = 0.0
) -> dict[str, Any]:
    """HTTPS from inside the container's network namespace (it has no other)."""
    argv = [
        "nsenter",
        f"--net=/proc/{pid}/ns/net",
        "--",
        str(PYTHON),
        "-m",
        "tests.image.probe",
        f"https://127.0.0.1:8443{path}",
        str(volumes.ca),
        "--wait",
        str(wait),
    ]
    if post is not None:
        argv += ["--post", str(post)]
    done = subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, timeout=wait + 60, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def pv_review(uid: str) -> dict[str, Any]:
    return {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "PersistentVolume"},
            "resource": {"group": "", "version": "v1", "resource": "persistentvolumes"},
            "requestKind": {"group": "", "version": "v1", "kind": "PersistentVolume"},
            "requestResource": {"group": "", "version": "v1", "resource": "persistentvolumes"},
            "name": "pv-image-test",
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
            "object": {
                "kind": "PersistentVolume",
                "apiVersion": "v1",
                "metadata": {"name": "pv-image-test"},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "volumeMode": "Filesystem",
                    "mountOptions": ["nfsvers=4.2", "hard"],
                    "nfs": {"server": SERVER, "path": "/exports/a"},
                },
            },
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


def container_processes(pid: int) -> list[int]:
    """PID 1 of the container and every descendant (gunicorn master and workers)."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        for task in Path(f"/proc/{p}/task").iterdir():
            todo += [int(c) for c in (task / "children").read_text().split()]
    return seen


def ids_of(pid: int) -> tuple[list[int], list[int], str]:
    """Real/effective/saved/fs uids and gids, and the effective capability mask."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    uids = [int(x) for x in status["Uid"].split()]
    gids = [int(x) for x in status["Gid"].split()]
    return uids, gids, status["CapEff"].strip()


@pytest.fixture
def serving(built_image: BuiltImage, tmp_path: Path) -> Iterator[tuple[Container, Volumes]]:
    volumes = make_volumes(tmp_path)
    c = Container(built_image.ref, SERVE, volumes.mounts())
    try:
        c.start()
        ready = probe(c.pid, volumes, "/readyz", wait=60)
        assert ready["status"] == 200, (ready, c.logs())
        yield c, volumes
    finally:
        c.stop()


def test_version_with_the_hardened_settings(built_image: BuiltImage) -> None:
    done = hardened_run(built_image.ref, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"nfsguard, version {webhook.__version__}"


def test_image_runs_as_a_numeric_non_root_user_by_default(built_image: BuiltImage) -> None:
    """runAsNonRoot can only be checked by the kubelet against a numeric USER."""
    user = podman("image", "inspect", "--format", "{{.Config.User}}", built_image.ref).strip()
    assert user == f"{APP_UID}:{APP_UID}"
    # No --user: the image's own USER, and nothing in the image can gain root back.
    done = subprocess.run(
        [
            "podman",
            "run",
            "--rm",
            "--network=none",
            "--read-only",
            "--cap-drop=ALL",
            "--entrypoint",
            "python3",
            built_image.ref,
            "-c",
            "import os; print(os.getuid(), os.getgid(), os.access('/', os.W_OK))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(APP_UID), str(APP_UID), "False"]


def test_image_has_no_installers(built_image: BuiltImage) -> None:
    """pip/setuptools/wheel are removed: nothing in the image can install code at run time."""
    code = (
        "import importlib.util as u, shutil\n"
        "print([m for m in ('pip', 'setuptools', 'wheel') if u.find_spec(m)],"
        " [t for t in ('pip', 'pip3', 'apt-get', 'gcc') if shutil.which(t)])"
    )
    done = subprocess.run(
        [
            "podman",
            "run",
            "--rm",
            "--network=none",
            "--read-only",
            "--cap-drop=ALL",
            "--entrypoint",
            "/opt/nfsguard/bin/python",
            built_image.ref,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] []"


def test_a_review_over_tls_is_pinned_and_recorded(
    serving: tuple[Container, Volumes], tmp_path: Path
) -> None:
    c, volumes = serving
    uid = str(uuid.uuid4())
    review = pv_review(uid)
    body = tmp_path / "review.json"
    body.write_text(json.dumps(review))
    answer = probe(c.pid, volumes, "/mutate?timeout=10s", post=body)
    assert answer["status"] == 200, (answer, c.logs())
    response = json.loads(answer["body"])["response"]
    assert response["uid"] == uid and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    patched = jsonpatch.apply_patch(review["request"]["object"], patch)
    assert patched["spec"]["mountOptions"] == ["nfsvers=4.0", "hard"]

    # every process of the container runs as 10001:10001 with no capability at all
    for pid in container_processes(c.pid):
        uids, gids, cap_eff = ids_of(pid)
        assert set(uids) == {APP_UID} and set(gids) == {APP_UID}, (pid, uids, gids)
        assert int(cap_eff, 16) == 0, (pid, cap_eff)

    # the decision is on the audit emptyDir (written by uid 10001) and on stdout
    chains = [Path(f) for _live, files in slot_chains(str(volumes.audit_log)) for f in files]
    assert chains and all(f.stat().st_uid == APP_UID for f in chains)  # a chain per worker
    assert any(uid in f.read_text() for f in chains)
    assert uid in c.logs()


def test_sigterm_stops_it_within_a_second_and_the_audit_chain_verifies(
    serving: tuple[Container, Volumes], tmp_path: Path, report: list[str]
) -> None:
    """The kubelet sends SIGTERM to PID 1: nfsguard must stop at once (an unhandled SIGTERM
    in a PID 1 waits out the whole grace period), sealing its audit chain."""
    c, volumes = serving
    body = tmp_path / "review.json"
    body.write_text(json.dumps(pv_review(str(uuid.uuid4()))))
    assert probe(c.pid, volumes, "/mutate?timeout=10s", post=body)["status"] == 200
    pid = c.pid
    os.kill(pid, signal.SIGTERM)
    elapsed = wait_gone(pid, timeout=30)
    assert elapsed is not None, f"still running 30 s after SIGTERM:\n{c.logs()}"
    report.append(f"image: SIGTERM to exit of PID 1 took {elapsed:.2f} s")
    assert elapsed < 1.0, f"SIGTERM took {elapsed:.2f} s:\n{c.logs()}"
    assert c.exit_code() == 0, c.logs()
    verify = subprocess.run(
        [
            str(NFSGUARD),
            "audit",
            "verify",
            "--public-key",
            str(volumes.audit_pub),
            str(volumes.audit_log.parent),  # every worker's chain
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
