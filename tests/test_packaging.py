"""A built wheel holds every file the package needs: what `pip install .` (not editable) installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT, missing


def _tracked(*paths: str) -> list[str]:
    return subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", *paths], capture_output=True, text=True,
                          check=True).stdout.split("\0")[:-1]


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory) -> set[str]:
    """The file list of a wheel built from a copy of the tracked files: a build in the worktree would
    reuse (and leave) build/ and *.egg-info, whose stale files could hide a missing rule."""
    if shutil.which("git") is None or subprocess.run(["git", "-C", str(ROOT), "rev-parse"],
                                                     capture_output=True).returncode:
        missing("a git checkout")
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in _tracked():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    # What a developer's tree also holds, and no wheel should.
    (source / "vsa_ops" / "__pycache__").mkdir()
    (source / "vsa_ops" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"stale")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(out), str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = out.glob("vsa_ops-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_holds_every_tracked_file_of_the_package(wheel_files):
    tracked = set(_tracked("vsa_ops"))
    assert any(not name.endswith(".py") for name in tracked)
    missing = sorted(tracked - wheel_files)
    assert not missing, f"not in the wheel: {missing}"


def test_wheel_holds_no_bytecode_from_the_tree(wheel_files):
    assert not [name for name in wheel_files if "__pycache__" in name or name.endswith(".pyc")]
    assert "vsa_ops/cli.py" in wheel_files
