"""End to end on a lab VPS: `vsa-ops plan` shows exactly what a deploy would change (exit 0 / 2),
a hand edit appears as a unified diff until a deploy repairs it, and secrets never show, neither
in files created nor in files removed."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.lab.conftest import ROOT, vsa

pytestmark = pytest.mark.lab

SNIPPET = "/srv/flowbiz/reverse-proxy/nginx/snippets/proxy.conf"


@pytest.fixture(scope="module")
def hub(lab):
    lab.deploy()
    return lab


def plan(hub, *args):
    return vsa("plan", "-i", str(hub.inventory), *args, check=False)


def test_plan_after_a_deploy_is_empty_and_exits_0(hub):
    result = plan(hub)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "vsa-lab-1: no changes"


def test_a_hand_edit_shows_as_a_unified_diff_until_deploy_repairs_it(hub):
    hub.sh(f"sed -i 's/proxy_read_timeout 60s;/proxy_read_timeout 5s;/' {SNIPPET}")
    result = plan(hub)
    assert result.returncode == 2
    assert f"--- a{SNIPPET}\n+++ b{SNIPPET}\n" in result.stdout
    assert "-proxy_read_timeout 5s;\n+proxy_read_timeout 60s;" in result.stdout
    assert "reload reverse-proxy-nginx" in result.stdout
    markdown = plan(hub, "--format", "markdown")
    assert markdown.returncode == 2 and markdown.stdout.count("```diff") == 1
    data = json.loads(plan(hub, "--format", "json").stdout)
    assert data[0]["changed"] is True and data[0]["diffs"][0]["path"] == SNIPPET
    vsa("deploy", "-i", str(hub.inventory))
    assert plan(hub).returncode == 0
    assert "proxy_read_timeout 60s;" in hub.sh(f"cat {SNIPPET}")
    # The repair is in the host's audit trail, with every field, in the JSONL and in SQLite.
    records = json.loads(vsa("audit", "-i", str(hub.inventory), "--action", "deploy", "--json").stdout)
    record = [r for r in (records if isinstance(records, list) else records.get("vsa-lab-1", []))][-1]
    assert record["vps_id"] == "vsa-lab-1" and record["result"] == "ok" and record["target"] == "hub"
    for key in ("ts", "actor", "action", "duration", "changes", "error", "seq", "prev_hash", "hash"):
        assert key in record
    assert "reload reverse-proxy-nginx" in json.dumps(record["changes"])
    row = hub.sh(f"sqlite3 /var/lib/vsa/audit.db 'select action, result, hash from audit where seq = {record['seq']}'")
    assert row.strip() == f"deploy|ok|{record['hash']}"
    assert vsa("audit", "verify", "-i", str(hub.inventory)).returncode == 0


def test_a_plan_with_basic_auth_shows_no_hash(hub):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSA_")}
    added = subprocess.run(["vsa-ops", "add-domain", "secret.vsa.test", "--upstream", "demo-app:8080", "--no-tls",
                            "--auth-user", "bob", "--insecure-auth", "--no-apply", "-i", str(hub.inventory)], cwd=ROOT, env=env,
                           input="a long password\n", capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    try:
        for fmt in ("text", "markdown", "json"):
            result = plan(hub, "--format", fmt)
            assert result.returncode == 2
            assert "secret.vsa.test.htpasswd" in result.stdout
            assert "$2" not in result.stdout and "a long password" not in result.stdout
            assert "content hidden" in result.stdout
    finally:
        vsa("remove-domain", "secret.vsa.test", "--no-apply", "-i", str(hub.inventory))


def test_removing_a_basic_auth_domain_shows_no_hash(hub):
    """The htpasswd file of a deployed domain, once the domain is removed from the registry, is a
    removal in the plan: listed, masked, its content never shown."""
    added = subprocess.run(["vsa-ops", "add-domain", "gone.vsa.test", "--upstream", "demo-app:8080", "--no-tls",
                            "--auth-user", "bob", "--insecure-auth", "--no-apply", "-i", str(hub.inventory)], cwd=ROOT,
                           env={k: v for k, v in os.environ.items() if not k.startswith("VSA_")},
                           input="a long password\n", capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    htpasswd = "/srv/flowbiz/reverse-proxy/nginx/auth/gone.vsa.test.htpasswd"
    try:
        hub.deploy()
        assert hub.sh(f"cat {htpasswd}").startswith("bob:$2")
    finally:
        vsa("remove-domain", "gone.vsa.test", "--no-apply", "-i", str(hub.inventory))
    try:
        for fmt in ("text", "markdown", "json"):
            result = plan(hub, "--format", fmt)
            assert "$2" not in result.stdout and "bob:" not in result.stdout, result.stdout
            assert result.returncode == 2, result.stdout + result.stderr
            assert htpasswd in result.stdout and "content hidden" in result.stdout
    finally:
        hub.deploy()
    hub.sh(f"test ! -e {htpasswd}")


def test_a_missing_inventory_is_an_error(hub):
    result = vsa("plan", "-i", "no-such-inventory.py", check=False)
    assert result.returncode == 1 and "inventory: no such file 'no-such-inventory.py'" in result.stderr
