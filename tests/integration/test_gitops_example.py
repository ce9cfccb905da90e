"""The GitOps pipeline of docs/policy-authoring.md, run as written on the shipped policies.

The job's `run:` steps are read from the document itself (so the doc cannot drift from
what passes) and run by bash with the installed `nfsguard` first on PATH, in a
repository laid out as the example assumes: the shipped `policies/` (with their tests),
`k8s/nodes.yaml` and `k8s/storage/`. The checkout and `pip install` steps are what this
venv already is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.fixtures.samples import csi_pv, pv
from tests.integration.conftest import NFSGUARD, REPO

DOC = REPO / "docs" / "policy-authoring.md"


def pipeline_steps() -> list[str]:
    text = DOC.read_text()
    section = text[text.index("## A GitOps pipeline") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None, "the GitOps section has no yaml block"
    job = yaml.safe_load(block.group(1))
    steps = job["jobs"]["policy"]["steps"]
    runs = [step["run"] for step in steps if "run" in step]
    assert runs[0].startswith("pip install"), runs
    return runs[1:]


def layout(root: Path) -> None:
    shutil.copytree(REPO / "policies", root / "policies")
    storage = root / "k8s" / "storage"
    storage.mkdir(parents=True)
    nodes = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "node-1"},
                "status": {"nodeInfo": {"kernelVersion": "5.15.0-91-generic"}},
            }
        ],
    }
    (root / "k8s" / "nodes.yaml").write_text(yaml.safe_dump(nodes))
    # Manifests as they should be written: already pinned, so nothing is rewritten.
    (storage / "data.yaml").write_text(
        yaml.safe_dump_all(
            [
                pv("code-data", mount_options=["hard", "nfsvers=4.0"]),
                csi_pv("shared", mount_options=["nfsvers=4.0"]),
            ]
        )
    )


def run(step: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{NFSGUARD.parent}:{os.environ.get('PATH', '')}"}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", step],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_gitops_example_passes_on_the_shipped_policies(tmp_path: Path) -> None:
    layout(tmp_path)
    steps = pipeline_steps()
    assert any("policy lint --strict policies/" in s for s in steps)
    for step in steps:
        result = run(step, tmp_path)
        assert result.returncode == 0, (step, result.stdout, result.stderr)
    # ...and the last step is a real gate: a manifest that would be rewritten fails it.
    (tmp_path / "k8s" / "storage" / "new.yaml").write_text(
        yaml.safe_dump(pv("new-data", mount_options=["nfsvers=4.2"]))
    )
    result = run(steps[-1], tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "1 mutated" in result.stderr.splitlines()[-1]
