"""Which records a listing shows: ``--since`` (a time or a duration back from now) and ``--action``."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from .records import AuditError

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now_: dt.datetime | None = None) -> dt.datetime:
    """An ISO date or date-time (UTC unless it says otherwise), or a duration back from now: 30m, 2h, 7d."""
    now_ = now_ or dt.datetime.now(dt.timezone.utc)
    match = _DURATION.match(text)
    if match:
        return now_ - dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise AuditError(f"--since: {text!r} is neither an ISO date/time nor a duration like 2h or 7d") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def record_time(record: dict) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(str(record.get("ts", "")))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def select(records: Iterable[dict], since: dt.datetime | None = None, action: str | None = None) -> list[dict]:
    """Records at or after ``since`` and of ``action``, oldest first."""
    chosen = []
    for record in records:
        when = record_time(record)
        if since is not None and (when is None or when < since):
            continue
        if action is not None and record.get("action") != action:
            continue
        chosen.append(record)
    return sorted(chosen, key=lambda r: (str(r.get("ts", "")), str(r.get("vps_id", "")), r.get("seq", 0)))
