"""The Docker engine, the shared networks and the images stacks need."""

from __future__ import annotations

import base64
import posixpath
import secrets
import subprocess
from typing import IO

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation

from ..plan import FileChange
from ..state_read import STATE_DIR
from .shell import argv, script

IMAGE_STAGE = f"{STATE_DIR}/stage"  # lock.sh clears it when it takes the lock


# Restart the Docker engine: through systemd where it runs, otherwise by stopping dockerd gracefully
# and starting it again with the same arguments and environment. Containers that ran before are
# started again (before live-restore is on, a restart stops them).
RESTART_DOCKER = """restart_docker() {
  running=$(docker ps -q)
  if [ -d /run/systemd/system ]; then systemctl restart docker
  else
    pid=$(pgrep -xo dockerd || true); launch=/run/vsa-ops-dockerd.argv
    if [ -n "$pid" ]; then
      cat /proc/$pid/environ /proc/$pid/cmdline > "$launch"
      kill "$pid"
      for i in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    else
      printf 'PATH=%s\\0dockerd\\0' "$PATH" > "$launch"
    fi
    rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
    (cd / && setsid xargs -0 env -i < "$launch" >>/var/log/dockerd.log 2>&1 &)
  fi
  for i in $(seq 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  docker info >/dev/null 2>&1 || return 1
  [ -z "$running" ] || docker start $running >/dev/null
}"""


@operation()
def engine(install: bool, daemon_json: FileChange | None = None, restart: bool = False,
           packages: list[str] | None = None):
    """Install the Docker engine and the compose v2 plugin with apt where missing, and apply
    daemon.json, restarting the engine when its content changed; a restart that fails puts the
    old daemon.json back and restarts again.

    + install: ``plan.install_docker``
    + daemon_json: ``plan.daemon_json``
    + restart: ``plan.restart_docker``
    + packages: other Debian packages the host lacks (``plan.packages``: sqlite3, logrotate, ...)

    **Example:**

    .. code:: python

        docker.engine(name="docker engine", install=plan.install_docker, daemon_json=plan.daemon_json,
                      restart=plan.restart_docker)
    """
    if not install and daemon_json is None and not packages:
        host.noop("docker and compose v2 are installed, daemon.json is up to date")
        return
    if install:
        yield from _install()
    if packages:
        yield StringCommand(script(["export DEBIAN_FRONTEND=noninteractive",
                                    f"apt-get install -y -qq {argv(*packages)} >/dev/null || "
                                    f"{{ apt-get update -qq && apt-get install -y -qq {argv(*packages)} >/dev/null; }}"]))
    if daemon_json is not None:
        f = daemon_json.file
        if daemon_json.needs_upload:
            # base64: stdin travels as text lines, and the file's bytes must arrive exactly
            yield StringCommand(daemon_json_script(f.path, f"{f.owner}:{f.group}", f.mode, restart),
                                _stdin=base64.b64encode(f.content.encode()).decode())
        else:
            yield StringCommand(script([f"chown -h {f.owner}:{f.group} {argv(f.path)}",
                                        f"[ -L {argv(f.path)} ] || chmod {f.mode} {argv(f.path)}"]))


def daemon_json_script(path: str, ids: str, mode: str, restart: bool, restart_function: str = RESTART_DOCKER) -> str:
    """The host's side of a new daemon.json (base64 on stdin): staged under a fresh mktemp name beside
    ``path``; the current one kept by a hard link to itself (a symlink stays a symlink, nothing is
    copied through it), and a failed backup stops here, before anything moves; then one rename, and
    the engine restarted with ``restart``. Any failure or signal after the rename puts the old file
    back (and restarts the engine again, if it had been restarted); nothing staged outlives the run."""
    lines = [
        restart_function,
        f"path={argv(path)}; folder={argv(posixpath.dirname(path))}",
        "new=''; backup=''; moved=''; restarted=''; committed=''",
        "finish() {",
        "  status=$?",
        "  trap '' HUP INT TERM PIPE",
        "  if [ -n \"$moved\" ] && [ -z \"$committed\" ]; then",
        "    if [ -n \"$backup\" ]; then mv -fT \"$backup\" \"$path\" && backup=''; else rm -f \"$path\"; fi",
        "    if [ -n \"$restarted\" ]; then restart_docker || status=1; fi",
        "    echo 'vsa-ops: the old daemon.json is back' >&2",
        "    [ \"$status\" -ne 0 ] || status=1",
        "  fi",
        "  rm -f \"$new\" ${backup:+\"$backup\"}",
        "  exit \"$status\"",
        "}",
        "trap finish EXIT",
        "trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM; trap 'exit 141' PIPE",
        "fail() { echo \"vsa-ops: $*\" >&2; exit 1; }",
        "umask 077",
        "mkdir -p \"$folder\" || fail \"cannot create $folder\"",
        "new=$(mktemp \"$path.vsa-new.XXXXXX\") || fail \"cannot stage $path (a full disk?)\"",
        "base64 -d > \"$new\" || fail \"cannot stage $path (a full disk?)\"",
        f"chown {ids} \"$new\" && chmod {mode} \"$new\" || fail \"cannot set the owner and mode of $path\"",
        "if [ -e \"$path\" ] || [ -L \"$path\" ]; then",
        "  backup=$(mktemp -u \"$path.vsa-bak.XXXXXX\") && ln -PT \"$path\" \"$backup\" ||",
        "    { backup=''; fail \"cannot back up $path: nothing changed\"; }",
        "fi",
        "moved=1",
        "mv -fT \"$new\" \"$path\" || fail \"cannot install $path\"",
        "new=''",
    ]
    if restart:
        lines += ["restarted=1",
                  "restart_docker || fail 'docker did not start with the new daemon.json'"]
    lines.append("committed=1")
    return "\n".join(lines)


