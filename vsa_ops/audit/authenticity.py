"""What the hash chain cannot tell: whether the records were written by a trusted controller (their
Ed25519 signatures) and whether the trail still reaches what this controller last wrote or verified
(its head). Root on a host can rewrite a record and re-chain every later one, or cut records from the
end of both files; neither survives these checks. Pure: the records, keys and head come in."""

from __future__ import annotations

from .heads import Head
from .integrity import Problem, parse_line
from .keys import signature_valid


def check_signatures(lines: list[str], keys) -> tuple[list[Problem], str]:
    """Problems with the records' signatures, and a note on the unsigned records that precede the first
    signed one (written before signing existed: reported once, not as tampering). An unsigned record
    after a signed one had its signature removed."""
    problems, unsigned, signed_seen = [], [], False
    for number, line in enumerate(lines, 1):
        record = parse_line(line)
        seq = record.get("seq") if record else None
        if not isinstance(seq, int):
            continue  # the chain check names a line that is not a record
        if "sig" not in record:
            if signed_seen:
                problems.append(Problem(seq, "altered", "unsigned record after signed ones (its signature "
                                                        "was removed)", number))
            else:
                unsigned.append(seq)
            continue
        signed_seen = True
        if not signature_valid(record, keys):
            problems.append(Problem(seq, "altered", "its signature does not verify with any trusted key (changed "
                                                    "after signing, or signed by a key not in audit-keys.pub)",
                                    number))
    note = ""
    if unsigned:
        span = f"seq {unsigned[0]}" if len(unsigned) == 1 else f"seq {unsigned[0]} to {unsigned[-1]}"
        note = f"{len(unsigned)} unsigned records ({span}), written before records were signed"
    return problems, note


def check_head(lines: list[str], head: Head | None) -> list[Problem]:
    """Whether the trail still holds, unchanged, the record this controller last wrote or verified."""
    if head is None:
        return []
    found = None
    last = 0
    for number, line in enumerate(lines, 1):
        record = parse_line(line)
        seq = record.get("seq") if record else None
        if isinstance(seq, int):
            last = max(last, seq)
            if seq == head.seq and found is None:
                found = (number, record)
    if found is None and last < head.seq:
        return [Problem(last + 1, "deleted", f"the trail ends at seq {last}, but this controller wrote or "
                                             f"verified up to seq {head.seq}: records were cut from its end")]
    if found is None:
        return [Problem(head.seq, "deleted", "this controller wrote or verified this record; it is gone")]
    number, record = found
    if record.get("hash") != head.hash:
        return [Problem(head.seq, "altered", "it differs from the record this controller wrote or verified "
                                             "(the chain up to it was rewritten)", number)]
    if head.signed and "sig" not in record:
        return [Problem(head.seq, "altered", "this controller saw it signed; its signature was removed", number)]
    return []


def last_head(lines: list[str]) -> Head | None:
    """The head to remember after an intact verify: the trail's last record."""
    for line in reversed(lines):
        record = parse_line(line)
        if record and isinstance(record.get("seq"), int) and isinstance(record.get("hash"), str):
            return Head(record["seq"], record["hash"], "sig" in record)
    return None
