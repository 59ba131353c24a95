"""A vsa-ops project on disk: inventory, group_data, templates/, stacks/ and secrets. This is the only
place that reads the project's files; render works on what it returns."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import VsaError

SECRETS_FILE = "secrets.env"


class ProjectError(VsaError):
    pass


@dataclass(frozen=True)
class Sources:
    """Template sources by name: ``stacks/<stack>/<path>`` and ``templates/<path>``."""

    files: dict[str, str]
    # Sources with the executable bit: installed with mode 0755.
    executable: frozenset[str] = frozenset()

    def stack_names(self) -> list[str]:
        return sorted({name.split("/")[1] for name in self.files if name.startswith("stacks/")})

    def stack_files(self, stack: str) -> dict[str, str]:
        prefix = f"stacks/{stack}/"
        return {name[len(prefix):]: text for name, text in self.files.items() if name.startswith(prefix)}


def find_root(start: Path | None = None) -> Path:
    """The project folder: $VSA_PROJECT, else the nearest folder upwards holding stacks/ and templates/."""
    if os.environ.get("VSA_PROJECT"):
        return Path(os.environ["VSA_PROJECT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "stacks").is_dir() and (folder / "templates").is_dir():
            return folder
    raise ProjectError(f"no vsa-ops project (a folder with stacks/ and templates/) at or above {here}")


# Loaded sources by project, with the stat of every file they came from: a process reads them once
# and again only when a file changed (same Sources object, so render reuses its compiled templates).
_LOADED: dict[Path, tuple[tuple, Sources]] = {}


def load_sources(root: Path) -> Sources:
    paths = [path for top in ("stacks", "templates") for path in sorted((root / top).rglob("*"))
             if path.is_file() and "__pycache__" not in path.parts]
    stats = [path.stat() for path in paths]
    signature = tuple((str(p), s.st_mtime_ns, s.st_size, s.st_mode) for p, s in zip(paths, stats))
    cached = _LOADED.get(root)
    if cached and cached[0] == signature:
        return cached[1]
    files, executable = {}, set()
    for path, stat in zip(paths, stats):
        name = path.relative_to(root).as_posix()
        files[name] = path.read_text()
        if stat.st_mode & 0o111:
            executable.add(name)
    sources = Sources(files, frozenset(executable))
    _LOADED[root] = (signature, sources)
    return sources


def load_secrets(root: Path, names: Iterable[str], environ: Mapping[str, str] | None = None,
                 file: Path | None = None) -> dict[str, str]:
    """The secrets the configuration declares (``names``), from ``file`` (default: the project's
    ``secrets.env``; KEY=VALUE lines, never committed), overridden by environment variables of the
    same names. Nothing else is read: other variables are not secrets and are never treated as such."""
    names = set(names)
    values: dict[str, str] = {}
    path = file or root / SECRETS_FILE
    if path.exists():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise ProjectError(f"{path}:{number}: expected KEY=VALUE")
            if key.strip() in names:
                values[key.strip()] = value.strip()
    environ = os.environ if environ is None else environ
    values.update({key: environ[key] for key in names if key in environ})
    return values
