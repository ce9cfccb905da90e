"""What operators read from a running server: /metrics (every documented series before
the first review, parsed by prometheus-client's own text parser), /livez, one log
format for nfsguard's and gunicorn's lines (JSON parses line by line), one decision
line per review, coverage records with --audit-compliant, and `serve` on a port in use.

Real gunicorn over TLS on loopback (tests/integration/conftest.py).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.samples import pv
from tests.integration.conftest import (
    LOOPBACK,
    NFSGUARD,
    POLICIES,
    REPO,
    ServerHandle,
    admission_review,
    post_review,
    start_server,
)

DOCUMENTED = re.compile(r"^\| `(nfsguard_[a-z_]+)(?:\{([a-z_,]+)\})?` \|", re.M)


def documented_series() -> dict[str, list[str]]:
    """Every metric docs/operations.md lists by full name, with its labels."""
    text = (REPO / "docs" / "operations.md").read_text()
    found = {m.group(1): (m.group(2) or "").split(",") for m in DOCUMENTED.finditer(text)}
    assert "nfsguard_decisions_total" in found and "nfsguard_policy_info" in found, found
    return {name: [label for label in labels if label] for name, labels in found.items()}


def scrape(handle: ServerHandle) -> dict[str, list[Any]]:
    response = handle.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    matching = [
        s.value
        for s in samples.get(name, [])
        if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matching) == 1, (name, labels, samples.get(name))
    return float(matching[0])


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = start_server(
        [POLICIES],
        tmp_path_factory.mktemp("observability"),
        ["--log-format", "json", "--access-log", "--audit-compliant", "--workers", "2"],
    )
    try:
        yield handle
    finally:
        handle.stop()


def test_every_documented_series_is_there_before_the_first_review(
    json_server: ServerHandle,
) -> None:
    samples = scrape(json_server)
    for name, labels in documented_series().items():
        names = [name, f"{name}_total"] if not name.endswith("_total") else [name]
        if name.endswith("_seconds"):
            names = [f"{name}_count"]
        present = [s for n in names for s in samples.get(n, [])]
        assert present, f"{name} missing from /metrics before the first review"
        for sample in present:
            assert set(labels) <= set(sample.labels), (name, labels, sample.labels)
    assert value(samples, "nfsguard_policy_reload_total", result="rejected") == 0
    assert value(samples, "nfsguard_review_errors_total", code="503") == 0
    assert value(samples, "nfsguard_reviews_total", kind="PersistentVolume", outcome="mutated") == 0
    rule = dict(kind="PersistentVolume", operation="CREATE", outcome="mutated", policy="site-rules")
    assert value(samples, "nfsguard_decisions_total", rule="incident-node003-hang", **rule) == 0
    info = [s for s in samples["nfsguard_policy_info"] if s.value == 1]
    assert {s.labels["policy"] for s in info} == {"site-rules", "cloud-exemptions", "observe"}
    assert all(s.labels["digest"].startswith("sha256:") and s.labels["version"] for s in info)
    assert not any("name" in s.labels for series in samples.values() for s in series)


def test_livez(json_server: ServerHandle) -> None:
    response = json_server.get("/livez")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def _decision_lines(handle: ServerHandle, uid: str, timeout: float = 15) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(line) for line in handle.log_text().splitlines() if line.strip()]
        found = [line for line in lines if line.get("uid") == uid]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_json_logs_a_decision_line_per_review_and_counts_it(json_server: ServerHandle) -> None:
    obj = pv("pv-logged", mount_options=["nfsvers=4.2", "hard"])
    answer = post_review(json_server, admission_review(obj, uid="uid-logged-1"))
    assert answer.status_code == 200 and answer.json()["response"]["allowed"] is True
    (line,) = _decision_lines(json_server, "uid-logged-1")
    assert line["logger"] == "nfsguard.decision" and line["level"] == "info"
    assert {
        k: line[k] for k in ("kind", "name", "operation", "user", "policy", "rule", "outcome")
    } == {
        "kind": "PersistentVolume",
        "name": "pv-logged",
        "operation": "CREATE",
        "user": "kubernetes-admin",
        "policy": "site-rules",
        "rule": "incident-node003-hang",
        "outcome": "mutated",
    }
    assert line["version"] == "2026.11.27-1" and line["durationMs"] >= 0
    assert "nfsvers" not in json.dumps(line)  # no object body, options or patch
    # Every line of the server (gunicorn's boot lines, access lines, nfsguard's) is JSON.
    # (gunicorn writes the access line once the answer is sent: wait for it.)
    deadline = time.monotonic() + 15
    while "POST /mutate" not in json_server.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = json_server.log_text()
    parsed = [json.loads(raw) for raw in text.splitlines() if raw.strip()]
    loggers = {p["logger"] for p in parsed}
    assert {"gunicorn.error", "gunicorn.access", "nfsguard.decision"} <= loggers, loggers
    assert any("POST /mutate" in p["message"] for p in parsed if p["logger"] == "gunicorn.access")
    samples = scrape(json_server)
    rule = dict(kind="PersistentVolume", operation="CREATE", outcome="mutated", policy="site-rules")
    assert value(samples, "nfsguard_decisions_total", rule="incident-node003-hang", **rule) == 1
    # An object out of scope is answered and logged too, never a metric label.
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-x"}}
    assert post_review(json_server, admission_review(config_map, uid="uid-cm")).status_code == 200
    (ignored,) = _decision_lines(json_server, "uid-cm")
    assert (ignored["kind"], ignored["outcome"], ignored["rule"]) == ("ConfigMap", "ignored", None)
    assert not [
        s
        for s in scrape(json_server)["nfsguard_decisions_total"]
        if s.labels["kind"] == "ConfigMap"
    ]


def test_audit_compliant_records_coverage(json_server: ServerHandle) -> None:
    safe = pv("pv-covered", mount_options=["nfsvers=4.0"])
    assert post_review(json_server, admission_review(safe, uid="uid-covered")).status_code == 200
    (line,) = _decision_lines(json_server, "uid-covered")
    assert (line["outcome"], line["rule"]) == ("compliant", None)
    query = subprocess.run(
        [
            str(NFSGUARD),
            "audit",
            "query",
            str(json_server.audit_log.parent),
            "--outcome",
            "compliant",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert query.returncode == 0, query.stderr
    (record,) = [r for r in json.loads(query.stdout) if r["request"]["uid"] == "uid-covered"]
    assert record["outcome"] == "compliant" and record["before"]["version"] == "4.0"
    samples = scrape(json_server)
    compliant = dict(kind="PersistentVolume", operation="CREATE", outcome="compliant")
    assert value(samples, "nfsguard_decisions_total", policy="", rule="", **compliant) == 1


def test_text_logs_are_one_format_for_nfsguard_and_gunicorn(tmp_path: Path) -> None:
    handle = start_server([POLICIES], tmp_path, ["--workers", "1"])
    try:
        obj = pv("pv-text", mount_options=["nfsvers=4.2"])
        assert post_review(handle, admission_review(obj, uid="uid-text")).status_code == 200
        deadline = time.monotonic() + 15
        while "uid=uid-text" not in handle.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        handle.stop()
    lines = [line for line in handle.log_text().splitlines() if line.strip()]
    shape = re.compile(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: "
    )
    logged = lines
    assert logged and all(shape.match(line) for line in logged), logged
    assert " INFO nfsguard: serving site-rules " in logged[0]
    assert any(" gunicorn.error: " in line for line in logged)
    (decision,) = [line for line in logged if "uid=uid-text" in line]
    assert " INFO nfsguard.decision: decision " in decision
    assert "outcome=mutated" in decision and "rule=incident-node003-hang" in decision


def test_serve_on_a_port_in_use_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                str(NFSGUARD),
                "serve",
                "--policy",
                str(POLICIES),
                "--tls-dir",
                str(tmp_path / "tls"),
                "--host",
                LOOPBACK,
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert (result.returncode, result.stdout) == (2, "")
    assert (
        result.stderr == f"nfsguard: cannot listen on {LOOPBACK}:{port}: Address already in use\n"
    )


RELOADED = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: reloaded
spec:
  version: "7"
  rules:
  - name: ten
    match:
      exports: [{{server: 10.0.0.0/8}}]
    action: {action}
"""


