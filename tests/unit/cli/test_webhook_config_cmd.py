"""``webhook-config`` and ``serve --register`` share the endpoint options; the chart sets
the Service port and the apiserver's timeout through them (charts/nfsguard)."""

from __future__ import annotations

import yaml

from tests.support import nfsguard


def test_service_port_and_timeout_reach_every_entry() -> None:
    out = nfsguard(
        "webhook-config",
        "--policy",
        "policies",
        "--service-port",
        "8443",
        "--timeout-seconds",
        "10",
        "--service-name",
        "acme-nfsguard",
        "--service-namespace",
        "storage-system",
    ).stdout
    doc = yaml.safe_load(out)
    assert [w["name"] for w in doc["webhooks"]] == ["pv.nfsguard.io", "pods.nfsguard.io"]
    for entry in doc["webhooks"]:
        assert entry["clientConfig"]["service"] == {
            "namespace": "storage-system",
            "name": "acme-nfsguard",
            "path": "/mutate",
            "port": 8443,
        }
        assert entry["timeoutSeconds"] == 10


def test_timeout_outside_the_api_bounds_is_refused() -> None:
    result = nfsguard("webhook-config", "--policy", "policies", "--timeout-seconds", "31")
    assert result.exit_code == 2
    assert "--timeout-seconds" in result.output
