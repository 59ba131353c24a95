"""The deploy at plan level, on pyinfra's @fake connector (no host): which commands a converge sends
for a host in a given state. A converged host gets exactly one command, the state read."""

from __future__ import annotations

import base64
import gzip
import io
import subprocess
import tarfile

import pytest

from vsa_ops.pyinfra_glue.gevent_patch import patch

patch()


from vsa_ops.config import hub_config  # noqa: E402
from vsa_ops.domains import Domain  # noqa: E402
from vsa_ops.operations.lock import Hold  # noqa: E402
from vsa_ops.operations.stacks import transaction_command  # noqa: E402
from vsa_ops.plan import make_plan, managed_paths, owned_directories  # noqa: E402
from vsa_ops.planning import SALT, unsettled  # noqa: E402
from vsa_ops.project import load_sources  # noqa: E402
from vsa_ops.render import render_host  # noqa: E402
from vsa_ops.state_read import parse_host_state, state_command, state_request  # noqa: E402

from tests.conftest import ROOT, SECRETS  # noqa: E402
from tests.fake_deploy import fake_deploy  # noqa: E402
from tests.test_plan import converged  # noqa: E402

STATE_READ = "# vsa-ops state read"  # the state read's program, as its first comment names it


def framed(records: list[tuple[str, str]]) -> str:
    """Records as the host programs print them: NUL-terminated, gzipped, in base64."""
    data = b"".join(f"{tag} {value}".encode() + b"\0" for tag, value in [*records, ("end", "")])
    return base64.b64encode(gzip.compress(data)).decode() + "\n"


def state_output(state) -> str:
    """What the HostState command prints for ``state``."""
    kinds = {"file": "regular file", "directory": "directory"}
    records = [("stat", f"{kinds[p.kind]}|{p.owner}|{p.group}|{int(p.mode, 8):o}|{path[1:]}")
               for path, p in state.paths.items()]
    records += [("sha", f"{p.sha256}  {path[1:]}") for path, p in state.paths.items() if p.sha256]
    records += [("owned", path[1:]) for path in sorted(state.owned_files)]
    records += [("fstab", base64.b64encode(state.fstab.encode()).decode())]
    records += [("user", f"{name}:{uid}") for name, uid in state.users.items()]
    records += [("docker", "yes")] if state.docker_running else []
    records += [("compose", state.compose_plugin)] if state.compose_plugin else []
    records += [("network", n) for n in state.networks] + [("image", i) for i in state.images]
    records += [("container", f"{project}|{service}|{status}")
                for (project, service), status in state.containers.items()]
    records += [("label", label) for label in sorted(state.labels)]
    records += [("mount", f"{target} {source}") for target, source in state.mounts.items()]
    records += [("root", s.replace("LABEL=", "label=").replace("UUID=", "uuid=")) for s in sorted(state.root_sources)]
    records += [("command", c) for c in sorted(state.commands)] + [("fingerprint", "f" * 64)]
    return framed(records)


def readable(stdin: str) -> str:
    """A command's stdin with the shell commands of a transaction's actions decoded (the archive
    stays packed)."""
    lines = []
    for line in stdin.splitlines():
        kind, *fields = line.split(" ")
        if kind in ("check", "validate", "act"):
            fields = [base64.b64decode(f).decode() if f not in ("first", "last") else f for f in fields]
        lines.append(" ".join([kind, *fields]))
    return "\n".join(lines)


LOCK_PROGRAM = "# vsa-ops run lock"
TRANSACTION = "# vsa-ops files-and-stacks transaction"


@pytest.fixture
def fake_run(monkeypatch):
    monkeypatch.setenv("VSA_PROJECT", str(ROOT))
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)

    def run(state):
        _, _, sent = fake_deploy(monkeypatch, {"fake_responses": {STATE_READ: state_output(state)}})
        return [f"{command}\n{readable(arguments.get('_stdin') or '')}" for command, arguments in sent]

    return run


def fake_manifest():
    return render_host(hub_config(), load_sources(ROOT), host="@fake/hub", secrets=SECRETS)


