"""What a lab image is made of: a ``Recipe`` of Debian packages, users, files, folders and links, and
the image config ``docker import`` applies. ``recipes`` holds the lab's recipes; ``rootfs`` builds
the tree a recipe describes; ``images`` imports it and caches it by the recipe's hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

FILES_DIR = Path(__file__).with_name("image_files")  # File.src names a file here
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class User:
    """A user to create; its group is created too unless a group with ``gid`` exists."""

    name: str
    uid: int
    gid: int | None = None  # None: same as uid
    home: str = "/nonexistent"
    shell: str = "/usr/sbin/nologin"


@dataclass(frozen=True)
class File:
    """A file added to the image, from exactly one of ``src`` / ``host`` / ``text``."""

    path: str  # absolute path in the image
    src: str = ""  # name of a file in image_files/
    host: str = ""  # absolute path of a file on this machine (e.g. the compose plugin)
    text: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    before_install: bool = False  # Debian base: written before apt-get install (kept by --force-confold)

    @property
    def source(self) -> Path | None:
        """The file on this machine its content comes from (None: ``text``)."""
        return FILES_DIR / self.src if self.src else Path(self.host) if self.host else None


@dataclass(frozen=True)
class Dir:
    path: str
    uid: int = 0
    gid: int = 0
    mode: int = 0o755


@dataclass(frozen=True)
class Link:
    path: str
    target: str


@dataclass(frozen=True)
class Recipe:
    """How to build one image. ``tags[0]`` is the name ``ensure_images`` returns."""

    tags: tuple[str, ...]
    base: str = "debian"  # "debian": minbase rootfs + packages; "busybox": busybox-static + keep
    suite: str = "trixie"
    packages: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()  # busybox base: paths (and their libraries) taken from the packages
    users: tuple[User, ...] = ()
    files: tuple[File, ...] = ()
    dirs: tuple[Dir, ...] = ()
    links: tuple[Link, ...] = ()
    remove: tuple[str, ...] = ()  # globs relative to the image root, removed after the install
    # image config, applied with docker import --change
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    user: str | None = None
    workdir: str | None = None
    expose: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    volumes: tuple[str, ...] = ()

    @property
    def tag(self) -> str:
        return self.tags[0]


NOBODY = User("nobody", 65534, 65534)


def placeholder(
    tag: str,
    name: str,
    port: int,
    *,
    user: User | None = None,
    paths: Sequence[str] = ("/ready", "/metrics"),
    config_flag: str = "",
    cmd: Sequence[str] | None = None,
    dirs: Sequence[Dir] = (),
) -> Recipe:
    """A busybox stand-in for software Debian does not package.

    It answers HTTP on ``port``: 200 for ``paths`` (``("*",)``: any path), with a body naming ``name``
    and the container's hostname (``/metrics``: Prometheus text), 404 otherwise. With
    ``config_flag`` (e.g. ``"config.file"``) it exits 1 unless ``-config.file=FILE`` names an
    existing file, so a missing volume mount shows up as a failing container.
    """
    return Recipe(
        tags=(tag,),
        base="busybox",
        users=(user,) if user else (),
        files=(
            File("/lab/placeholder", src="placeholder.sh", mode=0o755),
            File("/lab/placeholder-http", src="placeholder-http.sh", mode=0o755),
        ),
        dirs=tuple(dirs),
        entrypoint=("/lab/placeholder",),
        cmd=tuple(cmd) if cmd else None,
        user=user.name if user else None,
        expose=(str(port),),
        env=(
            ("PLACEHOLDER_NAME", name),
            ("PLACEHOLDER_PORT", str(port)),
            ("PLACEHOLDER_PATHS", " ".join(paths)),
            ("PLACEHOLDER_CONFIG_FLAG", config_flag),
        ),
    )
