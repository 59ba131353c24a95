"""The audit trail: one record per host and action that vsa-ops takes on a host, appended on that host
to the JSONL file ``vsa.audit.jsonl`` (the source of truth, shipped by the log shipper's ``vsa-audit``
job) and mirrored into the SQLite database ``vsa.audit.database``. Both paths are set in one place,
the configuration (``config.hub.Audit``); the directory tree, the mounts and the shipper job follow it.

Why it is built this way (research/reliability.md, 7.3):

- Tamper evidence: each record carries ``seq`` (1, 2, ...), ``prev_hash`` (the previous record's ``hash``;
  64 zeros for the first) and ``hash`` = sha256 of the canonical JSON of the record without ``hash``. The
  line written is the canonical JSON of the whole record, so a verifier can tell an edited line, a missing
  one (seq gap), a cut-off last line and lines out of order, and names the first broken ``seq``.
- Authenticity: the chain alone cannot stop root on the host, who can re-chain an edit or cut the end of
  both files. Each record is signed (``sig``, Ed25519) by the controller's own key, which never leaves the
  controller (``keys``; other controllers' keys are pinned in the project's ``audit-keys.pub``), and the
  controller remembers per host the seq and hash it last wrote or verified (``heads``); ``authenticity``
  checks both. Unsigned records before the first signed one are old records, reported once.
- Hashing happens on the controller, never in shell: the host only stores bytes. An append is two
  remote commands: read the last line, then, under ``flock``, compare-and-append (refuse if the last line
  changed meanwhile; the caller rebuilds on the new last line and retries) with one ``write`` on an
  ``O_APPEND`` descriptor, ``fsync``, and an import of the new lines into SQLite by the ``sqlite3`` CLI,
  which parses them itself, so both stores hold the same bytes.
- SQLite runs in WAL mode with ``synchronous=FULL`` (a commit survives power loss) and triggers that refuse
  UPDATE and DELETE (against bugs, not attackers). Hosts without ``sqlite3`` still get the JSONL line; the
  next append on a host that has it imports every line the database lacks.
- No secret ever reaches a record: callers pass summaries, and ``append`` masks any value of the
  declared secrets it is given, then writes the record: the work is done, so its record must exist.

Modules: ``records`` (entry, canonical JSON, hash, chain, masking), ``integrity`` (what the lines and rows
tell), ``keys`` (the controller's key, pinned keys, signing), ``heads`` (the controller's memory),
``authenticity`` (signatures and heads checked), ``host_scripts`` (the shell run on hosts), ``trail`` (append, read, verify over connections),
``query`` (listing filters), ``cli`` (the ``vsa-ops audit`` group; not imported here).
"""

from .host_scripts import Paths
from .integrity import Problem, compare_sqlite, parse_line, parse_rows, split_lines, verify_chain
from .query import parse_since, record_time, select
from .records import (FIELDS, GENESIS, MASK, MAX_LINE, MIN_SECRET, RESULTS, AuditError, Entry, Masker, actor, build,
                      canonical, chain, check_entry, record_hash)
from .trail import AppendResult, HostAudit, append, host_audit, host_paths, inspect, read, verify

__all__ = [
    "FIELDS", "GENESIS", "MASK", "MAX_LINE", "MIN_SECRET", "RESULTS", "AppendResult", "AuditError", "Entry",
    "HostAudit", "Masker", "Paths", "Problem", "actor", "append", "build", "canonical", "chain", "check_entry",
    "compare_sqlite", "host_audit", "host_paths", "inspect", "parse_line", "parse_rows", "parse_since", "read",
    "record_hash", "record_time", "select", "split_lines", "verify", "verify_chain",
]
