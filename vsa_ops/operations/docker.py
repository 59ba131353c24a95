"""The Docker engine, the shared networks and the images stacks need."""

from __future__ import annotations

import hashlib
import posixpath
import subprocess
from io import BytesIO
from typing import IO

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation

from ..plan import FileChange
from .shell import argv, script


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
        staged, path = f"{f.path}.vsa-new", f.path
        if daemon_json.needs_upload:
            yield StringCommand(f"mkdir -p {argv(posixpath.dirname(path))}")
            yield FileUploadCommand(BytesIO(f.content.encode()), staged)
        lines = [RESTART_DOCKER]
        if daemon_json.needs_upload:
            lines += [f"[ -e {argv(path)} ] && cp -p {argv(path)} {argv(path)}.vsa-bak || rm -f {argv(path)}.vsa-bak",
                      f"mv -f {argv(staged)} {argv(path)}"]
        lines.append(f"chown {f.owner}:{f.group} {argv(path)} && chmod {f.mode} {argv(path)}")
        if restart:
            lines.append(f"if ! restart_docker; then "
                         f"if [ -e {argv(path)}.vsa-bak ]; then mv -f {argv(path)}.vsa-bak {argv(path)}; "
                         f"else rm -f {argv(path)}; fi; restart_docker; "
                         f"echo 'vsa-ops: docker did not start with the new daemon.json; the old one is back' >&2; exit 1; fi")
        lines.append(f"rm -f {argv(path)}.vsa-bak")
        yield StringCommand(script(lines))


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
    """``docker save`` of local images, started only when the upload first reads from it."""

    def __init__(self, images: list[str]):
        self.images = images
        self.process: subprocess.Popen | None = None

    def read(self, size: int = -1) -> bytes:
        if self.process is None:
            self.process = subprocess.Popen(["docker", "save", *self.images], stdout=subprocess.PIPE)
        chunk = self.process.stdout.read(size)
        if not chunk and self.process.wait() != 0:
            raise OSError(f"docker save {' '.join(self.images)} failed")
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
    archive = f"/var/tmp/vsa-ops-images-{hashlib.sha256(' '.join(shipped).encode()).hexdigest()[:12]}.tar"
    yield FileUploadCommand(DockerSave(shipped), archive)
    yield StringCommand(script([f"docker load -q -i {argv(archive)} >/dev/null; rm -f {argv(archive)}"]))
