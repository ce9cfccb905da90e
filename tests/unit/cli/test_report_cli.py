"""``nfsguard report``'s command line: bad input is one line and exit 2, and loading the
CLI never imports prometheus-client (it picks its multiprocess mode at import, and
``serve`` must set PROMETHEUS_MULTIPROC_DIR first)."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from webhook.cli.main import cli


def test_loading_the_cli_imports_no_metrics_library() -> None:
    code = "import sys, webhook.cli.main; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_policy_source_is_required_once() -> None:
    for args in ([], ["--policy", "p.yaml", "--policy-configmap", "ns/cm"]):
        result = CliRunner().invoke(cli, ["report", *args])
        assert result.exit_code == 2, result.output
        assert "give --policy PATH or --policy-configmap NAMESPACE/NAME" in result.output
        assert "Traceback" not in result.output
