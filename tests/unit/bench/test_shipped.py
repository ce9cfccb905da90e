"""`make bench` serves what the install runs (issue 20): the benchmark's server command is
the shipped Deployment's, with only in-pod paths and cluster-only options changed."""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.shipped import CLUSTER_FLAGS, CLUSTER_OPTIONS, deployment_args, shipped_argv
from webhook.cli.serve import serve


def test_the_bench_serves_the_deployments_settings(tmp_path: Path) -> None:
    site = tmp_path / "bench-100.yaml"
    site.write_text("# a site policy\n")
    argv, audit_log = shipped_argv(
        Path("/venv/bin/nfsguard"), tmp_path, tmp_path / "tls", tmp_path / "k", site, "s"
    )
    assert argv[:2] == ["/venv/bin/nfsguard", "serve"]
    bench = serve.make_context("nfsguard", argv[2:]).params
    shipped = serve.make_context("nfsguard", deployment_args()[1:]).params
    cluster = {o.lstrip("-").replace("-", "_") for o in CLUSTER_FLAGS | CLUSTER_OPTIONS}
    cluster |= {"pods_policy", "register_ca", "webhook_name", "host", "port"}
    paths = {"policies", "tls_dir", "audit_log", "audit_key"}
    for name, value in shipped.items():
        if name not in cluster | paths:
            assert bench[name] == value, name  # workers, threads, logging, audit options...
    assert bench["audit_stdout"] is True and bench["audit_key"] == str(tmp_path / "k")
    assert bench["audit_log"] == str(audit_log)
    assert bench["in_cluster"] is False and bench["register"] is False
    (policies,) = bench["policies"]
    configmap = yaml.safe_load(Path("manifests/30-policies.yaml").read_text())
    assert sorted(p.name for p in Path(policies).iterdir()) == sorted(
        [*configmap["data"], "bench-100.yaml"]
    )
