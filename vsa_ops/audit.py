"""The audit trail: one record per host and action that vsa-ops takes on a host, appended on that host to
``/var/log/vsa/audit.jsonl`` (the source of truth, shipped by Promtail's ``vsa-audit`` job) and mirrored
into the SQLite database ``/var/lib/vsa/audit.db``.

Why it is built this way (research/reliability.md, 7.3):

- Tamper evidence: each record carries ``seq`` (1, 2, ...), ``prev_hash`` (the previous record's ``hash``;
  64 zeros for the first) and ``hash`` = sha256 of the canonical JSON of the record without ``hash``. The
  line written is the canonical JSON of the whole record, so a verifier can tell an edited line, a missing
  one (seq gap), a cut-off last line and lines out of order, and names the first broken ``seq``.
- Hashing happens here, on the controller, never in shell: the host only stores bytes. An append is two
  remote commands: read the last line, then, under ``flock``, compare-and-append (refuse if the last line
  changed meanwhile; the caller rebuilds on the new last line and retries) with one ``write`` on an
  ``O_APPEND`` descriptor, ``fsync``, and an import of the new lines into SQLite by the ``sqlite3`` CLI,
  which parses them itself, so both stores hold the same bytes.
- SQLite runs in WAL mode with ``synchronous=FULL`` (a commit survives power loss) and triggers that refuse
  UPDATE and DELETE (against bugs, not attackers). Hosts without ``sqlite3`` still get the JSONL line; the
  next append on a host that has it imports every line the database lacks.
- No secret ever reaches a record: callers pass summaries, and ``append`` refuses any record whose text
  contains one of the secret values it is given.
"""

from __future__ import annotations

import base64
import datetime as dt
import getpass
import gzip
import hashlib
import json
import os
import random
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from .errors import VsaError
from .pyinfra_glue.connections import RunCommand, connected

GENESIS = "0" * 64
RESULTS = ("ok", "failed", "rolled_back")
# Fields the caller's entry provides, then those append adds. Promtail's vsa-audit job extracts the labels
# actor, action, result and vps_id from these names.
FIELDS = ("ts", "actor", "action", "target", "result", "vps_id", "duration", "changes", "error",
          "seq", "prev_hash", "hash")
DEFAULT_JSONL = "/var/log/vsa/audit.jsonl"
DEFAULT_DATABASE = "/var/lib/vsa/audit.db"
LOCK_NAME = "audit.lock"
# A record stays well below the size of one shell argument (128 KiB on Linux): the append command
# carries the lines. Longer `changes` lists are shortened to fit.
MAX_LINE = 16 * 1024
MAX_BATCH = 64 * 1024
# Compare-and-append attempts when other writers append between our read and our write.
ATTEMPTS = 12
CONFLICT_EXIT = 75
# Secret values shorter than this are not searched for: they would match ordinary text everywhere.
MIN_SECRET = 4


class AuditError(VsaError):
    """A record that must not be written (bad field, secret inside) or an unusable audit path."""


class Entry(NamedTuple):
    """What a command did on one host: the caller's part of a record (plain tuples work too)."""

    vps_id: str  # the host's name in the inventory
    action: str  # deploy, add-domain, remove-domain, drift-repair, ...
    target: str  # what the action was about: a domain, a stack, "hub"
    result: str  # ok, failed, rolled_back
    duration: float  # seconds
    changes: str | Sequence[str] = ()  # a short text or list of what changed; never secrets
    error: str | None = None


@dataclass
class AppendResult:
    """What ``append`` did on one host: the records written, or why none were; ``warning`` says what was
    written only to the JSONL (SQLite skipped or failed)."""

    records: list[dict] = field(default_factory=list)
    error: str | None = None
    warning: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Problem:
    """A break in a host's audit trail. ``seq`` is the first record concerned (None when unknown),
    ``line`` its line in the JSONL (0 when it is not there), ``kind`` one of: altered, deleted,
    truncated, reordered, disagree (JSONL and SQLite differ), unreadable (host or file)."""

    seq: int | None
    kind: str
    detail: str
    line: int = 0

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "audit trail"
        at = f" (line {self.line})" if self.line else ""
        return f"{where}{at}: {self.kind}: {self.detail}"


@dataclass
class HostAudit:
    """A host's audit trail as read: the JSONL's records, the SQLite rows (None when not checked, with
    the reason in ``sqlite_note``) and the problems found."""

    records: list[dict] = field(default_factory=list)
    sqlite_rows: list[tuple[int, str, str]] | None = None
    sqlite_note: str = ""
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None


