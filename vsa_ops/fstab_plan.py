"""The fstab part of the plan: which lines a host's /etc/fstab must have, without ever making it
unbootable (a disk the host lacks is written noauto,nofail; / only ever names the device mounted there)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import PlanError
from .manifest import FstabLine
from .state_read import HostSnapshot


@dataclass(frozen=True)
class FstabChange:
    content: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    mount: tuple[str, ...]  # mount points to mount now (their device exists and nothing is mounted there)
    # Where this host's lines differ from the design's, and why (a disk the host lacks, / kept).
    notes: tuple[str, ...] = ()


# Added to an entry whose source is not on the host. `noauto`: neither boot nor `mount -a` waits for
# it (findmnt --verify and systemd treat a `nofail` line without it as required); `nofail` and the
# device timeout keep boot safe even if someone removes `noauto` by hand.
ABSENT_SOURCE_OPTIONS = ("noauto", "nofail", "x-systemd.device-timeout=10s")


def _source_present(spec: str, state: HostSnapshot) -> bool:
    """Whether ``spec`` names a device the host has (configuration writes LABEL= sources only)."""
    return (spec.startswith("LABEL=") and spec.removeprefix("LABEL=") in state.labels) or spec in state.root_sources


def _for_this_host(entry: FstabLine, state: HostSnapshot) -> tuple[FstabLine | None, str]:
    """The line to write for ``entry`` on this host (None: leave its mount point's line alone) and
    why it differs from the design's line ("" when it does not). Boot never waits for a disk the host
    lacks, and / is never pointed at anything but the device mounted there now."""
    if entry.mountpoint == "/":
        if entry.spec in state.root_sources:
            return entry, ""
        return None, (f"/ stays as it is: {entry.spec} does not name the device mounted at / "
                      f"({state.mounts.get('/', 'unknown')})")
    if _source_present(entry.spec, state):
        return entry, ""
    options = entry.options.split(",")
    options += [option for option in ABSENT_SOURCE_OPTIONS if option not in options]
    return (dataclasses.replace(entry, options=",".join(options)),
            f"{entry.spec} is not on this host: {entry.mountpoint} written with noauto,nofail")


def plan_fstab(current: str, wanted: tuple[FstabLine, ...], state: HostSnapshot, force: bool = False) -> FstabChange | None:
    """Add or replace entries by mount point, never duplicate, keep every other line.

    Refuses (unless forced) to put a different device on a mount point that has one mounted. An
    entry whose source the host lacks is written ``noauto,nofail`` (``ABSENT_SOURCE_OPTIONS``); the
    line for / is never written unless its source names the device mounted at / now.
    """
    lines = current.splitlines()
    by_mountpoint: dict[str, int] = {}
    for index, line in enumerate(lines):
        fields = line.split()
        if fields and not fields[0].startswith("#") and len(fields) >= 2:
            by_mountpoint.setdefault(fields[1], index)
    added, removed, mount, notes = [], [], [], []
    new_lines = list(lines)
    drop: set[int] = set()
    for design in wanted:
        entry, note = _for_this_host(design, state)
        if note:
            notes.append(note)
        if entry is None:
            continue
        existing = by_mountpoint.get(entry.mountpoint)
        if existing is not None and lines[existing].split() == entry.line.split():
            continue
        mounted = state.mounts.get(entry.mountpoint)
        # / only gets here when its source names the device mounted there: the same device.
        if mounted and not force and existing is not None and lines[existing].split()[0] != entry.spec \
                and entry.mountpoint != "/":
            raise PlanError(f"fstab: {entry.mountpoint} has {mounted} mounted from {lines[existing].split()[0]}; "
                            f"refusing to put {entry.spec} there (vsa-ops deploy --force-fstab)")
        if existing is not None:
            removed.append(lines[existing])
            new_lines[existing] = entry.line
        else:
            new_lines.append(entry.line)
        added.append(entry.line)
        # Duplicates of this mount point further down are dropped, so it appears once.
        for index, line in enumerate(lines):
            fields = line.split()
            if index != existing and len(fields) >= 2 and not fields[0].startswith("#") and \
                    fields[1] == entry.mountpoint:
                drop.add(index)
                removed.append(line)
        if not mounted and not note:
            mount.append(entry.mountpoint)
    if not added and not drop:
        return None
    content = "".join(f"{line}\n" for index, line in enumerate(new_lines) if index not in drop)
    return FstabChange(content, tuple(added), tuple(removed), tuple(mount), tuple(notes))
