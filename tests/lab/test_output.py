"""What lab commands print: results alone on stdout, whole diagnostic lines on stderr, and no line
about host keys (the lab records its hosts' keys in .lab/known_hosts). A host whose key changed is
refused, in one line that names it."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.lab.conftest import ROOT, vsa

pytestmark = pytest.mark.lab
NAME = "output.vsa.test"


def _whole_diagnostics(result) -> None:
    """No line drawn over (\\r, terminal escapes), and no result among the diagnostics."""
    for line in result.stderr.splitlines():
        assert "\r" not in line and "\x1b[" not in line, repr(line)
        assert not re.search(r": (serving|removed)\b", line), repr(line)


def test_lab_commands_keep_results_on_stdout_and_say_nothing_of_host_keys(lab):
    inventory = str(lab.inventory)
    deploy = vsa("deploy", "-i", inventory)
    added = vsa("add-domain", NAME, "--upstream", "demo-app:8080", "--no-tls", "-i", inventory)
    plan = vsa("plan", "-i", inventory, check=False)
    listed = vsa("domains", "-i", inventory)
    removed = vsa("remove-domain", NAME, "-i", inventory)
    for result in (deploy, added, plan, listed, removed):
        text = result.stdout + result.stderr
        assert "host key" not in text.lower() and "known_hosts" not in text, text
        _whole_diagnostics(result)
    assert re.fullmatch(rf"{lab.name}: [^\n]+\n", deploy.stdout), deploy.stdout
    assert "--> Connecting to hosts..." in deploy.stderr  # pyinfra's progress: a diagnostic
    assert added.stdout == f"{NAME}: serving, status 200\n"
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert [line for line in listed.stdout.splitlines() if line.startswith(f"{NAME} on {lab.name}: vhost yes")]
    assert removed.stdout == f"{NAME}: removed\n"


def test_a_changed_host_key_is_refused_in_one_line_naming_the_host(lab, tmp_path):
    port = lab.host["ssh_port"]
    other = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {other}\n")
    inventory = tmp_path / "inventory.py"
    text = lab.inventory.read_text()
    recorded = str(ROOT / ".lab" / "known_hosts")
    assert repr(recorded) in text  # the lab inventory checks keys against what `lab up` recorded
    inventory.write_text(text.replace(repr(recorded), repr(str(known))))
    result = vsa("plan", "-i", str(inventory), check=False)
    assert result.returncode == 1
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{lab.name}: error: could not connect: the SSH host key of [127.0.0.1]:{port} "
                               f"differs from the one in {known}: refused"), lines