# ---------------------------------------------------------------------------------------------
# Records: actor, canonical JSON, hash, building


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
    """sha256 (hex) of the canonical JSON of the record without its ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def now() -> str:
    """UTC, milliseconds, ``Z``: sorts as text and parses with ``datetime.fromisoformat``."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_entry(entry: Entry, who: str, secrets: Iterable[str] = ()) -> Entry:
    """The entry with its fields checked and normalised; AuditError names the field, never a secret."""
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
    entry = entry._replace(duration=round(float(entry.duration), 3), changes=changes, error=error)
    check_secrets({"actor": who, **entry._asdict()}, secrets)
    return entry


def check_secrets(fields: dict[str, Any], secrets: Iterable[str]) -> None:
    """Refuse text that contains a secret value, as is or JSON-escaped (a dumped config, say)."""
    values = {v for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET
              for v in (s, json.dumps(s, ensure_ascii=False)[1:-1], json.dumps(s)[1:-1])}
    if not values:
        return
    for name, value in fields.items():
        texts = [value] if isinstance(value, str) else [str(v) for v in value] if isinstance(value, list) else []
        for text in texts:
            if any(secret in text for secret in values):
                raise AuditError(f"audit: refusing to write a record for {fields.get('vps_id')!r}: "
                                 f"its {name} contains a secret value")


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
        return len(canonical(r).encode("utf-8")) + 100  # + the hash field

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


def chain(entries: Sequence[Entry], who: str, last: tuple[int, str] | None) -> list[dict]:
    """Records for entries, chained after the last record (seq, hash), or from genesis."""
    seq, prev = last or (0, GENESIS)
    records = []
    for entry in entries:
        record = build(entry, who, seq + 1, prev)
        records.append(record)
        seq, prev = record["seq"], record["hash"]
    return records


# ---------------------------------------------------------------------------------------------
# Verification (pure)


def split_lines(text: str) -> list[str]:
    """Lines of a JSONL text with their ``\\n`` (the last one lacks it when the file was cut). Only
    ``\\n`` ends a line: str.splitlines would also split at U+2028 and others, which JSON leaves as is."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def parse_line(line: str) -> dict | None:
    """The record on a line, or None when the line is not one JSON object."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _seq(record: dict | None) -> int | None:
    seq = record.get("seq") if record is not None else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def verify_chain(lines: list[str]) -> list[Problem]:
    """Problems in a JSONL audit trail given as lines WITH their ``\\n`` (``split_lines``), first first.

    Each record must be canonical JSON whose ``hash`` matches its content, carry seq = previous + 1 and
    prev_hash = the hash of the record before it (genesis: seq 1 and 64 zeros). A missing seq is
    "deleted", a last line without its newline "truncated", a seq out of order or repeated "reordered",
    any other mismatch "altered". One damaged record gives one problem, not a cascade.
    """
    parsed = [parse_line(line) for line in lines]
    hashes: dict[int, set] = {}  # seq -> what its first record claims and really hashes to
    positions: dict[int, int] = {}
    for index, record in enumerate(parsed):
        seq = _seq(record)
        if seq is not None and seq not in hashes:
            hashes[seq], positions[seq] = {record.get("hash"), record_hash(record)}, index

    problems: list[Problem] = []
    expected, seen, explained, damaged = 1, set(), set(), set()
    for index, (line, record) in enumerate(zip(lines, parsed)):
        number, seq = index + 1, _seq(record)
        if not line.endswith("\n"):
            problems.append(Problem(expected, "truncated", "the last line is incomplete (no newline at its end)",
                                    number))
            break
        if seq is None:
            why = "the line is not a JSON record" if record is None else "the record has no integer seq"
            problems.append(Problem(expected, "altered", why, number))
            damaged.add(expected)
            expected += 1
            continue
        if record.get("hash") != record_hash(record) or canonical(record) + "\n" != line:
            why = ("its hash does not match its content" if record.get("hash") != record_hash(record)
                   else "the line is not canonical JSON")
            claims = f" (it claims seq {seq})" if seq != expected else ""
            problems.append(Problem(expected, "altered", why + claims, number))
            seen.add(seq)
            damaged.update({seq, expected})
            expected += 1
            continue
        if seq in seen:
            if seq not in explained:
                problems.append(Problem(seq, "reordered", f"seq {seq} appears again (first on line "
                                                          f"{positions[seq] + 1})", number))
            continue
        seen.add(seq)
        if seq > expected and positions.get(expected, -1) > index:
            problems.append(Problem(expected, "reordered", f"seq {seq} comes before seq {expected}", number))
            explained.add(expected)
        elif seq > expected:
            missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected} to {seq - 1}"
            problems.append(Problem(expected, "deleted", f"{missing} missing (gap before seq {seq})", number))
        elif seq < expected:
            if seq not in explained:
                problems.append(Problem(seq, "reordered", f"seq {seq} comes after seq {expected - 1}", number))
        else:
            # The record after a damaged one may link to anything: that damage is already named.
            linked = {GENESIS} if seq == 1 else None if seq - 1 in damaged else hashes.get(seq - 1)
            if linked is not None and record.get("prev_hash") not in linked:
                previous = "genesis (64 zeros)" if seq == 1 else f"the hash of seq {seq - 1}"
                problems.append(Problem(seq, "altered", f"prev_hash does not match {previous}", number))
        expected = max(expected, seq + 1)
    return problems


