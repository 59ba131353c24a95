"""The fault matrix, transaction rows, on a lab VPS: a deploy cut short at each step of its
transaction (the controller killed, the host's shell killed, the SSH connection cut, the staging
filesystem full) leaves the managed files as they were (or as the complete new state where it had
committed), every domain that served still serves, and the next deploy converges with nothing to
repair by hand and leaves no staging, backup, journal or lock behind. Then scale: 2,000 domains
converge, and the no-op converge after them is one remote command.

The steps are found with the transaction's own markers: the tests put a step hook on the host
(/var/lib/vsa-ops/step-hook, see transaction.sh) that waits while a hold file beside it
(/var/lib/vsa-ops/hold-at) names the step the journal says the program reached."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from vsa_ops.probe import request

from tests.lab.conftest import ROOT, commands_run, vsa
from tests.test_host_programs import HOLD_HOOK

pytestmark = pytest.mark.lab

REGISTRY = ROOT / ".lab" / "domains.yml"
DOMAINS = ("alpha.vsa.test", "beta.vsa.test")
PROMETHEUS = "/srv/flowbiz/observability/prometheus/prometheus.yml"
STATE = "/var/lib/vsa-ops"
TRANSACTION = "[v]sa-ops files-and-stacks transaction"  # [v]: pgrep must not match its own shell


def no_tls_registry(names) -> str:
    return "".join(f"{name}:\n  upstream: demo-app:8080\n  tls: false\n" for name in names)


@pytest.fixture(scope="module")
def hub(lab, tmp_path_factory):
    saved = REGISTRY.read_text() if REGISTRY.exists() else None
    REGISTRY.write_text(no_tls_registry(DOMAINS))
    lab.deploy()
    out = tmp_path_factory.mktemp("render")
    vsa("render", "--out", str(out), "-i", str(lab.inventory))
    lab.managed = sorted("/" + str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    lab.changed = lab.inventory_with(tmp_path_factory.mktemp("inventory"),
                                     {"observability": {"prometheus": {"scrape_interval": "30s"}}})
    yield lab
    lab.sh(f"rm -f {STATE}/hold-at {STATE}/step-hook")  # a failed test may have left its transaction held
    wait_for(lambda: not host_programs(lab), "the transaction on the host to end", 60)
    if saved is None:
        REGISTRY.unlink()
    else:
        REGISTRY.write_text(saved)
    lab.deploy()


def snapshot(hub) -> dict[str, str]:
    """Kind, mode, owner and digest of every managed file on the host."""
    paths = "".join(f"{path}\n" for path in hub.managed)
    lines = subprocess.run(
        ["docker", "exec", "-i", hub.name, "sh", "-c",
         "while IFS= read -r p; do printf '%s %s %s\\n' \"$p\" \"$(stat -c '%F/%a/%u/%g' \"$p\" 2>&1)\" "
         "\"$(sha256sum < \"$p\" 2>/dev/null | cut -d' ' -f1)\"; done"],
        input=paths, capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(lines) == len(hub.managed) > 20
    return dict(line.split(" ", 1) for line in lines)


def serving(hub) -> dict[str, int]:
    return {name: request("127.0.0.1", hub.host["http_port"], name, tls=False)[0].status for name in DOMAINS}


def leftovers(hub) -> str:
    """Staging, backups, temporaries, journal, lock: what no finished run may leave."""
    return hub.sh(f"find /srv /etc /usr/local/lib/vsa-ops \\( -name '*.vsa-bak.*' -o -name '*.vsa-new.*' \\) "
                  f"-print 2>/dev/null; ls -A {STATE}/stage 2>/dev/null; ls -d {STATE}/journal {STATE}/lock "
                  f"2>/dev/null; true").strip()


def wait_for(check, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def host_programs(hub) -> list[str]:
    """Ids of the transaction's shells on the host."""
    return hub.sh(f"pgrep -f '{TRANSACTION}' || true").split()


