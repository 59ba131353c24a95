"""The plan identity (issue 12): a key that runs only the state reader in plan mode, which reads the
managed paths and nothing else, never a secret; plans without secrets; deploys refusing it; and the
CI workflow that uses it."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from vsa_ops.config import ConfigError, hub_config
from vsa_ops.domains import Domain
from vsa_ops.host_programs import program_command
from vsa_ops.plan import make_plan
from vsa_ops.plan_identity import PlanIdentityError, refuse_plan_identity
from vsa_ops.plan_report import HostPlan, render_json, render_text
from vsa_ops.planning import UNREAD, not_compared
from vsa_ops.render.plan_access import PLAN_PATHS, sudoers_path
from vsa_ops.state_read import parse_host_state, parse_texts, state_request, text_request

from tests.conftest import ROOT, SECRETS, run_cli
from tests.test_plan import converged

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0dW9Z6n3z2m3Y5v1c4m4YpQn0k6m1jvQm0Zp8b2Xb7 ci-plan"
WITH_KEY = {"plan_identity": {"authorized_keys": [KEY]}}
WORKFLOW = ROOT / ".github" / "workflows" / "plan.yml"


def state_sh(*args: str, stdin: str) -> str:
    done = subprocess.run(["sh", "-c", program_command("state", *args)], input=stdin.encode(), capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@pytest.fixture
def host(tmp_path):
    """A scratch root: a managed folder with a world-readable file, one readable by its group only, a
    secret, a symlink out, a folder symlinked out; something outside; the last deploy's path list."""
    root = tmp_path / "root"
    site, outside = root / "srv/site", root / "home/someone"
    site.mkdir(parents=True)
    outside.mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/fstab").write_text("LABEL=docker /var/lib/docker ext4 defaults 0 2\n")
    (site / "a.conf").write_text("a\n")
    (site / "group.conf").write_text("g\n")
    (site / "group.conf").chmod(0o640)
    (site / "pw").write_text("hunter2\n")
    (site / "pw").chmod(0o600)  # as every secret file vsa-ops writes (see the render test below)
    (outside / "private").write_text("private\n")
    (site / "link").symlink_to(outside / "private")
    (site / "data").symlink_to(outside)
    (root / "var/log").mkdir(parents=True)
    (root / "var/log/audit.jsonl").write_text('{"seq": 1}\n')
    (root / PLAN_PATHS.lstrip("/")).parent.mkdir(parents=True)
    (root / PLAN_PATHS.lstrip("/")).write_text("d /srv/site\nf /srv/site/a.conf\nf /srv/site/group.conf\n"
                                               "o /srv/site/conf.d\nf /etc/fstab\n")
    (site / "conf.d").mkdir()
    (site / "conf.d/shop.conf").write_text("server {}\n")
    (site / "store").mkdir()
    (site / "store/chunk").write_text("someone's data\n")
    return root


REQUEST = state_request(
    ["/srv/site", "/srv/site/a.conf", "/srv/site/group.conf", "/srv/site/pw", "/srv/site/conf.d/shop.conf",
     "/srv/site/store/chunk", "/home/someone/private", "/srv/site/../../home/someone/private", "/srv/site/link",
     "/srv/site/data/private"],
    ["/srv/site/a.conf", "/srv/site/group.conf", "/srv/site/conf.d/shop.conf", "/srv/site/store/chunk",
     "/home/someone/private", "/srv/site/../../home/someone/private", "/srv/site/link", "/srv/site/data/private"],
    ["/srv/site", "/home/someone"], ["/srv/site/pw"], ["/var/log/audit.jsonl"])


