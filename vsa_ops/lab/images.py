"""Docker images for the lab, built from Debian packages: no image registry is needed.

Each image in ``RECIPES`` is tagged with the image name the design's compose files use
(``nginx:1.25-alpine``, ``postgres:16``, ...), so the stacks run unchanged in the lab. Images whose
software Debian packages run it for real; the rest are small busybox placeholders that answer the
HTTP paths the stacks probe (see ``placeholder``).

How an image is built (as root; needs debootstrap, tar, mount, chroot and the docker CLI):

1. once per Debian suite: ``debootstrap --variant=minbase`` into ``CACHE_DIR/rootfs/<suite>-minbase.tar``
   (its static busybox is kept beside it as ``busybox-<suite>``);
2. base ``"debian"``: unpack that rootfs, create the users, ``apt-get install --no-install-recommends``
   the packages in a chroot (``/proc`` and the suite's apt lists/archives cache are mounted only
   meanwhile, and always unmounted), remove docs, man pages and locales, add files, folders, links;
   base ``"busybox"``: a tree with busybox-static and its applets only, plus the ``keep`` paths (and the
   shared libraries they need) copied from a Debian chroot where ``packages`` were installed;
3. ``tar -c | docker import --change ...`` without a tag, then ``docker tag``: an interrupted build never
   leaves a tag behind.

Every image carries the label ``vsa.recipe=<sha256 of its recipe and support files>``;
``ensure_images`` rebuilds an image only when that hash differs from the one on the tagged image.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import VsaError

# Bump to rebuild every image when the build steps below change (the hash covers only recipes and files).
BUILDER_VERSION = "1"
LABEL = "vsa.recipe"
CACHE_DIR = Path(os.environ.get("VSA_OPS_LAB_CACHE", "/var/cache/vsa-ops"))
MIRROR = os.environ.get("VSA_OPS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
FILES_DIR = Path(__file__).with_name("image_files")
COMPOSE_PLUGIN = "/usr/local/lib/docker/cli-plugins/docker-compose"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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
_CHROOT_ENV = {
    "PATH": DEFAULT_PATH,
    "HOME": "/root",
    "LC_ALL": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "UCF_FORCE_CONFFOLD": "1",
}
_APT_GET = (
    "apt-get", "-y", "-q",
    "-o", "APT::Sandbox::User=root",
    "-o", "Dpkg::Use-Pty=0",
    "-o", "Dpkg::Options::=--force-confdef",
    "-o", "Dpkg::Options::=--force-confold",
)  # fmt: skip


class BuildError(VsaError):
    """A build step failed; the message holds the command and the end of its output."""


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


PG_MAJOR = "17"  # Debian trixie's PostgreSQL stands in for the design's postgres:16

RECIPES: dict[str, Recipe] = {
    "nginx": Recipe(
        tags=("nginx:1.25-alpine",),
        packages=("nginx",),
        users=(User("nginx", 101, shell="/bin/false"),),
        remove=(
            "etc/nginx/conf.d/*",
            "etc/nginx/sites-available/*",
            "etc/nginx/sites-enabled/*",
            "etc/nginx/snippets/*",
            "var/www/html/*",
            "var/log/nginx/*",
        ),
        files=(File("/etc/nginx/nginx.conf", src="nginx.conf"),),
        dirs=(Dir("/etc/nginx/conf.d"), Dir("/var/cache/nginx", 101, 101)),
        links=(
            Link("/var/log/nginx/access.log", "/dev/stdout"),
            Link("/var/log/nginx/error.log", "/dev/stderr"),
        ),
        cmd=("nginx", "-g", "daemon off;"),
        expose=("80",),
    ),
    "certbot": Recipe(
        tags=("certbot/certbot:v2.10.0",),
        packages=("certbot",),
        dirs=(Dir("/etc/letsencrypt"), Dir("/var/lib/letsencrypt"), Dir("/var/log/letsencrypt"), Dir("/opt/certbot")),
        entrypoint=("certbot",),
        workdir="/opt/certbot",
        expose=("80", "443"),
    ),
    "prometheus": Recipe(
        tags=("prom/prometheus:v2.53.0",),
        packages=("prometheus",),  # /usr/bin/prometheus and promtool; /bin is /usr/bin (merged /usr)
        files=(File("/etc/prometheus/prometheus.yml", src="prometheus.yml"),),
        dirs=(Dir("/prometheus", 65534, 65534),),
        entrypoint=("/bin/prometheus",),
        cmd=("--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"),
        user="nobody",
        workdir="/prometheus",
        expose=("9090",),
    ),
    "node-exporter": Recipe(
        tags=("prom/node-exporter:v1.8.1",),
        base="busybox",
        packages=("prometheus-node-exporter",),
        keep=("/usr/bin/prometheus-node-exporter",),
        links=(Link("/bin/node_exporter", "/usr/bin/prometheus-node-exporter"),),
        entrypoint=("/bin/node_exporter",),
        user="nobody",
        expose=("9100",),
    ),
    "postgres": Recipe(
        tags=("postgres:16",),
        packages=(f"postgresql-{PG_MAJOR}",),
        users=(User("postgres", 999, home="/var/lib/postgresql", shell="/bin/bash"),),
        remove=(
            # JIT only (llvmjit.so links LLVM; postgres itself does not): ~130 MB; jit is off without it
            "usr/lib/x86_64-linux-gnu/libLLVM*",
            "usr/lib/x86_64-linux-gnu/libz3.so*",
            f"usr/lib/postgresql/{PG_MAJOR}/lib/llvmjit*",
            f"usr/lib/postgresql/{PG_MAJOR}/lib/bitcode",
        ),
        files=(
            File("/etc/postgresql-common/createcluster.conf", text="create_main_cluster = false\n",
                 before_install=True),  # no "main" cluster from the package: the entrypoint runs initdb
            File("/usr/local/bin/docker-entrypoint.sh", src="postgres-entrypoint.sh", mode=0o755),
        ),
        dirs=(
            Dir("/var/lib/postgresql", 999, 999),
            Dir("/var/lib/postgresql/data", 999, 999, 0o700),
            Dir("/run/postgresql", 999, 999, 0o3777),
            Dir("/docker-entrypoint-initdb.d"),
        ),
        env=(
            ("PATH", f"/usr/lib/postgresql/{PG_MAJOR}/bin:{DEFAULT_PATH}"),
            ("PG_MAJOR", PG_MAJOR),
            ("PGDATA", "/var/lib/postgresql/data"),
            ("LANG", "C.UTF-8"),
        ),
        entrypoint=("docker-entrypoint.sh",),
        cmd=("postgres",),
        expose=("5432",),
    ),
    "docker-cli": Recipe(
        tags=("docker:27-cli",),
        base="busybox",
        packages=("docker-cli",),
        keep=("/usr/bin/docker",),
        files=(File("/usr/local/bin/docker-entrypoint.sh", src="docker-cli-entrypoint.sh", mode=0o755),),
        entrypoint=("docker-entrypoint.sh",),
        cmd=("sh",),
    ),
    "grafana": placeholder(
        "grafana/grafana:10.4.0",
        "grafana",
        3000,
        user=User("grafana", 472, 0, home="/usr/share/grafana"),
        paths=("*",),
        dirs=(Dir("/var/lib/grafana", 472, 0), Dir("/etc/grafana/provisioning"), Dir("/usr/share/grafana")),
    ),
    "loki": placeholder(
        "grafana/loki:3.0.0",
        "loki",
        3100,
        user=User("loki", 10001),
        config_flag="config.file",
        cmd=("-config.file=/etc/loki/local-config.yaml",),
        dirs=(Dir("/loki", 10001, 10001), Dir("/etc/loki")),
    ),
    "promtail": placeholder(
        "grafana/promtail:3.0.0",
        "promtail",
        9080,
        config_flag="config.file",
        cmd=("-config.file=/etc/promtail/config.yml",),
        dirs=(Dir("/etc/promtail"), Dir("/var/lib/promtail")),
    ),
    "cadvisor": placeholder("gcr.io/cadvisor/cadvisor:v0.49.1", "cadvisor", 8080, paths=("/metrics", "/healthz")),
    "demo-app": placeholder("vsa-lab/demo-app:1", "demo-app", 8080, user=NOBODY, paths=("*",)),
    # The dashboard's own images (built by its team, no public tag): stand-ins on their ports.
    "dashboard-api": placeholder("flowbiz/vps-admin-api:0.1.0", "dashboard-api", 8000,
                                 user=User("dashboard", 1000), paths=("*",)),
    "dashboard-ui": placeholder("flowbiz/vps-admin-ui:0.1.0", "dashboard-ui", 3000,
                                user=User("dashboard", 1000), paths=("*",)),
    # The lab's ACME test CA (vsa_ops/lab/acme.py): Debian's pebble and pebble-challtestsrv.
    "acme": Recipe(
        tags=("vsa-lab/acme:1",),
        base="busybox",
        packages=("pebble",),
        keep=("/usr/bin/pebble", "/usr/bin/pebble-challtestsrv"),
        files=(
            File("/etc/pebble/config.json", src="pebble-config.json"),
            File("/usr/local/bin/pebble-entrypoint", src="pebble-entrypoint.sh", mode=0o755),
        ),
        dirs=(Dir("/etc/pebble/tls"),),
        entrypoint=("/usr/local/bin/pebble-entrypoint",),
        # no artificial validation delay; no random badNonce rejections (certbot retries them, but slowly)
        env=(("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_WFE_NONCEREJECT", "0")),
        expose=("14000", "15000", "8053", "8055"),
    ),
    "vps": Recipe(
        tags=("vsa-lab/vps:1",),
        packages=(
            "openssh-server",
            "systemd-standalone-sysusers",  # satisfies openssh-server without pulling in systemd
            "docker.io",
            "docker-cli",
            "sudo",
            "util-linux",
            "logrotate",
            "iproute2",
            "procps",
            "curl",
            "ca-certificates",
            "sqlite3",  # the audit trail's SQLite mirror (vsa_ops.audit)
        ),
        remove=("etc/ssh/ssh_host_*",),  # made per container by the entrypoint
        files=(
            File("/usr/local/sbin/vps-entrypoint", src="vps-entrypoint.sh", mode=0o755),
            File("/etc/ssh/sshd_config.d/lab.conf", src="vps-sshd.conf"),
            File(COMPOSE_PLUGIN, host=COMPOSE_PLUGIN, mode=0o755),
        ),
        dirs=(Dir("/root/.ssh", mode=0o700), Dir("/var/lib/docker", mode=0o710)),
        entrypoint=("/usr/local/sbin/vps-entrypoint",),
        expose=("22",),
    ),
}


# ---------------------------------------------------------------------------------------------
# Public API


def recipe_hash(recipe: Recipe) -> str:
    """sha256 of the recipe, the content of every file it adds, and BUILDER_VERSION."""
    digest = hashlib.sha256(f"vsa-ops lab image builder {BUILDER_VERSION}\n".encode())
    digest.update(json.dumps(dataclasses.asdict(recipe), sort_keys=True).encode())
    for file in recipe.files:
        digest.update(f"\n{file.path}\n".encode())
        digest.update(_file_sha256(file).encode())
    return digest.hexdigest()


def ensure_images(
    names: Iterable[str] | None = None,
    *,
    docker: str | Sequence[str] | None = None,
    log: Callable[[str], object] = print,
) -> dict[str, str]:
    """Build the lab images that are missing or stale; return {name: tag} for ``names`` (default: all).

    ``docker`` is the docker CLI command to use (default ``docker``), e.g. ``["docker", "-H", URL]``.
    Images whose ``vsa.recipe`` label matches are left alone, so a second call only inspects.
    """
    docker_argv = _docker_argv(docker)
    selected = list(RECIPES) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in selected if n not in RECIPES]
    if unknown:
        raise ValueError(f"unknown lab image(s): {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    digests = {name: recipe_hash(RECIPES[name]) for name in selected}

    todo = _plan(selected, digests, docker_argv)
    if todo:
        if os.geteuid() != 0:
            raise PermissionError("building lab images needs root (debootstrap, mount, chroot)")
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        with _locked(CACHE_DIR / "lock"):
            todo = _plan(selected, digests, docker_argv)  # another run may have built them meanwhile
            _remove_tree(CACHE_DIR / "build", keep_root=True)  # leftovers of a killed run
            updated: set[str] = set()
            for name in todo:
                recipe = RECIPES[name]
                old_ids = {_image_id_label(docker_argv, tag)[0] for tag in recipe.tags} - {None}
                start = time.monotonic()
                log(f"lab image {recipe.tag}: building ({name})")
                image_id = _build(name, recipe, digests[name], docker_argv, updated, log)
                for tag in recipe.tags:
                    _run([*docker_argv, "tag", image_id, tag])
                for old in old_ids - {image_id}:  # the stale image, unless a container still uses it
                    subprocess.run([*docker_argv, "rmi", old], capture_output=True)
                size = int(_run([*docker_argv, "image", "inspect", "--format", "{{.Size}}", image_id]).strip())
                log(f"lab image {recipe.tag}: built in {time.monotonic() - start:.1f} s, {size / 1e6:.0f} MB")
    return {name: RECIPES[name].tag for name in selected}


# ---------------------------------------------------------------------------------------------
# Planning and docker


def _docker_argv(docker: str | Sequence[str] | None) -> list[str]:
    if docker is None:
        return ["docker"]
    if isinstance(docker, str):
        return [docker]
    return list(docker)


def _image_id_label(docker_argv: list[str], tag: str) -> tuple[str | None, str | None]:
    proc = subprocess.run(
        [*docker_argv, "image", "inspect", "--format", "{{.Id}}\t{{json .Config.Labels}}", tag],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return None, None
    image_id, labels = proc.stdout.strip().split("\t", 1)
    return image_id, (json.loads(labels) or {}).get(LABEL)


def _plan(selected: list[str], digests: dict[str, str], docker_argv: list[str]) -> list[str]:
    """The names to build; re-tags an up-to-date image when only a secondary tag is missing."""
    todo = []
    for name in selected:
        tags = RECIPES[name].tags
        image_id, label = _image_id_label(docker_argv, tags[0])
        if image_id is None or label != digests[name]:
            todo.append(name)
            continue
        for tag in tags[1:]:
            if _image_id_label(docker_argv, tag)[0] != image_id:
                _run([*docker_argv, "tag", image_id, tag])
    return todo


def _import(root: Path, name: str, recipe: Recipe, digest: str, docker_argv: list[str]) -> str:
    """tar the tree into ``docker import``; returns the new image's ID (untagged)."""
    changes = [f"LABEL {LABEL}={digest}", f"LABEL vsa.image={name}"]
    env = dict(recipe.env)
    env.setdefault("PATH", DEFAULT_PATH)
    changes += [f"ENV {key}={json.dumps(value)}" for key, value in env.items()]
    if recipe.entrypoint is not None:
        changes.append(f"ENTRYPOINT {json.dumps(list(recipe.entrypoint))}")
    if recipe.cmd is not None:
        changes.append(f"CMD {json.dumps(list(recipe.cmd))}")
    if recipe.user:
        changes.append(f"USER {recipe.user}")
    if recipe.workdir:
        changes.append(f"WORKDIR {recipe.workdir}")
    changes += [f"EXPOSE {port}" for port in recipe.expose]
    if recipe.volumes:
        changes.append(f"VOLUME {json.dumps(list(recipe.volumes))}")

    tar_argv = ["tar", "-C", str(root), "--numeric-owner", "--exclude=./proc/*", "--exclude=./sys/*",
                "--exclude=./dev/*", "-cf", "-", "."]  # fmt: skip
    import_argv = [*docker_argv, "import", *(arg for c in changes for arg in ("--change", c)), "-"]
    with subprocess.Popen(tar_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as tar:
        assert tar.stdout is not None
        imported = subprocess.run(import_argv, stdin=tar.stdout, capture_output=True, text=True)
        tar.stdout.close()
        tar_err = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
        tar_rc = tar.wait()
    if imported.returncode != 0:
        raise BuildError(f"docker import failed: {imported.stderr.strip()}")
    image_id = imported.stdout.strip()
    if tar_rc != 0:  # the image may be truncated: never tag it
        subprocess.run([*docker_argv, "rmi", image_id], capture_output=True)
        raise BuildError(f"tar of the image tree failed ({tar_rc}): {tar_err.strip()[-2000:]}")
    return image_id


# ---------------------------------------------------------------------------------------------
# Building


def _build(name: str, recipe: Recipe, digest: str, docker_argv: list[str], updated: set[str], log) -> str:
    rootfs, busybox = _rootfs(recipe.suite, log)
    with _workdir(name) as work:
        debian = work / "debian"
        root = debian if recipe.base == "debian" else work / "busybox"
        if recipe.base == "busybox":
            _busybox_tree(root, busybox)
            _add_users_to_files(root, recipe.users)
        elif recipe.base != "debian":
            raise ValueError(f"{name}: unknown base {recipe.base!r}")

        if recipe.base == "debian" or recipe.packages:
            debian.mkdir()
            _run(["tar", "-C", str(debian), "--numeric-owner", "-xpf", str(rootfs)])
            with _chroot(debian, CACHE_DIR / "apt" / recipe.suite):
                if recipe.base == "debian":
                    _add_users_in_chroot(debian, recipe.users)
                    for file in recipe.files:
                        if file.before_install:
                            _write_file(debian, file)
                if recipe.packages:
                    if recipe.suite not in updated:
                        log(f"lab image {recipe.tag}: apt-get update ({recipe.suite})")
                        _chroot_run(debian, [*_APT_GET, "update"])
                        updated.add(recipe.suite)
                    log(f"lab image {recipe.tag}: apt-get install {' '.join(recipe.packages)}")
                    _chroot_run(debian, [*_APT_GET, "install", "--no-install-recommends", *recipe.packages])
                for path in recipe.keep:
                    _copy_with_libraries(debian, root, path)

        for pattern in (*STRIP, *recipe.remove) if recipe.base == "debian" else recipe.remove:
            _remove_glob(root, pattern)
        for file in recipe.files:
            if not (file.before_install and recipe.base == "debian"):
                _write_file(root, file)
        for d in recipe.dirs:
            target = _inside(root, d.path)
            target.mkdir(parents=True, exist_ok=True)
            os.chown(target, d.uid, d.gid)
            os.chmod(target, d.mode)
        for link in recipe.links:
            target = _inside(root, link.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(link.target)
        log(f"lab image {recipe.tag}: importing")
        return _import(root, name, recipe, digest, docker_argv)


def _rootfs(suite: str, log) -> tuple[Path, Path]:
    """The suite's minbase rootfs tar and static busybox, made by debootstrap on first use."""
    folder = CACHE_DIR / "rootfs"
    tar, busybox = folder / f"{suite}-minbase.tar", folder / f"busybox-{suite}"  # name must start with busybox
    if tar.is_file() and busybox.is_file():
        return tar, busybox
    if not shutil.which("debootstrap"):
        raise BuildError("debootstrap is not installed (apt-get install debootstrap)")
    folder.mkdir(parents=True, exist_ok=True)
    log(f"lab images: debootstrap --variant=minbase {suite} (once; cached in {folder})")
    with _workdir(f"debootstrap-{suite}") as work:
        target = work / "root"
        _run(["debootstrap", "--variant=minbase", "--include=busybox-static", suite, str(target), MIRROR])
        _remove_glob(target, "var/lib/apt/lists/*")
        _remove_glob(target, "var/cache/apt/archives/*.deb")
        _remove_glob(target, "var/cache/apt/*.bin")
        shutil.copy2(target / "bin" / "busybox", work / "busybox")
        _run(["tar", "-C", str(target), "--numeric-owner", "-cf", str(work / "rootfs.tar"), "."])
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
    for applet in _run([str(busybox), "--list"]).split():
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
            _chroot_run(root, ["groupadd", "--system", "--gid", str(gid), user.name])
        _chroot_run(root, ["useradd", "--system", "--uid", str(user.uid), "--gid", str(gid), "--no-create-home",
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
        real = _chroot_run(debian, ["readlink", "-f", p]).strip()  # symlinks resolved inside the chroot
        src, dest = _inside(debian, real), _inside(root, p)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest)


def _write_file(root: Path, file: File) -> None:
    if sum(map(bool, (file.src, file.host, file.text))) != 1:
        raise ValueError(f"{file.path}: give exactly one of src, host, text")
    target = _inside(root, file.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    if file.text:
        target.write_text(file.text)
    else:
        shutil.copyfile(FILES_DIR / file.src if file.src else file.host, target)
    os.chown(target, file.uid, file.gid)
    os.chmod(target, file.mode)


def _file_sha256(file: File) -> str:
    if file.text:
        return hashlib.sha256(file.text.encode()).hexdigest()
    path = FILES_DIR / file.src if file.src else Path(file.host)
    if not path.is_file():
        raise FileNotFoundError(f"{file.path} comes from {path}, which does not exist")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Filesystem, mounts and processes


def _inside(root: Path, path: str) -> Path:
    """``root/path``, refusing paths whose parent resolves outside ``root`` (e.g. via /var/run -> /run)."""
    target = root / path.lstrip("/")
    parent = os.path.realpath(target.parent)
    if os.path.commonpath([parent, os.path.realpath(root)]) != os.path.realpath(root):
        raise BuildError(f"{path} resolves outside the image tree ({parent}); use the real path")
    return target


def _remove_glob(root: Path, pattern: str) -> None:
    for match in sorted(root.glob(pattern), reverse=True):
        match = _inside(root, str(match.relative_to(root)))
        if match.is_dir() and not match.is_symlink():
            shutil.rmtree(match)
        else:
            match.unlink()


def _run(argv: Sequence[str]) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        raise BuildError(f"{' '.join(argv)} failed with exit code {proc.returncode}:\n{output[-3000:]}")
    return proc.stdout


def _chroot_run(root: Path, argv: Sequence[str]) -> str:
    proc = subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, env=_CHROOT_ENV)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        raise BuildError(f"in chroot: {' '.join(argv)} failed with exit code {proc.returncode}:\n{output[-3000:]}")
    return proc.stdout


@contextmanager
def _chroot(root: Path, apt_cache: Path) -> Iterator[None]:
    """Mount /proc and the suite's apt lists and archives in the chroot; unmount them, always."""
    mounted: list[Path] = []
    try:
        _run(["mount", "-t", "proc", "proc", str(root / "proc")])
        mounted.append(root / "proc")
        for cache, inside in (("lists", "var/lib/apt/lists"), ("archives", "var/cache/apt/archives")):
            (apt_cache / cache / "partial").mkdir(parents=True, exist_ok=True)
            target = root / inside
            target.mkdir(parents=True, exist_ok=True)
            _run(["mount", "--bind", str(apt_cache / cache), str(target)])
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


def _remove_tree(folder: Path, keep_root: bool = False) -> None:
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
def _workdir(name: str) -> Iterator[Path]:
    base = CACHE_DIR / "build"
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=base))
    try:
        yield work
    finally:
        _remove_tree(work)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
