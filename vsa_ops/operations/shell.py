"""Building shell scripts from argument lists: every value is quoted, nothing is interpolated raw."""

from __future__ import annotations

import shlex
from collections.abc import Iterable


def argv(*parts: str | int) -> str:
    return " ".join(shlex.quote(str(part)) for part in parts)


def script(lines: Iterable[str]) -> str:
    """A POSIX sh script that stops at the first failing line."""
    return "set -e\n" + "\n".join(lines)
