"""End to end on a lab VPS: `vsa-ops deploy` (pyinfra over SSH) turns a fresh host into the hub,
a second run changes nothing, a setting restarts only its service, a run killed inside its
transaction leaves the old files and converges later,
and two runs never interleave."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from vsa_ops.config import hub_config
from vsa_ops.fstab_plan import ABSENT_SOURCE_OPTIONS

from tests.lab.conftest import ROOT, commands_run, vsa

pytestmark = pytest.mark.lab

DESIGN = hub_config()
EXTRA_FSTAB = "tmpfs /mnt/scratch tmpfs defaults,size=1m 0 0"


def logged(result) -> str:
    """Everything a run printed: its result lines (stdout) and pyinfra's progress (stderr)."""
    return result.stdout + result.stderr


def design_containers():
    """Every container of the design's stacks that the lab renders (the backup stack only runs where a
    repository is set, and the lab sets none unless `lab up --backups`)."""
    return {c.container.container_name: c.container for name, stack in DESIGN.builtin_stacks().items()
            if name != "backup" or DESIGN.backup.enabled for c in stack.values()}


@pytest.fixture(scope="module")
def deployed(lab):
    lab.recreate()
    lab.sh(f"echo '{EXTRA_FSTAB}' >> /etc/fstab")
    result = lab.deploy()
    return lab, result


def test_first_deploy_runs_every_container_of_the_design(deployed):
    lab, result = deployed
    assert "files and stacks" in logged(result)
    containers = lab.containers()
    for name, spec in design_containers().items():
        assert name in containers, f"{name} missing"
        state = containers[name]
        assert state["State"]["Status"] == "running", f"{name}: {state['State']['Status']}"
        networks = set(state["NetworkSettings"]["Networks"])
        assert networks == set(spec.networks or ["none"]), name
        volumes = {m["Name"] for m in state["Mounts"] if m["Type"] == "volume"}
        assert volumes == {m.source for m in spec.mounts if not m.is_bind}, name
        if spec.user:
            assert state["Config"]["User"] == spec.user, name


def test_prometheus_and_grafana_run_as_their_users(deployed):
    lab, _ = deployed
    assert lab.sh("docker exec prometheus id -u").strip() == "65534"
    assert lab.sh("docker exec grafana id -u").strip() == "472"
    assert lab.sh("docker exec loki id -u").strip() == "10001"


def test_postgres_is_on_its_internal_network_only(deployed):
    lab, _ = deployed
    ext = json.loads(lab.sh("docker network inspect flowbiz_ext"))[0]
    members = {c["Name"] for c in ext["Containers"].values()}
    assert "dashboard-postgres" not in members
    assert {"reverse-proxy-nginx", "dashboard-api", "grafana", "demo-app"} <= members
    assert "loki" not in members  # no credentials: apps on the shared network must not reach it
    internal = json.loads(lab.sh("docker network inspect dashboard-net"))[0]
    assert internal["Internal"] is True
    assert {c["Name"] for c in internal["Containers"].values()} == {"dashboard-api", "dashboard-ui",
                                                                     "dashboard-postgres"}
    assert lab.sh("docker exec dashboard-postgres pg_isready -U dashboard -d dashboard", check=False)


def test_tree_owners_modes_and_secrets(deployed):
    lab, _ = deployed
    stat = lab.sh("stat -c '%n %u %g %a' /srv/flowbiz/reverse-proxy/nginx/auth /srv/flowbiz/dashboard/data/postgres "
                  "/srv/flowbiz/dashboard/secrets/postgres_password /srv/flowbiz/observability/secrets/grafana_admin_password")
    assert stat.split("\n")[:4] == [
        "/srv/flowbiz/reverse-proxy/nginx/auth 0 101 750",
        "/srv/flowbiz/dashboard/data/postgres 999 999 700",
        "/srv/flowbiz/dashboard/secrets/postgres_password 0 64901 640",
        "/srv/flowbiz/observability/secrets/grafana_admin_password 0 64903 640",
    ]
    assert lab.sh("getent passwd loki").split(":")[2] == "10001"
    daemon = json.loads(lab.sh("cat /etc/docker/daemon.json"))
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "3"} and daemon["live-restore"] is True
    log_config = lab.sh("docker inspect -f '{{json .HostConfig.LogConfig}}' prometheus")
    assert json.loads(log_config) == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}


