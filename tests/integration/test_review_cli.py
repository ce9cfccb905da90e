"""``nfsguard review`` (and ``python -m webhook review``) as a user runs it, and the same
answers as the served webhook for the same objects."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from tests.fixtures.samples import (
    LEGACY,
    config_map,
    csi_pv,
    decision_table,
    pv,
    storage_class,
)
from tests.integration.conftest import (
    FIXTURES,
    NFSGUARD,
    POLICIES,
    REPO,
    ServerHandle,
    admission_review,
    post_review,
)

PYTHON = REPO / ".venv" / "bin" / "python"
NODES = FIXTURES / "nodes.yaml"

ENTRY_POINTS = {
    "nfsguard": [str(NFSGUARD)],
    "python-m-webhook": [str(PYTHON), "-m", "webhook"],
}


def run_review(
    *args: str,
    stdin: str | None = None,
    entry: str = "nfsguard",
    policies: Sequence[Path | str] = (POLICIES,),
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    argv = [*ENTRY_POINTS[entry], "review"]
    for policy in policies:
        argv += ["--policy", str(policy)]
    argv += list(args)
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd or REPO,
        check=False,
    )


def dump_all(objects: Sequence[Mapping[str, Any]]) -> str:
    return yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False)


def stdout_objects(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


def node_versions(obj: Mapping[str, Any]) -> list[str]:
    from webhook.nfs.options import is_version_option, split_options

    if obj["kind"] == "StorageClass":
        entries = list(obj.get("mountOptions") or [])
    else:
        annotations = obj["metadata"].get("annotations") or {}
        entries = (
            [annotations[LEGACY]]
            if LEGACY in annotations
            else obj["spec"].get("mountOptions") or []
        )
        attrs = (obj["spec"].get("csi") or {}).get("volumeAttributes") or {}
        entries += [v for k, v in attrs.items() if k.lower() == "mountoptions"]
    return [o for o in split_options(entries) if is_version_option(o)]


# -- the command -----------------------------------------------------------------------


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_multi_document_yaml(entry: str, tmp_path: Path) -> None:
    objects = [
        pv("pv-a", mount_options=["vers=4.2", "hard"]),
        pv("pv-b", mount_options=["nfsvers=4.0"]),
        storage_class("nfs-ssd", server="10.99.0.2", share="/ssd"),
        pv("pv-lab", server="10.30.4.5", path="/lab"),
        config_map("not-nfs"),
    ]
    manifest = tmp_path / "objects.yaml"
    manifest.write_text("# exported from a cluster\n" + dump_all(objects))
    result = run_review(str(manifest), entry=entry)
    assert result.returncode == 0, result.stderr
    out = stdout_objects(result)
    names = ["pv-a", "pv-b", "nfs-ssd", "pv-lab", "not-nfs"]
    assert [o["metadata"]["name"] for o in out] == names
    assert out[4] == objects[4]  # other kinds pass through untouched
    assert out[0]["spec"]["mountOptions"] == ["nfsvers=4.0", "hard"]
    assert out[1] == objects[1]  # compliant: unchanged
    assert out[2]["mountOptions"] == ["nfsvers=4.0"]
    assert out[3] == objects[3]  # warned: unchanged
    stderr = result.stderr.splitlines()
    assert any("PersistentVolume/pv-a" in line and "warning" in line for line in stderr)
    assert any("PersistentVolume/pv-lab" in line and "lab-warn" in line for line in stderr)
    assert not any("pv-b" in line for line in stderr)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_kind_list_from_stdin(entry: str) -> None:
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [pv("pv-1"), csi_pv("pv-2", attrs={"mountOptions": "vers=4.1"})],
    }
    result = run_review("-", stdin=yaml.safe_dump(listing), entry=entry)
    assert result.returncode == 0, result.stderr
    out = stdout_objects(result)
    assert [o["metadata"]["name"] for o in out] == ["pv-1", "pv-2"]
    for obj in out:
        assert node_versions(obj) == ["nfsvers=4.0"]
    assert "mountOptions" not in out[1]["spec"]["csi"]["volumeAttributes"]


def test_json_input_is_read_too(tmp_path: Path) -> None:
    manifest = tmp_path / "pv.json"
    manifest.write_text(json.dumps(pv("pv-json")))
    result = run_review(str(manifest))
    assert result.returncode == 0, result.stderr
    (out,) = stdout_objects(result)
    assert out["spec"]["mountOptions"] == ["nfsvers=4.0"]


def test_denial_exits_1_and_prints_the_rest(tmp_path: Path) -> None:
    objects = [
        pv("pv-ok"),
        pv("pv-denied", server="filer9.legacy.corp", path="/vol"),
        pv("pv-also-ok", mount_options=["v3"]),
    ]
    manifest = tmp_path / "objects.yaml"
    manifest.write_text(dump_all(objects))
    result = run_review(str(manifest))
    assert result.returncode == 1
    out = stdout_objects(result)
    assert [o["metadata"]["name"] for o in out] == ["pv-ok", "pv-also-ok"]
    *lines, summary = result.stderr.splitlines()
    assert summary == "3 objects: 1 admitted unchanged, 1 mutated, 1 denied, 0 warned, 0 ignored"
    (denial,) = [line for line in lines if "denied" in line]
    assert "PersistentVolume/pv-denied" in denial
    assert "legacy-filers-deny" in denial and "2026.11.27-1" in denial
    assert "nfsvers=4.0" in denial


@pytest.mark.parametrize(
    ("files", "stdin", "needle"),
    [
        (["missing.yaml"], None, "missing.yaml"),
        (["-"], "kind: PersistentVolume\n  bad: [indent\n", "<stdin>"),
        (["-"], "- just\n- a list\n", "mapping"),
        (["-"], yaml.safe_dump({**pv(), "spec": {**pv()["spec"], "mountOptions": "v4"}}), "list"),
    ],
    ids=["missing-file", "bad-yaml", "not-a-mapping", "invalid-object"],
)
def test_bad_input_exits_2_with_one_line(
    files: list[str], stdin: str | None, needle: str, tmp_path: Path
) -> None:
    result = run_review(*files, stdin=stdin, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_bad_policy_exits_2_with_positions(tmp_path: Path) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text(
        (POLICIES / "10-site.yaml").read_text().replace("      exports:\n", "      exprots:\n", 1)
    )
    result = run_review("-", stdin=yaml.safe_dump(pv()), policies=[policy])
    assert result.returncode == 2
    assert f"{policy}:" in result.stderr and "did you mean 'exports'" in result.stderr
    assert result.stdout == ""


def test_nodes_file_decides_node_kernels(tmp_path: Path) -> None:
    objects = [_scoped("pv-ubuntu-only", ["node001"]), _scoped("pv-node003", ["node003"])]
    manifest = tmp_path / "pvs.yaml"
    manifest.write_text(dump_all(objects))
    with_nodes = run_review("--nodes", str(NODES), str(manifest))
    assert with_nodes.returncode == 0, with_nodes.stderr
    ubuntu, node003 = stdout_objects(with_nodes)
    assert ubuntu == objects[0]  # node001 runs 5.15.0-91-generic: the el7 rule does not apply
    assert node_versions(node003) == ["nfsvers=4.0"]  # node003 runs 3.10.0-862.14.4.el7
    # without an inventory, unknownNodes: assumeAffected pins both
    without = run_review(str(manifest))
    assert without.returncode == 0, without.stderr
    assert all(node_versions(o) == ["nfsvers=4.0"] for o in stdout_objects(without))


def test_update_operation(tmp_path: Path) -> None:
    obj = csi_pv("pv-upd", attrs={"mountOptions": "vers=4.2"})
    result = run_review("--operation", "UPDATE", "-", stdin=yaml.safe_dump(obj))
    assert result.returncode == 0
    (out,) = stdout_objects(result)
    assert out == obj  # the CSI attribute cannot change on UPDATE: allowed unchanged
    assert "warning" in result.stderr and "pv-upd" in result.stderr


# -- the same answers as the served webhook --------------------------------------------


def served_answer(
    server: ServerHandle, obj: Mapping[str, Any], operation: str = "CREATE", existing: bool = False
) -> tuple[bool, dict[str, Any], list[str]]:
    review = admission_review(obj, operation=operation, old=obj if existing else None)
    http = post_review(server, review)
    assert http.status_code == 200, http.text
    response = http.json()["response"]
    admitted = copy.deepcopy(dict(obj))
    if "patch" in response:
        ops = json.loads(base64.b64decode(response["patch"]))
        admitted = jsonpatch.JsonPatch(ops).apply(admitted)
    return bool(response["allowed"]), admitted, list(response.get("warnings", []))


def _scoped(name: str, hosts: list[str]) -> dict[str, Any]:
    obj = pv(name, server="10.20.1.1", path="/exports/a")
    obj["spec"]["nodeAffinity"] = {
        "required": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": hosts}
                    ]
                }
            ]
        }
    }
    return obj


def assert_same_answers(
    server: ServerHandle,
    objects: Sequence[Mapping[str, Any]],
    tmp_path: Path,
    cli_args: Sequence[str] = (),
    operation: str = "CREATE",
) -> tuple[list[dict[str, Any]], list[str]]:
    """Review ``objects`` offline and through ``server``: the same objects admitted (with
    the same patches), the same denials, the same warnings, in the same order."""
    manifest = tmp_path / "table.yaml"
    manifest.write_text(dump_all(objects))
    # "UPDATE-existing": the oldObject is the object itself (its NFS options kept), offline
    # through --old; a plain UPDATE has no oldObject (judged as one that changes them).
    existing = operation == "UPDATE-existing"
    operation = "UPDATE" if existing else operation
    old = ["--old", str(manifest)] if existing else []
    result = run_review(*cli_args, "--operation", operation, *old, str(manifest))
    assert result.returncode in (0, 1), result.stderr
    offline_admitted = stdout_objects(result)
    *stderr, summary = result.stderr.splitlines()
    assert summary.startswith(f"{len(objects)} objects: "), summary

    served_admitted: list[dict[str, Any]] = []
    served_denied: list[str] = []
    served_warnings: list[str] = []
    for obj in objects:
        allowed, admitted, warnings = served_answer(server, obj, operation, existing=existing)
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        served_warnings += [f"{name}: warning: {w}" for w in warnings]
        if allowed:
            served_admitted.append(admitted)
        else:
            served_denied.append(name)

    assert offline_admitted == served_admitted
    offline_denied = [
        line.split(": ")[1] for line in stderr if line.split(": ")[2].startswith("denied")
    ]
    assert offline_denied == served_denied
    assert result.returncode == (1 if served_denied else 0)
    offline_warnings = [
        line.split(": ", 1)[1] for line in stderr if line.split(": ")[2].startswith("warning")
    ]
    assert offline_warnings == served_warnings
    return served_admitted, served_denied


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE", "UPDATE-existing"])
def test_same_answers_as_the_served_webhook(
    nfsguard_server: ServerHandle, tmp_path: Path, operation: str
) -> None:
    table = [obj for _, obj in decision_table()]
    admitted, denied = assert_same_answers(nfsguard_server, table, tmp_path, (), operation)
    if operation == "UPDATE-existing":
        assert not denied  # an update that keeps an object's NFS options is never denied
    else:
        assert denied  # the table exercises denials ...
    assert sum(1 for o in admitted if o not in table) >= 5  # ... and pins


def test_same_answers_with_a_node_inventory(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory([POLICIES], ["--nodes", str(NODES)])
    objects = [
        _scoped("pv-ubuntu-only", ["node001"]),
        _scoped("pv-fixed-el7", ["node002"]),
        _scoped("pv-node003", ["node003"]),
        _scoped("pv-everywhere", ["node001", "node002", "node003"]),
        *[obj for _, obj in decision_table()],
    ]
    admitted, _ = assert_same_answers(server, objects, tmp_path, ("--nodes", str(NODES)))
    by_name = {o["metadata"]["name"]: o for o in admitted}
    assert by_name["pv-ubuntu-only"] == objects[0]
    assert by_name["pv-fixed-el7"] == objects[1]
    assert node_versions(by_name["pv-node003"]) == ["nfsvers=4.0"]
    assert node_versions(by_name["pv-everywhere"]) == ["nfsvers=4.0"]
