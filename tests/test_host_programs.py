"""The host programs (vsa_ops/host_programs/*.sh), run here with sh against a scratch root that
stands in for a host's / : the state read's framing, the run lock under contention, and the
transaction's all-or-nothing under failures and signals."""

from __future__ import annotations

import base64
import gzip
import io
import os
import shutil
import signal
import subprocess
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
    done = run_program("transaction", root, RUN, f"{RUN} ctl 2 0 me", 1, 900, "", "f" * 64, "", stdin="archive\n",
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