def test_fstab_has_each_entry_once_keeps_other_lines_and_cannot_stop_a_boot(deployed):
    # The lab host's disks carry no label and / is an overlay: every design entry is written
    # noauto,nofail (boot never waits for it) and no line for / is written at all.
    lab, _ = deployed
    fstab = lab.sh("cat /etc/fstab").splitlines()
    assert not [line for line in fstab if line.split()[1:2] == ["/"]]
    for entry in DESIGN.storage.fstab[1:]:
        absent = entry.line.replace(f" {entry.options} ", f" {entry.options},{','.join(ABSENT_SOURCE_OPTIONS)} ")
        assert sum(line.split() == absent.split() for line in fstab) == 1, entry.line
    assert EXTRA_FSTAB in fstab
    assert lab.sh("ls /etc/ | grep -c '^fstab.vsa-'").strip() != "0"  # the old file was backed up
    verify = lab.sh("findmnt --verify 2>&1 || true")
    assert "required source" not in verify, verify


def test_second_deploy_changes_nothing(deployed):
    lab, _ = deployed
    before = lab.started()
    result = lab.deploy()
    assert "no changes: the host matches its manifest" in logged(result)
    total = [line.split() for line in logged(result).splitlines() if line.strip().startswith("Grand total")][0]
    assert total[2:] == ["1", "-", "-", "1"]  # hosts, success, error, no change
    assert lab.started() == before


def test_no_op_converge_runs_one_remote_command_whatever_the_number_of_files(deployed, tmp_path):
    lab, _ = deployed
    command = ["python3", "-m", "pyinfra", "-y", "-vvv", str(lab.inventory), "deploy.py"]
    small = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert small.returncode == 0, small.stderr
    # The same hub with a stack of 60 more config files: converge it, then count again.
    project = tmp_path / "project"
    subprocess.run(["cp", "-r", str(ROOT / "stacks"), str(ROOT / "templates"), str(ROOT / "group_data"),
                    str(ROOT / "deploy.py"), str(project.parent)], check=True)
    project = project.parent
    extra = project / "stacks" / "extra"
    (extra / "conf").mkdir(parents=True)
    (extra / "compose.yml").write_text(
        "services:\n  extra:\n    image: vsa-lab/demo-app:1\n    container_name: extra\n    restart: unless-stopped\n"
        "    logging: {driver: json-file, options: {max-size: 1m, max-file: '2'}}\n"
        "    volumes: ['/srv/flowbiz/extra/conf:/conf:ro']\n    networks: [flowbiz_ext]\n")
    for index in range(60):
        (extra / "conf" / f"file{index}.conf").write_text(f"setting {index}\n")
    env = dict(os.environ, VSA_PROJECT=str(project))
    assert subprocess.run(command[:4] + command[5:], cwd=project, env=env, capture_output=True).returncode == 0
    large = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    small_log, large_log = small.stdout + small.stderr, large.stdout + large.stderr  # pyinfra logs to stderr
    assert "no changes" in large_log
    assert commands_run(small_log) == commands_run(large_log) == 1, (small_log[-2000:], large_log[-2000:])
    lab.sh("cd /srv/flowbiz/extra && docker compose -p extra down >/dev/null 2>&1; rm -rf /srv/flowbiz/extra")
    # the host as the lab's own project has it (the plan identity's path list named the extra stack)
    lab.deploy()
    assert "no changes" in logged(lab.deploy())


