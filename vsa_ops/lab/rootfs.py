"""The tree of a lab image, from its recipe: a Debian minbase root with packages installed in a chroot,
or a busybox-static root with only the ``keep`` paths (and their shared libraries) taken from one.

The suite's minbase rootfs is made once by ``debootstrap --variant=minbase`` and cached as
``CACHE_DIR/rootfs/<suite>-minbase.tar`` (its static busybox beside it as ``busybox-<suite>``);
apt's lists and archives are cached per suite and mounted in the chroot only while it runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from .chroot import CACHE_DIR, chroot, chroot_run, inside, remove_glob, run, workdir
from .errors import BuildError
from .recipe import File, Recipe, User

MIRROR = os.environ.get("VSA_OPS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Removed from every Debian-based image after the packages are installed.
STRIP = (
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/lintian/*",
    "var/cache/apt/*.bin",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "var/log/apt/*",
    "var/log/*.log",
    "etc/resolv.conf",
    "usr/sbin/policy-rc.d",
)
_APT_GET = (
    "apt-get", "-y", "-q",
    "-o", "APT::Sandbox::User=root",
    "-o", "Dpkg::Use-Pty=0",
    "-o", "Dpkg::Options::=--force-confdef",
    "-o", "Dpkg::Options::=--force-confold",
)  # fmt: skip


def build_tree(work: Path, recipe: Recipe, updated: set[str], log: Callable[[str], object]) -> Path:
    """The image tree of ``recipe`` in the empty folder ``work``; returns its root. ``updated`` holds the
    suites whose apt lists this run has refreshed already (one ``apt-get update`` per suite and run)."""
    tar, busybox = minbase(recipe.suite, log)
    debian = work / "debian"
    root = debian if recipe.base == "debian" else work / "busybox"
    if recipe.base == "busybox":
        _busybox_tree(root, busybox)
        _add_users_to_files(root, recipe.users)
    elif recipe.base != "debian":
        raise BuildError(f"{recipe.tag}: unknown base {recipe.base!r}")

    if recipe.base == "debian" or recipe.packages:
        debian.mkdir()
        run(["tar", "-C", str(debian), "--numeric-owner", "-xpf", str(tar)])
        with chroot(debian, CACHE_DIR / "apt" / recipe.suite):
            if recipe.base == "debian":
                _add_users_in_chroot(debian, recipe.users)
                for file in recipe.files:
                    if file.before_install:
                        _write_file(debian, file)
            if recipe.packages:
                if recipe.suite not in updated:
                    log(f"lab image {recipe.tag}: apt-get update ({recipe.suite})")
                    chroot_run(debian, [*_APT_GET, "update"])
                    updated.add(recipe.suite)
                log(f"lab image {recipe.tag}: apt-get install {' '.join(recipe.packages)}")
                chroot_run(debian, [*_APT_GET, "install", "--no-install-recommends", *recipe.packages])
            for path in recipe.keep:
                _copy_with_libraries(debian, root, path)

    for pattern in (*STRIP, *recipe.remove) if recipe.base == "debian" else recipe.remove:
        remove_glob(root, pattern)
    for file in recipe.files:
        if not (file.before_install and recipe.base == "debian"):
            _write_file(root, file)
    for d in recipe.dirs:
        target = inside(root, d.path)
        target.mkdir(parents=True, exist_ok=True)
        os.chown(target, d.uid, d.gid)
        os.chmod(target, d.mode)
    for link in recipe.links:
        target = inside(root, link.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to(link.target)
    return root


def minbase(suite: str, log: Callable[[str], object]) -> tuple[Path, Path]:
    """The suite's minbase rootfs tar and static busybox, made by debootstrap on first use (needs root)."""
    folder = CACHE_DIR / "rootfs"
    tar, busybox = folder / f"{suite}-minbase.tar", folder / f"busybox-{suite}"  # name must start with busybox
    if tar.is_file() and busybox.is_file():
        return tar, busybox
    if not shutil.which("debootstrap"):
        raise BuildError("debootstrap is not installed (apt-get install debootstrap)")
    folder.mkdir(parents=True, exist_ok=True)
    log(f"lab images: debootstrap --variant=minbase {suite} (once; cached in {folder})")
    with workdir(f"debootstrap-{suite}") as work:
        target = work / "root"
        run(["debootstrap", "--variant=minbase", "--include=busybox-static", suite, str(target), MIRROR])
        remove_glob(target, "var/lib/apt/lists/*")
        remove_glob(target, "var/cache/apt/archives/*.deb")
        remove_glob(target, "var/cache/apt/*.bin")
        shutil.copy2(target / "bin" / "busybox", work / "busybox")
        run(["tar", "-C", str(target), "--numeric-owner", "-cf", str(work / "rootfs.tar"), "."])
        os.replace(work / "busybox", busybox)
        os.replace(work / "rootfs.tar", tar)  # last: the tar's presence means the cache is complete
    return tar, busybox