def compare_sqlite(lines: list[str], rows: list[tuple[int, str, str]]) -> list[Problem]:
    """Differences between the JSONL lines and the SQLite rows (seq, hash, json text), by seq."""
    by_seq: dict[int, tuple[int, str]] = {}
    for number, line in enumerate(lines, 1):
        record = parse_line(line)
        if record is not None and isinstance(record.get("seq"), int):
            by_seq.setdefault(record["seq"], (number, line.rstrip("\n")))
    problems = []
    row_seqs = set()
    for seq, row_hash, text in rows:
        row_seqs.add(seq)
        if seq not in by_seq:
            problems.append(Problem(seq, "deleted", "in SQLite but not in the JSONL", 0))
            continue
        number, line = by_seq[seq]
        record = parse_line(text) or {}
        if text != line or row_hash != record.get("hash") or record.get("seq") != seq:
            problems.append(Problem(seq, "disagree", "the SQLite row differs from the JSONL line", number))
    # A database that was created after the first records, or missed the last appends, lacks seqs.
    missing = sorted(set(by_seq) - row_seqs)
    if missing:
        first = missing[0]
        span = f"seq {first}" if len(missing) == 1 else f"{len(missing)} records from seq {first}"
        problems.append(Problem(first, "disagree", f"{span} in the JSONL but not in SQLite", by_seq[first][0]))
    return sorted(problems, key=lambda p: (p.seq is None, p.seq or 0))


def parse_rows(text: str) -> list[tuple[int, str, str]]:
    """Rows from ``sqlite3 -ascii`` output: fields split by 0x1F, rows by 0x1E (JSON escapes both)."""
    rows = []
    for raw in text.split("\x1e"):
        if not raw:
            continue
        seq, row_hash, body = (raw.split("\x1f", 2) + ["", ""])[:3]
        try:
            rows.append((int(seq), row_hash, body))
        except ValueError:
            rows.append((-1, row_hash, body))
    return rows


# ---------------------------------------------------------------------------------------------
# Remote scripts (POSIX sh; coreutils, util-linux flock, gzip; sqlite3 when present)

_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")


@dataclass(frozen=True)
class Paths:
    jsonl: str = DEFAULT_JSONL
    database: str = DEFAULT_DATABASE

    def __post_init__(self):
        for path in (self.jsonl, self.database):
            if not _SAFE_PATH.match(path) or ".." in path.split("/"):
                raise AuditError(f"audit: unusable path {path!r} (absolute, letters, digits, . _ - / only)")

    @property
    def lock(self) -> str:
        return str(PurePosixPath(self.jsonl).with_name(LOCK_NAME))


def host_paths(host) -> Paths:
    """The host's audit paths from its configuration (``vsa.audit``), else the design's."""
    from .inventory import host_config

    audit = host_config(host).audit
    return Paths(audit.jsonl, audit.database)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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