def test_plan_mode_reads_managed_metadata_and_only_world_readable_content(host):
    state = parse_host_state(state_sh("plan", str(host), stdin=REQUEST).splitlines())
    assert state.read_only
    assert state.paths["/srv/site/a.conf"].sha256 == "87428fc522803d31065e7bce3cf03fe475096631e5e07bbd7a0fde60c4cf25c7"
    # metadata for the secret and the group-only file, no digest: "not compared"
    assert state.paths["/srv/site/pw"].kind == "file" and state.paths["/srv/site/pw"].sha256 == UNREAD
    assert state.paths["/srv/site/group.conf"].mode == "0640" and state.paths["/srv/site/group.conf"].sha256 == UNREAD
    # a file in an owned folder is compared; one the list does not name only by its metadata
    assert state.paths["/srv/site/conf.d/shop.conf"].sha256 not in (None, UNREAD)
    assert state.paths["/srv/site/store/chunk"].sha256 == UNREAD
    # nothing outside the managed paths, by name, by "..", or through a symlink
    assert set(state.paths) == {"/srv/site", "/srv/site/a.conf", "/srv/site/group.conf", "/srv/site/pw",
                                "/srv/site/conf.d/shop.conf", "/srv/site/store/chunk"}
    assert state.owned_files == {"/srv/site/a.conf", "/srv/site/group.conf", "/srv/site/pw", "/srv/site/link",
                                 "/srv/site/data"}
    assert state.last_lines == {}  # the audit line is not a plan's business


def test_the_root_read_of_the_same_request_is_not_narrowed(host):
    state = parse_host_state(state_sh(str(host), "salt", stdin=REQUEST).splitlines())
    assert not state.read_only and state.last_lines == {"/var/log/audit.jsonl": b'{"seq": 1}\n'}
    assert state.paths["/srv/site/group.conf"].sha256 not in (None, UNREAD)
    assert "/home/someone/private" in state.paths


def test_texts_come_back_exactly_and_in_plan_mode_only_where_world_readable(host):
    (host / "srv/site/two lines").write_text("line 1\nline 2\n")
    (host / "srv/site/empty").write_text("")
    (host / "srv/site/no-newline").write_text("x")
    (host / PLAN_PATHS.lstrip("/")).write_text("d /srv/site\nf /srv/site/two lines\nf /srv/site/empty\n"
                                               "f /srv/site/no-newline\nf /srv/site/group.conf\nf /srv/site/pw\n"
                                               "o /srv/site/conf.d\n")
    paths = ["/srv/site/two lines", "/srv/site/empty", "/srv/site/no-newline", "/srv/site/group.conf",
             "/srv/site/pw", "/home/someone/private", "/srv/site/link", "/srv/site/data/private",
             "/srv/site/conf.d/shop.conf", "/srv/site/store/chunk", "/srv/site/a.conf"]
    as_root = parse_texts(state_sh(str(host), "", stdin=text_request(paths)))
    assert as_root["/srv/site/two lines"] == "line 1\nline 2\n" and as_root["/srv/site/empty"] == ""
    assert as_root["/srv/site/no-newline"] == "x" and as_root["/srv/site/pw"] == "hunter2\n"
    as_plan = parse_texts(state_sh("plan", str(host), stdin=text_request(paths)))
    assert as_plan == {"/srv/site/two lines": "line 1\nline 2\n", "/srv/site/empty": "", "/srv/site/no-newline": "x",
                       "/srv/site/conf.d/shop.conf": "server {}\n"}


def test_plan_mode_refuses_a_host_never_deployed(host):
    (host / PLAN_PATHS.lstrip("/")).unlink()
    done = subprocess.run(["sh", "-c", program_command("state", "plan", str(host))], input=REQUEST.encode(),
                          capture_output=True)
    assert done.returncode == 1 and b"deploy first" in done.stderr


