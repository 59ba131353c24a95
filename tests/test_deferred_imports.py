"""vsa_ops.pyinfra_glue.deferred_imports: invoke is not loaded by starting a command, and paramiko's
``Match exec`` (the one use of invoke) still works through the stand-in."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_starting_the_cli_does_not_load_invoke():
    loaded = _run("import sys, vsa_ops.cli, paramiko, pyinfra.api; "
                  "print(sorted(m for m in sys.modules if m.startswith('invoke.')))")
    assert loaded == "[]"


def test_match_exec_still_runs_through_invoke():
    # without gevent's patching: invoke's own stdin handling is not what is tested here
    found = _run("import sys; from vsa_ops.pyinfra_glue.deferred_imports import defer; defer(); import paramiko; "
                 "config = paramiko.SSHConfig.from_text('Match exec \"exit 0\"\\n  User alice\\n'); "
                 "print(config.lookup('x').get('user'), 'invoke.tasks' in sys.modules)")
    assert found == "alice True"


def test_deploy_loads_neither_the_site_commands_nor_the_status_or_backup_services():
    # README "Speed": each command imports only what it uses. The deploy's body imports all it needs
    # before the missing inventory stops it.
    loaded = _run("import sys\nfrom vsa_ops.cli import main\n"
                  "try:\n    main(['deploy', '-i', '/nonexistent/inventory.py'], standalone_mode=False)\n"
                  "except SystemExit:\n    pass\n"
                  "print(' '.join(sorted(m for m in sys.modules if m.startswith('vsa_ops.'))))").split()
    assert "vsa_ops.host_manifest" in loaded and "vsa_ops.pyinfra_glue.runner" in loaded  # it did get that far
    unwanted = ("vsa_ops.domain_changes", "vsa_ops.domains_cli", "vsa_ops.listings", "vsa_ops.probe",
                "vsa_ops.status", "vsa_ops.preflight", "vsa_ops.backup.service", "vsa_ops.backup.cli")
    assert [m for m in loaded if m.startswith(unwanted)] == []
