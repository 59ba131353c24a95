"""A plan as people and machines read it: text for terminals, markdown for a pull request comment,
JSON for tools. File changes are unified diffs; secrets never show: a file that holds one (by
``manifest.holds_secret``) is masked whether it is created, changed or removed, and its current
content is never read."""

from __future__ import annotations

import difflib
import json
import posixpath
from dataclasses import dataclass, field

from .config.storage import VHOSTS, domain_files
from .manifest import holds_secret
from .plan import Plan

MASKED = "(content hidden: this file holds a secret)"
# A file holding a secret the controller lacks, or that the plan identity may not read.
NOT_COMPARED = "secret: not compared"


@dataclass
class HostPlan:
    host: str
    plan: Plan | None
    diffs: list[tuple[str, str]] = field(default_factory=list)  # (path, unified diff)
    error: str | None = None
    # Files whose content was not compared (planning.not_compared): no change, and no drift either.
    not_compared: list[str] = field(default_factory=list)
    read_only: bool = False  # planned as the plan identity: the command may write nothing to the host

    @property
    def notes(self) -> list[str]:
        return [f"file {path}: {NOT_COMPARED}" for path in self.not_compared]

    @property
    def changes(self) -> list[str]:
        """Everything but file contents, one line each."""
        plan, lines = self.plan, []
        if plan is None:
            return lines
        for change in plan.files:
            domain = change.file.domain
            if domain and change.reason == "create" and change.file.path == domain_files(domain)["vhost"]:
                lines.append(f"add domain {domain}")
        # A removed file is no longer in the manifest: only its path is left. Every .conf in the vhost
        # folder that the manifest does not name is a domain's vhost (the design's own are named).
        for path in plan.removals:
            if posixpath.dirname(path) == VHOSTS and path.endswith(".conf"):
                lines.append(f"remove domain {posixpath.basename(path)[:-5]}")
        if plan.install_docker:
            lines.append("install docker and the compose v2 plugin (apt)")
        if plan.daemon_json:
            lines.append(f"{plan.daemon_json.reason} /etc/docker/daemon.json"
                         + (", then restart docker" if plan.restart_docker else ""))
        if plan.fstab:
            lines += [f"fstab: + {line}" for line in plan.fstab.added]
            lines += [f"fstab: - {line}" for line in plan.fstab.removed]
            lines += [f"mount {point}" for point in plan.fstab.mount]
            lines += [f"fstab: note: {note}" for note in plan.fstab.notes]
        lines += [f"create user {name} (uid {uid})" for name, uid in plan.users]
        for change in plan.directories:
            d = change.directory
            lines.append(f"directory {d.path}: {change.reason} ({d.owner}:{d.group} {d.mode})")
        for change in plan.files:
            f = change.file
            lines.append(f"file {f.path}: {change.reason} ({f.owner}:{f.group} {f.mode})")
        lines += [f"file {path}: remove" for path in plan.removals]
        lines += [f"create network {name}" for name in plan.networks]
        lines += [f"ship image {image}" for image in plan.images]
        lines += [f"docker compose up stack {stack.name}" for stack in plan.stacks_up]
        lines += [f"{action.action} {action.service.container_name}" for action in plan.services]
        lines += [f"issue certificate for {', '.join(d.server_names)}" for d in plan.certificates]
        return lines


def contents_wanted(plan: Plan) -> list[str]:
    """The files whose current content the plan's diffs need: changed and removed ones, never one
    that holds a secret."""
    changed = [c.file.path for c in plan.files if c.reason == "content" and not c.file.sensitive]
    return [p for p in changed + plan.removals if not holds_secret(p)] + (["/etc/fstab"] if plan.fstab else [])


def file_diffs(plan: Plan, current: dict[str, str]) -> list[tuple[str, str]]:
    """Unified diffs (with ---/+++ headers) of every file the plan writes or removes; masked when
    the file holds a secret, before or after."""
    diffs = []
    for change in plan.files:
        if not change.needs_upload:
            continue
        path, new = change.file.path, change.file.content
        old = current.get(path) if change.reason == "content" else None
        if change.file.sensitive or holds_secret(path, old):
            diffs.append((path, f"--- a{path}\n+++ b{path}\n{MASKED}\n"))
            continue
        diffs.append((path, _unified(path, old, new)))
    for path in plan.removals:
        old = current.get(path, "")
        if holds_secret(path, old):
            diffs.append((path, f"--- a{path}\n+++ /dev/null\n{MASKED}\n"))
            continue
        diffs.append((path, _unified(path, old, None)))
    if plan.fstab:
        diffs.append(("/etc/fstab", _unified("/etc/fstab", current.get("/etc/fstab", ""), plan.fstab.content)))
    return diffs


def _unified(path: str, old: str | None, new: str | None) -> str:
    before = "/dev/null" if old is None else f"a{path}"
    after = "/dev/null" if new is None else f"b{path}"
    lines = difflib.unified_diff((old or "").splitlines(keepends=True), (new or "").splitlines(keepends=True),
                                 before, after)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def render_text(plans: list[HostPlan]) -> str:
    out = []
    for hp in plans:
        if hp.error:
            out.append(f"{hp.host}: error: {hp.error}")
            continue
        out.append(f"{hp.host}: {hp.plan.summary()}")
        out += [f"  {line}" for line in hp.changes + hp.notes]
        for _path, diff in hp.diffs:
            out.append(diff.rstrip("\n"))
    return "\n".join(out) + "\n"


def render_markdown(plans: list[HostPlan]) -> str:
    pending = sum(1 for hp in plans if hp.plan and not hp.plan.empty)
    out = [f"### vsa-ops plan: {pending} of {len(plans)} hosts with changes", ""]
    for hp in plans:
        if hp.error:
            out += [f"#### {hp.host}: error", "", f"`{hp.error}`", ""]
            continue
        out += [f"#### {hp.host}: {hp.plan.summary()}", ""]
        out += [f"- {line}" for line in hp.changes + hp.notes]
        for path, diff in hp.diffs:
            out += ["", f"<details><summary><code>{path}</code></summary>", "", "```diff", diff.rstrip("\n"), "```",
                    "", "</details>"]
        out.append("")
    return "\n".join(out)


def render_json(plans: list[HostPlan]) -> str:
    return json.dumps([{"host": hp.host, "error": hp.error,
                        "summary": hp.plan.summary() if hp.plan else None,
                        "changed": bool(hp.plan and not hp.plan.empty),
                        "changes": hp.changes, "not_compared": hp.not_compared,
                        "diffs": [{"path": path, "diff": diff} for path, diff in hp.diffs]} for hp in plans], indent=2)
