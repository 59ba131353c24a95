"""The fault matrix, services' rows: on a lab host serving sites, a change NGINX refuses, a stack
compose cannot start, a service that exits at once, a stopped Docker engine, NGINX removed by hand,
the ACME server down during add-domain and two add-domain at once. After each: the managed files
are byte-identical to before (or to the complete new state), every site that served still serves,
no lock or staging file is left, and the next deploy converges."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from vsa_ops.config import hub_config
from vsa_ops.lab import acme
from vsa_ops.lab.errors import LabError
from vsa_ops.probe import request

from tests.lab.conftest import ROOT, vsa

pytestmark = pytest.mark.lab

TLS_SITE, PLAIN_SITE = "keep.vsa.test", "plain.vsa.test"
# Folders containers write (logs, certificates, the database): their files change on their own.
CONTAINER_DATA = sorted(d.path for d in hub_config().directories if d.container_data)
USER_STACK = "faulty"


@pytest.fixture(scope="module")
def hub(lab):
    lab.deploy()
    add(lab, TLS_SITE)
    add(lab, PLAIN_SITE, "--no-tls")
    assert serving(lab) == {TLS_SITE: 200, PLAIN_SITE: 200}
    return lab


def add(lab, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return vsa("add-domain", name, "-i", str(lab.inventory), "--upstream", "demo-app:8080", *args, check=check)


def serving(lab, names=(TLS_SITE, PLAIN_SITE)) -> dict[str, int]:
    """Status of each site: HTTPS for the TLS one, HTTP for the others (0: no answer)."""
    found = {}
    for name in names:
        tls = name == TLS_SITE
        port = lab.host["https_port"] if tls else lab.host["http_port"]
        try:
            answer, _ = request("127.0.0.1", port, name, tls=tls, ca_file=lab.info["acme_roots"])
            found[name] = answer.status
        except OSError:
            found[name] = 0
    return found


def managed(lab) -> str:
    """sha256 of every file under /srv/flowbiz (but container data) and of /etc/fstab, in the host."""
    prune = " -o ".join(f"-path {path}" for path in CONTAINER_DATA)
    return lab.sh(f"find /srv/flowbiz \\( {prune} \\) -prune -o -type f -print0 | sort -z | xargs -0 sha256sum; "
                  "sha256sum /etc/fstab")


def leftovers(lab) -> str:
    """A run lock, staging, staged or backup files anywhere vsa-ops writes."""
    return lab.sh("ls -d /var/lib/vsa-ops/lock /var/lib/vsa-ops/journal 2>/dev/null; "
                  "ls -A /var/lib/vsa-ops/stage 2>/dev/null; "
                  "find /srv/flowbiz /etc/docker /etc/logrotate.d \\( -name '*.vsa-new*' -o -name '*.vsa-bak*' \\) "
                  "2>/dev/null; find /etc -maxdepth 1 -name 'fstab.vsa-new*' 2>/dev/null; true").strip()


def assert_as_before(lab, before: str) -> None:
    assert managed(lab) == before
    assert serving(lab) == {TLS_SITE: 200, PLAIN_SITE: 200}
    assert leftovers(lab) == ""


def assert_refused_as_before(lab, result, message: str, before: str) -> None:
    """A run that failed in the way ``message`` says and left the host as it was."""
    assert result.returncode == 1
    assert message in result.stdout + result.stderr
    assert_as_before(lab, before)


def assert_converges(lab, **kwargs) -> None:
    lab.deploy(**kwargs)
    assert "no changes" in lab.deploy(**kwargs).stdout
    assert serving(lab) == {TLS_SITE: 200, PLAIN_SITE: 200}


@pytest.fixture
def project(tmp_path):
    """A copy of the project, safe to break; deploys with it use the lab's inventory and registry."""
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("stacks", "templates", "group_data"):
        shutil.copytree(ROOT / name, copy / name)
    shutil.copy(ROOT / "deploy.py", copy / "deploy.py")
    return copy


def user_stack(project: Path, service: str) -> dict:
    """A user stack named USER_STACK with one service (compose YAML lines); the env to deploy it."""
    folder = project / "stacks" / USER_STACK
    folder.mkdir()
    (folder / "compose.yml").write_text(
        f"services:\n  app:\n    container_name: {USER_STACK}-app\n{service}"
        "    restart: unless-stopped\n"
        "    logging: {driver: json-file, options: {max-size: 1m, max-file: '2'}}\n    networks: [flowbiz_ext]\n")
    return {"VSA_PROJECT": str(project)}


def test_a_change_nginx_refuses_is_rolled_back_and_every_site_serves(hub, project):
    before = managed(hub)
    snippet = project / "stacks" / "reverse-proxy" / "nginx" / "snippets" / "proxy.conf.j2"
    snippet.write_text(snippet.read_text() + "no_such_directive on;\n")
    result = hub.deploy(check=False, env={"VSA_PROJECT": str(project)})
    assert "rolling back" in result.stdout + result.stderr
    assert_refused_as_before(hub, result, "reverse-proxy-nginx: nginx -t -q failed", before)
    assert "no changes" in hub.deploy().stdout


def test_an_image_nobody_has_fails_before_the_host_is_touched(hub, project):
    before = managed(hub)
    env = user_stack(project, "    image: vsa-lab/no-such-image:1\n")
    result = hub.deploy(check=False, env=env)
    assert_refused_as_before(hub, result, "images on neither the host nor this controller, and vsa.docker.pull is "
                                          "'never': vsa-lab/no-such-image:1", before)
    assert "no changes" in hub.deploy().stdout


