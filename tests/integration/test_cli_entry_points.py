"""What a user installs reaches the commands: the ``nfsguard`` binary and
``python -m webhook``, as real processes.

The unit tests run every command in-process through click (``tests.support.nfsguard``);
``test_review_cli.py`` runs ``review`` through both entry points.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.integration.conftest import NFSGUARD, REPO
from tests.unit.audit.audit_fixtures import decision, request
from tests.unit.cli.test_policy_test_cmd import layout
from webhook.audit.writer import AuditWriter

PYTHON = REPO / ".venv" / "bin" / "python"


def test_policy_test_from_the_installed_binary(tmp_path: Path) -> None:
    tests = layout(tmp_path)
    proc = subprocess.run(
        [str(NFSGUARD), "policy", "test", str(tests)], capture_output=True, text=True, check=False
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines()[-1] == "12 passed, 0 failed"


def test_audit_verify_from_python_m_webhook(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    writer = AuditWriter(str(log), checkpoint_interval=0)
    for i in range(3):
        writer.record(request(uid=f"u{i}", name=f"pv-{i}"), decision())
    writer.close()
    result = subprocess.run(
        [str(PYTHON), "-m", "webhook", "audit", "verify", "--allow-unsigned", str(log)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 3 records")
