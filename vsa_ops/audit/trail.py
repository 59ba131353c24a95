"""The audit trail over connections to the hosts: append records (read the last line, then
compare-and-append under a lock), read a host's trail back and check it."""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from ..pyinfra_glue.connections import RunCommand, connected
from . import heads, host_scripts, keys
from .authenticity import check_head, check_signatures, last_head
from .host_scripts import Paths, append_script, head_script, read_script, unpack
from .integrity import Problem, compare_sqlite, parse_line, parse_rows, split_lines, verify_chain
from .records import MAX_LINE, AuditError, Entry, Masker, actor, canonical, chain, check_entry

MAX_BATCH = 64 * 1024
# Compare-and-append attempts when other writers append between our read and our write.
ATTEMPTS = 12
GONE = "the files these records were made from are gone: another command chained them"


@dataclass
class AppendResult:
    """What ``append`` did on one host: the records written, or why none were; ``warning`` says what was
    written only to the JSONL (SQLite skipped or failed) and which fields had a secret value masked."""

    records: list[dict] = field(default_factory=list)
    error: str | None = None
    warning: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class HostAudit:
    """A host's audit trail as read: the JSONL's records, the SQLite rows (None when not checked, with
    the reason in ``sqlite_note``) and the problems found."""

    records: list[dict] = field(default_factory=list)
    sqlite_rows: list[tuple[int, str, str]] | None = None
    sqlite_note: str = ""
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None
    text: str = ""  # the JSONL as read
    unsigned_note: str = ""  # the unsigned records before the first signed one, when there are any


def host_paths(host) -> Paths:
    """The host's audit paths from its configuration (``vsa.audit``), the one place they are set."""
    from ..inventory import host_config

    audit = host_config(host).audit
    return Paths(audit.jsonl, audit.database)


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


def _batches(entries: list) -> list[list]:
    """Entries in groups whose lines fit in one append command."""
    batches, size = [[]], 0
    for entry in entries:
        if batches[-1] and size + MAX_LINE > MAX_BATCH:
            batches.append([])
            size = 0
        batches[-1].append(entry)
        size += MAX_LINE
    return batches


def head_key(host) -> str:
    """Where the controller keeps this pyinfra host's head (``heads.host_key``)."""
    return heads.host_key(host.name, host.data.get("ssh_hostname") or host.name, host.data.get("ssh_port"))


def _append_host(run: RunCommand, paths: Paths, name: str, entries: list[Entry], who: str,
                 head: bytes | None = None, sign=None, key: str | None = None,
                 consume: list[str] | None = None) -> AppendResult:
    """``head``: the log's last line as read moments ago (by the deploy's state read); the append
    still checks it under the lock, and a stale one costs a retry, never a broken chain. ``sign``:
    signs each record (``keys.sign`` with the controller's key); ``key``: where the controller keeps
    this host's head, advanced to the last record written. ``consume``: per entry, the host file it
    was made from, deleted under the lock with its append (``error`` GONE: another command did)."""
    result = AppendResult()
    if head is None:
        ok, stdout = run(head_script(paths))
        fields = host_scripts.fields(stdout)
        if not ok or "head" not in fields:
            return AppendResult(error=f"could not read {paths.jsonl}: {stdout.strip()[:300]}")
        head = base64.b64decode(fields["head"] or b"")
    warnings = set()
    for pairs in _batches(list(zip(entries, consume or [None] * len(entries)))):
        batch, files = [e for e, _ in pairs], [f for _, f in pairs if f]
        for attempt in range(ATTEMPTS):
            try:
                last = _last(head, name)
            except AuditError as error:
                result.error = str(error)
                return result
            records = chain(batch, who, last, sign)
            lines = [canonical(r) + "\n" for r in records]
            ok, stdout = run(append_script(paths, head, lines, records[-1]["seq"], files))
            fields = host_scripts.fields(stdout)
            if "gone" in fields:
                result.error = GONE
                return result
            if "conflict" in fields:
                head = base64.b64decode(fields["conflict"] or b"")
                time.sleep(random.uniform(0.02, 0.1 * (attempt + 1)))
                continue
            if not ok or "appended" not in fields:
                result.error = f"appending to {paths.jsonl} failed: {stdout.strip()[:300]}"
                return result
            result.records += records
            head = lines[-1].encode("utf-8")
            if key is not None:
                heads.advance(key, heads.Head(records[-1]["seq"], records[-1]["hash"], "sig" in records[-1]))
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
    first (AuditError: bad field; nothing is written then). A value of ``secrets`` (the declared
    secrets) inside a record is replaced by MASK and the record written: the host's ``warning`` names
    the field, never the value. Hosts that cannot be reached or written get an AppendResult with
    ``error``: an audit failure never stops the caller.
    ``sessions``: connections already open (``remote.Sessions``), else the inventory's hosts are connected;
    ``heads``: each log's last line if just read (see ``_append_host``).
    Every record is signed with the controller's key (``keys``), made on first use."""
    masker = Masker(secrets)
    who = who or actor(root)
    masked_who = masker.text(who)
    by_host: dict[str, list[Entry]] = {}
    masked: dict[str, list[str]] = {}
    for entry in [check_entry(e, who) for e in entries]:
        entry, names = masker.entry(entry)
        names = (["actor"] if masked_who != who else []) + names
        if names:
            masked.setdefault(entry.vps_id, []).append(f"{' and '.join(names)} of the {entry.action} record")
        by_host.setdefault(entry.vps_id, []).append(entry)
    who = masked_who
    if not by_host:
        return {}
    results: dict[str, AppendResult] = {}
    try:
        signing_key = keys.controller_key()
    except AuditError as error:  # no record without its signature: the hosts are told why
        return {name: AppendResult(error=str(error)) for name in by_host}

    def sign(record: dict) -> dict:
        return keys.sign(record, signing_key)

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
                                                 (heads or {}).get(name), sign, head_key(host))
                except Exception as error:  # an audit failure is reported, never raised into a deploy
                    results[name] = AppendResult(error=f"{type(error).__name__}: {error}")
    except Exception as error:  # the inventory or pyinfra itself: every host not done yet gets the reason
        for name in by_host:
            results.setdefault(name, AppendResult(error=f"{type(error).__name__}: {error}"))
    for name, notes in masked.items():
        note = f"a secret value was masked in the {', '.join(notes)}"
        result = results[name]
        result.warning = f"{result.warning}; {note}" if result.warning else note
    return results


