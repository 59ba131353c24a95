"""Writes a manifest's files under a local folder for review (``vsa-ops render``)."""

from __future__ import annotations

import os
from pathlib import Path

from .manifest import Manifest


def write_manifest(manifest: Manifest, out: Path) -> int:
    """Each file at ``out/<its path on the host>``; files holding secrets are private (0600)."""
    out = out.resolve()
    for directory in manifest.directories:
        (out / directory.path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    fstab = out / "etc" / "fstab"
    fstab.parent.mkdir(parents=True, exist_ok=True)
    fstab.write_text("".join(f"{line.line}\n" for line in manifest.fstab))
    for item in manifest.files:
        path = out / item.path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if item.sensitive else 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(item.content)
        os.replace(temporary, path)
    return len(manifest.files) + 1
