"""The deploy at plan level, on pyinfra's @fake connector (no host): which commands a converge sends
for a host in a given state. A converged host gets exactly one command, the state read."""

from __future__ import annotations

import base64

import pytest

from vsa_ops.pyinfra_glue.gevent_patch import patch

patch()

from pyinfra.api import Config, FileUploadCommand, Inventory, State, StringCommand  # noqa: E402
from pyinfra.api.connect import connect_all  # noqa: E402
from pyinfra.api.deploy import add_deploy  # noqa: E402
from pyinfra.api.operations import run_ops  # noqa: E402

from vsa_ops.config import hub_config  # noqa: E402
from vsa_ops.domains import Domain  # noqa: E402
from vsa_ops.operations.lock import Hold  # noqa: E402
from vsa_ops.operations.stacks import COMMAND_LIMIT, transaction_commands  # noqa: E402
from vsa_ops.plan import make_plan, managed_paths  # noqa: E402
from vsa_ops.deploys.hub import converge_hub  # noqa: E402
from vsa_ops.planning import SALT  # noqa: E402
from vsa_ops.project import load_sources  # noqa: E402
from vsa_ops.render import render_host  # noqa: E402
from vsa_ops.state_read import LOCK_DIR, MARK, parse_host_state  # noqa: E402

from tests.conftest import ROOT, SECRETS  # noqa: E402
from tests.test_plan import converged  # noqa: E402


def state_output(state) -> str:
    """What the HostState command prints for ``state``."""
    kinds = {"file": "regular file", "directory": "directory"}
    lines = [f"{MARK}stat"]
    lines += [f"{kinds[p.kind]}|{p.owner}|{p.group}|{int(p.mode, 8):o}|{path}" for path, p in state.paths.items()]
    lines += [f"{MARK}sha256"] + [f"{p.sha256}  {path}" for path, p in state.paths.items() if p.sha256]
    lines += [f"{MARK}owned", *sorted(state.owned_files), f"{MARK}fstab", state.fstab.rstrip("\n")]
    lines += [f"{MARK}passwd"] + [f"{name}:{uid}" for name, uid in state.users.items()]
    lines += [f"{MARK}docker", "yes" if state.docker_running else "", f"{MARK}compose", state.compose_plugin]
    lines += [f"{MARK}networks", *state.networks, f"{MARK}images", *state.images, f"{MARK}containers"]
    lines += [f"{project}|{service}|{status}" for (project, service), status in state.containers.items()]
    lines += [f"{MARK}labels", *sorted(state.labels), f"{MARK}mounts"] + [f"{t} {s}" for t, s in state.mounts.items()]
    lines += [f"{MARK}root"] + [s.replace("LABEL=", "label=").replace("UUID=", "uuid=") for s in state.root_sources]
    lines += [f"{MARK}commands", *sorted(state.commands), f"{MARK}fingerprint", "f" * 64]
    return "\n".join(lines) + "\n"


@pytest.fixture
def fake_run(monkeypatch):
    monkeypatch.setenv("VSA_PROJECT", str(ROOT))
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)

    def run(state):
        inventory = Inventory((["@fake/hub"], {"fake_responses": {"@@vsa:stat": state_output(state)}}))
        pyinfra_state = State(inventory=inventory, config=Config())
        connect_all(pyinfra_state)
        add_deploy(pyinfra_state, converge_hub)
        run_ops(pyinfra_state)
        host = next(iter(inventory))
        assert not pyinfra_state.failed_hosts
        return [str(c) for c in host.connector.executed_commands]

    return run


def fake_manifest():
    return render_host(hub_config(), load_sources(ROOT), host="@fake/hub", secrets=SECRETS)


def test_a_converged_host_costs_one_command(fake_run):
    manifest = fake_manifest()
    commands = fake_run(converged(manifest, salt=SALT))
    assert len(commands) == 1 and "@@vsa:stat" in commands[0]


def test_variables_left_in_the_environment_neither_narrow_a_deploy_nor_delete_a_certificate(fake_run, monkeypatch):
    manifest = fake_manifest()
    state = converged(manifest, salt=SALT)
    state.certificates = {"shop.example.com"}
    _changed(state, "/srv/flowbiz/observability/prometheus/prometheus.yml")
    for name, value in {"VSA_TARGET_DOMAIN": "shop.example.com", "VSA_DELETE_CERTIFICATE": "shop.example.com",
                        "VSA_FORCE_FSTAB": "1", "VSA_LOCK_WAIT": "0"}.items():
        monkeypatch.setenv(name, value)
    text = "\n".join(fake_run(state))
    assert "restart prometheus" in text  # the whole host converges, not one domain's files
    assert "certbot delete" not in text


