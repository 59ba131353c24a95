"""The Docker engine operation's host side, run here with sh against a scratch folder: a new
daemon.json is staged under a fresh name, backed up by a hard link (never copied through a
symlink), and put back on every failure or signal; and the images shipped from the controller."""

from __future__ import annotations

import base64
import gzip
import io
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from vsa_ops.operations.docker import DockerSave, daemon_json_script

OLD, NEW = '{"old": true}\n', '{"log-driver": "json-file"}'  # the new one without a final newline
FAKE_RESTART = """restart_docker() {
  echo restart >> "$RESTARTS"
  [ ! -e "$RESTART_FAILS" ] || { rm -f "$RESTART_FAILS"; return 1; }
  [ ! -e "$RESTART_HANGS" ] || { rm -f "$RESTART_HANGS"; sleep 30; }
}"""


@pytest.fixture
def etc(tmp_path):
    folder = tmp_path / "etc/docker"
    folder.mkdir(parents=True)
    (folder / "daemon.json").write_text(OLD)
    return folder


def apply(etc: Path, restart: bool = True, path_dirs: str = "", wait: bool = True):
    env = {**os.environ, "RESTARTS": str(etc / "../restarts"), "RESTART_FAILS": str(etc / "../fails"),
           "RESTART_HANGS": str(etc / "../hangs")}
    if path_dirs:
        env["PATH"] = f"{path_dirs}:{env['PATH']}"
    command = daemon_json_script(str(etc / "daemon.json"), f"{os.getuid()}:{os.getgid()}", "0644", restart,
                                 FAKE_RESTART)
    process = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, start_new_session=True)
    process.stdin.write(base64.b64encode(NEW.encode()) + b"\n")
    process.stdin.close()
    if wait:
        process.wait(timeout=60)
    return process


def restarts(etc: Path) -> int:
    found = etc / "../restarts"
    return len(found.read_text().splitlines()) if found.exists() else 0


def listing(etc: Path) -> dict:
    return {p.name: ("link", os.readlink(p)) if p.is_symlink() else (oct(p.stat().st_mode)[-3:], p.read_text())
            for p in sorted(etc.iterdir())}


def test_a_new_daemon_json_arrives_byte_exact_and_leaves_nothing_behind(etc):
    done = apply(etc)
    assert done.returncode == 0, done.stderr.read()
    assert listing(etc) == {"daemon.json": ("644", NEW)} and restarts(etc) == 1


def test_a_restart_that_fails_puts_the_old_file_back_and_restarts_again(etc):
    (etc / "../fails").touch()
    done = apply(etc)
    assert done.returncode == 1 and b"the old daemon.json is back" in done.stderr.read()
    assert listing(etc) == {"daemon.json": ("644", OLD)} and restarts(etc) == 2


@pytest.mark.parametrize("fails", [False, True])
def test_a_symlinked_daemon_json_is_never_written_through(etc, fails):
    """Seen failing with the old `cp -p` backup: the restore put a copy of the target in place of the link."""
    outside = etc / "../outside.json"
    outside.write_text(OLD)
    (etc / "daemon.json").unlink()
    (etc / "daemon.json").symlink_to(outside)
    (etc / "daemon.json.vsa-new").symlink_to(outside)  # the old fixed staging name, planted
    if fails:
        (etc / "../fails").touch()
    done = apply(etc)
    assert done.returncode == int(fails)
    assert outside.read_text() == OLD
    expected = ("link", str(outside)) if fails else ("644", NEW)
    assert listing(etc) == {"daemon.json": expected, "daemon.json.vsa-new": ("link", str(outside))}


def test_a_failed_backup_stops_the_change_before_anything_moves(etc, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ln").write_text("#!/bin/sh\nexit 1\n")
    (broken / "ln").chmod(0o755)
    done = apply(etc, path_dirs=str(broken))
    assert done.returncode == 1 and b"cannot back up" in done.stderr.read()
    assert listing(etc) == {"daemon.json": ("644", OLD)} and restarts(etc) == 0


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_during_the_restart_puts_the_old_file_back(etc, sent):
    (etc / "../hangs").touch()
    process = apply(etc, wait=False)
    deadline = time.monotonic() + 30
    while restarts(etc) == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, sent)
    assert process.wait(timeout=30) != 0
    assert listing(etc) == {"daemon.json": ("644", OLD)} and restarts(etc) == 2


def test_images_travel_gzipped_and_a_failed_save_is_an_error(docker_engine):
    image = subprocess.run(["docker", "images", "-q"], capture_output=True, text=True).stdout.split()
    if not image:
        pytest.skip("no local image to save")
    save = DockerSave([image[0]])
    data = b"".join(iter(lambda: save.read(65536), b""))
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as archive:
        assert "manifest.json" in archive.getnames()
    with pytest.raises(OSError):
        missing = DockerSave(["vsa-ops/absent:nowhere"])
        while missing.read(65536):
            pass


@pytest.mark.parametrize("image", ["vsa-ops/absent:nowhere", None])
def test_an_image_upload_lands_in_its_staging_folder_and_a_failed_one_removes_it(tmp_path, monkeypatch, image,
                                                                                  docker_engine):
    """Over pyinfra's own @local connector: a failed upload (docker save fails) takes its staging
    folder with it; a good one lands in it."""
    from pyinfra.context import ctx_host, ctx_state

    from vsa_ops.operations.docker import StagedUpload
    from vsa_ops.pyinfra_glue.connections import connected

    if image is None:
        images = subprocess.run(["docker", "images", "-q"], capture_output=True, text=True).stdout.split()
        if not images:
            pytest.skip("no local image to save")
        image = images[0]
    for name in [n for n in os.environ if n.startswith("VSA_")]:
        monkeypatch.delenv(name)
    (tmp_path / "inventory.py").write_text("hubs = [('@local', {})]\n")
    stage = tmp_path / "stage"
    stage.mkdir(mode=0o700)
    upload = StagedUpload(DockerSave([image]), str(stage), "images.tar.gz")
    with connected(tmp_path / "inventory.py", tmp_path) as sessions:
        host, _ = sessions["@local"]
        with ctx_state.use(host.state), ctx_host.use(host):
            if image.startswith("vsa-ops/absent"):
                with pytest.raises(OSError):
                    upload.execute(host.state, host, {})
                assert not stage.exists()
            else:
                assert upload.execute(host.state, host, {})
                assert gzip.open(stage / "images.tar.gz").read(2)
