"""`vsa-ops preflight` on a fresh lab host, before its first deploy: it passes with only the warnings a
container cannot avoid (named as such), fails a TLS domain whose name points elsewhere, and fails when
another process holds port 80.

Lab domains (*.vsa.test) are in no DNS. The lab's ACME CA resolves every name to the lab host through
its own DNS server; preflight is told the same through the host data `vsa_dns_overrides` (name ->
addresses), and says "(vsa_dns_overrides, not DNS)" on every line that used it. A name without an
override is looked up in the controller's real DNS."""

from __future__ import annotations

import json
import runpy
import subprocess
from pathlib import Path

import pytest

from tests.lab.conftest import ROOT, vsa

pytestmark = pytest.mark.lab

# Documentation addresses (RFC 5737): only ever compared, never contacted.
ELSEWHERE = "192.0.2.7"


@pytest.fixture(scope="module")
def fresh(lab):
    lab.recreate()
    return lab


def preflight_inventory(lab, folder: Path, domains: dict[str, str], overrides: dict[str, list[str]]) -> Path:
    """The lab inventory with the host key pinned (ssh-keyscan, as the README's walkthrough does),
    strict host-key checking, its own domain registry and DNS overrides."""
    folder.mkdir(parents=True, exist_ok=True)
    hosts = runpy.run_path(str(lab.inventory))["lab"]
    port = lab.host["ssh_port"]
    keys = subprocess.run(["ssh-keyscan", "-p", str(port), "127.0.0.1"], capture_output=True, text=True, check=True)
    assert keys.stdout.strip(), keys.stderr
    (folder / "known_hosts").write_text(keys.stdout)
    (folder / "domains.yml").write_text("".join(f"{name}:\n  upstream: {up}\n" for name, up in domains.items()) or "{}\n")
    pinned = [(name, {**data, "ssh_known_hosts_file": str(folder / "known_hosts"), "ssh_strict_host_key_checking": "yes",
                      "vsa_domains_file": str(folder / "domains.yml"), "vsa_dns_overrides": overrides})
              for name, data in hosts if name == lab.name]
    path = folder / "inventory.py"
    path.write_text(f"lab = {pinned!r}\nhubs = [name for name, _ in lab]\n")
    return path


def run(inventory: Path) -> tuple[int, dict[str, dict]]:
    result = vsa("preflight", "-i", str(inventory), "--json", check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, {row["check"]: row for row in json.loads(result.stdout)}


def test_a_fresh_lab_host_passes_with_the_warnings_a_container_cannot_avoid(fresh, tmp_path):
    inventory = preflight_inventory(fresh, tmp_path, {"shop.vsa.test": "demo-app:8080"},
                                    {"shop.vsa.test": ["127.0.0.1"]})
    code, checks = run(inventory)
    assert code == 0, json.dumps(checks, indent=1)
    warnings = {name: c["message"] for name, c in checks.items() if c["status"] == "warn"}
    assert set(warnings) == {"fstab /", "fstab /var/lib/docker", "fstab /boot", "fstab /boot/efi", "root device",
                             "clock"}, warnings
    assert all("in a container (docker)" in message for message in warnings.values()), warnings
    assert "no systemd" in warnings["clock"]
    for name in ("os", "privileges", "port 80", "port 443", "docker", "acme", "host key", "dns shop.vsa.test",
                 "disk /"):
        assert checks[name]["status"] == "ok", (name, checks[name])
    assert "(vsa_dns_overrides, not DNS)" in checks["dns shop.vsa.test"]["message"]
    assert "trusting the configured acme_ca_bundle" in checks["acme"]["message"]
    # the same run as text: one line per check, and the verdict
    text = vsa("preflight", "-i", str(inventory)).stdout
    assert f"{fresh.name}: ready (" in text
    assert len([line for line in text.splitlines() if ": ok " in line or ": warn " in line]) == len(checks)


def test_a_domain_that_does_not_point_at_the_host_fails_naming_where_it_points(fresh, tmp_path):
    inventory = preflight_inventory(fresh, tmp_path, {"elsewhere.vsa.test": "demo-app:8080",
                                                      "nowhere.vsa.test": "demo-app:8080"},
                                    {"elsewhere.vsa.test": [ELSEWHERE]})
    code, checks = run(inventory)
    assert code == 1
    elsewhere = checks["dns elsewhere.vsa.test"]
    assert elsewhere["status"] == "fail"
    assert f"elsewhere.vsa.test resolves to {ELSEWHERE}" in elsewhere["message"] and "127.0.0.1" in elsewhere["message"]
    assert "127.0.0.1" in elsewhere["fix"]
    nowhere = checks["dns nowhere.vsa.test"]  # looked up in the controller's DNS, where .test never exists
    assert nowhere["status"] == "fail" and "nowhere.vsa.test does not resolve" in nowhere["message"]


def test_port_80_held_by_another_process_fails_naming_it(fresh, tmp_path):
    inventory = preflight_inventory(fresh, tmp_path, {}, {})
    pid = fresh.sh("busybox httpd -f -p 80 -h /tmp >/dev/null 2>&1 & echo $!").strip()
    try:
        code, checks = run(inventory)
    finally:
        fresh.sh(f"kill {pid}", check=False)
    assert code == 1
    assert checks["port 80"]["status"] == "fail"
    assert "busybox (pid " in checks["port 80"]["message"] and checks["port 80"]["fix"]
    assert checks["port 443"]["status"] == "ok"
    assert checks["dns"]["status"] == "ok" and checks["acme"]["status"] == "ok"


def test_add_domain_on_a_host_never_deployed_says_deploy_first_and_changes_nothing(fresh):
    """Before: it wrote the vhost into a tree no NGINX reads and failed later at 'files and stacks',
    without saying why."""
    registry = ROOT / ".lab" / "domains.yml"
    before = registry.read_text() if registry.exists() else None
    look = "find /srv /var/log/vsa /var/lib/vsa /var/lib/vsa-ops 2>/dev/null | sort; md5sum /etc/fstab"
    host_before = fresh.sh(look, check=False)
    result = vsa("add-domain", "early.vsa.test", "--upstream", "demo-app:8080", "--no-tls", "-i", str(fresh.inventory),
                 check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"vsa-ops: add-domain early.vsa.test failed at step 'preparing the deploy': {fresh.name}: "
        "reverse-proxy/nginx not running (is the hub deployed?): run `vsa-ops deploy` first; the registry and the "
        "hosts are as they were"), result.stderr
    assert (registry.read_text() if registry.exists() else None) == before
    assert fresh.sh(look, check=False) == host_before


def test_after_the_first_deploy_the_hubs_own_nginx_holds_80_and_443(fresh, tmp_path):
    """What the README's morning routine runs: preflight on a serving hub still passes."""
    fresh.deploy()
    code, checks = run(preflight_inventory(fresh, tmp_path, {}, {}))
    assert code == 0, json.dumps(checks, indent=1)
    for port in (80, 443):
        assert checks[f"port {port}"]["status"] == "ok"
        assert checks[f"port {port}"]["message"] == "held by the hub's NGINX (reverse-proxy-nginx)"
    assert checks["docker"]["status"] == "ok"

