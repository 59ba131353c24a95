"""Records: the caller's entry checked, secret values masked, the record built, hashed and chained.
Pure, except ``actor`` (it asks the system and git who acts)."""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import re
import socket
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import VsaError

GENESIS = "0" * 64
RESULTS = ("ok", "failed", "rolled_back")
# Fields the caller's entry provides, then those append adds. Promtail's vsa-audit job extracts the labels
# actor, action, result and vps_id from these names.
FIELDS = ("ts", "actor", "action", "target", "result", "vps_id", "duration", "changes", "error",
          "seq", "prev_hash", "hash", "sig")
# A record stays well below the size of one shell argument (128 KiB on Linux): the append command
# carries the lines. Longer `changes` lists are shortened to fit.
MAX_LINE = 16 * 1024
# Secret values shorter than this are not searched for: they would match ordinary text everywhere.
MIN_SECRET = 4
# What stands in a record where a secret value was.
MASK = "[secret]"
_BCRYPT = re.compile(r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}")


class AuditError(VsaError):
    """A record that must not be written (bad field) or an unusable audit path."""


class Entry(NamedTuple):
    """What a command did on one host: the caller's part of a record (plain tuples work too)."""

    vps_id: str  # the host's name in the inventory
    action: str  # deploy, add-domain, remove-domain, drift-repair, ...
    target: str  # what the action was about: a domain, a stack, "hub"
    result: str  # ok, failed, rolled_back
    duration: float  # seconds
    changes: str | Sequence[str] = ()  # a short text or list of what changed; never secrets
    error: str | None = None
    ts: str | None = None  # when it happened, if not now (a scheduled backup chained later: its own time)


def actor(project_root: Path) -> str:
    """Who acts: ``user@machine``, plus the git identity configured for the project folder, e.g.
    ``alice@laptop (Alice Doe <alice@example.com>)``. Under sudo the invoking user is named."""
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    who = f"{user}@{socket.gethostname()}"
    name, email = _git_config(project_root, "user.name"), _git_config(project_root, "user.email")
    identity = " ".join(part for part in (name, f"<{email}>" if email else "") if part)
    return f"{who} ({identity})" if identity else who


def _git_config(folder: Path, key: str) -> str:
    try:
        result = subprocess.run(["git", "-C", str(folder), "config", "--get", key], capture_output=True,
                                text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def canonical(record: dict) -> str:
    """The one text of a record that is hashed and written: sorted keys, no spaces, UTF-8 kept as is.
    JSON escapes every control character, so the text never holds a newline."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_hash(record: dict) -> str:
    """sha256 (hex) of the canonical JSON of the record without its ``hash`` and ``sig`` (the signature
    covers the hash, so it comes after it; records from before signing hash as they always did)."""
    body = {k: v for k, v in record.items() if k not in ("hash", "sig")}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def now() -> str:
    """UTC, milliseconds, ``Z``: sorts as text and parses with ``datetime.fromisoformat``."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_entry(entry: Entry, who: str) -> Entry:
    """The entry with its fields checked and normalised; AuditError names the field."""
    entry = Entry(*entry)
    for name in ("vps_id", "action", "target"):
        if not isinstance(getattr(entry, name), str) or not getattr(entry, name):
            raise AuditError(f"audit: {name} must be a non-empty text")
    if entry.result not in RESULTS:
        raise AuditError(f"audit: result must be one of {', '.join(RESULTS)}, not {entry.result!r}")
    if isinstance(entry.duration, bool) or not isinstance(entry.duration, (int, float)) or entry.duration < 0:
        raise AuditError("audit: duration must be a number of seconds")
    changes = entry.changes if isinstance(entry.changes, str) else [str(c) for c in entry.changes or ()]
    error = None if entry.error is None else str(entry.error)
    if entry.ts is not None and not _is_time(entry.ts):
        raise AuditError("audit: ts must be a UTC time such as 2026-01-31T12:00:00.000Z")
    return entry._replace(duration=round(float(entry.duration), 3), changes=changes, error=error)


def _is_time(value: object) -> bool:
    if not isinstance(value, str) or not value.endswith("Z"):
        return False
    try:
        dt.datetime.fromisoformat(value.removesuffix("Z") + "+00:00")
    except ValueError:
        return False
    return True


class Masker:
    """Replaces the values of the declared secrets with MASK wherever they appear in a text, as is or
    JSON-escaped (a dumped config, say). Values shorter than MIN_SECRET are not searched for."""

    def __init__(self, secrets: Iterable[str]):
        variants = {v for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET
                    for v in (s, json.dumps(s, ensure_ascii=False)[1:-1], json.dumps(s)[1:-1])}
        # Longest first: a secret that contains another is masked whole.
        self.values = sorted(variants, key=len, reverse=True)

    def text(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, MASK)
        # A bcrypt hash (a basic-auth user's) is a secret too, whoever declared it.
        return _BCRYPT.sub(MASK, text)

    def entry(self, entry: Entry) -> tuple[Entry, list[str]]:
        """The checked entry with secret values masked, and the names of the fields that held one.
        ``vps_id`` is left as is: it is the inventory's host name, which records are routed by."""
        masked, names = {}, []
        for name in ("action", "target", "changes", "error"):
            value = getattr(entry, name)
            if isinstance(value, str):
                new = self.text(value)
            elif isinstance(value, list):
                new = [self.text(item) for item in value]
            else:
                continue
            if new != value:
                masked[name] = new
                names.append(name)
        return entry._replace(**masked), names


def build(entry: Entry, who: str, seq: int, prev_hash: str, ts: str | None = None) -> dict:
    """The complete record for a checked entry, chained after (seq - 1, prev_hash)."""
    record = {"ts": ts or now(), "actor": who, "action": entry.action, "target": entry.target,
              "result": entry.result, "vps_id": entry.vps_id, "duration": entry.duration,
              "changes": entry.changes, "error": entry.error, "seq": seq, "prev_hash": prev_hash}
    record = _fit(record)
    record["hash"] = record_hash(record)
    return record


def _fit(record: dict) -> dict:
    """Shorten ``changes`` (then ``error``) until the line fits in MAX_LINE; the record says so."""
    def size(r):
        return len(canonical(r).encode("utf-8")) + 220  # + the hash and sig fields

    changes = record["changes"]
    if isinstance(changes, list):
        kept = list(changes)
        while kept and size(record | {"changes": kept}) > MAX_LINE:
            kept = kept[: len(kept) // 2]
        if len(kept) < len(changes):
            kept.append(f"... and {len(changes) - len(kept)} more")
        record = record | {"changes": kept}
    for name in ("changes", "error"):
        if isinstance(record[name], str) and size(record) > MAX_LINE:
            room = max(0, len(record[name]) - (size(record) - MAX_LINE) - 20)
            record = record | {name: record[name][:room] + " ... (shortened)"}
    return record


def chain(entries: Sequence[Entry], who: str, last: tuple[int, str] | None,
          sign: Callable[[dict], dict] | None = None) -> list[dict]:
    """Records for entries, chained after the last record (seq, hash), or from genesis; each passed
    through ``sign`` (``keys.sign`` with the controller's key) when given."""
    seq, prev = last or (0, GENESIS)
    records = []
    for entry in entries:
        record = build(entry, who, seq + 1, prev, getattr(entry, "ts", None))
        if sign is not None:
            record = sign(record)
        records.append(record)
        seq, prev = record["seq"], record["hash"]
    return records