def _busybox_tree(root: Path, busybox: Path) -> None:
    """A root with busybox-static, its applets as /bin links, root and nobody."""
    for d in ("bin", "etc", "usr/bin", "usr/sbin", "usr/local/bin", "var/log", "home", "proc", "sys", "dev", "run"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for d, mode in (("root", 0o700), ("tmp", 0o1777), ("var/tmp", 0o1777)):
        (root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(root / d, mode)
    (root / "var" / "run").symlink_to("../run")
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in run([str(busybox), "--list"]).split():
        if applet != "busybox" and "/" not in applet:
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")


def _add_users_to_files(root: Path, users: Iterable[User]) -> None:
    passwd, group = root / "etc" / "passwd", root / "etc" / "group"
    for user in users:
        gid = user.uid if user.gid is None else user.gid
        if user.name not in {line.split(":")[0] for line in passwd.read_text().splitlines()}:
            with passwd.open("a") as f:
                f.write(f"{user.name}:x:{user.uid}:{gid}::{user.home}:{user.shell}\n")
        if str(gid) not in {line.split(":")[2] for line in group.read_text().splitlines()}:
            with group.open("a") as f:
                f.write(f"{user.name}:x:{gid}:\n")


def _add_users_in_chroot(root: Path, users: Iterable[User]) -> None:
    for user in users:
        gid = user.uid if user.gid is None else user.gid
        if subprocess.run(["chroot", str(root), "getent", "passwd", user.name], capture_output=True).returncode == 0:
            continue
        if subprocess.run(["chroot", str(root), "getent", "group", str(gid)], capture_output=True).returncode != 0:
            chroot_run(root, ["groupadd", "--system", "--gid", str(gid), user.name])
        chroot_run(root, ["useradd", "--system", "--uid", str(user.uid), "--gid", str(gid), "--no-create-home",
                           "--home-dir", user.home, "--shell", user.shell, user.name])  # fmt: skip


def _copy_with_libraries(debian: Path, root: Path, path: str) -> None:
    """Copy ``path`` from the Debian chroot into ``root``, with the shared libraries ldd lists for it."""
    paths = [path]
    ldd = subprocess.run(["chroot", str(debian), "ldd", path], capture_output=True, text=True)
    if ldd.returncode == 0:  # not a dynamic executable: nothing to add
        for line in ldd.stdout.splitlines():
            words = line.split()
            if "=>" in words and len(words) > 2 and words[2].startswith("/"):
                paths.append(words[2])
            elif words and words[0].startswith("/"):
                paths.append(words[0])  # the dynamic loader
    for p in paths:
        real = chroot_run(debian, ["readlink", "-f", p]).strip()  # symlinks resolved inside the chroot
        src, dest = inside(debian, real), inside(root, p)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest)


def _write_file(root: Path, file: File) -> None:
    if sum(map(bool, (file.src, file.host, file.text))) != 1:
        raise ValueError(f"{file.path}: give exactly one of src, host, text")
    target = inside(root, file.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    if file.text:
        target.write_text(file.text)
    else:
        shutil.copyfile(file.source, target)
    os.chown(target, file.uid, file.gid)
    os.chmod(target, file.mode)
