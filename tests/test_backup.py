"""Backups (issue 13): configuration, the rendered backup stack, and the stack's script against real
containers (Debian's restic and PostgreSQL in the lab images) on this machine's Docker engine."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from vsa_ops.config import ConfigError, hub_config
from vsa_ops.render import RenderError

ROOT = Path(__file__).resolve().parents[1]
SFTP = {"backup": {"repository": "sftp:vsa@backup.example.net:/srv/restic/hub"}}
SECRETS = {"VSA_POSTGRES_PASSWORD": "pg-Secret-123", "VSA_GRAFANA_ADMIN_PASSWORD": "graf-Secret-456",
           "VSA_BACKUP_PASSWORD": "restic-Secret-789", "VSA_BACKUP_SSH_KEY": "c3NoLWtleS1zZWNyZXQ="}


@pytest.mark.parametrize("repository", [
    "/var/backups/vsa-restic", "local:/mnt/backup/restic", "sftp:vsa@10.0.0.5:/srv/restic",
    "sftp:vsa@backup.example.net:2222:/srv/restic", "s3:https://s3.example.net/bucket/hub1", "s3:s3.amazonaws.com/bkt"])
def test_repository_kinds_are_accepted(repository):
    assert hub_config([{"backup": {"repository": repository}}]).backup.repository == repository


@pytest.mark.parametrize("repository, message", [
    ("ftp://x/y", "must be a restic repository"),
    ("/srv/flowbiz/backup/repo", "outside /srv/flowbiz"),
    ("/var/../etc", "no '..'"),
    ("sftp:backup.example.net:/srv", "sftp:USER@HOST:/PATH"),
    ("s3:https://s3.example.net", "s3:https://ENDPOINT/BUCKET"),
])
def test_a_bad_repository_names_the_key_and_the_form(repository, message):
    with pytest.raises(ConfigError) as error:
        hub_config([{"backup": {"repository": repository}}])
    assert str(error.value).startswith("vsa.backup.repository: ") and message in str(error.value)


def test_retention_schedule_and_unknown_keys_fail_with_their_key():
    with pytest.raises(ConfigError, match=r"vsa.backup.retention: .*keeps no snapshot"):
        hub_config([{"backup": {"retention": {"daily": 0, "weekly": 0, "monthly": 0}}}])
    with pytest.raises(ConfigError, match=r"vsa.backup: .*at least 10m"):
        hub_config([{"backup": {"interval": "1m"}}])
    with pytest.raises(ConfigError, match=r"vsa.backup.include.grafana: unknown key"):
        hub_config([{"backup": {"include": {"grafana": True}}}])


def test_defaults_are_off_with_the_issue_retention():
    backup = hub_config().backup
    assert not backup.enabled and backup.interval == "24h"
    assert backup.retention.forget_flags == ["--keep-daily=7", "--keep-weekly=4", "--keep-monthly=6"]
    assert (backup.include.prometheus, backup.include.loki) == (False, False)


def test_no_backup_stack_without_a_repository(render):
    manifest = render()
    assert "backup" not in [s.name for s in manifest.stacks]
    assert not [f for f in manifest.files if f.path.startswith("/srv/flowbiz/backup/")]
    with pytest.raises(RenderError, match="backup stack needs vsa.backup.repository"):
        render([{"stacks": ["backup"]}])


def test_the_backup_stack_carries_repository_retention_and_secrets(render):
    manifest = render([SFTP], secrets=SECRETS)
    compose = yaml.safe_load(manifest.file("/srv/flowbiz/backup/compose.yml").content)
    service = compose["services"]["restic"]
    env = service["environment"]
    assert env["RESTIC_REPOSITORY"] == "sftp:vsa@backup.example.net:/srv/restic/hub"
    assert env["VSA_BACKUP_FORGET"] == "--keep-daily=7 --keep-weekly=4 --keep-monthly=6"
    assert env["VSA_BACKUP_PATHS"] == "/data/letsencrypt /data/grafana"
    assert env["VSA_RESTORE_STOP"] == "dashboard-api grafana"
    volumes = {v["target"]: v["source"] for v in service["volumes"]}
    assert volumes["/data/letsencrypt"] == "/srv/flowbiz/reverse-proxy/letsencrypt"
    assert volumes["/var/run/docker.sock"] == "/var/run/docker.sock"
    assert volumes["/var/log/vsa"] == "/var/log/vsa"
    assert "/repository" not in volumes  # an SFTP repository is not mounted
    assert manifest.file("/srv/flowbiz/backup/host.env").content.strip().endswith("RESTIC_HOST=hub")
    assert manifest.file("/srv/flowbiz/backup/vsa-backup.sh").mode == "0755"
    password = manifest.file("/srv/flowbiz/backup/secrets/backup_password")
    assert (password.content, password.mode, password.sensitive) == ("restic-Secret-789", "0600", True)
    assert manifest.file("/srv/flowbiz/backup/secrets/backup_ssh_key").sensitive
    text = "\n".join(f.content for f in manifest.files if not f.sensitive)
    assert "restic-Secret-789" not in text and "c3NoLWtleS1zZWNyZXQ=" not in text
    with pytest.raises(RenderError, match="missing secret VSA_BACKUP_PASSWORD"):
        render([SFTP])


def test_the_backup_stack_passes_lint(render):
    from vsa_ops.lint import lint

    errors = [f for f in lint(render([SFTP], secrets=SECRETS), hub_config([SFTP])) if f.severity == "error"]
    assert errors == []


def test_optional_data_and_a_local_repository_are_mounted(render):
    manifest = render([{"backup": {"repository": "/var/backups/restic", "include": {"prometheus": True}}}],
                      secrets=SECRETS)
    service = yaml.safe_load(manifest.file("/srv/flowbiz/backup/compose.yml").content)["services"]["restic"]
    volumes = {v["target"]: (v["source"], v["read_only"]) for v in service["volumes"]}
    assert volumes["/repository"] == ("/var/backups/restic", False)
    assert volumes["/data/prometheus"] == ("obs-prometheus-data", True)
    assert "/data/loki" not in volumes
    assert service["environment"]["VSA_BACKUP_PATHS"] == "/data/letsencrypt /data/grafana /data/prometheus"
    assert not [f for f in manifest.files if f.path.endswith("backup_ssh_key")]


# --- the script, for real: restic from Debian, PostgreSQL from the lab image, a local repository ---

def _docker(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, **kwargs)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A PostgreSQL container with rows, a letsencrypt tree, an audit trail, and a runner for the
    backup container (the image and environment the backup stack renders)."""
    from tests.conftest import missing

    if shutil.which("docker") is None or _docker("info", check=False).returncode:
        missing("a running Docker engine")
    from vsa_ops.lab.images import ensure_images

    image = ensure_images(["restic"], log=lambda line: None)["restic"]
    postgres = ensure_images(["postgres"], log=lambda line: None)["postgres"]
    base = tmp_path_factory.mktemp("backup")
    tag = uuid.uuid4().hex[:8]
    pg, volume = f"vsa-test-pg-{tag}", f"vsa-test-grafana-{tag}"
    for folder in ("etc/secrets", "staging", "le/live/a.example", "le/archive/a.example", "audit", "textfile", "repo"):
        (base / folder).mkdir(parents=True)
    (base / "etc/vsa-backup.sh").write_bytes((ROOT / "stacks/backup/vsa-backup.sh").read_bytes())
    (base / "etc/host.env").write_text("RESTIC_HOST=hub\n")
    (base / "etc/secrets/backup_password").write_text("restic-Secret-789")
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    (base / "etc/secrets/backup_ssh_key").write_text(base64.b64encode(key).decode())
    (base / "le/archive/a.example/cert1.pem").write_text("certificate 1\n")
    (base / "le/live/a.example/cert.pem").symlink_to("../../archive/a.example/cert1.pem")
    (base / "audit/audit.jsonl").write_text('{"seq":1}\n')
    _docker("run", "-d", "--name", pg, "-e", "POSTGRES_USER=dashboard", "-e", "POSTGRES_DB=dashboard",
            "-e", "POSTGRES_PASSWORD=x", postgres)
    deadline = time.monotonic() + 60
    while _docker("exec", pg, "psql", "-U", "dashboard", "-d", "dashboard", "-c", "select 1", check=False).returncode:
        assert time.monotonic() < deadline, "PostgreSQL did not start"
        time.sleep(0.5)
    _docker("exec", pg, "psql", "-U", "dashboard", "-d", "dashboard", "-qc",
            "CREATE TABLE sites(name text); INSERT INTO sites VALUES ('a'), ('b'), ('c')")

    def run(*args: str, repository: str = "/repository", kind: str = "local", name: str | None = None,
            staging_bytes: int | None = None) -> tuple[int, list[str]]:
        env = {"RESTIC_REPOSITORY": repository, "RESTIC_PASSWORD_FILE": "/etc/vsa-backup/secrets/backup_password",
               "RESTIC_CACHE_DIR": "/staging/.cache", "VSA_BACKUP_KIND": kind, "VSA_BACKUP_INTERVAL": "86400",
               "VSA_BACKUP_CHECK_INTERVAL": "604800", "VSA_BACKUP_FORGET": "--keep-daily=7",
               "VSA_BACKUP_PATHS": "/data/letsencrypt /data/grafana", "VSA_AUDIT_JSONL": "/var/log/vsa/audit.jsonl",
               "VSA_AUDIT_DATABASE": "/var/log/vsa/audit.db", "VSA_POSTGRES_CONTAINER": pg,
               "VSA_POSTGRES_USER": "dashboard", "VSA_POSTGRES_DATABASE": "dashboard", "VSA_RESTORE_STOP": ""}
        mounts = {"/var/run/docker.sock": "/var/run/docker.sock:ro", f"{base}/etc": "/etc/vsa-backup:ro",
                  f"{base}/staging": "/staging", f"{base}/le": "/data/letsencrypt", volume: "/data/grafana",
                  f"{base}/audit": "/var/log/vsa", f"{base}/textfile": "/textfile", f"{base}/repo": "/repository"}
        # one hostname, as in the stack's one long-lived container (restic judges its stale locks by it)
        result = _docker("run", "--rm", "--hostname", "backup-restic", *(["--name", name] if name else []),
                         *[f"-v{s}:{t}" for s, t in mounts.items() if not (staging_bytes and t == "/staging")],
                         *([f"--mount=type=tmpfs,destination=/staging,tmpfs-size={staging_bytes}"]
                           if staging_bytes else []),
                         *[f"-e{k}={v}" for k, v in env.items()], image, "/etc/vsa-backup/vsa-backup.sh", *args,
                         check=False, timeout=180)
        return result.returncode, result.stdout.splitlines()

    run.base, run.pg = base, pg
    yield run
    _docker("rm", "-f", pg, check=False)
    _docker("volume", "rm", "-f", volume, check=False)


