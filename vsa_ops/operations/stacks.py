"""Files and compose stacks, applied as one transaction: install the changed files atomically,
validate, start what is new, restart or reload only what a change touched, probe, and put
everything back as it was when any step fails."""

from __future__ import annotations

import io
import posixpath
import tarfile

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation

from ..manifest import Manifest
from ..plan import Plan
from .shell import argv, script

PROBE_SECONDS = 3


# Restart the Docker engine after daemon.json changed: through systemd where it runs, otherwise by
# stopping dockerd gracefully and starting it again with the same arguments and environment.
RESTART_DOCKER = """restart_docker() {
  if [ -d /run/systemd/system ]; then systemctl restart docker; return; fi
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
  for i in $(seq 150); do docker info >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}"""


def staged_name(path: str) -> str:
    """Where a new file waits before its rename: same folder, so the rename is atomic."""
    return posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.vsa-new")


def files_archive(plan: Plan) -> bytes:
    """A tar of the files to upload, at their staged names, with owner, group and mode."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for change in plan.files:
            if not change.needs_upload:
                continue
            data = change.file.content.encode()
            info = tarfile.TarInfo(staged_name(change.file.path).lstrip("/"))
            info.size, info.mode = len(data), int(change.file.mode, 8)
            info.uid, info.gid, info.mtime = change.file.owner, change.file.group, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _compose(stack, *args: str) -> str:
    return argv("docker", "compose", "-p", stack.name, "--project-directory", stack.directory,
                "-f", stack.compose_path, *args)


def activation_script(plan: Plan, manifest: Manifest, archive: str) -> str:
    """The transaction as one shell script (one round trip), rolling back on any failure."""
    changed = [c for c in plan.files if c.needs_upload]
    compose_paths = {stack.compose_path: stack for stack in manifest.stacks}
    lines = [
        RESTART_DOCKER,
        "restore() {",
        "  set +e",
        "  echo 'vsa-ops: rolling back' >&2",
        "  while read -r kind path meta; do",
        "    case $kind in",
        "      backup) mv -f \"$path.vsa-bak\" \"$path\" ;;",
        "      new) rm -f \"$path\" ;;",
        "      meta) chown \"${meta% *}\" \"$path\"; chmod \"${meta#* }\" \"$path\" ;;",
        "    esac",
        "  done < \"$journal\"",
        "  rm -f \"$journal\"",
    ]
    if plan.restart_docker:
        lines.append("  restart_docker")
    # After the files are back, bring back what ran before: stacks that existed go up with their
    # old compose file, new ones go down; touched services restart or reload with the old files.
    for stack in plan.stacks_up:
        existed = not any(c.file.path == stack.compose_path and c.reason == "create" for c in changed)
        lines.append(f"  {_compose(stack, 'up', '-d', '--remove-orphans') if existed else _compose(stack, 'down', '--remove-orphans')} >/dev/null 2>&1")
    for action in plan.services:
        lines.append(f"  {_service_command(action)} >/dev/null 2>&1")
    lines += [
        "}",
        "fail() { echo \"vsa-ops: $*\" >&2; restore; exit 1; }",
        f"journal=$(mktemp /var/tmp/vsa-ops-journal.XXXXXX)",
    ]
    if changed:
        lines.append(f"tar -xf {argv(archive)} -C / --same-permissions --same-owner --numeric-owner -m "
                     f"|| fail 'unpacking the new files'")
        lines.append(f"rm -f {argv(archive)}")
    for change in changed:
        if change.file.path in compose_paths:
            stack = compose_paths[change.file.path]
            staged = staged_name(change.file.path)
            lines.append(f"docker compose -p {argv(stack.name)} --project-directory {argv(stack.directory)} "
                         f"-f {argv(staged)} config -q || {{ rm -f {argv(staged)}; "
                         f"fail {argv(f'docker compose config rejects {change.file.path}')}; }}")
    for change in changed:
        path = argv(change.file.path)
        lines.append(f"if [ -e {path} ]; then cp -p {path} {path}.vsa-bak && echo backup {path} >> \"$journal\"; "
                     f"else echo new {path} >> \"$journal\"; fi")
        lines.append(f"mv -f {argv(staged_name(change.file.path))} {path}")
    for change in plan.files:
        if change.needs_upload:
            continue
        f = change.file
        path = argv(f.path)
        lines.append(f"echo meta {path} \"$(stat -c '%u:%g %a' {path})\" >> \"$journal\"")
        lines.append(f"chown {f.owner}:{f.group} {path} && chmod {f.mode} {path}")
    # Validate before anything reads the new files: each running service whose config changed
    # checks it in place (nginx -t, promtool); the old process keeps serving meanwhile.
    validated = set()
    for action in plan.services:
        service = action.service
        if service.validate_command and service.container_name not in validated:
            validated.add(service.container_name)
            check = " ".join(service.validate_command)
            lines.append(f"docker exec {argv(service.container_name)} {argv(*service.validate_command)} "
                         f"|| fail {argv(f'{service.container_name}: {check} failed')}")
    if plan.restart_docker:
        lines.append("restart_docker || fail 'docker did not come back after its restart'")
    for stack in plan.stacks_up:
        lines.append(f"{_compose(stack, 'up', '-d', '--remove-orphans', '--quiet-pull', '--pull', manifest.pull)} "
                     f"|| fail {argv(f'docker compose up failed for stack {stack.name}')}")
    for action in plan.services:
        lines.append(f"{_service_command(action)} || fail {argv(f'{action.action} of {action.service.container_name} failed')}")
    probed = sorted({s.container_name for stack in plan.stacks_up for s in stack.services}
                    | {a.service.container_name for a in plan.services})
    if probed:
        lines.append(f"sleep {PROBE_SECONDS}")
        for name in probed:
            lines.append(f"[ \"$(docker inspect -f '{{{{.State.Status}}}}' {argv(name)} 2>/dev/null)\" = running ] "
                         f"|| fail {argv(f'{name} is not running after the change')}")
    lines.append("while read -r kind path meta; do [ \"$kind\" = backup ] && rm -f \"$path.vsa-bak\"; done "
                 "< \"$journal\"; rm -f \"$journal\"")
    return script(lines)


def _service_command(action) -> str:
    service = action.service
    if action.action == "reload":
        return argv("docker", "exec", service.container_name, *service.reload_command)
    return _compose(action.stack, "restart", service.name)


@operation()
def activate(plan: Plan, manifest: Manifest):
    """Apply the plan's files and stack changes as one transaction.

    + plan: from ``make_plan``
    + manifest: the manifest the plan was made from

    **Example:**

    .. code:: python

        stacks.activate(name="files and stacks", plan=plan, manifest=manifest)
    """
    if not (plan.files or plan.stacks_up or plan.services or plan.restart_docker):
        host.noop("files and stacks are up to date")
        return
    archive = f"/var/tmp/vsa-ops-files-{plan.fingerprint[:12] or 'new'}.tar"
    if any(c.needs_upload for c in plan.files):
        yield FileUploadCommand(io.BytesIO(files_archive(plan)), archive)
    yield StringCommand(activation_script(plan, manifest, archive))