def test_compose_up_failing_is_rolled_back(hub, project):
    before = managed(hub)
    # NGINX already publishes port 80: Docker refuses to start a second container on it.
    env = user_stack(project, "    image: vsa-lab/demo-app:1\n    ports: ['80:8080']\n")
    result = hub.deploy(check=False, env=env)
    assert_refused_as_before(hub, result, "docker compose up failed for stack faulty", before)
    assert USER_STACK not in hub.sh("docker ps -a --format '{{.Names}}'")
    assert "no changes" in hub.deploy().stdout


def test_a_service_that_exits_at_once_is_rolled_back(hub, project):
    before = managed(hub)
    env = user_stack(project, "    image: vsa-lab/demo-app:1\n    entrypoint: ['sh', '-c', 'exit 1']\n")
    result = hub.deploy(check=False, env=env)
    assert_refused_as_before(hub, result, f"{USER_STACK}-app is not running after the change", before)
    assert USER_STACK not in hub.sh("docker ps -a --format '{{.Names}}'")
    assert "no changes" in hub.deploy().stdout


def test_nginx_removed_by_hand_comes_back_with_the_next_deploy(hub):
    before = managed(hub)
    hub.sh("docker rm -f reverse-proxy-nginx >/dev/null")
    assert serving(hub) == {TLS_SITE: 0, PLAIN_SITE: 0}
    result = hub.deploy()
    assert "stacks up" in result.stdout
    assert_as_before(hub, before)
    assert "no changes" in hub.deploy().stdout


def test_a_stopped_docker_engine_fails_in_one_line_and_changes_nothing(hub):
    before = managed(hub)
    pid = hub.sh("pgrep -xo dockerd").strip()
    # How the lab started it (arguments and environment), to start it the same way afterwards.
    launch = hub.sh(f"cat /proc/{pid}/environ /proc/{pid}/cmdline | base64 -w0")
    hub.sh(f"kill {pid}; while kill -0 {pid} 2>/dev/null; do sleep 0.2; done")
    try:
        result = hub.deploy(check=False)
        assert result.returncode == 1
        assert "vsa-ops: the Docker engine does not answer (docker info fails): start dockerd, then deploy again" \
            in result.stdout + result.stderr, result.stdout[-3000:]
        assert managed(hub) == before and leftovers(hub) == ""
    finally:
        hub.sh(f"echo {launch} | base64 -d > /run/vsa-test-dockerd; rm -f /var/run/docker.pid; "
               "(cd / && setsid xargs -0 env -i < /run/vsa-test-dockerd >>/var/log/dockerd.log 2>&1 &); "
               "for i in $(seq 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done; docker info >/dev/null")
    # While the engine was down its DNS (127.0.0.11) did not answer, and NGINX's resolver holds what
    # it got for up to valid=10s, in each worker on its own: one answer of 200 is not all of them.
    # Wait until every site has answered 200 five times in a row.
    deadline, steady = time.monotonic() + 45, 0
    while steady < 5 and time.monotonic() < deadline:
        steady = steady + 1 if serving(hub) == {TLS_SITE: 200, PLAIN_SITE: 200} else 0
        time.sleep(1)
    assert_converges(hub)


def test_the_acme_server_down_during_add_domain_leaves_registry_and_host_as_before(hub):
    before, registry = managed(hub), (ROOT / ".lab" / "domains.yml").read_text()
    subprocess.run(["docker", "stop", acme.CONTAINER], check=True, capture_output=True)
    try:
        started = time.monotonic()
        result = add(hub, "late.vsa.test", check=False)
        assert result.returncode == 1
        assert "certbot could not get a certificate for late.vsa.test" in result.stdout + result.stderr
        assert "the registry and the hosts are as they were" in result.stderr
        assert time.monotonic() - started < 300
        assert (ROOT / ".lab" / "domains.yml").read_text() == registry
        assert_as_before(hub, before)
    finally:
        restart_acme(hub)
    assert_converges(hub)


def restart_acme(lab) -> None:
    """Start pebble again. It keeps nothing across a restart: it signs with a new root (clients must
    trust both: the sites' certificates come from the old one) and knows no account."""
    roots = Path(lab.info["acme_roots"])
    old = roots.read_bytes()
    subprocess.run(["docker", "start", acme.CONTAINER], check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            new = acme.issuer_roots(ROOT).read_bytes()
            break
        except LabError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    roots.write_bytes(old.rstrip(b"\n") + b"\n" + new)
    lab.sh("rm -rf /srv/flowbiz/reverse-proxy/letsencrypt/accounts")


def test_two_add_domain_at_once_both_end_in_the_registry_and_on_the_host(hub):
    names = ["one.vsa.test", "two.vsa.test"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VSA_")}
    runs = [subprocess.Popen(["vsa-ops", "add-domain", name, "-i", str(hub.inventory), "--upstream", "demo-app:8080",
                              "--no-tls"], cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for name in names]
    outputs = [run.communicate(timeout=900) for run in runs]
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0, out + err
    assert any("waiting for add-domain" in err for _, err in outputs)  # one waited for the other
    registry = (ROOT / ".lab" / "domains.yml").read_text()
    assert all(f"{name}:" in registry for name in names)
    vhosts = hub.sh("ls /srv/flowbiz/reverse-proxy/nginx/conf.d/")
    assert all(f"{name}.conf" in vhosts for name in names)
    assert serving(hub, [*names, PLAIN_SITE, TLS_SITE]) == {**dict.fromkeys(names, 200), PLAIN_SITE: 200, TLS_SITE: 200}
    assert leftovers(hub) == ""
    assert "no changes" in hub.deploy().stdout