def _install():
    yield StringCommand(script([
        "export DEBIAN_FRONTEND=noninteractive",
        "command -v dockerd >/dev/null || { apt-get update -qq && apt-get install -y -qq docker.io; }",
        "docker compose version >/dev/null 2>&1 || apt-get install -y -qq docker-compose-plugin "
        "|| apt-get install -y -qq docker-compose-v2 "
        "|| { echo 'vsa-ops: no compose v2 package in the configured apt sources' >&2; exit 1; }",
        # Installed but stopped: start it where systemd runs it; otherwise stop here, before any change.
        "docker info >/dev/null 2>&1 || { [ -d /run/systemd/system ] && systemctl start docker >/dev/null 2>&1; } "
        "|| true",
        "for i in $(seq 50); do docker info >/dev/null 2>&1 && break; sleep 0.2; done",
        "docker info >/dev/null 2>&1 || { echo 'vsa-ops: the Docker engine does not answer (docker info fails): "
        "start dockerd, then deploy again' >&2; exit 1; }",
    ]))


@operation()
def networks(names: list[str]):
    """Create the shared bridge networks (flowbiz_ext) that stacks join as external.

    + names: ``plan.networks``
    """
    if not names:
        host.noop("shared networks exist")
        return
    yield StringCommand(script(f"docker network inspect {argv(n)} >/dev/null 2>&1 || docker network create "
                               f"--driver bridge {argv(n)}" for n in names))


class DockerSave(IO[bytes]):
    """``docker save`` of local images, gzipped (fast level: the link is the bottleneck, not the
    CPU), started only when the upload first reads from it."""

    def __init__(self, images: list[str]):
        self.images = images
        self.processes: list[subprocess.Popen] = []

    def read(self, size: int = -1) -> bytes:
        if not self.processes:
            save = subprocess.Popen(["docker", "save", *self.images], stdout=subprocess.PIPE)
            gzip = subprocess.Popen(["gzip", "-1", "-c"], stdin=save.stdout, stdout=subprocess.PIPE)
            save.stdout.close()  # gzip holds it now: docker save sees a closed pipe if gzip dies
            self.processes = [save, gzip]
        chunk = self.processes[-1].stdout.read(size)
        # at the end (an empty chunk, or all of it at once): gzip's header alone is no image
        if (not chunk or size is None or size < 0) and any(process.wait() != 0 for process in self.processes):
            raise OSError(f"docker save {' '.join(self.images)} | gzip failed")
        return chunk


def local_images(images: list[str]) -> list[str]:
    """Those of ``images`` the controller's Docker engine has."""
    have = []
    for image in images:
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
            have.append(image)
    return have


@operation()
def ship_images(images: list[str]):
    """Send images the host lacks from the controller (``docker save`` | ``docker load`` over SSH).

    No registry is needed: users build their own images and ship them this way. Images the
    controller lacks are left for ``docker compose up`` to pull.

    + images: ``plan.images``
    """
    shipped = local_images(images)
    if not shipped:
        host.noop("the host has every image the controller can send")
        return
    # A fresh root-only folder per run (mkdir fails on any name already there), in vsa-ops' own
    # root-only state folder: a run killed mid-upload leaves it to the next run's lock, which
    # clears every staging folder of dead runs.
    stage = f"{IMAGE_STAGE}/images.{secrets.token_hex(8)}"
    yield StringCommand(script(["umask 077", f"mkdir -p {IMAGE_STAGE}", f"chmod 0700 {STATE_DIR} {IMAGE_STAGE}",
                                f"mkdir -m 0700 {argv(stage)}"]))
    yield StagedUpload(DockerSave(shipped), stage, "images.tar.gz")
    yield StringCommand(f"docker load -q -i {argv(stage + '/images.tar.gz')} >/dev/null; loaded=$?; "
                        f"rm -rf {argv(stage)}; exit $loaded")


class StagedUpload(FileUploadCommand):
    """An upload into a staging folder that removes the folder when the upload fails."""

    def __init__(self, src: IO[bytes], stage: str, name: str):
        super().__init__(src, f"{stage}/{name}")
        self.stage = stage

    def execute(self, state, host, connector_arguments):
        uploaded = False
        try:
            uploaded = super().execute(state, host, dict(connector_arguments))
            return uploaded
        finally:
            if not uploaded:
                host.run_shell_command(StringCommand(f"rm -rf {argv(self.stage)}"), **connector_arguments)