def start_held(hub, step: str) -> subprocess.Popen:
    """A deploy of the changed setting, held on the host once its transaction reached ``step``."""
    subprocess.run(["docker", "exec", "-i", hub.name, "sh", "-c",
                    f"mkdir -p {STATE} && cat > {STATE}/step-hook && chmod 0700 {STATE}/step-hook"],
                   input=HOLD_HOOK, text=True, check=True)
    hub.sh(f"echo {step} > {STATE}/hold-at")
    process = subprocess.Popen(["vsa-ops", "deploy", "-i", str(hub.changed)], cwd=ROOT, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={k: v for k, v in os.environ.items() if not k.startswith("VSA_")})

    def reached() -> bool:
        assert process.poll() is None, process.stdout.read()
        return hub.sh(f"grep -qx 'step {step}' {STATE}/journal 2>/dev/null && echo yes || true").strip() == "yes"

    wait_for(reached, f"step {step}")
    return process


def release_hold(hub) -> None:
    hub.sh(f"rm -f {STATE}/hold-at {STATE}/step-hook")
    wait_for(lambda: not host_programs(hub), "the transaction on the host to end", 60)


def assert_recovers(hub, before: dict[str, str]) -> None:
    """The managed files as before or as the complete new state; the domains serve; the next
    deploy converges and leaves nothing behind; the one after has nothing to do."""
    after = snapshot(hub)
    changed = {path for path in before if before[path] != after[path]}
    assert changed <= {PROMETHEUS}, changed
    if changed:  # it had committed: the whole new state
        assert "scrape_interval: 30s" in hub.sh(f"cat {PROMETHEUS}")
    assert serving(hub) == {name: 200 for name in DOMAINS}
    hub.deploy()
    assert leftovers(hub) == ""
    assert snapshot(hub) == before
    assert "no changes" in hub.deploy().stdout
    assert hub.containers()["prometheus"]["State"]["Status"] == "running"


@pytest.mark.parametrize("step", ["upload", "backup", "rename", "validate", "reload"])
def test_the_controller_killed_at_each_step(hub, step):
    before = snapshot(hub)
    assert serving(hub) == {name: 200 for name in DOMAINS}
    process = start_held(hub, step)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    release_hold(hub)
    assert_recovers(hub, before)


def test_the_controller_killed_before_its_transaction_starts(hub):
    """Killed while the lock is taken (before any upload): nothing on the host changed."""
    before = snapshot(hub)
    hub.sh(f"mkdir -p {STATE}/lock && echo 'other ctl 1 0 someone' > {STATE}/lock/owner")
    process = subprocess.Popen(["vsa-ops", "deploy", "--lock-wait", "60", "-i", str(hub.changed)], cwd=ROOT,
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={k: v for k, v in os.environ.items() if not k.startswith("VSA_")})
    wait_for(lambda: bool(host_programs(hub)), "the transaction waiting for the lock")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    hub.sh(f"rm -rf {STATE}/lock")
    wait_for(lambda: not host_programs(hub), "the transaction on the host to end", 90)
    assert_recovers(hub, before)


def test_the_host_shell_killed_leaves_a_journal_the_next_plan_and_deploy_undo(hub):
    before = snapshot(hub)
    process = start_held(hub, "validate")
    for pid in host_programs(hub):
        hub.sh(f"kill -KILL {pid} || true")
    process.wait(timeout=120)
    hub.sh(f"rm -f {STATE}/hold-at {STATE}/step-hook")
    assert hub.sh(f"test -f {STATE}/journal && echo yes").strip() == "yes"
    planned = vsa("plan", "-i", str(hub.inventory), check=False)
    plan = planned.stdout
    assert planned.returncode == 2, planned.stdout + planned.stderr  # changes pending
    assert "unfinished change from run" in plan and "will be undone" in plan
    hub.deploy()
    assert leftovers(hub) == "" and snapshot(hub) == before
    assert "no changes" in hub.deploy().stdout