def _fields(lines: list[str]) -> dict[str, str]:
    return dict(line.partition(" ")[::2] for line in lines)


def test_a_backup_saves_postgres_certificates_and_audit_and_writes_the_metric(bench):
    code, lines = bench("run")
    fields = _fields(lines)
    assert code == 0 and fields["result"] == "ok", lines
    assert len(fields["snapshot"]) == 64 and int(fields["size"]) > 0
    metric = (bench.base / "textfile/vsa_backup.prom").read_text()
    last = next(line for line in metric.splitlines() if line.startswith("vsa_backup_last_success_timestamp_seconds "))
    assert abs(int(last.split()[1]) - time.time()) < 120
    code, lines = bench("snapshots")
    snapshots = json.loads("\n".join(lines))
    assert code == 0 and snapshots[-1]["id"] == fields["snapshot"] and snapshots[-1]["hostname"] == "hub"
    assert sorted(snapshots[-1]["paths"]) == ["/data/grafana", "/data/letsencrypt", "/staging/dump"]


def test_a_scheduled_run_spools_its_outcome_for_the_controller(bench):
    from vsa_ops.backup.spool import entry

    code, lines = bench("scheduled")
    assert code == 0 and lines[-1].startswith("vsa-backup: ") and "result ok" in lines[-1], lines
    folder = bench.base / "staging/spool"
    [spooled] = list(folder.iterdir())
    assert oct(folder.stat().st_mode & 0o777) == "0o700" and oct(spooled.stat().st_mode & 0o777) == "0o600"
    record = entry("hub", "/repository", spooled.name, spooled.read_text())
    assert record.result == "ok" and record.changes[0].startswith("snapshot ") and record.ts.endswith("Z"), record
    spooled.unlink()