def test_a_changed_prometheus_setting_sends_the_lock_the_files_and_a_restart(fake_run):
    manifest = fake_manifest()
    state = converged(manifest, salt=SALT)
    old = state.paths["/srv/flowbiz/observability/prometheus/prometheus.yml"]
    state.paths["/srv/flowbiz/observability/prometheus/prometheus.yml"] = type(old)(
        old.kind, old.owner, old.group, old.mode, "0" * 64)
    commands = fake_run(state)
    text = "\n".join(commands)
    assert "vsa-ops.lock" in commands[1]  # the run lock comes first
    assert "promtool check config" in text
    assert "restart prometheus" in text
    assert "restart loki" not in text and "up -d" not in text and "nginx -s reload" not in text
    assert "pg-Secret-123" not in text  # secrets travel only inside the uploaded archive


def test_a_vhost_change_reloads_nginx_without_waiting(fake_run):
    manifest = fake_manifest()
    state = converged(manifest, salt=SALT)
    path = "/srv/flowbiz/reverse-proxy/nginx/snippets/proxy.conf"
    old = state.paths[path]
    state.paths[path] = type(old)(old.kind, old.owner, old.group, old.mode, "0" * 64)
    text = "\n".join(fake_run(state))
    assert "nginx -t -q" in text and "nginx -s reload" in text
    assert "sleep 3" not in text  # nothing was restarted: no probe wait


def _changed(state, path):
    old = state.paths[path]
    state.paths[path] = type(old)(old.kind, old.owner, old.group, old.mode, "0" * 64)
    return state


def test_a_vhost_change_is_one_command_that_holds_the_lock_itself(fake_run):
    manifest = fake_manifest()
    state = _changed(converged(manifest, salt=SALT), "/srv/flowbiz/reverse-proxy/nginx/snippets/proxy.conf")
    commands = fake_run(state)
    assert len(commands) == 2  # the state read, then the transaction
    transaction = commands[1]
    taken, reload, released = (transaction.index("mkdir \"$lock\""), transaction.index("nginx -s reload"),
                               transaction.rindex(f"rm -rf {LOCK_DIR}"))
    assert taken < reload < released
    assert "base64 -d" in transaction  # the new file travels in the command: no SFTP session


def test_a_secret_never_travels_in_a_command(fake_run):
    manifest = fake_manifest()
    secret = next(f for f in manifest.files if f.sensitive)
    text = "\n".join(fake_run(_changed(converged(manifest, salt=SALT), secret.path)))
    assert "base64 -d" not in text and "tar -xf" in text  # the archive came by SFTP


def test_work_beyond_the_transaction_takes_the_lock_as_its_own_step(fake_run):
    manifest = fake_manifest()
    state = _changed(converged(manifest, salt=SALT), "/srv/flowbiz/reverse-proxy/nginx/snippets/proxy.conf")
    directory = manifest.directories[0].path
    old = state.paths[directory]
    state.paths[directory] = type(old)(old.kind, old.owner, old.group, "0777", None)
    commands = fake_run(state)
    assert "mkdir \"$lock\"" in commands[1] and "tar -xf" not in commands[1]
    assert "chmod" in commands[2] and "rm -rf" in commands[-1] and "nginx -s reload" not in commands[-1]


def test_the_state_read_brings_the_audit_log_s_last_line():
    line = b'{"seq": 7, "hash": "ab"}\n'
    state = parse_host_state([f"{MARK}audit", base64.b64encode(line).decode()])
    assert state.audit_head == line
    assert parse_host_state([f"{MARK}audit", ""]).audit_head == b""  # no log yet
    assert parse_host_state([f"{MARK}lock"]).audit_head is None  # not asked for


def _transaction(domains: int):
    base = fake_manifest()
    sites = [Domain(name=f"site{i}.vsa.test", upstream="demo-app:8080", tls=False) for i in range(domains)]
    manifest = render_host(hub_config(), load_sources(ROOT), host="@fake/hub", secrets=SECRETS, domains=sites)
    plan = make_plan(manifest, converged(base, salt=SALT))
    paths, files, secret_files = managed_paths(manifest)
    hold = Hold("r1 ctl 1 2 alice", plan.fingerprint, tuple(paths), tuple(files), tuple(secret_files), SALT)
    return transaction_commands(plan, manifest, hold)


def test_a_few_new_vhosts_are_one_command():
    commands = _transaction(3)
    assert [type(c) for c in commands] == [StringCommand] and "base64 -d" in str(commands[0])


def test_a_transaction_too_long_for_a_command_line_travels_as_a_file():
    commands = _transaction(400)
    uploads = [c for c in commands if isinstance(c, FileUploadCommand)]
    shell = [str(c) for c in commands if isinstance(c, StringCommand)]
    assert len(uploads) == 2 and len(shell) == 1  # the archive, the script; then running it
    script = uploads[1].src.getvalue().decode()
    assert len(script) > COMMAND_LIMIT and len(shell[0]) < 200 and uploads[1].dest in shell[0]
    assert "mkdir \"$lock\"" in script and "nginx -s reload" in script and "base64 -d" not in script
