"""The audit trail against root on the host: records signed by the controller's Ed25519 key, and the
controller's memory of what it last wrote or verified (its head). A record altered with the whole chain
recomputed, records cut from the end of both files, a deleted SQLite database and signatures stripped
all fail verify, naming host and record; records from before signing are reported once, not as
tampering."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vsa_ops import audit
from vsa_ops.audit import heads, keys, trail
from vsa_ops.audit.authenticity import check_head, check_signatures
from vsa_ops.audit.cli import audit as audit_group

from tests.test_audit import WHO, entries, first, lines_of


@pytest.fixture
def controller(tmp_path, monkeypatch):
    """A controller of its own: key and heads under tmp_path."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return keys.controller_key()


def signed_chain(count: int, key: Ed25519PrivateKey, last=None) -> list[dict]:
    return audit.chain([audit.check_entry(e, WHO) for e in entries(count)], WHO, last, lambda r: keys.sign(r, key))


def rechain(records: list[dict], start: int) -> list[dict]:
    """What root on the host can do: recompute every hash from ``start`` on (it has no key to sign)."""
    out = [dict(r) for r in records]
    for index in range(start, len(out)):
        if index:
            out[index]["prev_hash"] = out[index - 1]["hash"]
        out[index]["hash"] = audit.record_hash(out[index])
    return out


def test_the_key_is_made_once_0600_and_reused(controller, tmp_path):
    path = tmp_path / "config" / "vsa-ops" / "audit-ed25519"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    again = keys.controller_key()
    assert keys.public_line(again) == keys.public_line(controller)
    path.chmod(0o640)
    with pytest.raises(audit.AuditError, match="readable by others"):
        keys.controller_key()


def test_signed_chain_verifies_and_a_rechained_edit_does_not(controller):
    records = signed_chain(5, controller)
    lines = lines_of(records)
    assert audit.verify_chain(lines) == [] and check_signatures(lines, [controller.public_key()]) == ([], "")
    records[2]["result"] = "rolled_back"
    forged = lines_of(rechain(records, 2))
    assert audit.verify_chain(forged) == []  # the hash chain alone is fooled
    problems, _ = check_signatures(forged, [controller.public_key()])
    assert first(problems) == (3, "altered") and "signature does not verify" in problems[0].detail
    # Re-signed with a key of the host's own making: still not a trusted key.
    resigned = [keys.sign({k: v for k, v in r.items() if k != "sig"}, Ed25519PrivateKey.generate())
                for r in rechain(records, 2)]
    assert first(check_signatures(lines_of(resigned), [controller.public_key()])[0]) == (1, "altered")


def test_unsigned_records_before_signing_are_a_note_and_after_it_tampering(controller):
    old = audit.chain([audit.check_entry(e, WHO) for e in entries(2)], WHO, None)
    new = signed_chain(3, controller, (2, old[-1]["hash"]))
    lines = lines_of(old + new)
    problems, note = check_signatures(lines, [controller.public_key()])
    assert problems == [] and note == "2 unsigned records (seq 1 to 2), written before records were signed"
    stripped = old + new[:1] + [{k: v for k, v in r.items() if k != "sig"} for r in new[1:]]
    problems, _ = check_signatures(lines_of(stripped), [controller.public_key()])
    assert first(problems) == (4, "altered") and "signature was removed" in problems[0].detail


def test_the_head_catches_a_cut_tail_a_rewrite_and_stripped_signatures(controller):
    records = signed_chain(5, controller)
    head = heads.Head(5, records[-1]["hash"], True)
    assert check_head(lines_of(records), head) == []
    cut = check_head(lines_of(records[:3]), head)
    assert first(cut) == (4, "deleted") and "up to seq 5" in cut[0].detail
    records[1]["target"] = "other.example.com"
    assert first(check_head(lines_of(rechain(records, 1)), head)) == (5, "altered")
    unsigned = [{k: v for k, v in r.items() if k != "sig"} for r in signed_chain(5, controller)]
    assert first(check_head(lines_of(unsigned), heads.Head(5, unsigned[-1]["hash"], True))) == (5, "altered")


def test_heads_never_go_back_and_are_kept_per_host_and_address(controller):
    key = heads.host_key("hub1", "203.0.113.7", 22)
    heads.advance(key, heads.Head(5, "a" * 64, True))
    heads.advance(key, heads.Head(3, "b" * 64, True))
    assert heads.load(key) == heads.Head(5, "a" * 64, True)
    assert heads.load(heads.host_key("hub1", "198.51.100.1", 22)) is None
    assert heads.forget(key) and heads.load(key) is None


def test_pinned_keys_of_other_controllers_verify(controller, tmp_path):
    colleague = Ed25519PrivateKey.generate()
    lines = lines_of(signed_chain(2, colleague))
    assert first(check_signatures(lines, keys.trusted_keys(tmp_path))[0]) == (1, "altered")
    (tmp_path / keys.PINNED_FILE).write_text(f"# the team\n{keys.public_line(colleague, 'bob@ci')}\n")
    assert check_signatures(lines, keys.trusted_keys(tmp_path)) == ([], "")


