"""``make manifests``: manifests/ is the chart rendered with its default values.

One source of truth: charts/nfsguard. This script
1. copies the shipped policies (policies/known-issues.yaml, policies/site-example.yaml)
   into the chart (charts/nfsguard/files/policies/: Helm reads files only inside a chart),
2. compiles the native policies of policies/ (``nfsguard policy compile``) into
   manifests/native/native-policies.yaml and the chart's files/native/site-example.yaml,
3. renders ``helm template nfsguard charts/nfsguard --namespace nfsguard --no-hooks`` for
   the pinned release (hack/kube-version) and writes one manifests/ file per template,
4. rewrites manifests/Kustomization to list them (00-namespace.yaml is kept by hand: Helm
   installs into a namespace, ``--create-namespace``, and does not own it),
5. renders the optional reporter (``reporter.enabled=true``, templates/85-reporter.yaml)
   into manifests/reporter/reporter.yaml (its Kustomization, a Component, is kept by hand).

``--check`` writes nothing and exits 1 naming every file that differs (the test suite runs
it: tests/chart/test_chart.py).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "nfsguard"
MANIFESTS = REPO / "manifests"
SHIPPED_POLICIES = ("known-issues.yaml", "site-example.yaml")
HEADER = (
    "# Rendered from charts/nfsguard with its default values by `make manifests`: do not edit.\n"
)
KUSTOMIZATION_HEAD = """\
# kustomize entry point (`kubectl apply -k manifests/`, or a base for your overlay): the
# chart (charts/nfsguard) rendered with its default values by `make manifests`.
# Named `Kustomization` (a name kustomize recognises) rather than kustomization.yaml so that
# `kubectl apply -f manifests/` — which reads only *.yaml/*.yml/*.json — does not try to
# apply this file as an object. Set the image with an overlay's `images:` entry.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- 00-namespace.yaml
"""
REPORTER_TEMPLATE = "templates/85-reporter.yaml"
SOURCE = re.compile(r"^# Source: nfsguard/templates/(?P<name>[^\n]+\.yaml)\n", re.M)


def helm() -> str:
    return subprocess.run(
        [str(REPO / "hack" / "helm.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()


def kube_version() -> str:
    return "v" + (REPO / "hack" / "kube-version").read_text().strip().lstrip("v")


def compiled_native() -> str:
    return subprocess.run(
        [sys.executable, "-m", "webhook", "policy", "compile", "--policy", "policies"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def template(*extra: str) -> str:
    """``helm template`` of the chart as release nfsguard in namespace nfsguard."""
    args = ["template", "nfsguard", str(CHART), "--namespace", "nfsguard", "--no-hooks"]
    return subprocess.run(
        [helm(), *args, "--kube-version", kube_version(), *extra],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def by_template(out: str, directory: Path, header: str = HEADER) -> dict[Path, str]:
    """One manifests file per template of a ``helm template`` output, in ``directory``."""
    files: dict[Path, str] = {}
    parts = SOURCE.split(out)
    # parts: [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        # Lines of only indentation (blank lines inside block scalars) carry no content.
        lines = body.strip().removesuffix("---").strip().splitlines()
        text = "\n".join("" if not line.strip() else line for line in lines)
        if not text:
            continue
        path = directory / name
        files[path] = files.get(path, header) + ("---\n" if path in files else "") + text + "\n"
    return files


def rendered() -> dict[Path, str]:
    """manifests/ files from the chart as it is on disk."""
    files = by_template(template(), MANIFESTS)
    resources = "".join(f"- {p.name}\n" for p in sorted(files))
    files[MANIFESTS / "Kustomization"] = KUSTOMIZATION_HEAD + resources
    reporter = by_template(
        template("--set", "reporter.enabled=true", "--show-only", REPORTER_TEMPLATE),
        MANIFESTS / "reporter",
        "# Rendered from charts/nfsguard with its default values and reporter.enabled=true by\n"
        "# `make manifests`: do not edit.\n",
    )
    (text,) = reporter.values()
    files[MANIFESTS / "reporter" / "reporter.yaml"] = text
    return files


def chart_inputs() -> dict[Path, str]:
    chart_files = {
        CHART / "files" / "policies" / name: (REPO / "policies" / name).read_text()
        for name in SHIPPED_POLICIES
    }
    native = compiled_native()
    chart_files[CHART / "files" / "native" / "site-example.yaml"] = native
    chart_files[MANIFESTS / "native" / "native-policies.yaml"] = native
    return chart_files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on drift")
    args = parser.parse_args()
    chart_files = chart_inputs()
    stale = [p for p, text in chart_files.items() if not p.exists() or p.read_text() != text]
    if args.check and stale:
        # Rendering needs the chart files in place: report them first.
        for p in stale:
            print(f"{p.relative_to(REPO)}: differs from what `make manifests` writes")
        return 1
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(chart_files[p])
    files = rendered()
    old = {p for p in MANIFESTS.glob("*.yaml") if p.name != "00-namespace.yaml"}
    removed = sorted(old - set(files))
    changed = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in changed:
            print(f"{p.relative_to(REPO)}: differs from the chart rendered with default values")
        for p in removed:
            print(f"{p.relative_to(REPO)}: no longer rendered by the chart")
        if changed or removed:
            print("run `make manifests`")
            return 1
        return 0
    for p in changed:
        p.write_text(files[p])
        print(f"wrote {p.relative_to(REPO)}")
    for p in removed:
        p.unlink()
        print(f"removed {p.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
