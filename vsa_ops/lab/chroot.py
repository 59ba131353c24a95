"""Processes, mounts and files of an image build: commands that fail loudly, a chroot whose mounts
are always undone, work folders that are removed even after a killed build, paths kept inside
the image tree.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import BuildError
from .recipe import DEFAULT_PATH

CACHE_DIR = Path(os.environ.get("VSA_OPS_LAB_CACHE", "/var/cache/vsa-ops"))
_CHROOT_ENV = {
    "PATH": DEFAULT_PATH,
    "HOME": "/root",
    "LC_ALL": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "UCF_FORCE_CONFFOLD": "1",
}


def inside(root: Path, path: str) -> Path:
    """``root/path``, refusing paths whose parent resolves outside ``root`` (e.g. via /var/run -> /run)."""
    target = root / path.lstrip("/")
    parent = os.path.realpath(target.parent)
    if os.path.commonpath([parent, os.path.realpath(root)]) != os.path.realpath(root):
        raise BuildError(f"{path} resolves outside the image tree ({parent}); use the real path")
    return target


def remove_glob(root: Path, pattern: str) -> None:
    for match in sorted(root.glob(pattern), reverse=True):
        match = inside(root, str(match.relative_to(root)))
        if match.is_dir() and not match.is_symlink():
            shutil.rmtree(match)
        else:
            match.unlink()


def run(argv: Sequence[str]) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        raise BuildError(f"{' '.join(argv)} failed with exit code {proc.returncode}:\n{output[-3000:]}")
    return proc.stdout


def chroot_run(root: Path, argv: Sequence[str]) -> str:
    proc = subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, env=_CHROOT_ENV)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        raise BuildError(f"in chroot: {' '.join(argv)} failed with exit code {proc.returncode}:\n{output[-3000:]}")
    return proc.stdout


@contextmanager
def chroot(root: Path, apt_cache: Path) -> Iterator[None]:
    """Mount /proc and the suite's apt lists and archives in the chroot; unmount them, always."""
    mounted: list[Path] = []
    try:
        run(["mount", "-t", "proc", "proc", str(root / "proc")])
        mounted.append(root / "proc")
        for cache, in_root in (("lists", "var/lib/apt/lists"), ("archives", "var/cache/apt/archives")):
            (apt_cache / cache / "partial").mkdir(parents=True, exist_ok=True)
            target = root / in_root
            target.mkdir(parents=True, exist_ok=True)
            run(["mount", "--bind", str(apt_cache / cache), str(target)])
            mounted.append(target)
        shutil.copyfile("/etc/resolv.conf", root / "etc" / "resolv.conf", follow_symlinks=True)
        policy = root / "usr" / "sbin" / "policy-rc.d"  # no service starts during the install
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        yield
    finally:
        for target in reversed(mounted):
            _umount(target)


def _umount(target: Path) -> None:
    if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "--lazy", str(target)], capture_output=True)


def _mounts_under(folder: Path) -> list[Path]:
    prefix = os.path.realpath(folder) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].encode().decode("unicode_escape") for line in f]
    return sorted((Path(p) for p in points if p.startswith(prefix)), key=lambda p: len(p.parts), reverse=True)


def remove_tree(folder: Path, keep_root: bool = False) -> None:
    """Unmount whatever is mounted below ``folder`` (a killed build), then delete it."""
    if not folder.exists():
        return
    for point in _mounts_under(folder):
        _umount(point)
    if _mounts_under(folder):
        raise BuildError(f"cannot unmount everything below {folder}; not deleting it")
    if keep_root:
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    else:
        shutil.rmtree(folder)


@contextmanager
def workdir(name: str) -> Iterator[Path]:
    base = CACHE_DIR / "build"
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=base))
    try:
        yield work
    finally:
        remove_tree(work)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
