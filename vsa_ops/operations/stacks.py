"""Files and compose stacks, applied as one transaction: install the changed files atomically,
validate, start what is new, restart or reload only what a change touched, probe, and put
everything back as it was when any step fails."""

from __future__ import annotations

import base64
import gzip
import io
import posixpath
import tarfile

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation

from ..manifest import Manifest
from ..plan import Plan
from .lock import Hold
from .shell import argv, script

PROBE_SECONDS = 3
PROBE_AGAIN_SECONDS = 2
# New files travel inside the transaction's own command when they are small and hold no secret
# (a command line is visible to the host's other users while it runs): no SFTP session, which costs
# several round trips. Larger archives, or any secret, go by SFTP.
INLINE_LIMIT = 32 * 1024
# A command is one argument of `sh -c`, and Linux caps one argument at 128 KiB (MAX_ARG_STRLEN); a
# longer transaction (hundreds of files, the lock's fingerprint over every path) travels as a file.
COMMAND_LIMIT = 96 * 1024


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


def inline_archive(plan: Plan) -> str | None:
    """The new files, gzipped and in base64, when they may travel in the command; else None."""
    uploads = [c for c in plan.files if c.needs_upload]
    if not uploads or any(c.file.sensitive for c in uploads):
        return None
    packed = base64.b64encode(gzip.compress(files_archive(plan), mtime=0)).decode("ascii")
    return packed if len(packed) <= INLINE_LIMIT else None


def activation_script(plan: Plan, manifest: Manifest, archive: str, inline: str | None = None,
                      lock: Hold | None = None) -> str:
    """The transaction as one shell script (one round trip), rolling back on any failure. With
    ``inline``, it writes the archive itself; with ``lock``, it takes the run lock first and gives
    it back at the end, also after a rollback."""
    changed = [c for c in plan.files if c.needs_upload]
    compose_paths = {stack.compose_path: stack for stack in manifest.stacks}
    new_stacks = [stack for stack in plan.stacks_up
                  if any(c.file.path == stack.compose_path and c.reason == "create" for c in changed)]
    lines = [*(lock.acquire_lines() if lock else []),
        "restore() {",
        "  set +e",
        "  echo 'vsa-ops: rolling back' >&2",
    ]
    # Only what this run started is undone (each step sets its flag before it runs): stacks it
    # created go down while their compose file is still there; then the files come back, and what
    # it restarted or reloaded runs again with them.
    for index, stack in enumerate(plan.stacks_up):
        if stack in new_stacks:
            lines.append(f"  [ -z \"$up_{index}\" ] || {_compose(stack, 'down', '--remove-orphans')} >/dev/null 2>&1")
    lines += [
        "  while read -r kind path meta; do",
        "    case $kind in",
        "      backup) mv -f \"$path.vsa-bak\" \"$path\" ;;",
        "      new) rm -f \"$path\" ;;",
        "      meta) chown \"${meta% *}\" \"$path\"; chmod \"${meta#* }\" \"$path\" ;;",
        "    esac",
        "  done < \"$journal\"",
        "  rm -f \"$journal\"",
    ]
    for index, stack in enumerate(plan.stacks_up):
        if stack not in new_stacks:
            lines.append(f"  [ -z \"$up_{index}\" ] || {_compose(stack, 'up', '-d', '--remove-orphans')} >/dev/null 2>&1")
    for index, action in enumerate(plan.services):
        lines.append(f"  [ -z \"$did_{index}\" ] || {_service_command(action)} >/dev/null 2>&1")
    lines += [
        "}",
        "fail() { echo \"vsa-ops: $*\" >&2; restore; " + (f"{lock.release_line()}; " if lock else "") + "exit 1; }",
        "; ".join([f"up_{i}=" for i in range(len(plan.stacks_up))] + [f"did_{i}=" for i in range(len(plan.services))]
                  + [":"]),
        "journal=$(mktemp /var/tmp/vsa-ops-journal.XXXXXX)",
    ]
    if inline:
        lines.append(f"echo {argv(inline)} | base64 -d | gzip -dc > {argv(archive)} || fail 'writing the new files'")
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
    for path in plan.removals:
        lines.append(f"mv -f {argv(path)} {argv(path)}.vsa-bak && echo backup {argv(path)} >> \"$journal\"")
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
    for index, stack in enumerate(plan.stacks_up):
        lines.append(f"up_{index}=1; {_compose(stack, 'up', '-d', '--remove-orphans', '--quiet-pull', '--pull', manifest.pull)} "
                     f"|| fail {argv(f'docker compose up failed for stack {stack.name}')}")
    for index, action in enumerate(plan.services):
        lines.append(f"did_{index}=1; {_service_command(action)} "
                     f"|| fail {argv(f'{action.action} of {action.service.container_name} failed')}")
    # Containers that were (re)started must still run a moment later; a reload keeps the container
    # and was checked by its validate command first, so it needs no wait.
    probed = sorted({s.container_name for stack in plan.stacks_up for s in stack.services}
                    | {a.service.container_name for a in plan.services if a.action == "restart"})
    # Sampled twice: a container that exits at once and restarts (restart: unless-stopped) shows
    # "running" for moments; steady means running both times, not restarted in between.
    if probed:
        lines.append("sample() { docker inspect -f '{{.State.Status}} {{.RestartCount}} {{.State.StartedAt}}' "
                     "\"$1\" 2>/dev/null; }")
        lines.append(f"sleep {PROBE_SECONDS}")
        for index, name in enumerate(probed):
            lines.append(f"seen_{index}=$(sample {argv(name)}) || true")
        lines.append(f"sleep {PROBE_AGAIN_SECONDS}")
        for index, name in enumerate(probed):
            lines.append(f"case \"$seen_{index}\" in running\\ *) ;; *) false ;; esac && "
                         f"[ \"$(sample {argv(name)})\" = \"$seen_{index}\" ] "
                         f"|| fail {argv(f'{name} is not running after the change')}")
    lines.append("while read -r kind path meta; do [ \"$kind\" = backup ] && rm -f \"$path.vsa-bak\"; done "
                 "< \"$journal\"; rm -f \"$journal\"")
    if lock:
        lines.append(lock.release_line())
    return script(lines)


