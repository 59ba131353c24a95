"""Shared building blocks for the configuration models: strict models and checked scalar types."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


class Model(BaseModel):
    """A configuration table: unknown keys are errors, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


def _absolute_path(value: str) -> str:
    if not value.startswith("/") or "//" in value or "/../" in f"{value}/" or any(c in value for c in "\n\0 "):
        raise ValueError("must be an absolute path without spaces or '..'")
    return value.rstrip("/") or "/"


def _mode(value: str) -> str:
    # A leading digit other than 0 is setuid/setgid/sticky (2750: new files take the folder's group).
    if not re.fullmatch(r"[0-7]?[0-7]{3}", value):
        raise ValueError("must be an octal mode such as 0755")
    return value.rjust(4, "0")


_SIZE_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_size(value: str) -> int:
    """Bytes in a size written the way Prometheus writes it ("1GB" is 1024**3)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?B?)", value.strip().upper())
    if not match:
        raise ValueError(f"{value!r} is not a size such as 500MB or 1GB")
    number, unit = match.groups()
    if unit and not unit.endswith("B"):
        unit += "B"
    return int(float(number) * _SIZE_UNITS[unit])


def parse_duration(value: str) -> int:
    """Seconds in a Prometheus-style duration ("15d", "2h", "10m", "1h30m")."""
    parts = re.findall(r"(\d+)([smhdwy])", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"{value!r} is not a duration such as 15d, 2h or 10m")
    return sum(int(n) * _DURATION_UNITS[u] for n, u in parts)


def _size(value: str) -> str:
    parse_size(value)
    return value


def _duration(value: str) -> str:
    parse_duration(value)
    return value


def matching(pattern: str, message: str) -> type[str]:
    """A string type whose whole value must match ``pattern``; any other value fails with ``message``,
    the field's own wording (what error lines show and tests pin). pydantic's ``pattern=`` would say
    only "String should match pattern ..."."""
    whole = re.compile(pattern)

    def check(value: str) -> str:
        if not whole.fullmatch(value):
            raise ValueError(message)
        return value

    return Annotated[str, AfterValidator(check)]


AbsPath = Annotated[str, AfterValidator(_absolute_path)]
Mode = Annotated[str, AfterValidator(_mode)]
Size = Annotated[str, AfterValidator(_size)]
Duration = Annotated[str, AfterValidator(_duration)]
