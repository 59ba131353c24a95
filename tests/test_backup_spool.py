"""Scheduled backups in the audit trail (issue 13): the loop's spool entries chained by the controller,
once each, even when two commands ingest at the same time. The scripts run in a local sh on files under
tmp_path; the host is pyinfra's @local with its audit files there."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from vsa_ops import audit
from vsa_ops.audit import keys
from vsa_ops.backup import spool

STARTED = 1_790_000_000  # 2026-09-21T14:13:20Z


@pytest.fixture
def scratch(tmp_path, tool, monkeypatch):
    """(host, run, spool folder, audit JSONL): a host whose backups are on, its spool with three runs."""
    for name in ("sh", "flock", "dd", "base64", "gzip", "sha256sum", "tail", "head", "ls", "grep", "sort"):
        tool(name)
    jsonl = tmp_path / "log" / "audit.jsonl"
    settings = {"vsa": {"audit": {"jsonl": str(jsonl), "database": str(tmp_path / "lib" / "audit.db")},
                        "backup": {"repository": "/var/backups/restic"}}}
    (tmp_path / "inventory.py").write_text(f"hubs = [('@local', {settings!r})]\n")
    for name in [n for n in os.environ if n.startswith("VSA_")]:
        monkeypatch.delenv(name)
    from vsa_ops.pyinfra_glue.inventory_files import load_inventory

    [host] = load_inventory(tmp_path / "inventory.py", tmp_path)
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    (folder / f"{STARTED}-7.run").write_text(f"started {STARTED}\nduration 42\nsnapshot {'ab12' * 16}\n"
                                             "size 1234\nadded 56\nresult ok\n")
    (folder / f"{STARTED + 86400}-8.run").write_text(
        f"started {STARTED + 86400}\nduration 3\nerror wrong password for the repository /repository\n")
    (folder / f"{STARTED + 90000}-9.run").write_text("started yesterday\naction deploy\nresult ok\n")
    (folder / "notes.txt").write_text("not a spool entry\n")

    def run(command: str) -> tuple[bool, str]:
        result = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
        return result.returncode == 0, result.stdout
    return host, run, folder, jsonl


def _sign(record: dict) -> dict:
    return keys.sign(record, keys.controller_key())


def test_an_ok_run_a_failed_run_and_a_forged_entry_become_backup_records_by_the_schedule():
    ok = spool.entry("hub", "sftp:vsa@b:/r", "1-1.run", f"started {STARTED}\nduration 42\nsnapshot {'ab' * 32}\n"
                     "size 10\nadded 2\nresult ok\n", now=STARTED + 60)
    assert ok == audit.Entry("hub", "backup", "sftp:vsa@b:/r", "ok", 42, ["snapshot abababab", "size 10 bytes",
                             "added 2 bytes"], None, "2026-09-21T14:13:20.000Z")
    failed = spool.entry("hub", "-", "1-1.run", f"started {STARTED}\nerror disk full\n", now=STARTED)
    assert (failed.result, failed.error, failed.changes) == ("failed", "disk full", [])
    # What a writer of the spool controls cannot change the action, the actor or the time's form.
    forged = spool.entry("hub", "-", "2-2.run", "started 99999999999\naction deploy\nresult ok\n", now=STARTED)
    assert (forged.action, forged.result, forged.error, forged.ts) == (
        "backup", "failed", "unreadable spool entry 2-2.run", None)
    no_snapshot = spool.entry("hub", "-", "3-3.run", f"started {STARTED}\nresult ok\nsize x\n", now=STARTED)
    assert no_snapshot.result == "failed"


def test_spooled_runs_are_chained_once_even_when_two_commands_ingest_at_once(scratch):
    host, run, folder, jsonl = scratch
    masker = audit.Masker([])
    raced = []

    def racing(command: str) -> tuple[bool, str]:
        # another command chains the same spool between this one's read and its append
        if "dd of=" in command and not raced:
            raced.append(spool.ingest_host(run, host, masker, _sign, str(folder)))
        return run(command)

    chained, problem = spool.ingest_host(racing, host, masker, _sign, str(folder))
    assert raced == [(3, None)] and (chained, problem) == (0, None)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [(r["action"], r["actor"], r["result"], r["ts"]) for r in records] == [
        ("backup", "schedule@@local", "ok", "2026-09-21T14:13:20.000Z"),
        ("backup", "schedule@@local", "failed", "2026-09-22T14:13:20.000Z"),
        ("backup", "schedule@@local", "failed", records[2]["ts"])]
    assert records[0]["changes"][0] == "snapshot ab12ab12" and records[0]["target"] == "/var/backups/restic"
    assert records[2]["error"] == f"unreadable spool entry {STARTED + 90000}-9.run"
    lines = audit.split_lines(jsonl.read_text())
    assert audit.verify_chain(lines) == []
    from vsa_ops.audit.authenticity import check_signatures

    assert check_signatures(lines, keys.trusted_keys(Path("/nonexistent")))[0] == []
    # the next contact finds nothing to chain
    assert spool.ingest_host(run, host, masker, _sign, str(folder)) == (0, None)
    assert len(jsonl.read_text().splitlines()) == 3


def test_a_host_without_a_spool_costs_one_command_and_chains_nothing(scratch, tmp_path):
    host, run, _, jsonl = scratch
    calls = []

    def counted(command: str) -> tuple[bool, str]:
        calls.append(command)
        return run(command)

    assert spool.ingest_host(counted, host, audit.Masker([]), _sign, str(tmp_path / "none")) == (0, None)
    assert len(calls) == 1 and not jsonl.exists()


def test_odd_spool_entries_neither_block_the_spool_nor_come_back_on_every_contact(scratch):
    # Names the shell's filter took but the controller's did not (too many digits, sorted first), a
    # folder, a symlink and a FIFO named like entries: none is read, none blocks the real runs behind.
    host, run, folder, jsonl = scratch
    for n in range(spool.PER_READ):
        (folder / f"{n:013d}-1.run").write_text(f"started {STARTED}\nresult ok\n")
    (folder / "1-1.run").mkdir()
    (folder / "2-1.run").symlink_to(folder / f"{STARTED}-7.run")
    os.mkfifo(folder / "3-1.run")
    masker = audit.Masker([])

    def bounded(command: str) -> tuple[bool, str]:  # a read of the FIFO would wait for ever
        result = subprocess.run(["timeout", "20", "sh", "-c", command], capture_output=True, text=True)
        return result.returncode == 0, result.stdout
    assert spool.ingest_host(bounded, host, masker, _sign, str(folder)) == (3, None)
    assert spool.ingest_host(bounded, host, masker, _sign, str(folder)) == (0, None)
    assert len(jsonl.read_text().splitlines()) == 3