def append_script(paths: Paths, expected_last: bytes, lines: list[str], last_seq: int) -> str:
    """Under an exclusive flock: if the JSONL's last line is still ``expected_last`` (sha256 compared),
    append ``lines`` (ending with seq ``last_seq``) in ONE write on an O_APPEND descriptor (dd), fsync it,
    then import them into SQLite. Prints ``appended`` and ``sqlite ok|missing|failed <why>``; when the
    last line changed meanwhile prints ``conflict <base64 of the new last line>`` and exits 75."""
    q = shlex.quote
    data = "".join(lines)
    want = hashlib.sha256(expected_last).hexdigest() if expected_last else "empty"
    jsonl, database = PurePosixPath(paths.jsonl), PurePosixPath(paths.database)
    return f"""set -u
umask 027
f={q(paths.jsonl)}
[ -d {q(str(jsonl.parent))} ] || mkdir -p -m 0755 {q(str(jsonl.parent))} || exit 70
exec 9>>{q(paths.lock)} || exit 70
flock -w 60 9 || {{ echo "error: timed out waiting for {paths.lock}"; exit 71; }}
if [ -s "$f" ]; then have=$(tail -n 1 "$f" | sha256sum | cut -c1-64); else have=empty; fi
if [ "$have" != {q(want)} ]; then
  if [ -s "$f" ]; then echo "conflict $(tail -n 1 "$f" | base64 -w0)"; else echo conflict; fi
  exit {CONFLICT_EXIT}
fi
new=0; [ -e "$f" ] || new=1
printf '%s' {q(data)} | dd of="$f" oflag=append conv=notrunc,fsync bs=1M iflag=fullblock status=none \\
  || {{ echo "error: writing $f failed"; exit 72; }}
[ "$new" = 0 ] || sync {q(str(jsonl.parent))} 2>/dev/null || true
echo appended
if command -v sqlite3 >/dev/null 2>&1; then
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


def _fields(stdout: str) -> dict[str, str]:
    """``word rest`` lines of a script's output by word (the last of each word wins)."""
    out = {}
    for line in stdout.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word:
            out[word] = rest
    return out


# ---------------------------------------------------------------------------------------------
# Hosts


def _last(head_line: bytes, host: str) -> tuple[int, str] | None:
    """(seq, hash) of the JSONL's last line; None for an empty log. A damaged last line stops appends:
    chaining onto it would hide the damage."""
    if not head_line:
        return None
    record = parse_line(head_line.decode("utf-8", errors="replace"))
    if not head_line.endswith(b"\n") or record is None or not isinstance(record.get("seq"), int) \
            or not isinstance(record.get("hash"), str):
        raise AuditError(f"{host}: the audit log ends with a damaged line; not appending "
                         f"(see `vsa-ops audit verify`)")
    return record["seq"], record["hash"]


def _batches(entries: list[Entry]) -> list[list[Entry]]:
    """Entries in groups whose lines fit in one append command."""
    batches, size = [[]], 0
    for entry in entries:
        if batches[-1] and size + MAX_LINE > MAX_BATCH:
            batches.append([])
            size = 0
        batches[-1].append(entry)
        size += MAX_LINE
    return batches


def _append_host(run: RunCommand, paths: Paths, name: str, entries: list[Entry], who: str,
                 head: bytes | None = None) -> AppendResult:
    """``head``: the log's last line as read moments ago (by the deploy's state read); the append
    still checks it under the lock, and a stale one costs a retry, never a broken chain."""
    result = AppendResult()
    if head is None:
        ok, stdout = run(head_script(paths))
        fields = _fields(stdout)
        if not ok or "head" not in fields:
            return AppendResult(error=f"could not read {paths.jsonl}: {stdout.strip()[:300]}")
        head = base64.b64decode(fields["head"] or b"")
    warnings = set()
    for batch in _batches(entries):
        for attempt in range(ATTEMPTS):
            try:
                last = _last(head, name)
            except AuditError as error:
                result.error = str(error)
                return result
            records = chain(batch, who, last)
            lines = [canonical(r) + "\n" for r in records]
            ok, stdout = run(append_script(paths, head, lines, records[-1]["seq"]))
            fields = _fields(stdout)
            if "conflict" in fields:
                head = base64.b64decode(fields["conflict"] or b"")
                time.sleep(random.uniform(0.02, 0.1 * (attempt + 1)))
                continue
            if not ok or "appended" not in fields:
                result.error = f"appending to {paths.jsonl} failed: {stdout.strip()[:300]}"
                return result
            result.records += records
            head = lines[-1].encode("utf-8")
            sqlite = fields.get("sqlite", "")
            if sqlite == "missing":
                warnings.add(f"SQLite skipped: sqlite3 is not installed (written to {paths.jsonl} only)")
            elif sqlite != "ok":
                warnings.add(f"SQLite {sqlite or 'not reported'} (written to {paths.jsonl} only)")
            break
        else:
            result.error = f"gave up after {ATTEMPTS} attempts: other writers kept appending"
            return result
    result.warning = "; ".join(sorted(warnings)) or None
    return result


