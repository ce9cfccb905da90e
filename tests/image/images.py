"""The nfsguard image, built by hack/image.sh and run with podman as the Deployment runs it.

Shared by tests/image and tests/node. Plain library code: no pytest in here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE_SCRIPT = REPO / "hack" / "image.sh"
ENABLE_HINT = "run `make image` as root (hack/system-deps.sh installs podman and mmdebstrap)"
#: The uid/gid of the image's USER and the Deployment's runAsUser/runAsGroup/fsGroup.
APP_UID = 10001


def prerequisites() -> str:
    """Why the image cannot be built here, or '' when it can."""
    if os.geteuid() != 0:
        return "not root (podman storage and mmdebstrap as root)"
    missing = [t for t in ("podman", "mmdebstrap", "runc", "nsenter") if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)}"
    return ""


@dataclass(frozen=True)
class BuiltImage:
    """What hack/image.sh printed: the image in podman's storage and its docker-archive."""

    ref: str
    archive: Path
    size: int


def build_image(timeout: float = 1800) -> BuiltImage:
    """Run hack/image.sh (cached by content: seconds when nothing changed)."""
    done = subprocess.run(
        [str(IMAGE_SCRIPT)], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"hack/image.sh failed ({done.returncode}):\n{done.stderr[-3000:]}")
    out = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return BuiltImage(out["image"], Path(out["archive"]), int(out["size"]))


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {done.stderr.strip()[-2000:]}")
    return done.stdout


#: `podman run` flags for the Deployment's securityContext (manifests/50-deployment.yaml):
#: runAsUser/runAsGroup 10001 (+ fsGroup), readOnlyRootFilesystem, drop ALL,
#: allowPrivilegeEscalation false, seccomp RuntimeDefault (podman's default profile), and
#: no network at all: the tests reach the server from inside its network namespace.
HARDENED = (
    "--network=none",
    "--read-only",
    "--read-only-tmpfs=false",
    f"--user={APP_UID}:{APP_UID}",
    f"--group-add={APP_UID}",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    # the Deployment's tmp volume: emptyDir medium Memory, sizeLimit 64Mi
    "--tmpfs=/tmp:rw,size=64m,mode=1777",
)


def hardened_run(image: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`podman run --rm` with the hardened settings, in the foreground."""
    return subprocess.run(
        ["podman", "run", "--rm", *HARDENED, image, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Container:
    """A detached container (`podman run -d`), removed by stop()."""

    image: str
    args: Sequence[str]
    mounts: Sequence[str] = ()
    name: str = field(default_factory=lambda: f"nfsguard-test-{uuid.uuid4().hex[:10]}")
    started: bool = False

    def start(self) -> Container:
        podman("run", "-d", "--name", self.name, *HARDENED, *self.mounts, self.image, *self.args)
        self.started = True
        return self

    @property
    def pid(self) -> int:
        """The container's PID 1 as the host sees it."""
        return int(podman("inspect", "--format", "{{.State.Pid}}", self.name).strip())

    def running(self) -> bool:
        out = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return out.strip() == "true"

    def logs(self) -> str:
        return podman("logs", self.name, check=False)[-4000:]

    def exit_code(self, timeout: float = 30) -> int:
        return int(podman("wait", self.name, timeout=timeout).strip())

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                podman("rm", "--force", "--time", "2", self.name, check=False)
            self.started = False


def wait_gone(pid: int, timeout: float) -> float | None:
    """Seconds until `pid` has exited (gone, or a zombie awaiting its reaper); None if it
    still runs after `timeout`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return time.monotonic() - t0
        if state in ("Z", "X"):
            return time.monotonic() - t0
        time.sleep(0.005)
    return None