def inspect(inventory_file: Path, root: Path, limit: str | None = None) -> dict[str, HostAudit]:
    """Each host's audit trail (JSONL and SQLite) in one remote command per host, and its problems.
    ``limit``: a host or group (all hosts when None)."""
    from ..inventory import InventoryError, limited
    from ..pyinfra_glue.inventory_files import load_inventory

    names = [h.name for h in limited(load_inventory(inventory_file, root), [limit] if limit else None)]
    if not names:
        raise InventoryError(f"--limit: no host or group {limit!r} in the inventory")
    trusted = keys.trusted_keys(root)
    audits: dict[str, HostAudit] = {}
    with connected(inventory_file, root, names) as sessions:
        for name in names:
            session = sessions[name]
            if isinstance(session, str):
                audits[name] = HostAudit(error=session, problems=[Problem(None, "unreadable", session)])
                continue
            remote, run = session
            ok, stdout = run(read_script(host_paths(remote)))
            key = head_key(remote)
            audits[name] = found = host_audit(ok, stdout, trusted, heads.load(key))
            remembered = last_head(split_lines(found.text))
            if not found.problems and remembered is not None:
                heads.advance(key, remembered)
    return audits


def forget_head(inventory_file: Path, root: Path, name: str) -> bool:
    """Drop what this controller remembers of host ``name``'s trail (a host rebuilt on purpose, its
    trail started anew); whether it remembered anything."""
    from ..inventory import InventoryError
    from ..pyinfra_glue.inventory_files import load_inventory

    found = [h for h in load_inventory(inventory_file, root) if h.name == name]
    if not found:
        raise InventoryError(f"no host {name!r} in the inventory")
    return heads.forget(head_key(found[0]))


def host_audit(ok: bool, stdout: str, trusted: list | None = None, head: heads.Head | None = None) -> HostAudit:
    """Parse read_script's output and check it: the chain, the signatures (with ``trusted`` keys; not
    checked when None), the controller's ``head``, then SQLite against the JSONL."""
    fields = host_scripts.fields(stdout)
    if not ok or "jsonl" not in fields:
        error = f"could not read the audit trail: {stdout.strip()[:300]}"
        return HostAudit(error=error, problems=[Problem(None, "unreadable", error)])
    audit = HostAudit()
    text = "" if fields["jsonl"] == "-" else unpack(fields["jsonl"]).decode("utf-8", errors="replace")
    lines = split_lines(text)
    audit.records = [r for r in map(parse_line, lines) if r is not None]
    audit.text = text
    audit.problems = verify_chain(lines)
    if trusted is not None:
        problems, audit.unsigned_note = check_signatures(lines, trusted)
        audit.problems += problems
    sqlite = fields.get("sqlite", "missing")
    if sqlite == "missing":
        audit.sqlite_note = "SQLite not checked: sqlite3 is not installed"
    elif sqlite == "nodb" and lines:
        # The database goes with the first append on a host with sqlite3, which also imports every
        # earlier record: records without it mean it was deleted (or sqlite3 came after them; the
        # next append then rebuilds it).
        audit.problems.append(Problem(audit.records[0].get("seq") if audit.records else None, "deleted",
                                      f"the SQLite database is missing while the JSONL holds {len(lines)} records"))
    elif sqlite == "nodb":
        audit.sqlite_note = "SQLite not checked: no database yet"
    elif sqlite.startswith("failed"):
        audit.problems.append(Problem(None, "unreadable", f"SQLite: {sqlite.removeprefix('failed').strip()}"))
    else:
        audit.sqlite_rows = parse_rows(unpack(sqlite).decode("utf-8", errors="replace"))
        audit.problems += compare_sqlite(lines, audit.sqlite_rows)
    # What the controller remembers comes last: for the same record, what the host's files show is
    # the more telling cause.
    audit.problems += check_head(lines, head)
    # The first broken record first, whichever check found it (a stable sort keeps the chain's first).
    audit.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return audit


def read(inventory_file: Path, root: Path, limit: str | None = None) -> dict[str, list[dict] | str]:
    """Records by host, from the JSONL; a text instead of a list says why a host could not be read."""
    return {name: a.error if a.error else a.records for name, a in inspect(inventory_file, root, limit).items()}


def verify(inventory_file: Path, root: Path, limit: str | None = None) -> dict[str, list[Problem]]:
    """Problems by host (an empty list: intact). An unreachable host is an ``unreadable`` problem."""
    return {name: a.problems for name, a in inspect(inventory_file, root, limit).items()}