def test_the_ssh_connection_cut_mid_transaction(hub):
    before = snapshot(hub)
    process = start_held(hub, "rename")
    # the controller's SSH session on the host: its privileged monitor and its network process
    # ("sshd-session: root [priv]" and "root@notty" since OpenSSH 9.8, "sshd: ..." before)
    for pid in hub.sh("pgrep -f '^[s]shd(-session)?: root( \\[priv\\]|@notty)' || true").split():
        hub.sh(f"kill -KILL {pid} || true")
    assert process.wait(timeout=120) != 0
    release_hold(hub)
    assert "restoring run" in hub.sh(f"cat {STATE}/log")
    assert_recovers(hub, before)


def test_the_staging_filesystem_full(hub):
    before = snapshot(hub)
    hub.sh(f"mkdir -p {STATE}/stage && mount -t tmpfs -o size=4k tmpfs {STATE}/stage")
    try:
        result = hub.deploy(inventory=hub.changed, check=False)
    finally:
        hub.sh(f"umount {STATE}/stage")
    assert result.returncode != 0
    assert "staging folder /var/lib/vsa-ops/stage is full" in result.stdout + result.stderr
    assert snapshot(hub) == before and leftovers(hub) == ""
    assert_recovers(hub, before)


def test_the_target_filesystem_full(hub):
    """Prometheus' folder on a small tmpfs holding a copy of it and no room left: the new file cannot
    be staged beside its target; one line names it, nothing moved, every site serves."""
    before = snapshot(hub)
    folder = PROMETHEUS.rsplit("/", 1)[0]
    try:
        hub.sh(f"set -e; keep=$(mktemp -d); cp -a {folder}/. \"$keep\"; "
               f"mount -t tmpfs -o size=1m,mode=$(stat -c %a {folder}),uid=$(stat -c %u {folder}),"
               f"gid=$(stat -c %g {folder}) tmpfs {folder}; cp -a \"$keep\"/. {folder}; rm -rf \"$keep\"; "
               f"mount -o remount,size=$(df --output=used -B1 {folder} | tail -n 1) {folder}")
        assert hub.sh(f"df --output=avail -B1 {folder} | tail -n 1").strip() == "0"
        assert snapshot(hub) == before
        result = hub.deploy(inventory=hub.changed, check=False)
        assert result.returncode != 0
        assert f"cannot copy {PROMETHEUS} (a full disk?)" in result.stdout + result.stderr
        assert snapshot(hub) == before and leftovers(hub) == ""
    finally:
        hub.sh(f"umount {folder}", check=False)
    assert "tmpfs" not in hub.sh(f"findmnt -n -o FSTYPE {folder} || true")
    assert snapshot(hub) == before and leftovers(hub) == ""
    assert_recovers(hub, before)


def test_two_thousand_domains_converge_and_a_no_op_is_one_command(hub):
    names = [f"site{i}.vsa.test" for i in range(2000)]
    REGISTRY.write_text(no_tls_registry([*DOMAINS, *names]))
    try:
        start = time.monotonic()
        hub.deploy()
        converge = time.monotonic() - start
        command = ["python3", "-m", "pyinfra", "-y", "-vvv", str(hub.inventory), "deploy.py"]
        start = time.monotonic()
        again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        no_op = time.monotonic() - start
        log = again.stdout + again.stderr
        assert again.returncode == 0 and "no changes" in log, log[-3000:]
        assert commands_run(log) == 1
        assert request("127.0.0.1", hub.host["http_port"], "site1999.vsa.test", tls=False)[0].status == 200
        print(f"2000 domains: converge {converge:.1f} s, no-op {no_op:.1f} s")
        # NGINX parses 2,000 vhosts before its new workers answer (most of a second here): a deploy
        # returns only once they do, so a site it adds answers the very first request (an ACME
        # check that came earlier met the old workers, which close the connection for an unknown name).
        REGISTRY.write_text(no_tls_registry([*DOMAINS, *names, "one-more.vsa.test"]))
        hub.deploy()
        assert request("127.0.0.1", hub.host["http_port"], "one-more.vsa.test", tls=False)[0].status == 200
    finally:
        REGISTRY.write_text(no_tls_registry(DOMAINS))
        hub.deploy()