def test_faults_are_one_line_and_change_nothing(bench):
    assert bench("run")[0] == 0  # the repository exists
    before = (bench.base / "textfile/vsa_backup.prom").read_text() if (bench.base / "textfile/vsa_backup.prom").exists() else ""
    password = bench.base / "etc/secrets/backup_password"
    password.write_text("not-the-password")
    try:
        code, lines = bench("run")
    finally:
        password.write_text("restic-Secret-789")
    assert (code, lines) == (1, ["error wrong password for the repository /repository"])
    code, lines = bench("snapshots", repository="sftp:vsa@127.0.0.1:9:/srv/restic", kind="sftp")
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error repository sftp:vsa@127.0.0.1:9:/srv/restic unreachable: "), lines
    code, lines = bench("restore", "deadbeef")
    assert (code, lines) == (1, ["error no snapshot deadbeef of host hub in the repository (see vsa-ops backups)"])
    rows = _docker("exec", bench.pg, "psql", "-U", "dashboard", "-d", "dashboard", "-Atc", "SELECT count(*) FROM sites")
    assert rows.stdout.strip() == "3"
    if before:
        assert "vsa_backup_last_success_timestamp_seconds" in before


def test_restore_brings_back_rows_certificates_and_the_audit_trail(bench):
    code, lines = bench("run")
    assert code == 0, lines
    _docker("exec", bench.pg, "psql", "-U", "dashboard", "-d", "dashboard", "-qc", "DELETE FROM sites")
    for path in ("le/live", "le/archive"):
        shutil.rmtree(bench.base / path)
    (bench.base / "audit/audit.jsonl").write_text('{"seq":1}\n{"seq":2}\n')
    code, lines = bench("holds")
    assert code == 0 and "holds certificates 0" in lines and "holds audit_records 2" in lines
    code, lines = bench("restore", "latest")
    assert code == 0 and lines[-1] == "result ok", lines
    rows = _docker("exec", bench.pg, "psql", "-U", "dashboard", "-d", "dashboard", "-Atc", "SELECT count(*) FROM sites")
    assert rows.stdout.strip() == "3"
    assert (bench.base / "le/live/a.example/cert.pem").read_text() == "certificate 1\n"
    assert (bench.base / "audit/audit.jsonl").read_text() == '{"seq":1}\n'


