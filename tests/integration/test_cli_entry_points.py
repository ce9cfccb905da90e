"""What a user installs reaches the commands: the ``nfsguard`` binary and
``python -m webhook``, as real processes.

The unit tests run every command in-process through click (``tests.support.nfsguard``);
``test_review_cli.py`` runs ``review`` through both entry points.
"""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

from tests.integration.conftest import NFSGUARD, REPO
from tests.unit.audit.audit_fixtures import T0, StepClock, decision, request
from tests.unit.cli.test_policy_test_cmd import layout
from webhook.audit.signing import generate, load_signer
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
    private, public = tmp_path / "audit.key", tmp_path / "audit.pub"
    generate(str(private), str(public))
    log = tmp_path / "audit.log"
    writer = AuditWriter(
        str(log),
        signer=load_signer(str(private)),
        checkpoint_every=10,
        checkpoint_interval=0,
        clock=StepClock(T0, timedelta(hours=6)),
    )
    for i in range(28):
        writer.record(request(uid=f"u{i}", name=f"pv-{i:02d}"), decision())
    writer.close()
    result = subprocess.run(
        [str(PYTHON), "-m", "webhook", "audit", "verify", str(log), "--public-key", str(public)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 31 records")
