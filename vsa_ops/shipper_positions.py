"""Carrying read positions from one log shipper to the other, so that a swap of
``observability.log_shipper.kind`` neither re-sends nor drops lines. The formats, as the pinned
versions write them:

Promtail (grafana/loki v3.0.0, clients/pkg/promtail/positions): one YAML file, ``positions:`` a map
from a string key to a string value. A file: its path, the byte offset. A journal job:
``cursor-<job_name>``, the journal cursor. A container (docker_sd): ``cursor-<container id>``, the
Unix second of the last line read.

Alloy (grafana/alloy v1.5.1, internal/component/common/loki/positions): one file per component,
``<storage.path>/<component id>/positions.yml``, ``positions:`` a map whose keys are mappings
``{path, labels}``. ``loki.source.file``: (the file's path, the target's public labels as a Prometheus
LabelSet string; ``{}`` for the label-free targets vsa-ops renders). ``loki.source.journal``:
(``cursor-<component id>``, ``""``). ``loki.source.docker``: (``cursor-<container id>``, the target's
labels, ``__meta_*`` included, merged with the component's ``labels``, as a LabelSet string).

Pure: the host program ``shipper_cutover.sh`` stops the old shipper and reads these files, and
writes what ``carry_over`` returns (``operations/shipper.py``).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import PurePosixPath

import yaml
from yaml.nodes import MappingNode, ScalarNode

from .config.log_shipping import LogShipper
from .errors import VsaError
from .state_read import records

KINDS = ("promtail", "alloy")
CURSOR = "cursor-"
FILE_LABELS = "{}"  # the public labels of the file targets both templates render: none
_STR, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class PositionsError(VsaError):
    """A positions file the cut-over cannot read."""


@dataclass(frozen=True)
class Job:
    """One scrape job as the positions see it."""

    source: str  # file, journal, docker
    name: str  # the job's name (Promtail's journal key)
    component: str  # the Alloy component holding its positions
    glob: str = ""  # a file job's path pattern
    fields: tuple[str, ...] = ()  # a docker job's target labels


@dataclass(frozen=True)
class Layout:
    """Where each shipper keeps its positions, relative to the state folder, and the jobs."""

    promtail_file: str
    jobs: tuple[Job, ...]

    def alloy_file(self, job: Job) -> str:
        return f"{job.component}/positions.yml"


def layout(shipper: LogShipper, audit_jsonl: str) -> Layout:
    """The positions layout of ``shipper`` (its jobs are the same whatever its kind)."""
    jobs = tuple(Job(job.source, job.job_name, job.alloy_component,
                     glob=(audit_jsonl if job.audit_trail else job.path or "") if job.source == "file" else "",
                     fields=tuple(job.discovered_fields) if job.source == "docker" else ())
                 for job in shipper.jobs)
    return Layout(PurePosixPath(shipper.positions_file).relative_to(shipper.state_dir).as_posix(), jobs)


INSPECT_FORMAT = "[{{json .Id}},{{json .Name}},{{json .HostConfig.NetworkMode}},{{json .Config.Labels}}]"


@dataclass(frozen=True)
class Container:
    """What Docker discovery says of a container, as `docker inspect` gives it."""

    id: str
    name: str  # with Docker's leading "/"
    network_mode: str
    labels: dict[str, str]

    @classmethod
    def from_inspect(cls, line: str) -> "Container":
        """One line of `docker inspect --format` with ``INSPECT_FORMAT``."""
        ident, name, mode, labels = json.loads(line)
        return cls(ident, name, mode or "", labels or {})

    def meta_labels(self) -> dict[str, str]:
        """The per-container labels of Docker discovery (Prometheus' moby discovery)."""
        meta = {"__meta_docker_container_id": self.id, "__meta_docker_container_name": self.name,
                "__meta_docker_container_network_mode": self.network_mode}
        meta |= {"__meta_docker_container_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key): value
                 for key, value in self.labels.items()}
        return {key: value for key, value in meta.items() if value}


def _go_escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _go_quote(text: str) -> str:
    """Go's strconv.Quote (printable runes kept, the others escaped)."""
    escapes = {"\\": "\\\\", '"': '\\"', "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n",
               "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    return '"' + "".join(escapes.get(c, c if c.isprintable() else _go_escape(c)) for c in text) + '"'


def label_set_string(labels: dict[str, str]) -> str:
    """Prometheus' LabelSet.String() (prometheus/common v0.60.0): ``{a="x", b="y"}``, names sorted."""
    return "{" + ", ".join(f"{name}={_go_quote(labels[name])}" for name in sorted(labels)) + "}"


def docker_labels(job: Job, container: Container) -> str:
    """Alloy's position labels for ``container`` read by docker ``job`` (its targets narrowed to
    ``job.fields`` by discovery.relabel, merged with ``{job = ...}``)."""
    meta = container.meta_labels()
    return label_set_string({**{f: meta[f] for f in job.fields if f in meta}, "job": job.name})


def _scalar(node, what: str) -> str:
    if not isinstance(node, ScalarNode):
        raise PositionsError(f"{what}: expected a string, found {node.tag}")
    return node.value


def _positions_node(text: str, what: str) -> list:
    try:
        document = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as error:
        raise PositionsError(f"{what} is not YAML: {error}") from None
    if document is None:
        return []
    if not isinstance(document, MappingNode):
        raise PositionsError(f"{what}: expected a mapping with key positions")
    for key, value in document.value:
        if _scalar(key, what) == "positions":
            if isinstance(value, ScalarNode) and value.tag == "tag:yaml.org,2002:null":
                return []
            if not isinstance(value, MappingNode):
                raise PositionsError(f"{what}: positions is not a mapping")
            return value.value
    return []


def read_promtail(text: str, what: str = "positions.yaml") -> dict[str, str]:
    """Promtail's positions: key -> value."""
    return {_scalar(key, what): _scalar(value, what) for key, value in _positions_node(text, what)}


def read_alloy(text: str, what: str = "positions.yml") -> dict[tuple[str, str], str]:
    """One Alloy component's positions: (path, labels) -> value. The keys are mappings, which a plain
    YAML load cannot make dict keys of: read from the node graph."""
    entries = {}
    for key, value in _positions_node(text, what):
        if not isinstance(key, MappingNode):
            raise PositionsError(f"{what}: a key is not a {{path, labels}} mapping")
        fields = {_scalar(k, what): _scalar(v, what) for k, v in key.value}
        entries[fields.get("path", ""), fields.get("labels", "")] = _scalar(value, what)
    return entries


def promtail_text(positions: dict[str, str]) -> str:
    return yaml.dump({"positions": dict(sorted(positions.items()))}, Dumper=_DUMPER, width=2**30)


def alloy_text(entries: dict[tuple[str, str], str]) -> str:
    """As Alloy reads it: every key a ``{path, labels}`` mapping, every value a string."""
    def string(value: str) -> ScalarNode:
        return ScalarNode(_STR, value)

    pairs = [(MappingNode(_MAP, [(string("path"), string(path)), (string("labels"), string(labels))]), string(value))
             for (path, labels), value in sorted(entries.items())]
    return yaml.serialize(MappingNode(_MAP, [(string("positions"), MappingNode(_MAP, pairs))]),
                          Dumper=_DUMPER, width=2**30)


def _matches(path: str, glob: str) -> bool:
    return bool(glob) and PurePosixPath(path).match(glob)


def _earliest(values: list[str]) -> str:
    """Of one file's (or container's) positions under several label sets, the earliest: what lies
    between them is sent twice rather than never."""
    try:
        return min(values, key=int)
    except ValueError:
        raise PositionsError(f"positions {values} are not numbers") from None


def to_alloy(promtail: dict[str, str], layout: Layout, containers: list[Container]) -> dict[str, str]:
    """Promtail's positions as Alloy's files (path relative to the state folder -> text), one for every
    component: an old file of a component would otherwise keep positions from an earlier swap."""
    by_id = {container.id: container for container in containers}
    files = {}
    for job in layout.jobs:
        entries = {}
        if job.source == "file":
            entries = {(key, FILE_LABELS): value for key, value in promtail.items()
                       if not key.startswith(CURSOR) and _matches(key, job.glob)}
        elif job.source == "journal" and CURSOR + job.name in promtail:
            entries = {(CURSOR + job.component, ""): promtail[CURSOR + job.name]}
        elif job.source == "docker":
            entries = {(key, docker_labels(job, by_id[key[len(CURSOR):]])): value
                       for key, value in promtail.items() if key[len(CURSOR):] in by_id and key.startswith(CURSOR)}
        files[layout.alloy_file(job)] = alloy_text(entries)
    return files


def to_promtail(alloy: dict[str, str], layout: Layout) -> dict[str, str]:
    """Alloy's files (path relative to the state folder -> text) as Promtail's one file. Each component
    gives only its own job's entries (Alloy's own legacy conversion copies every file to every one)."""
    found: dict[str, list[str]] = {}
    for job in layout.jobs:
        name = layout.alloy_file(job)
        entries = read_alloy(alloy[name], name) if name in alloy else {}
        for (path, _labels), value in entries.items():
            if job.source == "file" and not path.startswith(CURSOR) and _matches(path, job.glob):
                found.setdefault(path, []).append(value)
            elif job.source == "journal" and path == CURSOR + job.component:
                found.setdefault(CURSOR + job.name, []).append(value)
            elif job.source == "docker" and path.startswith(CURSOR):
                found.setdefault(path, []).append(value)
    journal = {CURSOR + job.name for job in layout.jobs if job.source == "journal"}
    positions = {key: values[0] if key in journal else _earliest(values) for key, values in found.items()}
    return {layout.promtail_file: promtail_text(positions)}


def carry_over(old_kind: str, files: dict[str, str], layout: Layout, containers: list[Container]) -> dict[str, str]:
    """The new shipper's positions files from the old one's (``files``: every positions file in the state
    folder, by path relative to it)."""
    if old_kind == "promtail":
        promtail = files.get(layout.promtail_file)
        return to_alloy(read_promtail(promtail, layout.promtail_file) if promtail else {}, layout, containers)
    if old_kind == "alloy":
        return to_promtail(files, layout)
    raise PositionsError(f"no log shipper of kind {old_kind!r}")


@dataclass(frozen=True)
class OldShipper:
    """What the host program read once the old shipper had stopped."""

    folder: str  # the state volume on the host
    files: dict[str, str]  # positions files, by path relative to the folder
    containers: list[Container]


def parse_read(output: str) -> OldShipper:
    """The output of ``shipper_cutover.sh read``."""
    folder, files, containers = "", {}, []
    for tag, value in records(output):
        if tag == "folder":
            folder = value
        elif tag == "positions":
            name, _, encoded = value.rpartition(" ")  # base64 has no space; a folder's name may
            try:
                files[name] = base64.b64decode(encoded, validate=True).decode("utf-8", "surrogateescape")
            except ValueError:
                raise PositionsError(f"{name}: not read whole from the host") from None
        elif tag == "container":
            containers.append(Container.from_inspect(value))
    return OldShipper(folder, files, containers)


def positions_archive(files: dict[str, str]) -> str:
    """``files`` (path relative to the state folder -> text) as ``shipper_cutover.sh write`` reads them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            archive.addfile(info, io.BytesIO(data))
    return base64.encodebytes(gzip.compress(buffer.getvalue(), mtime=0)).decode("ascii")


def cut_over_from(stacks, containers: dict[tuple[str, str], str], kind: str) -> tuple[str, str] | None:
    """(compose project, old kind) when the host still has the other shipper's container in the stack
    that runs shipper ``kind`` (``stacks``: the manifest's; ``containers``: the state read's), else None.
    Once the cut-over is done, compose removes the old container: a later run finds none."""
    for stack in stacks:
        if any(service.name == kind for service in stack.services):
            other = next(k for k in KINDS if k != kind)
            return (stack.name, other) if (stack.name, other) in containers else None
    return None