def test_a_converged_host_costs_one_command(fake_run):
    manifest = fake_manifest()
    commands = fake_run(converged(manifest, salt=SALT))
    assert len(commands) == 1 and STATE_READ in commands[0]


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
    assert TRANSACTION in commands[1] and "f" * 64 in commands[1]  # under the run lock, checked first
    assert "promtool check config" in text
    assert "restart prometheus" in text
    assert "restart loki" not in text and "up -d" not in text and "set -- / reverse-proxy-nginx HUP 120" not in text
    assert "pg-Secret-123" not in text  # secrets travel only inside the archive, on stdin


def test_a_vhost_change_reloads_nginx_without_waiting(fake_run):
    manifest = fake_manifest()
    state = converged(manifest, salt=SALT)
    path = "/srv/flowbiz/reverse-proxy/nginx/snippets/proxy.conf"
    old = state.paths[path]
    state.paths[path] = type(old)(old.kind, old.owner, old.group, old.mode, "0" * 64)
    text = "\n".join(fake_run(state))
    assert "nginx -t -q" in text and "set -- / reverse-proxy-nginx HUP 120" in text
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
    assert TRANSACTION in transaction and "f" * 64 in transaction  # it takes the lock, checking the fingerprint
    assert "install srv/flowbiz/reverse-proxy/nginx/snippets/proxy.conf" in transaction
    assert "set -- / reverse-proxy-nginx HUP 120" in transaction and "\narchive\n" in transaction


def test_a_secret_never_travels_in_a_command(fake_run):
    manifest = fake_manifest()
    secret = next(f for f in manifest.files if f.sensitive)
    commands = fake_run(_changed(converged(manifest, salt=SALT), secret.path))
    command, _, stdin = commands[1].partition("\n# vsa-ops")[2].partition("\narchive\n")
    packed, _, end = stdin.rstrip("\n").rpartition("\n")
    assert end == "end"  # the data says it is complete
    assert secret.content not in command and f"install {secret.path[1:]}" in command
    archive = tarfile.open(fileobj=io.BytesIO(gzip.decompress(base64.b64decode(packed))))
    assert archive.extractfile(secret.path[1:]).read().decode() == secret.content  # on stdin, packed


def test_work_beyond_the_transaction_takes_the_lock_as_its_own_step(fake_run):
    manifest = fake_manifest()
    state = _changed(converged(manifest, salt=SALT), "/srv/flowbiz/reverse-proxy/nginx/snippets/proxy.conf")
    directory = manifest.directories[0].path
    old = state.paths[directory]
    state.paths[directory] = type(old)(old.kind, old.owner, old.group, "0777", None)
    commands = fake_run(state)
    assert LOCK_PROGRAM in commands[1] and "set -- / take " in commands[1]
    assert "chmod" in commands[2] and TRANSACTION in commands[3] and "set -- / reverse-proxy-nginx HUP 120" in commands[3]
    assert LOCK_PROGRAM in commands[-1] and "release" in commands[-1]


def test_the_state_read_brings_the_last_line_of_the_files_asked_for(tmp_path):
    line = b'{"seq": 7, "hash": "ab"}\n'
    (tmp_path / "var/log/vsa").mkdir(parents=True)
    (tmp_path / "var/log/vsa/audit jsonl").write_bytes(b'{"seq": 6}\n' + line)
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "secret").write_bytes(b"root's\n")
    (tmp_path / "planted").symlink_to(tmp_path / "secret")  # by a container that writes the folder
    request = state_request([], [], last_lines=["/var/log/vsa/audit jsonl", "/empty", "/missing", "/planted"])
    done = subprocess.run(["sh", "-c", state_command("salt", str(tmp_path))], input=request, capture_output=True,
                          text=True, timeout=60)
    state = parse_host_state(done.stdout.splitlines())
    # b"": no file, an empty one, or a link (never followed); a file not asked for is absent
    assert state.last_lines == {"/var/log/vsa/audit jsonl": line, "/empty": b"", "/missing": b"", "/planted": b""}


