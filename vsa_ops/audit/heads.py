"""What this controller last wrote to or verified in each host's audit trail: the seq and hash of that
record, and whether it was signed. Kept on the controller (``$XDG_STATE_HOME/vsa-ops/audit-heads.json``),
out of the host's reach: records cut from the end of both files, or a trail re-chained from an older
record, no longer reach the head the controller remembers."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .records import AuditError

FILE_NAME = "audit-heads.json"


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    signed: bool


def state_file() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vsa-ops" / FILE_NAME


def host_key(vps_id: str, address: str, port: int | str | None = None) -> str:
    """Heads are kept by host address and vps_id: two projects may both name a host ``hub1``."""
    return f"{vps_id}@{address}" + (f":{port}" if port else "")


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise AuditError(f"audit: cannot read {path}: {error}") from None
    return data if isinstance(data, dict) else {}


def load(key: str) -> Head | None:
    entry = _read(state_file()).get(key)
    if not isinstance(entry, dict):
        return None
    try:
        return Head(int(entry["seq"]), str(entry["hash"]), bool(entry.get("signed")))
    except (KeyError, TypeError, ValueError):
        return None


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(path.with_name(FILE_NAME + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def advance(key: str, head: Head) -> None:
    """Remember ``head`` for ``key`` unless a later one is already remembered (heads never go back)."""
    path = state_file()
    with _locked(path):
        data = _read(path)
        current = data.get(key)
        if isinstance(current, dict) and isinstance(current.get("seq"), int) and current["seq"] >= head.seq:
            return
        data[key] = asdict(head)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".audit-heads.")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)


def forget(key: str) -> bool:
    """Drop the head of ``key`` (a host rebuilt on purpose); whether there was one."""
    path = state_file()
    with _locked(path):
        data = _read(path)
        if data.pop(key, None) is None:
            return False
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".audit-heads.")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.replace(temporary, path)
        return True