def _service_command(action) -> str:
    service = action.service
    if action.action == "reload":
        return argv("docker", "exec", service.container_name, *service.reload_command)
    return _compose(action.stack, "restart", service.name)


@operation()
def activate(plan: Plan, manifest: Manifest, lock: Hold | None = None):
    """Apply the plan's files and stack changes as one transaction.

    + plan: from ``make_plan``
    + manifest: the manifest the plan was made from
    + lock: take and give back the run lock inside the transaction (when it is the run's only work)

    **Example:**

    .. code:: python

        stacks.activate(name="files and stacks", plan=plan, manifest=manifest)
    """
    if not (plan.files or plan.removals or plan.stacks_up or plan.services):
        host.noop("files and stacks are up to date")
        return
    yield from transaction_commands(plan, manifest, lock)


def transaction_commands(plan: Plan, manifest: Manifest, lock: Hold | None = None) -> list:
    """The commands of the transaction: at best one; the files' archive by SFTP when it cannot be
    inline, and the script itself by SFTP when it is too long for a command line."""
    name = plan.fingerprint[:12] or "new"
    archive = f"/var/tmp/vsa-ops-files-{name}.tar"
    inline = inline_archive(plan)
    text = activation_script(plan, manifest, archive, inline=inline, lock=lock)
    if inline and len(text) > COMMAND_LIMIT:
        inline = None
        text = activation_script(plan, manifest, archive, lock=lock)
    commands = []
    if inline is None and any(c.needs_upload for c in plan.files):
        commands.append(FileUploadCommand(io.BytesIO(files_archive(plan)), archive))
    if len(text) <= COMMAND_LIMIT:
        return [*commands, StringCommand(text)]
    path = f"/var/tmp/vsa-ops-transaction-{name}.sh"
    return [*commands, FileUploadCommand(io.BytesIO(text.encode()), path),
            StringCommand(f"sh {argv(path)}; status=$?; rm -f {argv(path)}; exit $status")]
