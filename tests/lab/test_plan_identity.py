"""End to end on a lab VPS: the plan identity (issue 12). After a deploy its key plans (exit 0, then 2
and the diff after a hand edit) without any secret on the controller, and it can run nothing else:
no `id`, no port forwarding, no file outside the managed paths, no deploy."""

from __future__ import annotations

import subprocess

import pytest

from tests.lab.conftest import ROOT, vsa
from vsa_ops.state_read import parse_texts, text_request

pytestmark = pytest.mark.lab

SNIPPET = "/srv/flowbiz/reverse-proxy/nginx/snippets/proxy.conf"
PLAN_INVENTORY = ROOT / ".lab" / "plan-inventory.py"


@pytest.fixture(scope="module")
def hub(lab):
    lab.deploy()
    return lab


def ssh(hub, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """The plan identity's key, host key checked against the lab's known_hosts."""
    info = hub.info
    return subprocess.run(["ssh", "-i", info["plan_ssh_key"], "-p", str(hub.host["ssh_port"]), "-o", "BatchMode=yes",
                           "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={ROOT / '.lab/known_hosts'}",
                           *args[:-1], f"{info['plan_ssh_user']}@127.0.0.1", args[-1]],
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_lab_info_names_the_plan_identity_and_the_plan_inventory_holds_no_secret(hub):
    assert hub.info["plan_ssh_user"] == "vsa-plan" and hub.info["plan_ssh_key"].endswith("id_plan_ed25519")
    text = PLAN_INVENTORY.read_text()
    assert "'ssh_user': 'vsa-plan'" in text and "vsa_secrets_file" not in text and "id_plan_ed25519" in text


def test_the_plan_key_runs_nothing_but_the_state_reader(hub):
    ran = ssh(hub, "id")
    assert "uid=" not in ran.stdout + ran.stderr
    assert ssh(hub, "sh -c 'cat /etc/shadow'").stdout.find("root:") == -1
    texts = parse_texts(ssh(hub, "id", stdin=text_request([SNIPPET, "/etc/shadow", "/root/.ssh/authorized_keys",
                                                           "/srv/flowbiz/dashboard/secrets/postgres_password"])).stdout)
    assert list(texts) == [SNIPPET]
    forward = ssh(hub, "-W", "127.0.0.1:22", "x")
    assert forward.returncode != 0 and "prohibited" in forward.stderr, forward.stderr
    # the account itself is no login of its own: not root, and no key in its home it could replace
    assert hub.sh("id -u vsa-plan").strip() == "64910"
    assert hub.sh("stat -c %U /var/lib/vsa-plan/.ssh/authorized_keys").strip() == "root"


def test_plans_with_the_plan_identity_and_no_secrets(hub, tmp_path):
    assert not (ROOT / "secrets.env").exists()
    result = vsa("plan", "-i", str(PLAN_INVENTORY), check=False)  # vsa() drops every VSA_ variable
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("vsa-lab-1: no changes\n")
    assert "  file /srv/flowbiz/dashboard/secrets/postgres_password: secret: not compared" in result.stdout
    hub.sh(f"sed -i 's/proxy_read_timeout 60s;/proxy_read_timeout 5s;/' {SNIPPET}")
    try:
        drift = vsa("drift", "-i", str(PLAN_INVENTORY), check=False)
        assert drift.returncode == 2, drift.stdout + drift.stderr
        assert "-proxy_read_timeout 5s;\n+proxy_read_timeout 60s;" in drift.stdout
        assert "no audit record" in drift.stderr
        # a metadata change of a file whose content is not compared still shows
        hub.sh("chmod 0644 /srv/flowbiz/dashboard/secrets/postgres_password")
        changed = vsa("plan", "-i", str(PLAN_INVENTORY), check=False)
        assert changed.returncode == 2 and "postgres_password: mode" in changed.stdout, changed.stdout
        assert "$2" not in changed.stdout
    finally:
        hub.deploy()
    assert vsa("plan", "-i", str(PLAN_INVENTORY), check=False).returncode == 0


@pytest.mark.parametrize("command", [["deploy"], ["remove-domain", "nothing.example.com"], ["backup"]])
def test_changing_commands_refuse_the_plan_identity_in_one_line(hub, command):
    result = vsa(*command, "-i", str(PLAN_INVENTORY), check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "plan identity 'vsa-plan'" in result.stderr, result.stderr
