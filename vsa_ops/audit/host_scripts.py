"""The shell an append and a read run on a host (POSIX sh; coreutils, util-linux flock, gzip; sqlite3
when present; the append is the host program ``host_programs/audit_append.sh``), and the parsing of
what they print. Hashing never happens here: the host only stores the bytes the controller built."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..host_programs import program_command
from .records import AuditError

LOCK_NAME = "audit.lock"
# The append program's exit status when the JSONL's last line changed since it was read.
CONFLICT_EXIT = 75

_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")


@dataclass(frozen=True)
class Paths:
    """A host's audit files, from its configuration (``vsa.audit``); see ``trail.host_paths``."""

    jsonl: str
    database: str

    def __post_init__(self):
        for path in (self.jsonl, self.database):
            if not _SAFE_PATH.match(path) or ".." in path.split("/"):
                raise AuditError(f"audit: unusable path {path!r} (absolute, letters, digits, . _ - / only)")

    @property
    def lock(self) -> str:
        return str(PurePosixPath(self.jsonl).with_name(LOCK_NAME))


def head_script(paths: Paths) -> str:
    """Prints ``head <base64 of the JSONL's last line, newline included>`` (empty when no file)."""
    f = shlex.quote(paths.jsonl)
    return f'if [ -s {f} ]; then echo "head $(tail -n 1 {f} | base64 -w0)"; else echo head; fi'


# Ends the records in the append command's here-document: every record line starts with "{".
RECORDS_END = "VSA_AUDIT_RECORDS_END"


def append_script(paths: Paths, expected_last: bytes, lines: list[str], last_seq: int,
                  consume: Sequence[str] = ()) -> str:
    """The host program ``audit_append.sh`` with ``lines`` (ending with seq ``last_seq``) on its stdin:
    under an exclusive flock, if the JSONL's last line is still ``expected_last`` (sha256 compared),
    it appends them in one write, fsyncs, and imports them into SQLite. It prints ``appended`` and
    ``sqlite ok|missing|failed <why>``; when the last line changed meanwhile, ``conflict <base64 of
    the new last line>`` and exit 75.
    ``consume``: files the lines were made from (a backup spool's entries), deleted once appended;
    when one is gone already (another command chained it) prints ``gone`` and exits 75, appending nothing."""
    for line in lines:
        if not (line.startswith("{") and line.endswith("\n") and "\n" not in line[:-1]):
            raise AuditError("audit: a record must be one JSON line")
    want = hashlib.sha256(expected_last).hexdigest() if expected_last else "empty"
    program = program_command("audit_append", "/", paths.jsonl, paths.database, paths.lock, want, int(last_seq),
                              *consume)
    return f"{{\n{program}\n}} <<'{RECORDS_END}'\n{''.join(lines)}{RECORDS_END}\n"


def read_script(paths: Paths) -> str:
    """Under a shared flock (no half-done append is seen): ``jsonl <base64 gzip>`` or ``jsonl -`` (no
    file), then ``sqlite <base64 gzip of -ascii rows>`` or ``sqlite missing|nodb|failed <why>``."""
    q = shlex.quote
    return f"""set -u
umask 027
f={q(paths.jsonl)}; db={q(paths.database)}
if [ -e {q(paths.lock)} ]; then exec 9<{q(paths.lock)} && flock -s -w 60 9; fi
if [ -e "$f" ]; then echo "jsonl $(gzip -c "$f" | base64 -w0)"; else echo "jsonl -"; fi
if ! command -v sqlite3 >/dev/null 2>&1; then echo "sqlite missing"
elif [ ! -e "$db" ]; then echo "sqlite nodb"
else
  tmp=$(mktemp)
  if sqlite3 -bail -ascii "$db" 'SELECT seq, hash, json FROM audit ORDER BY seq' >"$tmp" 2>&1; then
    echo "sqlite $(gzip -c "$tmp" | base64 -w0)"
  else
    echo "sqlite failed $(tr '\\n' ' ' <"$tmp" | cut -c1-300)"
  fi
  rm -f "$tmp"
fi
"""


def fields(stdout: str) -> dict[str, str]:
    """``word rest`` lines of a script's output by word (the last of each word wins)."""
    out = {}
    for line in stdout.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word:
            out[word] = rest
    return out


def unpack(value: str) -> bytes:
    """The bytes behind a script's ``base64 of gzip`` field."""
    return gzip.decompress(base64.b64decode(value))
