"""The disaster-recovery drill (issue 13): a hub with three domains (two with TLS, one with basic auth),
rows in the dashboard database and audit records is backed up to the lab's SFTP server; the lab host
is destroyed (its container and its Docker volume) and a fresh one started; then the README's two
commands, `vsa-ops deploy --limit HOST --defer-certificates` and `vsa-ops restore --limit HOST`: every
domain serves again with the same certificate (the test CA issued none), the same password, the same
rows, an intact audit chain. Then a scheduled backup run by hand is chained into the audit trail by the
next command, once."""

from __future__ import annotations

import json
import shlex
import ssl
import subprocess
import time

import pytest
from cryptography import x509

from vsa_ops.probe import request

from tests.lab.conftest import ROOT, vsa

pytestmark = pytest.mark.lab

PASSWORD = "drill-Password-7"
TLS_SITES = ("alpha.drill.test", "beta.drill.test")
AUTH_SITE = "gamma.drill.test"
RESULT = ROOT / ".lab" / "recovery-time.json"


def _add(lab, name: str, *args: str, password: str | None = None) -> None:
    result = subprocess.run(["vsa-ops", "add-domain", name, "-i", str(lab.inventory), "--upstream", "demo-app:8080",
                             *args], cwd=ROOT, input=password, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _serial(lab, name: str, settle: float = 20) -> int:
    """The serial of the certificate ``name`` is served with (NGINX's reload takes a moment)."""
    deadline = time.monotonic() + settle
    while True:
        try:
            _, certificate = request("127.0.0.1", lab.host["https_port"], name, tls=True,
                                     ca_file=lab.info["acme_roots"])
            return x509.load_der_x509_certificate(certificate).serial_number
        except (OSError, ssl.SSLError) as error:
            if time.monotonic() > deadline:
                state = lab.sh("ls -l /srv/flowbiz/reverse-proxy/letsencrypt/live /srv/flowbiz/reverse-proxy/nginx/conf.d; "
                               f"grep -n 'listen\\|ssl_certificate' /srv/flowbiz/reverse-proxy/nginx/conf.d/{name}.conf; "
                               "docker logs --tail 15 reverse-proxy-nginx 2>&1", check=False)
                raise AssertionError(f"{name}: no HTTPS ({error}); on the host:\n{state}") from None
            time.sleep(0.5)


def _auth_status(lab, password: str | None) -> int:
    answer, _ = request("127.0.0.1", lab.host["http_port"], AUTH_SITE, tls=False,
                        **({"user": "ops", "password": password} if password is not None else {}))
    return answer.status


def _issued() -> int:
    """Certificates the test CA has issued since it started (pebble logs each)."""
    logs = subprocess.run(["docker", "logs", "vsa-lab-acme"], capture_output=True, text=True)
    return (logs.stdout + logs.stderr).count("Issued certificate serial")


def _rows(lab) -> str:
    query = shlex.quote("SELECT string_agg(name, ',' ORDER BY name) FROM drill_sites")
    return lab.sh(f"docker exec dashboard-postgres psql -U dashboard -d dashboard -Atc {query}").strip()


@pytest.fixture
def registry_kept(lab):
    """The lab's registry as it was before the drill, whatever the drill does (its sites go again)."""
    path = ROOT / ".lab" / "domains.yml"
    before = path.read_text() if path.exists() else None
    yield
    if before is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(before)


def test_a_destroyed_host_serves_again_with_its_certificates_rows_and_audit_trail(lab, registry_kept):
    vsa("lab", "up", "--backups")
    # A repository left by an earlier lab (another checkout, another password) is not this drill's.
    subprocess.run(["docker", "exec", "vsa-lab-backup", "sh", "-c", "rm -rf /srv/restic/*"], check=True,
                   capture_output=True)
    lab.refresh()
    lab.deploy()
    for name in TLS_SITES:
        _add(lab, name)
    _add(lab, AUTH_SITE, "--no-tls", "--insecure-auth", "--auth-user", "ops", password=PASSWORD)
    lab.sh("docker exec dashboard-postgres psql -U dashboard -d dashboard -qc "
           "\"CREATE TABLE drill_sites(name text); INSERT INTO drill_sites VALUES ('a'), ('b'), ('c')\"")
    serials = {name: _serial(lab, name) for name in TLS_SITES}
    assert _auth_status(lab, PASSWORD) == 200 and _auth_status(lab, None) == 401

    backup = vsa("backup", "-i", str(lab.inventory))
    snapshot = backup.stdout.split("snapshot ")[1].split(",")[0]
    listing = json.loads(vsa("backups", "-i", str(lab.inventory), "--json").stdout)
    assert [s["short_id"] for s in listing[lab.name]][-1] == snapshot
    issued = _issued()

    # The disaster: the host and everything on it gone.
    started = time.monotonic()
    subprocess.run(["docker", "rm", "-f", lab.name], check=True, capture_output=True)
    subprocess.run(["docker", "volume", "rm", f"{lab.name}-docker"], check=True, capture_output=True)
    vsa("lab", "up", "--backups")
    lab.refresh()
    # The README's recovery: deploy without ordering certificates, then restore.
    deployed = lab.deploy("--limit", lab.name, "--defer-certificates")
    assert f"certificates deferred for {', '.join(TLS_SITES)}" in deployed.stdout, deployed.stdout
    assert "none was ordered from the CA" in deployed.stderr
    assert _issued() == issued, "the deploy ordered a certificate"
    restored = vsa("restore", "-i", str(lab.inventory), "--limit", lab.name)
    recovery = time.monotonic() - started
    assert "restored letsencrypt 2" in restored.stderr, restored.stderr
    assert "sites converged: " in restored.stderr, restored.stderr

    assert {name: _serial(lab, name) for name in TLS_SITES} == serials
    assert _issued() == issued, "the test CA issued a certificate during the recovery"
    assert (_auth_status(lab, PASSWORD), _auth_status(lab, None), _auth_status(lab, "wrong")) == (200, 401, 401)
    assert _rows(lab) == "a,b,c"
    verify = vsa("audit", "verify", "-i", str(lab.inventory))
    assert f"{lab.name}: intact" in verify.stdout
    records = json.loads(vsa("audit", "-i", str(lab.inventory), "--json").stdout)
    actions = [r["action"] for r in records]
    assert "add-domain" in actions and actions.count("restore") == 1 and actions[-1] == "restore"
    # A host holding data now (rows, the certificates): a second restore is refused, naming them.
    again = vsa("restore", "-i", str(lab.inventory), "--limit", lab.name, check=False)
    assert again.returncode == 1 and "already holds data" in again.stderr and "2 certificates" in again.stderr
    RESULT.write_text(json.dumps({"recovery_seconds": round(recovery, 1)}) + "\n")
    # --force overwrites what the host holds now with the snapshot, and the trail goes on intact.
    lab.sh("docker exec dashboard-postgres psql -U dashboard -d dashboard -qc \"INSERT INTO drill_sites VALUES ('d')\"")
    vsa("restore", "-i", str(lab.inventory), "--limit", lab.name, "--force")
    assert _rows(lab) == "a,b,c"
    assert {name: _serial(lab, name) for name in TLS_SITES} == serials and _issued() == issued
    assert (_auth_status(lab, PASSWORD), _auth_status(lab, None)) == (200, 401)
    assert f"{lab.name}: intact" in vsa("audit", "verify", "-i", str(lab.inventory)).stdout


def test_a_scheduled_backup_is_chained_into_the_audit_trail_by_the_next_command_once(lab):
    vsa("lab", "up", "--backups")
    lab.refresh()
    lab.deploy()
    run = lab.sh("docker exec backup-restic /bin/sh /etc/vsa-backup/vsa-backup.sh scheduled")
    assert "result ok" in run, run
    assert len(lab.sh("ls /srv/flowbiz/backup/staging/spool").split()) == 1
    before = json.loads(vsa("audit", "-i", str(lab.inventory), "--json").stdout)

    first = vsa("backups", "-i", str(lab.inventory))
    assert f"{lab.name}: 1 scheduled backup run added to the audit trail" in first.stderr, first.stderr
    assert lab.sh("ls /srv/flowbiz/backup/staging/spool").split() == []
    records = json.loads(vsa("audit", "-i", str(lab.inventory), "--json").stdout)
    [chained] = [r for r in records if r not in before]
    assert (chained["action"], chained["actor"], chained["result"]) == ("backup", f"schedule@{lab.name}", "ok")
    assert chained["changes"][0].startswith("snapshot ")
    assert f"{lab.name}: intact" in vsa("audit", "verify", "-i", str(lab.inventory)).stdout

    second = vsa("status", "-i", str(lab.inventory), check=False)
    assert "scheduled backup" not in second.stderr, second.stderr
    assert len(json.loads(vsa("audit", "-i", str(lab.inventory), "--json").stdout)) == len(records)