def test_the_identity_is_a_restricted_key_a_narrow_sudo_rule_and_the_managed_path_list(render):
    manifest = render([WITH_KEY])
    files = {f.path: f for f in manifest.files}
    keys = files["/var/lib/vsa-plan/.ssh/authorized_keys"]
    assert keys.content == f'restrict,command="sudo -n /usr/local/lib/vsa-ops/state.sh plan" {KEY}\n'
    assert (keys.owner, keys.mode) == (0, "0644")  # root's: the account cannot change its own key
    rule = files[sudoers_path(hub_config([WITH_KEY]).plan_identity)]
    assert "vsa-plan ALL=(root) NOPASSWD: /usr/local/lib/vsa-ops/state.sh plan\n" in rule.content
    assert rule.mode == "0440" and "." not in rule.path.rsplit("/", 1)[1]  # sudo skips names with a dot
    listed = [line.split(" ", 1) for line in files[PLAN_PATHS].content.splitlines()]
    folders = [path + "/" for kind, path in listed if kind == "d"]
    for path in [f.path for f in manifest.files] + [d.path for d in manifest.directories]:  # metadata of each
        assert ["f", path] in listed or ["d", path] in listed or any(path.startswith(f) for f in folders), path
    for item in manifest.files:  # and the content of each: named, or in an owned folder
        assert ["f", item.path] in listed or ["o", item.path.rsplit("/", 1)[0]] in listed, item.path
    assert ["d", "/srv/flowbiz"] in listed and ["f", "/etc/docker/daemon.json"] in listed
    assert ["o", "/srv/flowbiz/reverse-proxy/nginx/conf.d"] in listed
    # content: the manifest's files only (never what a container keeps in its data folders)
    assert {path for kind, path in listed if kind == "f"} <= {f.path for f in manifest.files}
    # the list is the same with one domain more: a deploy aimed at that domain leaves it as it is
    with_domain = render([WITH_KEY], domains=[Domain(name="shop.example.com", upstream="http://shop:8080")])
    assert with_domain.file(PLAN_PATHS).content == files[PLAN_PATHS].content
    assert any(f.domain == "shop.example.com" for f in with_domain.files)
    assert ("vsa-plan", 64910) in {(u.name, u.uid) for u in manifest.users}
    # plan mode reads the text of world-readable files: no file holding a secret may be one
    assert [f.path for f in manifest.files if f.sensitive and int(f.mode, 8) & 0o004] == []
    without = render()
    assert PLAN_PATHS not in {f.path for f in without.files} and "vsa-plan" not in {u.name for u in without.users}


@pytest.mark.parametrize("override, problem", [
    ({"authorized_keys": [f'command="sh" {KEY}']}, "without options"),
    ({"authorized_keys": ["not a key"]}, "OpenSSH public key"),
    ({"user": "root"}, "not root"),
    ({"shell": "/bin/bash"}, "unknown key"),
])
def test_the_identity_configuration_is_checked(override, problem):
    with pytest.raises(ConfigError, match=problem):
        hub_config([{"plan_identity": override}])


def test_the_sudoers_drop_in_is_checked_by_visudo_before_it_moves(render):
    import base64

    from vsa_ops.operations.stacks import transaction_input

    manifest = render([WITH_KEY])
    plan = make_plan(manifest, converged(render()))
    checks = [base64.b64decode(line.split()[1]).decode() for line in transaction_input(plan, manifest).splitlines()
              if line.startswith("check ")]
    assert any(c.startswith("visudo -cqf \"$VSA_STAGE/files/\"etc/sudoers.d/vsa-ops-vsa-plan") for c in checks)
    install = transaction_input(plan, manifest).index("install etc/sudoers.d/")
    assert transaction_input(plan, manifest).index("check ") < install


def test_unread_and_secret_files_are_not_compared_but_their_metadata_is(render):
    manifest = render()
    secret = next(f for f in manifest.files if f.sensitive)
    state = converged(manifest, salt="s")
    for f in manifest.files:
        if f.sensitive:
            state.paths[f.path] = state.paths[f.path].__class__("file", f.owner, f.group, f.mode, UNREAD)
    reviewed = not_compared(manifest, state, secrets_known=True)
    assert make_plan(manifest, reviewed).empty and secret.path in reviewed.not_compared
    state.paths[secret.path] = state.paths[secret.path].__class__("file", secret.owner, secret.group, "0644", UNREAD)
    changes = {(c.file.path, c.reason) for c in make_plan(manifest, not_compared(manifest, state, True)).files}
    assert changes == {(secret.path, "mode")}


