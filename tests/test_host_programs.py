"""The host programs (vsa_ops/host_programs/*.sh), run here with sh against a scratch root that
stands in for a host's / : the state read's framing, the run lock under contention, and the
transaction's all-or-nothing under failures and signals."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from vsa_ops.host_programs import PROGRAMS, program_command, program_text
from vsa_ops.state_read import parse_host_state, state_request

RUN = "r1"


def run_program(name: str, root: Path, *args, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["sh", "-c", program_command(name, str(root), *args)], input=stdin.encode(),
                          capture_output=True, timeout=60)
    if check and done.returncode:
        raise AssertionError(f"{name} exited {done.returncode}: {done.stderr.decode()}")
    return done


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_each_host_program_passes_shellcheck(tmp_path, name):
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is missing: .ci/setup installs it (Debian package shellcheck)")
    program = tmp_path / f"{name}.sh"
    program.write_text(program_text(name))
    done = subprocess.run(["shellcheck", "-s", "sh", str(program)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


# --- the state read ---------------------------------------------------------------------------

@pytest.fixture
def host(tmp_path):
    """A scratch root with a managed folder, two files (one a secret) and an fstab."""
    root = tmp_path / "root"
    (root / "srv/site").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/fstab").write_text("LABEL=docker /var/lib/docker ext4 defaults 0 2\n")
    (root / "srv/site/a.conf").write_text("a\n")
    (root / "srv/site/pw").write_text("hunter2\n")
    return root


PATHS, FILES, SECRETS = ["/srv/site", "/srv/site/a.conf", "/srv/site/pw"], ["/srv/site/a.conf"], ["/srv/site/pw"]


def read(root: Path, salt: str = "salt"):
    request = state_request(PATHS, FILES, ["/srv/site"], SECRETS)
    return parse_host_state(run_program("state", root, salt, stdin=request).stdout.decode().splitlines())


def test_the_state_read_reports_paths_digests_and_owned_files(host):
    state = read(host)
    assert state.paths["/srv/site"].kind == "directory"
    assert state.paths["/srv/site/a.conf"].sha256 == "87428fc522803d31065e7bce3cf03fe475096631e5e07bbd7a0fde60c4cf25c7"
    assert state.paths["/srv/site/pw"].sha256 not in ("", None)  # salted: not the bare digest of the password
    assert state.owned_files == {"/srv/site/a.conf", "/srv/site/pw"}
    assert state.fstab.startswith("LABEL=docker") and len(state.fingerprint) == 64
    assert read(host, "other salt").fingerprint != state.fingerprint


def test_a_hostile_file_name_in_an_owned_folder_cannot_change_the_plan(host):
    """Seen failing on the old line framing: this name rewrote the fingerprint and added a path."""
    before = read(host)
    hostile = "x\n@@vsa:fingerprint\n" + "0" * 64 + "\n@@vsa:stat\nregular file|0|0|644|x\nsha 00  x\nfingerprint "
    (host / "srv/site" / hostile).write_text("")
    (host / "srv/site" / "bad\udcff\nname").write_bytes(b"")  # not UTF-8 either
    after = read(host)
    assert after.fingerprint == before.fingerprint and after.paths == before.paths
    assert after.owned_files - before.owned_files == {"/srv/site/" + hostile, "/srv/site/bad\udcff\nname"}


FAKE_DOCKER = """#!/bin/sh
sleep 0.1  # the state read asks the three questions at once: each must still land in its place
case "$1 $2" in
    "network ls") [ -e "$0.down" ] && exit 1; printf 'bridge\\nvsa-ext\\n' ;;
    "image ls") printf 'nginx:1.25-alpine\\n' ;;
    "ps -a") printf 'reverse-proxy|nginx|running\\nobservability|loki|exited\\n' ;;
