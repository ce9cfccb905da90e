"""Rendering the chart with the real helm (hack/helm.sh builds and caches it)."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "nfsguard"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "v" + (REPO / "hack" / "kube-version").read_text().strip().lstrip("v")
#: Kinds of CRDs the chart can render (cert-manager, prometheus-operator): neither in the
#: Kubernetes schemas nor served by the test apiserver.
CRD_KINDS = frozenset({"Certificate", "Issuer", "ServiceMonitor"})

Json = dict[str, Any]


@functools.cache
def helm_binary(major: int = 4) -> str:
    """The helm of hack/helm.sh; building it is part of `make test` (`make helm`)."""
    done = subprocess.run(
        [str(REPO / "hack" / "helm.sh"), str(major)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"hack/helm.sh {major} failed:\n{done.stderr}"
    return done.stdout.strip()


def helm(*args: str, major: int = 4, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([helm_binary(major), *args], capture_output=True, text=True, check=False)
    if check:
        assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stderr}"
    return done


@dataclass(frozen=True)
class Rendering:
    docs: list[Json]

    def all(self, kind: str) -> list[Json]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> Json:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def has(self, kind: str) -> bool:
        return bool(self.all(kind))

    def pod_templates(self) -> Iterator[tuple[str, Json]]:
        for d in self.docs:
            if d["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
                yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]
            elif d["kind"] == "CronJob":
                yield (
                    f"CronJob/{d['metadata']['name']}",
                    d["spec"]["jobTemplate"]["spec"]["template"],
                )

    def deployment(self, component: str = "webhook") -> Json:
        """The Deployment of ``component`` (webhook, or reporter when enabled)."""
        (found,) = [
            d
            for d in self.all("Deployment")
            if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
        ]
        return found

    def server_container(self) -> Json:
        spec = self.deployment()["spec"]["template"]["spec"]
        return next(c for c in spec["containers"] if c["name"] == "nfsguard")

    def server_args(self) -> list[str]:
        return [str(a) for a in self.server_container()["args"]]


def render_text(
    *,
    values_files: Sequence[Path] = (),
    sets: Sequence[str] = (),
    release: str = "nfsguard",
    namespace: str = "nfsguard",
    hooks: bool = True,
    major: int = 4,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``helm template``; the same arguments over the same values files render once."""
    contents = tuple((str(f), f.read_text()) for f in values_files)
    return _render_text(contents, tuple(sets), release, namespace, hooks, major, check)


@functools.cache
def _render_text(
    values_files: tuple[tuple[str, str], ...],
    sets: tuple[str, ...],
    release: str,
    namespace: str,
    hooks: bool,
    major: int,
    check: bool,
) -> subprocess.CompletedProcess[str]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    args += ["--kube-version", KUBE_VERSION]
    if not hooks:
        args.append("--no-hooks")
    for f, _ in values_files:
        args += ["--values", f]
    for s in sets:
        args += ["--set", s]
    return helm(*args, major=major, check=check)


def render(
    *,
    values_files: Sequence[Path] = (),
    sets: Sequence[str] = (),
    values: Json | None = None,
    tmp_path: Path | None = None,
    release: str = "nfsguard",
    namespace: str = "nfsguard",
    hooks: bool = True,
) -> Rendering:
    files = list(values_files)
    if values is not None:
        assert tmp_path is not None
        path = tmp_path / f"values-{len(list(tmp_path.glob('values-*')))}.yaml"
        path.write_text(yaml.safe_dump(values))
        files.append(path)
    out = render_text(
        values_files=files, sets=sets, release=release, namespace=namespace, hooks=hooks
    ).stdout
    return Rendering([d for d in yaml.safe_load_all(out) if d])


def refused(*, values: Json, tmp_path: Path, major: int = 4) -> str:
    """helm's error for values the chart must refuse (exit non-zero, one message)."""
    path = tmp_path / "refused-values.yaml"
    path.write_text(yaml.safe_dump(values))
    done = render_text(values_files=[path], major=major, check=False)
    assert done.returncode != 0, f"rendered although it should not:\n{done.stdout[:2000]}"
    return done.stderr