def append(inventory_file: Path | None, root: Path, entries: Iterable[Entry | tuple], secrets: Iterable[str] = (),
           who: str | None = None, sessions: dict | None = None,
           heads: dict[str, bytes | None] | None = None) -> dict[str, AppendResult]:
    """Append one record per entry on its host (``entry.vps_id``), in order. Every entry is checked
    first (AuditError: bad field or secret inside; nothing is written then). Hosts that cannot be
    reached or written get an AppendResult with ``error``: an audit failure never stops the caller.
    ``sessions``: connections already open (``remote.Sessions``), else the inventory's hosts are connected;
    ``heads``: each log's last line if just read (see ``_append_host``)."""
    who = who or actor(root)
    secrets = list(secrets)
    checked = [check_entry(e, who, secrets) for e in entries]
    by_host: dict[str, list[Entry]] = {}
    for entry in checked:
        by_host.setdefault(entry.vps_id, []).append(entry)
    if not by_host:
        return {}
    results: dict[str, AppendResult] = {}
    try:
        opened = nullcontext(sessions) if sessions is not None else connected(inventory_file, root, by_host)
        with opened as sessions:
            for name, host_entries in by_host.items():
                session = sessions.get(name, "not connected")
                if isinstance(session, str):
                    results[name] = AppendResult(error=session)
                    continue
                host, run = session
                try:
                    results[name] = _append_host(run, host_paths(host), name, host_entries, who,
                                                 (heads or {}).get(name))
                except Exception as error:  # an audit failure is reported, never raised into a deploy
                    results[name] = AppendResult(error=f"{type(error).__name__}: {error}")
    except Exception as error:  # the inventory or pyinfra itself: every host not done yet gets the reason
        for name in by_host:
            results.setdefault(name, AppendResult(error=f"{type(error).__name__}: {error}"))
    return results


def _unpack(value: str) -> bytes:
    return gzip.decompress(base64.b64decode(value))


def inspect(inventory_file: Path, root: Path, host: str | None = None) -> dict[str, HostAudit]:
    """Each host's audit trail (JSONL and SQLite) in one remote command per host, and its problems."""
    from .inventory import select_hosts
    from .pyinfra_glue.inventory_files import load_inventory

    names = [h.name for h in select_hosts(load_inventory(inventory_file, root), host)]
    audits: dict[str, HostAudit] = {}
    with connected(inventory_file, root, names) as sessions:
        for name in names:
            session = sessions[name]
            if isinstance(session, str):
                audits[name] = HostAudit(error=session, problems=[Problem(None, "unreadable", session)])
                continue
            remote, run = session
            ok, stdout = run(read_script(host_paths(remote)))
            audits[name] = host_audit(ok, stdout)
    return audits


def host_audit(ok: bool, stdout: str) -> HostAudit:
    """Parse read_script's output and check it: the chain, then SQLite against the JSONL."""
    fields = _fields(stdout)
    if not ok or "jsonl" not in fields:
        error = f"could not read the audit trail: {stdout.strip()[:300]}"
        return HostAudit(error=error, problems=[Problem(None, "unreadable", error)])
    audit = HostAudit()
    text = "" if fields["jsonl"] == "-" else _unpack(fields["jsonl"]).decode("utf-8", errors="replace")
    lines = split_lines(text)
    audit.records = [r for r in map(parse_line, lines) if r is not None]
    audit.problems = verify_chain(lines)
    sqlite = fields.get("sqlite", "missing")
    if sqlite == "missing":
        audit.sqlite_note = "SQLite not checked: sqlite3 is not installed"
    elif sqlite == "nodb":
        audit.sqlite_note = "SQLite not checked: no database yet"
        if lines:
            audit.sqlite_note += " (the records were written before sqlite3 was installed)"
    elif sqlite.startswith("failed"):
        audit.problems.append(Problem(None, "unreadable", f"SQLite: {sqlite.removeprefix('failed').strip()}"))
    else:
        audit.sqlite_rows = parse_rows(_unpack(sqlite).decode("utf-8", errors="replace"))
        audit.problems += compare_sqlite(lines, audit.sqlite_rows)
    # The first broken record first, whichever check found it (a stable sort keeps the chain's first).
    audit.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return audit


def read(inventory_file: Path, root: Path, host: str | None = None) -> dict[str, list[dict] | str]:
    """Records by host, from the JSONL; a text instead of a list says why a host could not be read."""
    return {name: a.error if a.error else a.records for name, a in inspect(inventory_file, root, host).items()}


def verify(inventory_file: Path, root: Path, host: str | None = None) -> dict[str, list[Problem]]:
    """Problems by host (an empty list: intact). An unreachable host is an ``unreadable`` problem."""
    return {name: a.problems for name, a in inspect(inventory_file, root, host).items()}


# ---------------------------------------------------------------------------------------------
# Filters for the listing

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