# ---------------------------------------------------------------------------------------------
# The whole path on this machine (pyinfra's @local): append, `audit verify`, the host's tampering


@pytest.fixture
def project(local_host, controller):
    root, jsonl, database = local_host
    for result in audit.append(root / "inventory.py", root, entries(5, "@local"), who=WHO).values():
        assert result.ok and result.warning is None, result
    return root, jsonl, database


def verify(project: Path) -> tuple[int, str]:
    result = CliRunner().invoke(audit_group, ["verify", "-i", str(project / "inventory.py")],
                                env={"VSA_PROJECT": str(project)})
    return result.exit_code, result.output


def rewrite(jsonl: Path, database: Path, records: list[dict]) -> None:
    """Root's rewrite of both files, consistent with each other (triggers dropped first)."""
    jsonl.write_text("".join(lines_of(records)))
    database.unlink()
    subprocess.run(["sqlite3", str(database)], input=host_sql(records), text=True, check=True)


def host_sql(records: list[dict]) -> str:
    rows = "".join(f"INSERT INTO audit (seq, ts, prev_hash, hash, json) VALUES ({r['seq']}, '{r['ts']}', "
                   f"'{r['prev_hash']}', '{r['hash']}', '{audit.canonical(r)}');\n" for r in records)
    return ("CREATE TABLE audit (seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, actor TEXT, action TEXT, target TEXT, "
            "result TEXT, vps_id TEXT, duration REAL, changes TEXT, error TEXT, prev_hash TEXT NOT NULL, "
            "hash TEXT NOT NULL UNIQUE, json TEXT NOT NULL);\n" + rows)


def read_records(jsonl: Path) -> list[dict]:
    return [json.loads(line) for line in jsonl.read_text().splitlines()]


def test_verify_passes_then_names_a_rechained_record(project):
    root, jsonl, database = project
    code, output = verify(root)
    assert code == 0 and "@local: intact, 5 records, SQLite 5 rows" in output, output
    records = read_records(jsonl)
    records[2]["result"] = "rolled_back"
    rewrite(jsonl, database, rechain(records, 2))
    code, output = verify(root)
    assert code == 1 and output.startswith("@local: BROKEN at seq 3 (line 3): altered"), output


def test_verify_names_records_cut_from_the_end_of_both_files(project):
    root, jsonl, database = project
    assert verify(root)[0] == 0
    rewrite(jsonl, database, read_records(jsonl)[:3])
    code, output = verify(root)
    assert code == 1 and output.startswith("@local: BROKEN at seq 4: deleted: the trail ends at seq 3"), output


def test_verify_names_a_deleted_database(project):
    root, _, database = project
    database.unlink()
    code, output = verify(root)
    assert code == 1 and "BROKEN at seq 1: deleted: the SQLite database is missing while the JSONL holds 5" in output


def test_verify_names_jsonl_and_sqlite_that_disagree(project):
    root, _, database = project
    connection = sqlite3.connect(database)
    connection.execute("DROP TRIGGER audit_no_update")
    connection.execute("UPDATE audit SET json = replace(json, '\"ok\"', '\"failed\"') WHERE seq = 2")
    connection.commit()
    connection.close()
    code, output = verify(root)
    assert code == 1 and "BROKEN at seq 2 (line 2): disagree" in output, output


def test_a_trail_from_before_signing_is_reported_once_not_as_tampering(project):
    root, jsonl, database = project
    records = read_records(jsonl)
    legacy = rechain([{k: v for k, v in r.items() if k != "sig"} for r in records[:2]], 0)
    rewrite(jsonl, database, legacy)
    heads.forget(trail.head_key(type("H", (), {"name": "@local", "data": {}})()))
    code, output = verify(root)
    assert code == 0, output
    assert "2 unsigned records (seq 1 to 2), written before records were signed" in output


def test_forget_lets_a_rebuilt_host_start_its_trail_anew(project):
    root, jsonl, database = project
    jsonl.unlink()
    database.unlink()
    code, output = verify(root)
    assert code == 1 and "BROKEN at seq 1: deleted: the trail ends at seq 0" in output, output
    result = CliRunner().invoke(audit_group, ["forget", "-i", str(root / "inventory.py"), "@local"],
                                env={"VSA_PROJECT": str(root)})
    assert result.exit_code == 0 and "@local: forgotten" in result.output, result.output
    assert verify(root) == (0, "@local: intact, 0 records (SQLite not checked: no database yet)\n")


def test_audit_key_prints_the_public_key_for_audit_keys_pub(project):
    root, _, _ = project
    result = CliRunner().invoke(audit_group, ["key"], env={"VSA_PROJECT": str(root)})
    assert result.exit_code == 0 and result.output.startswith("ssh-ed25519 AAAA"), result.output
    (root / keys.PINNED_FILE).write_text(result.output)
    assert [k.public_bytes_raw() for k in keys.pinned_keys(root)] == [keys.controller_key().public_key().public_bytes_raw()]
