"""Scheduled backups in the audit trail. The backup loop on a host cannot sign records (the controller
does, ``audit.keys``), so it writes each run's outcome to a root-only spool on the host
(``staging/spool``, one file per run); the controller chains spooled runs into the signed trail on its
next contact with the host (``deploy``, ``backup``, ``backups``, ``status``): action ``backup``, actor
``schedule@HOST``, the run's own time. The append deletes the spool files it chained under the audit
lock, in the same command: two commands racing chain each run once (the second finds them gone).

What a spool entry can claim is narrow: whoever can write the spool (root on the host) can add a
``backup`` record that says it came from the schedule, with a snapshot id, sizes and an error text of
their choosing; never another action or actor, and never a change to a record already chained.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import shlex
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from ..audit import Masker, keys
from ..audit.host_scripts import fields
from ..audit.records import Entry, check_entry
from ..audit.trail import GONE, _append_host, head_key, host_paths
from ..config.backup import BACKUP
from ..errors import VsaError
from ..host_manifest import host_secrets
from ..inventory import host_config, limited
from ..pyinfra_glue.connections import Sessions, connected
from ..pyinfra_glue.inventory_files import load_inventory

SPOOL = f"{BACKUP}/staging/spool"
# Entries chained per round trip (oldest first); a longer spool takes more rounds.
PER_READ = 64
ROUNDS = 8
_NAME = re.compile(r"[0-9]{1,12}-[0-9]{1,10}\.run")
_HEX = re.compile(r"[0-9a-f]{8,64}")
_EARLIEST = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc).timestamp()


def read_command(spool: str = SPOOL) -> str:
    """Prints ``entry NAME BASE64`` for the oldest spooled runs (their names start with the run's start)."""
    spool = shlex.quote(spool)
    # Only names the controller takes (_NAME), only regular files: a name it skips, a folder it cannot
    # delete, or a FIFO it would wait on for ever must not stand before the real runs every time.
    return (f"[ -d {spool} ] || exit 0; cd {spool} || exit 1; "
            f"for f in $(ls | grep -E '^[0-9]{{1,12}}-[0-9]{{1,10}}\\.run$' | sort -n); do "
            f'[ -f "$f" ] && [ ! -L "$f" ] && echo "$f"; done | head -n {PER_READ} | while read -r f; do '
            f'echo "entry $f $(head -c 4096 "$f" | base64 -w0)"; done')


def entries_of(stdout: str) -> list[tuple[str, str]]:
    """(file name, text) of each spooled run in ``read_command``'s output."""
    found = []
    for line in stdout.splitlines():
        word, _, rest = line.strip().partition(" ")
        name, _, data = rest.partition(" ")
        if word == "entry" and _NAME.fullmatch(name):
            try:
                found.append((name, base64.b64decode(data).decode("utf-8", errors="replace")))
            except ValueError:
                found.append((name, ""))
    return found


def entry(host: str, repository: str, name: str, text: str, now: float | None = None) -> Entry:
    """The audit entry for one spooled run. Only what a backup record holds is taken, each field
    checked; an entry that says nothing usable is chained as a failed run naming the spool file."""
    values = fields(text)
    started = values.get("started", "")
    now = time.time() if now is None else now
    if not started.isdigit() or not _EARLIEST <= int(started) <= now + 86400:
        return Entry(host, "backup", repository, "failed", 0, [], f"unreadable spool entry {name}")
    ts = dt.datetime.fromtimestamp(int(started), dt.timezone.utc).isoformat(timespec="milliseconds")
    duration = values.get("duration", "")
    duration = int(duration) if duration.isdigit() else 0
    snapshot, size, added = values.get("snapshot", ""), values.get("size", ""), values.get("added", "")
    ok = values.get("result") == "ok" and bool(_HEX.fullmatch(snapshot)) and size.isdigit()
    changes = [f"snapshot {snapshot[:8]}", f"size {size} bytes",
               f"added {added if added.isdigit() else '?'} bytes"] if ok else []
    error = None if ok else (values.get("error") or "the scheduled run ended without a result")[:300]
    return Entry(host, "backup", repository, "ok" if ok else "failed", duration, changes, error,
                 ts.replace("+00:00", "Z"))


def ingest_host(run, host, masker: Masker, sign, spool: str = SPOOL) -> tuple[int, str | None]:
    """Chain ``host``'s spooled runs (in the folder ``spool``); how many, and a problem if one stopped it."""
    who = masker.text(f"schedule@{host.name}")
    repository = host_config(host).backup.repository or "-"
    chained = 0
    for _ in range(ROUNDS):
        ok, stdout = run(read_command(spool))
        if not ok:
            return chained, f"reading the backup spool {spool} failed: {stdout.strip()[:200]}"
        found = entries_of(stdout)
        if not found:
            return chained, None
        entries = [masker.entry(check_entry(entry(host.name, repository, name, text), who))[0]
                   for name, text in found]
        result = _append_host(run, host_paths(host), host.name, entries, who, None, sign, head_key(host),
                              consume=[f"{spool}/{name}" for name, _ in found])
        chained += len(result.records)  # a batch before a failed one is chained all the same
        if result.error == GONE:  # another command chained them meanwhile: read what is left
            continue
        if result.error:
            return chained, result.error
        if len(found) < PER_READ:
            return chained, None
    return chained, None


def ingest(inventory_file: Path, root: Path, limit: str | None, echo: Callable[[str], None],
           sessions: Sessions | None = None, inventory=None) -> dict[str, int]:
    """Chain the spooled scheduled backups of each selected host with backups on; how many per host.
    Problems are warnings: the command that made contact goes on. ``sessions``: connections already
    open; ``inventory``: already loaded."""
    inventory = inventory or load_inventory(inventory_file, root)
    hosts = [h for h in limited(inventory, [limit] if limit else None) if host_config(h).backup.enabled]
    if not hosts:
        return {}
    secrets: set[str] = set()
    try:
        for host in hosts:
            secrets |= set(host_secrets(host, root).values())
        signing_key = keys.controller_key()
    except VsaError as error:  # the command goes on and says it in its own words
        echo(f"vsa-ops: scheduled backups not chained: {str(error).splitlines()[0]}")
        return {}
    masker = Masker(secrets)
    counts: dict[str, int] = {}
    opened = nullcontext(sessions) if sessions is not None else connected(inventory_file, root,
                                                                          [h.name for h in hosts])
    with opened as sessions:
        for host in hosts:
            session = sessions.get(host.name, "not connected")
            if isinstance(session, str):
                continue  # the command itself says why the host is unreachable
            chained, problem = ingest_host(session[1], host, masker, lambda r: keys.sign(r, signing_key))
            counts[host.name] = chained
            if chained:
                echo(f"{host.name}: {chained} scheduled backup run{'s' if chained > 1 else ''} added to the audit trail")
            if problem:
                echo(f"vsa-ops: audit on {host.name}: scheduled backups: {problem}")
    return counts