def test_the_state_read_reads_no_more_than_the_end_of_a_huge_file(tmp_path):
    """The deploy's metrics folder is one a container writes: a sparse file of any size costs it nothing,
    and root's state read would carry its whole 'last line' (here 64 MiB without a newline)."""
    (tmp_path / "huge").write_bytes(b"")
    with open(tmp_path / "huge", "r+b") as huge:
        huge.truncate(64 << 20)
    (tmp_path / "long").write_bytes(b"head\n" + b"x" * (2 << 20) + b"\nvsa_deploy_last_success 1\n")
    request = state_request([], [], last_lines=["/huge", "/long"])
    done = subprocess.run(["sh", "-c", state_command("salt", str(tmp_path))], input=request, capture_output=True,
                          text=True, timeout=60)
    state = parse_host_state(done.stdout.splitlines())
    assert len(state.last_lines["/huge"]) <= 1 << 20
    assert state.last_lines["/long"] == b"vsa_deploy_last_success 1\n"


def _sites(domains: int):
    base = fake_manifest()
    sites = [Domain(name=f"site{i}.vsa.test", upstream="demo-app:8080", tls=False) for i in range(domains)]
    manifest = render_host(hub_config(), load_sources(ROOT), host="@fake/hub", secrets=SECRETS, domains=sites)
    return manifest, make_plan(manifest, converged(base, salt=SALT))


def test_a_transaction_is_one_command_of_constant_size_whatever_the_number_of_domains():
    sizes = []
    for domains in (3, 2000):
        manifest, plan = _sites(domains)
        paths, files, secret_files = managed_paths(manifest)
        hold = Hold("r1 ctl 1 2 alice", plan.fingerprint, tuple(paths), tuple(files), tuple(secret_files), SALT)
        command = transaction_command(plan, manifest, "r1", hold)
        stdin = command.connector_arguments["_stdin"]
        assert f"install srv/flowbiz/reverse-proxy/nginx/conf.d/site{domains - 1}.vsa.test.conf" in stdin
        sizes.append(len(str(command)))
    assert sizes[0] == sizes[1] < 20_000  # the data is on stdin, not in the command line


def test_the_state_read_of_2000_domains_is_a_small_command_with_its_paths_on_stdin():
    manifest, _ = _sites(2000)
    paths, files, secret_files = managed_paths(manifest)
    request = state_request(paths, files, owned_directories(manifest), secret_files, "/var/log/audit.jsonl")
    assert len(paths) > 2000 and len(request.splitlines()) > 2000
    assert len(state_command("salt")) < 9_000


def test_a_half_applied_change_is_never_nothing_to_do(fake_run):
    """The journal of a transaction whose shell was killed: the plan says it will be undone, and the
    deploy rewrites what it touched (after the lock has undone it), also where the files look right."""
    manifest = fake_manifest()
    state = converged(manifest, salt=SALT)
    proxy = "/srv/flowbiz/reverse-proxy/nginx/snippets/proxy.conf"
    journal = f"run r0\nstep rename\nbackup {proxy[1:]}\nnew srv/flowbiz/gone.conf\n"
    read = parse_host_state([framed([("journal", base64.b64encode(journal.encode()).decode())])])
    assert read.unfinished == "r0" and read.unfinished_paths == {proxy, "/srv/flowbiz/gone.conf"}
    state.unfinished, state.unfinished_paths = read.unfinished, read.unfinished_paths
    plan = make_plan(manifest, unsettled(state))
    assert plan.summary().startswith("unfinished change from run r0: will be undone")
    assert [c.file.path for c in plan.files] == [proxy] and not plan.empty
    converged_plan = make_plan(manifest, converged(manifest, salt=SALT))
    assert converged_plan.empty  # the same host without the journal: nothing to do


def test_a_run_lock_left_by_an_earlier_run_of_this_process_is_taken_over():
    """Ctrl-C in the middle of a domain change's locked steps leaves the lock with that run; its rollback
    runs in the same process, whose pid lives on: the lock is still a dead run's."""
    from vsa_ops.deploys.hub import CONTROLLER, _stale, run_owner

    interrupted = run_owner("interrupted")
    assert _stale(interrupted) == interrupted
    assert _stale(f"another {CONTROLLER} 1 0 someone") == ""  # pid 1: a process that lives
    assert _stale(f"another elsewhere {__import__('os').getpid()} 0 someone") == ""  # another controller's