def test_without_the_secrets_their_files_are_not_compared(render):
    host_has = render()  # deployed with the real secrets
    placeholders = render(secrets=None)  # what a plan without them renders
    state = not_compared(placeholders, converged(host_has, salt="s"), secrets_known=False)
    assert make_plan(placeholders, state).empty
    assert state.not_compared == {f.path for f in host_has.files if f.sensitive}
    report = HostPlan("hub", make_plan(placeholders, state), not_compared=sorted(state.not_compared))
    assert f"file {sorted(state.not_compared)[0]}: secret: not compared" in render_text([report])
    assert report.changes == [] and '"not_compared"' in render_json([report])
    assert not any(v in render_text([report]) for v in SECRETS.values())


def hosts(user: str, vsa: dict | None = None) -> list:
    from pyinfra.api import Inventory

    return list(Inventory(([("hub", {"ssh_user": user, "vsa": vsa or {}})], {})))


def test_a_command_that_changes_hosts_refuses_the_plan_identity():
    refuse_plan_identity(hosts("root"), "deploy")
    refuse_plan_identity(hosts("vsa-plan", {"plan_identity": {"user": "ci-reader"}}), "deploy")
    with pytest.raises(PlanIdentityError, match="plan identity 'vsa-plan', which can only plan"):
        refuse_plan_identity(hosts("vsa-plan"), "deploy")
    with pytest.raises(PlanIdentityError, match="plan identity 'ci-reader'"):
        refuse_plan_identity(hosts("ci-reader", {"plan_identity": {"user": "ci-reader"}}), "deploy")


@pytest.mark.parametrize("command", [["deploy"], ["add-domain", "x.example.com", "--upstream", "http://a:1"],
                                     ["remove-domain", "x.example.com"], ["backup"], ["restore", "--limit", "hub"]])
def test_each_changing_command_refuses_an_inventory_of_the_plan_identity_in_one_line(project, command):
    (project / "inventory.py").write_text('hubs = [("hub", {"ssh_hostname": "hub.invalid", "ssh_user": "vsa-plan"})]\n')
    done = run_cli(*command, "-i", str(project / "inventory.py"), cwd=project)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "plan identity 'vsa-plan'" in done.stderr, done.stderr


def workflow_problems(text: str) -> list[str]:
    """What makes a plan workflow unsafe: a secret expanded into script text (a value with a quote
    becomes shell code), a host key accepted on first sight, permissions missing or wider than
    reading the code and commenting, a deploy-only secret."""
    workflow, problems = yaml.safe_load(text), []
    allowed = {"contents": "read", "pull-requests": "write"}
    if not isinstance(workflow.get("permissions"), dict) or not set(workflow["permissions"].items()) <= set(
            allowed.items()) or workflow["permissions"].get("contents") != "read":
        problems.append(f"permissions: {workflow.get('permissions')!r}")
    for name, job in workflow["jobs"].items():
        if "permissions" in job and not set(job["permissions"].items()) <= set(allowed.items()):
            problems.append(f"{name}: permissions {job['permissions']!r}")
        for step in job["steps"]:
            if "${{" in step.get("run", "") and "secrets." in step["run"].replace(" ", ""):
                problems.append(f"{name}: a secret in the script of {step.get('name', step['run'][:40])!r}")
    if "accept-new" in text.lower() or "stricthostkeychecking=no" in text.lower().replace(" ", ""):
        problems.append("a host key accepted unseen")
    problems += [f"names {name}" for name in ("VSA_POSTGRES_PASSWORD", "VSA_GRAFANA_ADMIN_PASSWORD", "VSA_SSH_KEY ")
                 if name in text]
    return problems


def test_the_ci_workflow_uses_only_the_plan_identity_and_passes_no_secret_through_script_text():
    text = WORKFLOW.read_text()
    assert workflow_problems(text) == []
    steps = [step for job in yaml.safe_load(text)["jobs"].values() for step in job["steps"]]
    env = {k: v for step in steps for k, v in (step.get("env") or {}).items()}
    assert env["VSA_SSH_USER"] == "vsa-plan" and "secrets.VSA_PLAN_SSH_KEY" in env["PLAN_SSH_KEY"]
    assert "VSA_HUB_HOST_KEY" in env["HUB_HOST_KEY"]