esac
"""


def test_the_state_read_reports_the_engine_networks_images_and_containers(host, tmp_path, monkeypatch):
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "docker").write_text(FAKE_DOCKER)
    (tools / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    state = read(host)
    assert state.docker_running and state.networks == {"bridge", "vsa-ext"} and state.images == {"nginx:1.25-alpine"}
    assert state.containers == {("reverse-proxy", "nginx"): "running", ("observability", "loki"): "exited"}
    (tools / "docker.down").touch()  # no engine answers: nothing of it is reported
    state = read(host)
    assert not state.docker_running and not state.networks and not state.images and not state.containers


def test_the_lock_checks_the_very_fingerprint_the_state_read_printed(host):
    printed = read(host).fingerprint
    request = state_request(PATHS, FILES, [], SECRETS)
    taken = run_program("lock", host, "take", RUN, f"{RUN} ctl 1 0 me", 0, 900, "", printed, "salt", stdin=request)
    assert (host / "var/lib/vsa-ops/lock/owner").read_text().startswith(RUN)
    run_program("lock", host, "release", RUN)
    (host / "srv/site/pw").write_text("hunter3\n")
    changed = run_program("lock", host, "take", RUN, f"{RUN} ctl 1 0 me", 0, 900, "", printed, "salt",
                          stdin=request, check=False)
    assert taken.returncode == 0 and changed.returncode == 75 and b"the host changed" in changed.stderr
    assert not (host / "var/lib/vsa-ops/lock").exists()


# --- the run lock -----------------------------------------------------------------------------

CONTENDER = """
{take} || exit 1
echo "enter $1" >> "$2"
sleep 0.2
echo "leave $1" >> "$2"
{release}
"""


def test_six_contenders_against_a_stale_lock_and_a_wrong_controller_clock_never_overlap(tmp_path):
    """Each contender's owner line carries a start time an hour behind the host's clock (the
    controller's clock); the old lock aged holders by that field and let every one take over."""
    root, marks = tmp_path / "root", tmp_path / "marks"
    lock = root / "var/lib/vsa-ops/lock"
    lock.mkdir(parents=True)
    (lock / "owner").write_text("dead ctl 1 0 me\n")
    old = time.time() - 7200
    os.utime(lock / "owner", (old, old))  # stale by the host's clock
    an_hour_off = int(time.time()) - 3600
    contenders = []
    for index in range(8):
        run = f"c{index}"
        take = program_command("lock", str(root), "take", run, f"{run} ctl {index} {an_hour_off} me", 60, 900, "",
                               "-", "")
        script = CONTENDER.format(take=f"{{ printf ''; }} | ( {take} ) ",
                                  release=program_command("lock", str(root), "release", run))
        contenders.append(subprocess.Popen(["sh", "-c", script, "sh", run, str(marks)], stdin=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE))
    for process in contenders:
        assert process.wait(timeout=120) in (0, 75), process.stderr.read().decode()
    lines = marks.read_text().splitlines()
    assert len(lines) == 16
    inside = None
    for line in lines:  # enter and leave strictly alternate, each pair from one contender
        mark, who = line.split()
        if mark == "enter":
            assert inside is None, f"{who} entered while {inside} was inside"
            inside = who
        else:
            assert inside == who
            inside = None
    assert not lock.exists()


def test_a_lock_wait_that_gives_up_names_the_holder_and_leaves_no_staging(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    run_program("lock", root, "take", "holder", "holder ctl 1 0 me", 0, 900, "", "-", "")
    done = run_program("transaction", root, RUN, f"{RUN} ctl 2 0 me", 1, 900, "", "f" * 64, "", stdin="archive\nend\n",
                       check=False)
    assert done.returncode == 75 and b"locked by another run: holder ctl 1 0 me" in done.stderr
    assert list((root / "var/lib/vsa-ops/stage").iterdir()) == []
    assert (root / "var/lib/vsa-ops/lock/owner").read_text().startswith("holder")


def test_the_holder_refreshes_its_lock_and_only_it_may_release_it(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    run_program("lock", root, "take", RUN, f"{RUN} ctl 1 0 me", 0, 900, "", "-", "")
    owner = root / "var/lib/vsa-ops/lock/owner"
    os.utime(owner, (0, 0))
    run_program("lock", root, "refresh", RUN)
    assert time.time() - owner.stat().st_mtime < 60
    run_program("lock", root, "release", "someone-else")
    assert owner.exists()
    run_program("lock", root, "release", RUN)
    assert not owner.exists()


CONTROLLER = ("import subprocess, sys, time\n"
              "subprocess.run(['sh', '-c', sys.argv[1]], stdin=subprocess.DEVNULL, check=True)\n"
              "time.sleep(120)")


def test_a_run_keeps_its_lock_fresh_through_every_step_until_its_controller_is_gone(tmp_path):
    """The lock set back two hours (a run longer than the stale limit, by the host's clock) is not
    taken over while the run's controller lives, whatever step it is at: a keeper started with the
    lock refreshes it. Once the controller is gone, the lock goes stale and is taken over. Seen
    failing without the keeper: the second run took the lock over at once."""
    root = tmp_path / "root"
    root.mkdir()
    owner = root / "var/lib/vsa-ops/lock/owner"
    take = program_command("lock", str(root), "take", RUN, f"{RUN} ctl 1 0 me", 0, 4, "", "-", "")
    controller = subprocess.Popen([sys.executable, "-c", CONTROLLER, take])
    try:
        deadline = time.monotonic() + 30
        while not owner.exists():
            assert time.monotonic() < deadline and controller.poll() is None
            time.sleep(0.05)
        two_hours_ago = int(time.time()) - 7200
        os.utime(owner, (two_hours_ago, two_hours_ago))
        time.sleep(3)  # a refresh every STALE/4 + 1 = 2 s
        assert owner.stat().st_mtime > two_hours_ago
        contender = run_program("lock", root, "take", "r2", "r2 ctl 2 0 me", 0, 4, "", "-", "", check=False)
        assert contender.returncode == 75 and owner.read_text().startswith(RUN)
    finally:
        controller.kill()
        controller.wait()
    time.sleep(1.5)  # the keeper looks at its lifeline every second
    os.utime(owner, (two_hours_ago, two_hours_ago))
    time.sleep(2.5)
    assert owner.stat().st_mtime == two_hours_ago  # nobody refreshes a dead run's lock
    run_program("lock", root, "take", "r2", "r2 ctl 2 0 me", 0, 4, "", "-", "")
    assert owner.read_text().startswith("r2 ")
    run_program("lock", root, "release", "r2")


# --- the transaction --------------------------------------------------------------------------

def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def transaction_stdin(actions: list[str], files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, content in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(content.encode()), 0o640
            archive.addfile(info, io.BytesIO(content.encode()))
    packed = base64.encodebytes(gzip.compress(buffer.getvalue())).decode()
    return "\n".join([*actions, *(f"install {p}" for p in files), "archive", packed, "end"])


def tree(root: Path) -> dict:
    """Every entry under srv/: kind, mode and content (a link: its target)."""
    found = {}
    for path in sorted((root / "srv").rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = ("link", os.readlink(path))
        elif path.is_file():
            found[str(path.relative_to(root))] = ("file", oct(path.stat().st_mode), path.read_text())
        else:
            found[str(path.relative_to(root))] = ("dir", oct(path.stat().st_mode))
    return found


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "root"
    (root / "srv/site").mkdir(parents=True)
    (root / "srv/site/a.conf").write_text("old a\n")
    (root / "srv/site/keep").write_text("keep\n")
    (root / "srv/site/gone").write_text("gone\n")
    (root / "outside").write_text("not managed\n")
    (root / "srv/site/link.conf").symlink_to("../../outside")
    return root


def leftovers(root: Path) -> list[str]:
    """Staging, backups, temporaries, journal and lock that a finished run must not leave."""
    names = [str(p) for p in root.rglob("*") if ".vsa-bak." in p.name or ".vsa-new." in p.name]
    state = root / "var/lib/vsa-ops"
    names += [str(p) for p in (state / "stage").glob("*")] if (state / "stage").exists() else []
    names += [str(p) for p in (state / "journal", state / "lock") if p.exists()]
    return names


ACTIONS = ["meta 0:0 0600 srv/site/keep", "remove srv/site/gone"]
NEW = {"srv/site/a.conf": "new a\n", "srv/site/b.conf": "new b\n", "srv/site/link.conf": "now a file\n"}


def test_a_transaction_commits_every_change_and_leaves_nothing_behind(site):
    reloaded = site / "reloaded"
    act = f"act last {encoded(f'touch {reloaded}')} {encoded('true')} {encoded('reload failed')}"
    run_program("transaction", site, RUN, f"{RUN} ctl 1 0 me", 5, 900, "", "-", "",
                stdin=transaction_stdin([*ACTIONS, act], NEW))
    assert (site / "srv/site/a.conf").read_text() == "new a\n" and (site / "srv/site/b.conf").read_text() == "new b\n"
    assert oct((site / "srv/site/keep").stat().st_mode)[-3:] == "600" and not (site / "srv/site/gone").exists()
    # the managed path that was a symlink is now the file itself; what it pointed at is untouched
    assert not (site / "srv/site/link.conf").is_symlink() and (site / "outside").read_text() == "not managed\n"
    assert reloaded.exists() and leftovers(site) == []


@pytest.mark.parametrize("failing", ["check", "validate", "act"])
def test_a_failing_step_puts_everything_back(site, failing):
    before, undone = tree(site), site / "undone"
    actions = [*ACTIONS, f"act last {encoded('true')} {encoded(f'touch {undone}')} {encoded('first act')}",
               f"{failing} {'last ' if failing == 'act' else ''}{encoded('false')} "
               f"{encoded('true') + ' ' if failing == 'act' else ''}{encoded('the step failed')}"]
    done = run_program("transaction", site, RUN, f"{RUN} ctl 1 0 me", 5, 900, "", "-", "",
                       stdin=transaction_stdin(actions, NEW), check=False)
    assert done.returncode == 1 and b"the step failed" in done.stderr
    assert tree(site) == before and leftovers(site) == []
    # what ran is run again once the old files are back (the check and validate fail before it)
    assert undone.exists() == (failing == "act")


@pytest.mark.parametrize("failing", ["check", "validate", "act", None])
def test_what_was_stopped_before_the_run_runs_again_only_when_the_run_fails(site, failing):
    # the log shipper's cut-over stops the old shipper before the transaction starts the new one
    resumed = site / "resumed"
    actions = [f"resume {encoded(f'touch {resumed}')}", *ACTIONS]
    if failing:
        actions.append(f"{failing} {'last ' if failing == 'act' else ''}{encoded('false')} "
                       f"{encoded('true') + ' ' if failing == 'act' else ''}{encoded('the step failed')}")
    done = run_program("transaction", site, RUN, f"{RUN} ctl 1 0 me", 5, 900, "", "-", "",
                       stdin=transaction_stdin(actions, NEW), check=False)
    assert (done.returncode != 0) == bool(failing)
    assert resumed.exists() == bool(failing) and leftovers(site) == []


def test_the_fingerprint_check_refuses_before_anything_moves(site):
    before = tree(site)
    done = run_program("transaction", site, RUN, f"{RUN} ctl 1 0 me", 5, 900, "", "f" * 64, "",
                       stdin=transaction_stdin(ACTIONS, NEW), check=False)
    assert done.returncode == 75 and b"the host changed" in done.stderr
    assert tree(site) == before and leftovers(site) == []


def test_a_failed_backup_stops_the_change_before_anything_moves(site):
    before = tree(site)
    (site / f"srv/site/b.conf.vsa-bak.{RUN}").mkdir()  # in the way of b.conf's backup
    (site / f"srv/site/b.conf.vsa-bak.{RUN}/x").write_text("")
    (site / "srv/site/b.conf").write_text("old b\n")
    before = tree(site)
    done = run_program("transaction", site, RUN, f"{RUN} ctl 1 0 me", 5, 900, "", "-", "",
                       stdin=transaction_stdin(ACTIONS, NEW), check=False)
    assert done.returncode == 1 and b"cannot back up /srv/site/b.conf" in done.stderr
    assert tree(site) == before


# The fault tests' step hook (transaction.sh, "Step hook"): waits while the file hold-at beside it
# names the step the transaction reached.
HOLD_HOOK = """#!/bin/sh
while [ "$(cat "${0%/*}/hold-at" 2> /dev/null)" = "$1" ]; do sleep 0.1; done
"""


def install_hold_hook(root: Path) -> None:
    (root / "var/lib/vsa-ops").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/vsa-ops/step-hook").write_text(HOLD_HOOK)
    (root / "var/lib/vsa-ops/step-hook").chmod(0o700)


def test_a_step_hook_that_fails_stops_the_run_and_everything_goes_back(site):
    before = tree(site)
    (site / "var/lib/vsa-ops").mkdir(parents=True)
    (site / "var/lib/vsa-ops/step-hook").write_text('#!/bin/sh\necho "at $1 of $2"\n[ "$1" != validate ]\n')
    (site / "var/lib/vsa-ops/step-hook").chmod(0o700)
    done = run_program("transaction", site, RUN, "", 0, 0, "", "-", "", stdin=transaction_stdin(ACTIONS, NEW),
                       check=False)
    assert done.returncode == 1 and b"the step hook /var/lib/vsa-ops/step-hook stopped step validate" in done.stderr
    assert tree(site) == before and leftovers(site) == []
    assert "at rename of r1\nat validate of r1\n" in (site / "var/lib/vsa-ops/log").read_text()


def start_held(root: Path, step: str, stdin: str, lock: tuple = ("", 0, 0, "", "-", ""),
               **popen) -> subprocess.Popen:
    """A transaction that waits at ``step`` (the hold hook, a file naming the step) once it has reached it."""
    install_hold_hook(root)
    (root / "var/lib/vsa-ops/hold-at").write_text(step)
    process = subprocess.Popen(["sh", "-c", program_command("transaction", str(root), RUN, *lock)],
                               stdin=subprocess.PIPE, start_new_session=True, **popen)
    process.stdin.write(stdin.encode())
    process.stdin.close()
    journal = root / "var/lib/vsa-ops/journal"
    deadline = time.monotonic() + 30
    while not (journal.exists() and f"step {step}\n" in journal.read_text()):
        assert time.monotonic() < deadline and process.poll() is None, f"never reached step {step}"
        time.sleep(0.05)
    return process


@pytest.mark.parametrize("step", ["upload", "backup", "rename", "validate", "reload"])
@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_at_any_step_puts_everything_back(site, step, sent):
    before = tree(site)
    process = start_held(site, step, transaction_stdin(ACTIONS, NEW), stdout=subprocess.DEVNULL)
    os.killpg(process.pid, sent)
    assert process.wait(timeout=30) != 0
    assert tree(site) == before and leftovers(site) == []


def test_a_closed_connection_puts_everything_back(site):
    """The controller is gone: the next progress line meets a closed pipe (SIGPIPE)."""
    before = tree(site)
    process = start_held(site, "rename", transaction_stdin(ACTIONS, NEW), stdout=subprocess.PIPE)
    process.stdout.close()
    (site / "var/lib/vsa-ops/hold-at").unlink()
    assert process.wait(timeout=30) != 0
    assert tree(site) == before and leftovers(site) == []
    assert "restoring run r1" in (site / "var/lib/vsa-ops/log").read_text()


@pytest.mark.parametrize("step", ["backup", "rename", "validate", "reload"])
def test_a_run_killed_where_no_trap_runs_is_undone_by_the_next_one(site, step):
    before = tree(site)
    process = start_held(site, step, transaction_stdin(ACTIONS, NEW), stdout=subprocess.DEVNULL)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    (site / "var/lib/vsa-ops/hold-at").unlink()
    state = parse_host_state(run_program("state", site, "", stdin="").stdout.decode().splitlines())
    assert state.unfinished == RUN and not state.unfinished_committed
    assert ("/srv/site/a.conf" in state.unfinished_paths) == (step != "backup")  # held before its first backup
    run_program("lock", site, "take", "r2", "r2 ctl 2 0 me", 0, 900, "", "-", "")
    run_program("lock", site, "release", "r2")
    assert tree(site) == before and leftovers(site) == []


def test_a_run_killed_after_its_commit_is_finished_by_the_next_one(site):
    process = start_held(site, "commit", transaction_stdin(ACTIONS, NEW), stdout=subprocess.DEVNULL)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    (site / "var/lib/vsa-ops/hold-at").unlink()
    after = {path: entry for path, entry in tree(site).items() if ".vsa-bak." not in path}  # the new state
    run_program("lock", site, "take", "r2", "r2 ctl 2 0 me", 0, 900, "", "-", "")
    run_program("lock", site, "release", "r2")
    assert tree(site) == after and (site / "srv/site/a.conf").read_text() == "new a\n" and leftovers(site) == []


def test_every_manifest_installs_the_programs_root_owned_and_executable():
    from vsa_ops.config import hub_config
    from vsa_ops.project import load_sources
    from vsa_ops.render import render_host
    from tests.conftest import ROOT, SECRETS

    manifest = render_host(hub_config(), load_sources(ROOT), host="h", secrets=SECRETS)
    installed = {f.path: f for f in manifest.files if f.path.startswith("/usr/local/lib/vsa-ops/")}
    assert sorted(installed) == [f"/usr/local/lib/vsa-ops/{name}.sh" for name in sorted(PROGRAMS)]
    assert all(f.mode == "0755" and f.owner == 0 and f.content.startswith("#!/bin/sh\n") for f in installed.values())


def test_the_state_read_looks_for_every_tool_the_plan_installs(tmp_path):
    from vsa_ops.state_read import HOST_COMMANDS

    assert f"for tool in {' '.join(HOST_COMMANDS)}; do" in program_text("state")


def test_a_long_run_refreshes_its_lock_and_a_dead_one_stops_refreshing(site):
    owner = site / "var/lib/vsa-ops/lock/owner"
    request = "\n".join(f"d {p}" for p in ["/srv/site"])
    printed = read_fingerprint(site, request)
    process = start_held(site, "upload", request + "\n" + transaction_stdin(ACTIONS, NEW),
                         lock=(f"{RUN} ctl 1 0 me", 0, 4, "", printed, ""), stdout=subprocess.DEVNULL)
    os.utime(owner, (0, 0))
    time.sleep(3)
    assert time.time() - owner.stat().st_mtime < 3  # refreshed while the run lives
    os.kill(process.pid, signal.SIGKILL)  # the shell only: where no trap runs
    process.wait()
    os.utime(owner, (0, 0))
    time.sleep(3)
    assert owner.stat().st_mtime == 0  # its refresher is gone with it: the lock can go stale
    (site / "var/lib/vsa-ops/hold-at").unlink()


def read_fingerprint(root: Path, request: str) -> str:
    return parse_host_state(run_program("state", root, "", stdin=request).stdout.decode().splitlines()).fingerprint


def test_data_that_stops_short_changes_nothing(site):
    before = tree(site)
    complete = transaction_stdin(ACTIONS, NEW)
    done = run_program("transaction", site, RUN, "", 0, 0, "", "-", "", stdin=complete[:len(complete) // 2],
                       check=False)
    assert done.returncode == 1 and b"stops short" in done.stderr
    assert tree(site) == before and leftovers(site) == []


# --- the audit append -------------------------------------------------------------------------

AUDIT = ("/var/log/vsa/audit.jsonl", "/var/lib/vsa/audit.db", "/var/log/vsa/audit.lock")


def audit_lines(count: int, start: int = 1, target: str = "site.example.com") -> list[str]:
    from vsa_ops.audit import records

    chained = records.chain([records.check_entry(("hub", "deploy", target, "ok", 1.0, ["x"], None), "me")] * count,
                            "me", None if start == 1 else (start - 1, "0" * 64))
    return [records.canonical(r) + "\n" for r in chained]


def append_program(root: Path, lines: list[str], last: int, want: str = "empty", check: bool = True):
    return run_program("audit_append", root, *AUDIT, want, last, stdin="".join(lines), check=check)


def test_the_audit_append_writes_jsonl_and_sqlite_and_refuses_a_stale_head(tmp_path):
    sqlite3 = pytest.importorskip("sqlite3")
    if not shutil.which("sqlite3"):
        pytest.fail("the sqlite3 command is missing: .ci/setup installs it")
    lines = audit_lines(3)
    done = append_program(tmp_path, lines, 3)
    assert done.stdout.decode().splitlines() == ["appended", "sqlite ok"]
    log = tmp_path / AUDIT[0].lstrip("/")
    assert log.read_text() == "".join(lines) and oct(log.stat().st_mode)[-3:] == "640"
    with sqlite3.connect(tmp_path / AUDIT[1].lstrip("/")) as db:
        assert [row[0] for row in db.execute("SELECT json FROM audit ORDER BY seq")] == [x[:-1] for x in lines]
    # another writer came first: the head the caller read is stale; nothing is written
    stale = append_program(tmp_path, audit_lines(1, start=4), 4, want="empty", check=False)
    assert stale.returncode == 75
    assert base64.b64decode(stale.stdout.decode().split()[1]).decode() == lines[-1]
    # records cut short (no final newline): nothing is written either
    want = hashlib.sha256(lines[-1].encode()).hexdigest()
    short = append_program(tmp_path, [audit_lines(1, start=4)[0][:-5]], 4, want=want, check=False)
    assert short.returncode == 65 and log.read_text() == "".join(lines)


def test_the_audit_append_refuses_a_path_that_would_break_out_of_its_quotes(tmp_path):
    done = run_program("audit_append", tmp_path, "/var/log/vsa/a'.jsonl", *AUDIT[1:], "empty", 1,
                       stdin="".join(audit_lines(1)), check=False)
    assert done.returncode == 64 and not (tmp_path / "var").exists()


def audit_session(tmp_path):
    from vsa_ops import audit

    paths = audit.Paths(str(tmp_path / "log/audit.jsonl"), str(tmp_path / "lib/audit.db"))

    def run(command: str) -> tuple[bool, str]:
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=120)
        return done.returncode == 0, done.stdout

    return paths, run


def test_concurrent_audit_appends_keep_the_chain_intact(tmp_path):
    """Six writers append five records each at once: every record once, one unbroken chain, and
    SQLite holds the very same lines."""
    from concurrent.futures import ThreadPoolExecutor

    from vsa_ops.audit import Entry, integrity, records, trail

    paths, run = audit_session(tmp_path)

    def writer(index: int) -> trail.AppendResult:
        batch = [Entry("hub", "deploy", f"w{index}-{i}.example.com", "ok", 1, [], None) for i in range(5)]
        return trail._append_host(run, paths, "hub", [records.check_entry(e, f"w{index}") for e in batch],
                                  f"w{index}")

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(writer, range(6)))
    assert all(r.ok for r in results), [r.error for r in results]
    lines = integrity.split_lines(Path(paths.jsonl).read_text())
    assert len(lines) == 30 and integrity.verify_chain(lines) == []
    assert sorted(json.loads(x)["target"] for x in lines) == \
        sorted(f"w{w}-{i}.example.com" for w in range(6) for i in range(5))
    if shutil.which("sqlite3"):
        ok, out = run(trail.read_script(paths))
        assert trail.host_audit(ok, out).problems == []


HOSTILE = "x'; touch PWNED; echo '$(touch PWNED2)`touch PWNED3`\nVSA_AUDIT_RECORDS_END\ntouch PWNED4\n\\"


def test_a_hostile_value_in_a_record_is_stored_as_it_is(tmp_path, monkeypatch):
    from vsa_ops.audit import Entry, records, trail

    monkeypatch.chdir(tmp_path)
    paths, run = audit_session(tmp_path)
    result = trail._append_host(run, paths, "hub", [records.check_entry(
        Entry("hub", "deploy", HOSTILE, "failed", 1, [HOSTILE], HOSTILE), "me")], "me")
    assert result.ok, result.error
    stored = json.loads(Path(paths.jsonl).read_text())
    assert stored["target"] == stored["error"] == stored["changes"][0] == HOSTILE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib", "log"]  # no PWNED anywhere


def test_a_record_line_that_is_not_one_json_line_never_reaches_the_host(tmp_path):
    from vsa_ops.audit import AuditError, host_scripts

    paths, _ = audit_session(tmp_path)
    for bad in ["VSA_AUDIT_RECORDS_END\n", '{"a": 1}\nVSA_AUDIT_RECORDS_END\n', '{"a": 1}']:
        with pytest.raises(AuditError):
            host_scripts.append_script(paths, b"", [bad], 1)


# --- a reload by signal ------------------------------------------------------------------------

RELOAD_DOCKER = """#!/bin/sh
# a stand-in docker: the "container" is the process whose pid is in $0.pid
case $1 in
    inspect) cat "$0.pid" ;;
    kill) [ -e "$0.stopped" ] && { echo "container is not running" >&2; exit 1; }
          kill -s "$3" "$(cat "$0.signalled" 2>/dev/null || cat "$0.pid")" ;;  # an init passes it on
esac
"""
# A master that, like NGINX on HUP, starts a new worker (or, with "ignore", keeps the old ones).
MASTER = "trap '{on_hup}' HUP; sleep 300 & while :; do wait; done"


def workers(pid: int) -> set[str]:
    """Every process under ``pid``."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return set(children).union(*(workers(int(child)) for child in children))


@pytest.fixture
def master(tmp_path, monkeypatch):
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "docker").write_text(RELOAD_DOCKER)
    (tools / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    started = []

    def start(on_hup: str, under_init: bool = False) -> Path:
        """The container's main process: the master, or an init whose child is the master."""
        command = MASTER.format(on_hup=on_hup)
        if under_init:
            command = f"sh -c {shlex.quote(command)} & echo $! > {tools}/docker.signalled; wait"
        process = subprocess.Popen(["sh", "-c", command], start_new_session=True)
        started.append(process)
        (tools / "docker.pid").write_text(str(process.pid))
        deadline = time.monotonic() + 10
        while len(workers(process.pid)) < 1 + under_init and time.monotonic() < deadline:
            time.sleep(0.01)  # the master's first worker
        return tools

    start.pid = lambda: started[-1].pid

    yield start
    for process in started:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_reload_by_signal_returns_once_a_new_worker_runs(master, tmp_path):
    master("sleep 0.3; sleep 300 &")  # reads its configuration, then starts a worker with it
    old = workers(master.pid())
    done = run_program("reload", tmp_path, "nginx", "HUP", 30)
    assert done.returncode == 0, done.stderr
    assert workers(master.pid()) - old  # the new worker was there when the reload returned


def test_a_reload_under_an_init_waits_for_the_masters_new_worker(master, tmp_path):
    master("sleep 0.3; sleep 300 &", under_init=True)  # compose's init: true puts tini in front
    old = workers(master.pid())
    done = run_program("reload", tmp_path, "nginx", "HUP", 30)
    assert done.returncode == 0, done.stderr
    assert workers(master.pid()) - old


def test_a_reload_that_starts_no_new_worker_fails_naming_the_container(master, tmp_path):
    master(":")  # a configuration it refuses: it keeps the old workers
    done = run_program("reload", tmp_path, "nginx", "HUP", 1, check=False)
    assert done.returncode == 1
    assert done.stderr.decode().strip() == \
        "vsa-ops: nginx started no new worker within 1 s of SIGHUP: it kept its old configuration"


def test_a_reload_of_a_container_that_does_not_run_fails(master, tmp_path):
    tools = master("sleep 300 &")
    (tools / "docker.stopped").touch()
    done = run_program("reload", tmp_path, "nginx", "HUP", 30, check=False)
    assert done.returncode == 1 and "cannot send SIGHUP to nginx" in done.stderr.decode()


def test_a_reload_whose_main_process_ends_on_the_signal_fails_at_once(master, tmp_path):
    """A main process that exits on the signal (no handler; Docker then stops or restarts the container)
    is no reload: it fails at once, not after SECONDS, and never passes for one that took effect."""
    tools = master("exit 1", under_init=True)
    # the container's main process is the one signalled; its parent reaps it, as containerd's shim does
    (tools / "docker.pid").write_text((tools / "docker.signalled").read_text().strip())
    started = time.monotonic()
    done = run_program("reload", tmp_path, "nginx", "HUP", 30, check=False)
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 10
    assert "nginx: its main process ended on SIGHUP" in done.stderr.decode()