def test_a_reload_under_the_same_version_is_logged_and_policy_info_follows(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(RELOADED.format(action="pin"))
    handle = start_server(
        [policies],
        tmp_path / "server",
        ["--log-format", "json", "--reload-interval", "0.2", "--workers", "1"],
    )
    try:
        before = {
            s.labels["digest"] for s in scrape(handle)["nfsguard_policy_info"] if s.value == 1
        }
        (policies / "p.yaml").write_text(RELOADED.format(action="deny"))
        deadline = time.monotonic() + 30
        while "policy reload accepted" not in handle.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        lines = [json.loads(raw) for raw in handle.log_text().splitlines() if raw.strip()]
        (warning,) = [line for line in lines if "[version-unchanged]" in line["message"]]
        assert (warning["level"], warning["logger"]) == ("warning", "nfsguard.policy")
        assert "content changed" in warning["message"] and "still '7'" in warning["message"]
        samples = scrape(handle)
        now = {s.labels["digest"] for s in samples["nfsguard_policy_info"] if s.value == 1}
        assert len(before) == len(now) == 1 and before != now
        replaced = [s for s in samples["nfsguard_policy_info"] if s.labels["digest"] in before]
        assert [s.value for s in replaced] == [0]
        assert value(samples, "nfsguard_policy_reload_total", result="accepted") == 1
    finally:
        handle.stop()