@pytest.mark.parametrize("spoil", [
    lambda text: text.replace("    steps:\n", '    steps:\n      - run: echo "${{ secrets.VSA_PLAN_SSH_KEY }}" > k\n', 1),
    lambda text: text.replace("    steps:\n", "    steps:\n      - run: ssh -o StrictHostKeyChecking=accept-new h\n", 1),
    lambda text: text.replace("permissions:\n  contents: read\n", "", 1),
    lambda text: text.replace("contents: read", "contents: write", 1),
], ids=["secret-in-script", "accept-new", "no-permissions", "write-contents"])
def test_the_workflow_check_catches_each_unsafe_change(spoil):
    spoiled = spoil(WORKFLOW.read_text())
    assert spoiled != WORKFLOW.read_text() and workflow_problems(spoiled)


def test_a_deploy_stops_when_the_host_answers_as_the_plan_identity(render, monkeypatch):
    import vsa_ops.planning as planning

    manifest = render()
    answered = converged(manifest)
    monkeypatch.setattr(planning, "read_state", lambda host, manifest, last_lines=(): answered)
    host = hosts("deployer")  # an account name the configuration does not know as the plan identity
    planning.plan_host(host[0], manifest)
    answered.read_only = True
    with pytest.raises(PlanIdentityError, match="answered as the plan identity"):
        planning.plan_host(host[0], manifest)
    assert planning.plan_host(host[0], manifest, review=True)[2].empty  # a review goes on


def test_a_symlink_whose_target_holds_a_newline_lets_no_path_through_a_symlink(host):
    # A container that writes in a managed data folder plants a link whose target holds a newline: the
    # symlink check must still see each requested path's own resolution, not the next line's.
    site = host / "srv/site"
    (site / "nl").symlink_to(f"/nope\n{host.resolve()}/srv/site/data/private")
    request = "f /srv/site/a.conf\nd /srv/site/nl\nd /srv/site/data/private\no /srv/site/data\nd /srv/site/pw\n"
    state = parse_host_state(state_sh("plan", str(host), stdin=request).splitlines())
    assert set(state.paths) == {"/srv/site/a.conf", "/srv/site/pw"}  # the link itself and what lies behind: no


def test_plan_mode_refuses_a_request_larger_than_any_manifest(host):
    # The plan key's holder (a pull request) must not fill the host's disk as root with one endless request.
    script = program_command("state", "plan", str(host))
    big = subprocess.run(["sh", "-c", f"yes 'd /srv/site/a.conf' | head -c 20000000 | sh -c {shlex.quote(script)}"],
                         capture_output=True, timeout=120)
    assert big.returncode == 1 and b"request over 8 MiB" in big.stderr, big.stderr
    assert big.stdout == b""
    assert parse_host_state(state_sh("plan", str(host), stdin="d /srv/site/a.conf\n" * 100000).splitlines()).paths


def test_a_plan_request_of_metadata_only_is_answered(host):
    # no file in the request is world-readable: the metadata of each is still read
    state = parse_host_state(state_sh("plan", str(host), stdin="d /srv/site\nd /srv/site/pw\n").splitlines())
    assert set(state.paths) == {"/srv/site", "/srv/site/pw"}


def test_drift_over_a_mixed_inventory_records_the_hosts_it_may_write_to(monkeypatch):
    from click.testing import CliRunner

    from vsa_ops import fact_publishing, plan_review, recording
    from vsa_ops.cli import main
    from vsa_ops.plan_report import HostPlan

    plans = [HostPlan("root-host", None, error="unreachable"), HostPlan("ci-host", None, error="x", read_only=True)]
    recorded, published = [], []
    monkeypatch.setattr(plan_review, "plan_hosts", lambda root, path, limit: plans)
    monkeypatch.setattr(recording, "record_audit", lambda root, path, entries, echo=None: recorded.extend(entries))
    monkeypatch.setattr(fact_publishing, "publish_drift",
                        lambda root, path, counts, echo=None: published.append(counts))
    result = CliRunner().invoke(main, ["drift", "-i", str(ROOT / "inventory.py")])
    assert [entry.vps_id for entry in recorded] == ["root-host"] and published == [{}]
    assert "drift on ci-host as the plan identity: no audit record" in result.output
