"""Files and compose stacks, applied as one transaction (host_programs/transaction.sh): install the
changed files atomically, validate, start what is new, restart or reload only what a change touched,
probe, and put everything back as it was when any step fails or the run is cut short.

The command is the program; everything that depends on the plan (the actions, the new files as a
tar) goes to its stdin, which no other user of the host can read: one command for any number of
files, secrets included.
"""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
import uuid

from pyinfra import host
from pyinfra.api import StringCommand, operation

from ..host_programs import program_command, reload_command
from ..manifest import Manifest
from ..plan import Plan
from ..render.plan_access import SUDOERS_DIR
from .lock import Hold
from .shell import argv

PROBE_SECONDS = 3


def _relative(path: str) -> str:
    return path.lstrip("/")


def _encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def files_archive(plan: Plan) -> bytes:
    """A tar of the files to upload, at their paths relative to the root, with owner, group and mode."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for change in plan.files:
            if not change.needs_upload:
                continue
            data = change.file.content.encode()
            info = tarfile.TarInfo(_relative(change.file.path))
            info.size, info.mode = len(data), int(change.file.mode, 8)
            info.uid, info.gid, info.mtime = change.file.owner, change.file.group, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _compose(stack, *args: str, file_word: str | None = None) -> str:
    """A compose command for ``stack``; ``file_word``: its compose file as a shell word, quoted already."""
    return (argv("docker", "compose", "-p", stack.name, "--project-directory", stack.directory, "-f") + " "
            + (file_word or argv(stack.compose_path)) + " " + argv(*args))


def _rotations(plan: Plan, manifest: Manifest) -> list:
    """The rotations whose password file this plan changes (a created file seeds a new database)."""
    changed = {c.file.path for c in plan.files if c.reason == "content"}
    return [r for r in manifest.rotations if r.path in changed]


def _rotation_command(rotation) -> str:
    return argv("docker", "exec", "-u", "0", rotation.container, "sh", "-c", rotation.script)


def _service_command(action) -> str:
    service = action.service
    if action.action == "reload":
        return reload_command(service.container_name, service.reload_signal, service.reload_command)
    return _compose(action.stack, "restart", service.name)


def transaction_input(plan: Plan, manifest: Manifest, lock: Hold | None = None, resume: str = "") -> str:
    """The program's stdin: one action a line (see transaction.sh), then the archive. ``resume``: a
    command the run's undo ends with (what was stopped before it, to run again if it fails)."""
    changed = [c for c in plan.files if c.needs_upload]
    compose_paths = {stack.compose_path: stack for stack in manifest.stacks}
    new_stacks = [stack for stack in plan.stacks_up
                  if any(c.file.path == stack.compose_path and c.reason == "create" for c in changed)]
    lines = [lock.request().rstrip("\n")] if lock else []
    if resume:
        lines.append(f"resume {_encoded(resume)}")
    for change in changed:
        if change.file.path in compose_paths:
            stack = compose_paths[change.file.path]
            # the staged copy; $VSA_STAGE is the program's, expanded where the check runs
            staged = f"\"$VSA_STAGE/files/\"{argv(_relative(change.file.path))}"
            check = _compose(stack, "config", "-q", file_word=staged)
            lines.append(f"check {_encoded(check)} {_encoded(f'docker compose config rejects {change.file.path}')}")
        elif change.file.path.startswith(f"{SUDOERS_DIR}/"):  # a broken drop-in would break all of sudo
            check = f"visudo -cqf \"$VSA_STAGE/files/\"{argv(_relative(change.file.path))}"
            lines.append(f"check {_encoded(check)} {_encoded(f'visudo -cf rejects {change.file.path} (is sudo installed?)')}")
    lines += [f"install {_relative(c.file.path)}" for c in changed]
    lines += [f"meta {c.file.owner}:{c.file.group} {c.file.mode} {_relative(c.file.path)}"
              for c in plan.files if not c.needs_upload]
    lines += [f"remove {_relative(path)}" for path in plan.removals]
    # Validate before anything reads the new files: each running service whose config changed
    # checks it in place (nginx -t, promtool); the old process keeps serving meanwhile.
    validated = set()
    for action in plan.services:
        service = action.service
        if service.validate_command and service.container_name not in validated:
            validated.add(service.container_name)
            check = argv("docker", "exec", service.container_name, *service.validate_command)
            message = f"{service.container_name}: {' '.join(service.validate_command)} failed"
            lines.append(f"validate {_encoded(check)} {_encoded(message)}")
    # A changed password takes effect where the file only seeds it (the database role, Grafana's
    # admin), in the running container, before anything restarts to read the new file. Its undo is
    # the same command once the old file is back: it sets the old password again.
    for rotation in _rotations(plan, manifest):
        container = argv(rotation.container)
        rotate = (f"if [ \"$(docker inspect -f '{{{{.State.Status}}}}' {container} 2>/dev/null)\" = running ]; "
                  f"then {_rotation_command(rotation)} >/dev/null 2>&1; fi")
        lines.append(f"act last {_encoded(rotate)} {_encoded(rotate)} "
                     f"{_encoded(f'{rotation.container}: rotating the {rotation.what} failed')}")
    # Only what this run started is undone: stacks it created go down while their compose file is
    # still there; what it restarted or reloaded runs again once the old files are back.
    for stack in plan.stacks_up:
        up = _compose(stack, "up", "-d", "--remove-orphans", "--quiet-pull", "--pull", manifest.pull)
        when, undo = (("first", _compose(stack, "down", "--remove-orphans")) if stack in new_stacks
                      else ("last", _compose(stack, "up", "-d", "--remove-orphans")))
        lines.append(f"act {when} {_encoded(up)} {_encoded(undo)} "
                     f"{_encoded(f'docker compose up failed for stack {stack.name}')}")
    for action in plan.services:
        command = _service_command(action)
        lines.append(f"act last {_encoded(command)} {_encoded(command)} "
                     f"{_encoded(f'{action.action} of {action.service.container_name} failed')}")
    # Containers that were (re)started must still run a moment later; a reload keeps the container
    # and was checked by its validate command first, so it needs no wait.
    probed = sorted({s.container_name for stack in plan.stacks_up for s in stack.services}
                    | {a.service.container_name for a in plan.services if a.action == "restart"})
    if probed:
        lines.append(f"probe {PROBE_SECONDS} {' '.join(probed)}")
    lines.append("archive")
    if changed:
        packed = base64.encodebytes(gzip.compress(files_archive(plan), mtime=0)).decode("ascii")
        lines.append(packed.rstrip("\n"))
    return "\n".join([*lines, "end"]) + "\n"


