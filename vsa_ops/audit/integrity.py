"""What a verifier tells from a host's JSONL lines (and its SQLite rows): the first broken record and
how it broke. Pure: the lines are read elsewhere."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .records import GENESIS, canonical, record_hash


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