def test_changing_one_setting_restarts_only_that_service(deployed, tmp_path):
    lab, _ = deployed
    before = lab.started()
    inventory = lab.inventory_with(tmp_path, {"observability": {"prometheus": {"scrape_interval": "30s"}}})
    result = lab.deploy(inventory=inventory)
    assert "1 files; restart prometheus" in logged(result), logged(result)
    after = lab.started()
    assert [name for name in before if before[name] != after.get(name)] == ["prometheus"]
    # The container reads the new file through its folder mount.
    assert "scrape_interval: 30s" in lab.sh("docker exec prometheus cat /etc/prometheus/prometheus.yml")
    restored = lab.deploy()
    assert "1 files; restart prometheus" in logged(restored)
    assert "scrape_interval: 15s" in lab.sh("docker exec prometheus cat /etc/prometheus/prometheus.yml")


def test_a_config_that_fails_validation_is_rolled_back(deployed, tmp_path):
    lab, _ = deployed
    before = lab.sh("sha256sum /srv/flowbiz/observability/prometheus/prometheus.yml")
    started = lab.started()
    # Two jobs of one name: promtool refuses it, so the change must not reach a running Prometheus.
    bad = {"observability": {"prometheus": {"scrape_jobs": [{"job_name": "x", "targets": ["a:1"]},
                                                            {"job_name": "x", "targets": ["b:1"]}]}}}
    result = lab.deploy(inventory=lab.inventory_with(tmp_path, bad), check=False)
    assert result.returncode != 0
    assert "promtool check config /etc/prometheus/prometheus.yml failed" in logged(result)
    assert "rolling back" in logged(result)
    assert lab.sh("sha256sum /srv/flowbiz/observability/prometheus/prometheus.yml") == before
    assert lab.started() == started
    lab.sh("test ! -e /var/lib/vsa-ops/lock")  # the failed run gave its lock back
    assert "no changes" in logged(lab.deploy())


def test_bad_configuration_fails_before_touching_the_host(deployed, tmp_path):
    lab, _ = deployed
    inventory = lab.inventory_with(tmp_path, {"observability": {"prometheus": {"retention_time": "soon"}}})
    result = lab.deploy(inventory=inventory, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == ("vsa-ops: vsa.observability.prometheus.retention_time: 'soon' is not a "
                                     "duration such as 15d, 2h or 10m (value 'soon')")
    assert "Connecting" not in logged(result)


def test_a_second_run_waits_for_the_lock_then_fails_naming_the_holder(deployed, tmp_path):
    lab, _ = deployed
    holder = f"r0 other-controller 1 {int(time.time())} someone"
    lab.sh(f"mkdir -p /var/lib/vsa-ops/lock && echo '{holder}' > /var/lib/vsa-ops/lock/owner")
    try:
        inventory = lab.inventory_with(tmp_path, {"observability": {"prometheus": {"scrape_interval": "20s"}}})
        result = lab.deploy("--lock-wait", "2", inventory=inventory, check=False)
        assert result.returncode != 0
        assert f"this host is locked by another run: {holder}" in logged(result)
        assert "scrape_interval: 15s" in lab.sh("cat /srv/flowbiz/observability/prometheus/prometheus.yml")
    finally:
        lab.sh("rm -rf /var/lib/vsa-ops/lock")
    assert "no changes" in logged(lab.deploy())


# A deploy killed inside its transaction: tests/lab/test_faults_transaction.py stops it at each step
# (found by the journal's step, not by timing) and checks the host's bytes and the next run.


def test_lab_info_names_each_host_and_its_ports(lab):
    info = json.loads(vsa("lab", "info", "--json").stdout)
    host = info["hosts"][0]
    assert host["name"] == "vsa-lab-1" and host["ssh_user"] == "root"
    for key in ("ssh_port", "http_port", "https_port"):
        assert 1024 < host[key] < 65536
    status = vsa("lab", "status").stdout
    assert "vsa-lab-1: running" in status