def transaction_command(plan: Plan, manifest: Manifest, run: str, lock: Hold | None = None,
                        root: str = "/", resume: str = "") -> StringCommand:
    """The transaction as one command: the program, and its data on stdin."""
    take = lock.take_arguments() if lock else ("", 0, 0, "", "-", "")
    return StringCommand(program_command("transaction", root, lock.run if lock else run, *take),
                         _stdin=transaction_input(plan, manifest, lock, resume))


@operation()
def activate(plan: Plan, manifest: Manifest, run: str = "", lock: Hold | None = None, resume: str = ""):
    """Apply the plan's files and stack changes as one transaction.

    + plan: from ``make_plan``
    + manifest: the manifest the plan was made from
    + run: this run's id (names its journal records, backups and staging); the lock's when given
    + lock: take and give back the run lock inside the transaction (when it is the run's only work)
    + resume: a shell command the undo of a failed run ends with: what an earlier step of the run
      stopped runs again (the old log shipper of a cut-over)

    **Example:**

    .. code:: python

        stacks.activate(name="files and stacks", plan=plan, manifest=manifest, run="r1")
    """
    if not (plan.files or plan.removals or plan.stacks_up or plan.services or plan.unfinished):
        host.noop("files and stacks are up to date")
        return
    yield transaction_command(plan, manifest, run or uuid.uuid4().hex[:10], lock, resume=resume)
