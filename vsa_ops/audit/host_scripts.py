"""The shell scripts an append and a read run on a host (POSIX sh; coreutils, util-linux flock, gzip;
sqlite3 when present), and the parsing of what they print. Hashing never happens here: the host only
stores the bytes the controller built."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from .records import AuditError

LOCK_NAME = "audit.lock"
# The append script's exit status when the JSONL's last line changed since it was read.
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


_SCHEMA = """\
PRAGMA journal_mode=WAL;
PRAGMA synchronous=FULL;
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, actor TEXT, action TEXT, target TEXT, result TEXT,
  vps_id TEXT, duration REAL, changes TEXT, error TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
  json TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
"""


def _import_sql(paths: Paths, last_seq: int, count: int) -> str:
    """Shell that pipes SQL into the sqlite3 CLI: the schema, then every one of the JSONL's last lines
    that the database lacks (seq above its highest), parsed by SQLite itself from the very bytes of the
    JSONL. How many lines to read is worked out on the host, from the database's highest seq: the first
    import on a host that got sqlite3 late takes in all earlier records."""
    q = shlex.quote
    columns = ["ts", "actor", "action", "target", "result", "vps_id", "duration", "changes", "error", "prev_hash",
               "hash"]
    extracts = ", ".join(f"json_extract(j, '$.{c}')" for c in columns)
    insert = (f"INSERT INTO audit (seq, {', '.join(columns)}, json)\n"
              f"  SELECT json_extract(j, '$.seq'), {extracts}, j FROM incoming\n"
              "  WHERE json_valid(j) AND json_extract(j, '$.seq') > (SELECT coalesce(max(seq), 0) FROM audit)\n"
              "  ORDER BY json_extract(j, '$.seq');\n")
    return f"""db={q(paths.database)}
m=$(sqlite3 "$db" 'SELECT coalesce(max(seq), 0) FROM audit' 2>/dev/null) || m=0
case "$m" in ''|*[!0-9]*) m=0 ;; esac
n=$(({int(last_seq)} - m)); [ "$n" -ge {int(count)} ] || n={int(count)}
if err=$( {{ cat <<'VSA_AUDIT_SQL_END'
.bail on
.timeout 15000
{_SCHEMA}CREATE TEMP TABLE incoming(j TEXT);
.mode ascii
.separator "\\037" "\\n"
VSA_AUDIT_SQL_END
printf ".import '|tail -n %s %s' incoming\\n" "$n" "$f"
cat <<'VSA_AUDIT_SQL_END'
{insert}VSA_AUDIT_SQL_END
}} | sqlite3 "$db" 2>&1 >/dev/null ); then
  echo "sqlite ok"
else
  echo "sqlite failed $(printf '%s' "$err" | tr '\\n' ' ' | cut -c1-300)"
fi
"""


def append_script(paths: Paths, expected_last: bytes, lines: list[str], last_seq: int,
                  consume: Sequence[str] = ()) -> str:
    """Under an exclusive flock: if the JSONL's last line is still ``expected_last`` (sha256 compared),
    append ``lines`` (ending with seq ``last_seq``) in ONE write on an O_APPEND descriptor (dd), fsync it,
    then import them into SQLite. Prints ``appended`` and ``sqlite ok|missing|failed <why>``; when the
    last line changed meanwhile prints ``conflict <base64 of the new last line>`` and exits 75.
    ``consume``: files the lines were made from (a backup spool's entries), deleted once appended;
    when one is gone already (another command chained it) prints ``gone`` and exits 75, appending nothing."""
    q = shlex.quote
    files = " ".join(q(path) for path in consume)
    gone = f"for c in {files}; do [ -e \"$c\" ] || {{ echo gone; exit {CONFLICT_EXIT}; }}; done\n" if consume else ""
    consumed = f"rm -f -- {files}\n" if consume else ""
    data = "".join(lines)
    want = hashlib.sha256(expected_last).hexdigest() if expected_last else "empty"
    jsonl, database = PurePosixPath(paths.jsonl), PurePosixPath(paths.database)
    return f"""set -u
umask 027
f={q(paths.jsonl)}
[ -d {q(str(jsonl.parent))} ] || mkdir -p -m 0755 {q(str(jsonl.parent))} || exit 70
exec 9>>{q(paths.lock)} || exit 70
flock -w 60 9 || {{ echo "error: timed out waiting for {paths.lock}"; exit 71; }}
{gone}if [ -s "$f" ]; then have=$(tail -n 1 "$f" | sha256sum | cut -c1-64); else have=empty; fi
if [ "$have" != {q(want)} ]; then
  if [ -s "$f" ]; then echo "conflict $(tail -n 1 "$f" | base64 -w0)"; else echo conflict; fi
  exit {CONFLICT_EXIT}
fi
new=0; [ -e "$f" ] || new=1
printf '%s' {q(data)} | dd of="$f" oflag=append conv=notrunc,fsync bs=1M iflag=fullblock status=none \\
  || {{ echo "error: writing $f failed"; exit 72; }}
[ "$new" = 0 ] || sync {q(str(jsonl.parent))} 2>/dev/null || true
echo appended
{consumed}if command -v sqlite3 >/dev/null 2>&1; then
  [ -d {q(str(database.parent))} ] || mkdir -p -m 0755 {q(str(database.parent))}
{_import_sql(paths, last_seq, len(lines))}else
  echo "sqlite missing"
fi
"""


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