ALERT_TEST = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # a good backup at 00:00, none after
      - series: 'vsa_backup_last_success_timestamp_seconds{{instance="hub"}}'
        values: '0+0x1700'
      # backups all the time (the value is the time of each sample)
      - series: 'vsa_backup_last_success_timestamp_seconds{{instance="fresh"}}'
        values: '0+60x1700'
    alert_rule_test:
      - eval_time: 26h5m
        alertname: BackupTooOld
        exp_alerts: []
      - eval_time: 27h
        alertname: BackupTooOld
        exp_alerts:
          - exp_labels: {{severity: warning, instance: hub}}
            exp_annotations:
              summary: "No good backup on hub for 1d 3h 0m 0s"
              description: "See the backup-restic container's log and `vsa-ops backup --limit HOST`."
"""


def test_the_backup_age_alert_fires_after_26_hours_only(tool, tmp_path):
    promtool = tool("promtool")
    rules = ROOT / "stacks/observability/prometheus/rules/backup.yml"
    test = tmp_path / "backup-test.yml"
    test.write_text(ALERT_TEST.format(rules=json.dumps(str(rules))))
    result = subprocess.run([promtool, "test", "rules", str(test)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_commands_on_a_host_without_backups_say_so_and_connect_nowhere(project):
    from tests.conftest import run_cli

    result = run_cli("backup", cwd=project)
    assert result.returncode == 1
    assert result.stderr.strip() == "vsa-ops: hub: backup failed: backups are off (vsa.backup.repository is not set)"
    result = run_cli("restore", "--limit", "hub", "--snapshot", "1234;rm", cwd=project)
    assert (result.returncode, result.stderr.strip()) == (
        1, "vsa-ops: restore: '1234;rm' is not a snapshot id (see vsa-ops backups)")
    result = run_cli("restore", "--limit", "nowhere", cwd=project)
    assert (result.returncode, result.stderr.strip()) == (1, "vsa-ops: --limit: no host or group 'nowhere' in the inventory")


def test_a_full_disk_fails_in_one_line_and_the_next_backup_succeeds(bench):
    _docker("exec", bench.pg, "psql", "-U", "dashboard", "-d", "dashboard", "-qc",
            "CREATE TABLE filler AS SELECT md5(i::text) AS t FROM generate_series(1, 20000) AS i")
    try:
        code, lines = bench("run", staging_bytes=64 * 1024)
        assert code == 1 and len(lines) == 1 and lines[0].startswith("error "), lines
        assert "full" in lines[0] or "space" in lines[0] or "free" in lines[0], lines
    finally:
        _docker("exec", bench.pg, "psql", "-U", "dashboard", "-d", "dashboard", "-qc", "DROP TABLE filler")
    code, lines = bench("run")
    assert code == 0 and lines[-1] == "result ok", lines


def test_a_backup_killed_midway_leaves_a_repository_the_next_run_uses(bench):
    name = f"vsa-test-backup-{uuid.uuid4().hex[:8]}"
    killer = subprocess.Popen(["sh", "-c", f"for i in $(seq 200); do "
                               f"docker top {name} 2>/dev/null | grep -q 'restic backup' && exec docker kill {name}; "
                               f"sleep 0.05; done"])
    code, lines = bench("run", name=name)
    killer.wait(timeout=30)
    assert code != 0 and "result ok" not in lines  # killed during restic backup
    code, lines = bench("run")
    assert code == 0 and lines[-1] == "result ok", lines
    assert not [line for line in lines if line.startswith("warning")], lines  # forget --prune got its lock
    code, lines = bench("check")
    assert code == 0, lines


def test_a_host_answer_is_read_line_by_line():
    from vsa_ops.backup.hosts import holds, parse

    ok = parse("hub", True, "snapshot abc\nsize 12\nresult ok\n", 1.0)
    assert ok.ok and ok.fields == {"snapshot": "abc", "size": "12", "result": "ok"}
    failed = parse("hub", False, "error wrong password for the repository /repository\n", 1.0)
    assert failed.error == "wrong password for the repository /repository"
    silent = parse("hub", False, "ssh: connect to host refused\n", 1.0)
    assert silent.error == "ssh: connect to host refused"
    counts = holds(parse("hub", True, "holds postgres_rows 3\nholds certificates 2\nholds grafana_files x\n", 0))
    assert counts == {"postgres_rows": 3, "certificates": 2}


def test_two_runs_on_one_host_do_not_overlap(bench):
    # README: "Two runs on one host do not overlap (a lock in the staging folder)."
    import fcntl

    (bench.base / "staging/state").mkdir(parents=True, exist_ok=True)
    with open(bench.base / "staging/state/run.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert bench("run") == (1, ["error another backup is running on this host"])


def test_a_restore_of_another_hosts_snapshot_is_refused(bench):
    code, lines = bench("run")
    snapshot = _fields(lines)["snapshot"]
    assert code == 0 and snapshot
    host_env = bench.base / "etc/host.env"
    host_env.write_text("RESTIC_HOST=other\n")
    try:
        code, lines = bench("restore", snapshot)
    finally:
        host_env.write_text("RESTIC_HOST=hub\n")
    assert (code, lines) == (1, [f"error no snapshot {snapshot} of host other in the repository (see vsa-ops backups)"])


def test_the_restores_nginx_reload_shows_why_the_check_failed(tmp_path):
    """The restore's reload runs nginx -t first: when it refuses the restored files, what it said
    (on stderr) is what the restore reports, on the command's stdout."""
    from vsa_ops.backup.service import reload_nginx_command

    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "docker").write_text("#!/bin/sh\necho 'nginx: [emerg] cannot load certificate' >&2\nexit 1\n")
    (tools / "docker").chmod(0o755)
    command = reload_nginx_command(hub_config([]).reverse_proxy.nginx.container)
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                          env={"PATH": f"{tools}:/usr/bin:/bin"}, timeout=30)
    assert done.returncode == 1
    assert done.stdout == "nginx: [emerg] cannot load certificate\n"
