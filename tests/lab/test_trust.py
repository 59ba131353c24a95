"""Trust on a lab host: a login user that holds uid 1000 (as on Ubuntu cloud images) cannot read any
secret file; a rotated PostgreSQL password lets the dashboard role connect with the new password and
not the old; the audit trail's records are signed and a trail re-chained, cut from its end or stripped
of its database fails `audit verify`. Runs on its own fresh host (the session's lab)."""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest

from vsa_ops import audit
from vsa_ops.config import hub_config

from tests.lab.conftest import ROOT, vsa

pytestmark = pytest.mark.lab

SECRET_FILES = ("/srv/flowbiz/dashboard/secrets/postgres_password",
                "/srv/flowbiz/dashboard/secrets/api_database_password",
                "/srv/flowbiz/observability/secrets/grafana_admin_password")
JSONL, DB = hub_config().audit.jsonl, hub_config().audit.database


def lab_secret(name: str) -> str:
    for line in (ROOT / ".lab" / "secrets.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == name:
            return value
    raise AssertionError(f"{name} not in .lab/secrets.env")


@pytest.fixture(scope="module")
def host(lab):
    """The lab host with a login user at uid/gid 1000 made before the first deploy, then deployed."""
    lab.sh("id -u 1000 >/dev/null 2>&1 || useradd --uid 1000 --user-group --create-home --shell /bin/bash login")
    lab.deploy()
    return lab


def psql_as_dashboard(lab, password: str) -> int:
    """Exit status of a password login of the dashboard role over TCP, from inside its container, to
    its address on dashboard-net: the API's way in (loopback is trusted by initdb's defaults)."""
    address = lab.sh("docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "
                     "dashboard-postgres").split()[0]
    result = lab.sh(f"docker exec -e PGPASSWORD={password} dashboard-postgres psql -h {address} -U dashboard "
                    f"-d dashboard -X -tAc 'select 1' >/dev/null 2>&1; echo $?")
    return int(result.strip())


def test_the_uid_1000_login_user_reads_no_secret_file(host):
    for path in SECRET_FILES:
        assert host.sh(f"stat -c '%U:%G %a' {path}").split()[0].startswith("root:vsa-"), path
        denied = host.sh(f"setpriv --reuid=1000 --regid=1000 --init-groups cat {path} >/dev/null 2>&1; echo $?")
        assert denied.strip() != "0", f"uid 1000 can read {path}"
        assert host.sh(f"cat {path} >/dev/null; echo $?").strip() == "0"  # root still can
    assert host.sh("getent group vsa-dashboard-api").startswith("vsa-dashboard-api:x:64902:")


def test_a_rotated_database_password_replaces_the_old_one(host):
    old, new = lab_secret("VSA_POSTGRES_PASSWORD"), "rotated-" + secrets.token_urlsafe(12)
    assert psql_as_dashboard(host, old) == 0
    try:
        result = host.deploy(env={"VSA_POSTGRES_PASSWORD": new})
        assert new not in result.stdout + result.stderr
        assert psql_as_dashboard(host, new) == 0, "the role does not take the new password"
        assert psql_as_dashboard(host, "wrong-" + old) != 0
        assert psql_as_dashboard(host, old) != 0, "the old password still works"
        assert host.sh("cat /srv/flowbiz/dashboard/secrets/api_database_password") == new
        assert host.containers()["dashboard-api"]["State"]["Status"] == "running"
    finally:
        host.deploy()  # back to the lab's password, by the same rotation
    assert psql_as_dashboard(host, old) == 0 and psql_as_dashboard(host, new) != 0


def write(lab, path: str, text: str) -> None:
    subprocess.run(["docker", "exec", "-i", lab.name, "sh", "-c", f"cat > {path}"], input=text, text=True,
                   check=True)


def verify(lab) -> tuple[int, str]:
    result = vsa("audit", "verify", "-i", str(lab.inventory), check=False)
    return result.returncode, result.stdout + result.stderr


def test_a_rechained_cut_or_databaseless_trail_fails_verify(host):
    code, output = verify(host)
    assert code == 0, output
    last = host.sh(f"tail -n 1 {JSONL}")
    assert '"sig":"' in last
    host.sh(f"cp -p {JSONL} /tmp/trust.jsonl && cp -p {DB} /tmp/trust.db")
    count = int(host.sh(f"wc -l < {JSONL}").strip())
    try:
        # Root rewrites record 1 and re-chains every later one in both files (it has no key to sign).
        records = [json.loads(line) for line in host.sh(f"cat {JSONL}").splitlines()]
        records[0]["result"] = "rolled_back"
        for index, record in enumerate(records):
            if index:
                record["prev_hash"] = records[index - 1]["hash"]
            record["hash"] = audit.record_hash(record)  # the old sig stays: root cannot make a new one
        texts = [audit.canonical(r) for r in records]
        write(host, JSONL, "".join(t + "\n" for t in texts))
        sql = "DROP TRIGGER audit_no_update;\n" + "".join(
            f"UPDATE audit SET json = '{t.replace(chr(39), chr(39) * 2)}', hash = '{r['hash']}', "
            f"prev_hash = '{r['prev_hash']}', result = '{r['result']}' WHERE seq = {r['seq']};\n"
            for t, r in zip(texts, records))
        write(host, "/tmp/trust.sql", sql)
        host.sh(f"sqlite3 {DB} < /tmp/trust.sql")
        code, output = verify(host)
        assert code == 1 and f"{host.name}: BROKEN at seq 1 (line 1): altered" in output, output
        host.sh(f"cp -p /tmp/trust.jsonl {JSONL} && cp -p /tmp/trust.db {DB}")
        # Both files cut by their last record.
        host.sh(f"sed -i '$d' {JSONL} && sqlite3 {DB} 'DROP TRIGGER audit_no_delete; "
                f"DELETE FROM audit WHERE seq = {count}'")
        code, output = verify(host)
        assert code == 1 and f"BROKEN at seq {count}: deleted: the trail ends at seq {count - 1}" in output, output
        host.sh(f"cp -p /tmp/trust.jsonl {JSONL} && rm -f {DB} {DB}-wal {DB}-shm")
        code, output = verify(host)
        assert code == 1 and "deleted: the SQLite database is missing" in output, output
    finally:
        host.sh(f"cp -p /tmp/trust.jsonl {JSONL} && cp -p /tmp/trust.db {DB}")
    assert verify(host)[0] == 0
