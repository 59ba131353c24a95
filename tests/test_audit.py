"""The audit trail without a host: records, canonical JSON, the hash chain and what its verifier
detects, the secret guard, the actor, and the append/read shell scripts run by a local sh."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from vsa_ops import audit
from vsa_ops.audit import GENESIS, AuditError, Entry, Problem, host_scripts, keys, records, trail
from vsa_ops.audit.cli import audit as audit_group

WHO = "alice@laptop (Alice Doe <alice@example.com>)"


def entries(count: int, host: str = "hub") -> list[Entry]:
    return [Entry(host, "deploy" if i % 2 else "add-domain", f"site{i}.example.com", "ok" if i % 3 else "failed",
                  1.25 * i, [f"vhost site{i}.example.com", "nginx reloaded"], None if i % 3 else f"boom {i}")
            for i in range(1, count + 1)]


def lines_of(records: list[dict]) -> list[str]:
    return [audit.canonical(r) + "\n" for r in records]


@pytest.fixture
def five() -> list[str]:
    return lines_of(audit.chain([audit.check_entry(e, WHO) for e in entries(5)], WHO, None))


def first(problems: list[Problem]) -> tuple[int | None, str]:
    assert problems, "expected a problem"
    return problems[0].seq, problems[0].kind


# ---------------------------------------------------------------------------------------------
# Records and canonical JSON


def test_record_fields_and_genesis():
    records = audit.chain([audit.check_entry(e, WHO) for e in entries(2)], WHO, None)
    assert set(records[0]) == set(audit.FIELDS) - {"sig"}
    signed = audit.chain([audit.check_entry(e, WHO) for e in entries(1)], WHO, None,
                         lambda r: keys.sign(r, keys.controller_key()))
    assert set(signed[0]) == set(audit.FIELDS) and signed[0]["hash"] == audit.record_hash(signed[0])
    assert records[0]["seq"] == 1 and records[0]["prev_hash"] == GENESIS == "0" * 64
    assert records[1]["seq"] == 2 and records[1]["prev_hash"] == records[0]["hash"]
    assert records[0]["ts"].endswith("Z") and dt.datetime.fromisoformat(records[0]["ts"]).utcoffset() == dt.timedelta(0)
    assert records[0]["vps_id"] == "hub" and records[0]["actor"] == WHO
    assert records[0]["error"] is None and records[2 - 1]["result"] in audit.RESULTS


def test_chain_continues_after_the_last_record():
    records = audit.chain([audit.check_entry(e, WHO) for e in entries(1)], WHO, (41, "ab" * 32))
    assert records[0]["seq"] == 42 and records[0]["prev_hash"] == "ab" * 32


def test_canonical_json_is_stable():
    a = {"b": 1, "a": "ünïcode ✓", "c": [1, {"z": None, "y": 2.5}]}
    b = {"c": [1, {"y": 2.5, "z": None}], "a": "ünïcode ✓", "b": 1}
    assert audit.canonical(a) == audit.canonical(b) == '{"a":"ünïcode ✓","b":1,"c":[1,{"y":2.5,"z":null}]}'
    assert audit.record_hash(a) == audit.record_hash(b)
    # The hash ignores "hash" itself and covers every other byte.
    assert audit.record_hash(a | {"hash": "x"}) == audit.record_hash(a)
    assert audit.record_hash(a | {"b": 2}) != audit.record_hash(a)
    # Control characters are escaped: a record never spans two lines.
    assert "\n" not in audit.canonical({"error": "line1\nline2\r\x1e\x1f"})


def test_hash_is_sha256_of_the_canonical_text():
    import hashlib

    record = {"seq": 1, "prev_hash": GENESIS, "action": "deploy"}
    text = '{"action":"deploy","prev_hash":"' + GENESIS + '","seq":1}'
    assert audit.record_hash(record) == hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_unicode_line_separators_stay_in_one_line():
    """U+2028 and U+0085 are not escaped by JSON; the verifier splits at \\n only."""
    weird = Entry("hub", "deploy", "hub", "ok", 1, ["a\u2028b", "c\x85d", "é"], None)
    records = audit.chain([audit.check_entry(weird, WHO)], WHO, None)
    text = "".join(lines_of(records))
    assert "\u2028" in text
    lines = audit.split_lines(text)
    assert len(lines) == 1
    assert audit.verify_chain(lines) == []


def test_entries_are_checked():
    with pytest.raises(AuditError, match="result"):
        audit.check_entry(Entry("hub", "deploy", "hub", "done", 1, [], None), WHO)
    with pytest.raises(AuditError, match="duration"):
        audit.check_entry(Entry("hub", "deploy", "hub", "ok", -1, [], None), WHO)
    with pytest.raises(AuditError, match="action"):
        audit.check_entry(Entry("hub", "", "hub", "ok", 1, [], None), WHO)
    checked = audit.check_entry(("hub", "deploy", "hub", "rolled_back", 1.23456, ("a", 2), ValueError("x")), WHO)
    assert checked.duration == 1.235 and checked.changes == ["a", "2"] and checked.error == "x"


def test_long_changes_are_shortened_to_fit_one_line():
    many = Entry("hub", "deploy", "hub", "ok", 1, [f"file /opt/flowbiz/stack/{i:05d}.conf" for i in range(5000)])
    record = audit.chain([audit.check_entry(many, WHO)], WHO, None)[0]
    assert len((audit.canonical(record) + "\n").encode()) <= audit.MAX_LINE
    assert record["changes"][-1].startswith("... and ") and record["changes"][-1].endswith(" more")
    assert audit.verify_chain(lines_of([record])) == []


# ---------------------------------------------------------------------------------------------
# Secrets


SECRET = "pg-Secret-123"


@pytest.mark.parametrize("field", ["target", "changes", "error", "action"])
def test_secret_guard_masks_a_secret_and_names_the_field(field):
    values = {"target": "hub", "changes": ["nothing"], "error": None, "action": "deploy"}
    values[field] = f"password={SECRET}!" if field != "changes" else ["ok", f"set {SECRET}"]
    entry = Entry("hub", values["action"], values["target"], "failed", 1, values["changes"], values["error"])
    masked, names = audit.Masker([SECRET, ""]).entry(audit.check_entry(entry, WHO))
    assert names == [field]
    assert SECRET not in json.dumps(masked._asdict())
    assert getattr(masked, field) == ("password=[secret]!" if field != "changes" else ["ok", "set [secret]"])


def test_secret_guard_sees_json_escaped_secrets_and_ignores_tiny_values():
    tricky = 'a"b\\c-secret'
    assert audit.Masker([tricky]).text(json.dumps({"password": tricky})) == '{"password": "[secret]"}'
    # An empty or 1-3 character "secret" would match ordinary text: not searched for.
    entry = audit.check_entry(Entry("hub", "deploy", "hub", "ok", 1, ["a", "x"]), WHO)
    assert audit.Masker(["", "a", "ok"]).entry(entry) == (entry, [])


def test_append_refuses_a_bad_field_before_touching_any_host(tmp_path):
    bad = Entry("hub", "add-domain", "x.example.com", "done", 1, ["vhost"])
    with pytest.raises(AuditError):
        # The inventory does not exist: the refusal comes first, nothing is connected or written.
        audit.append(tmp_path / "no-inventory.py", tmp_path, [bad], who=WHO)


def record_after_failure(project: Path, jsonl: Path, error: str) -> tuple[dict, list[str]]:
    """What a command that did its work and then failed leaves in the audit log, and what it printed."""
    from vsa_ops.recording import record_audit

    said: list[str] = []
    record_audit(project, project / "inventory.py", [Entry("@local", "deploy", "hub", "failed", 2, ["vhost"], error)],
                 echo=said.append)
    [line] = jsonl.read_text().splitlines()
    return json.loads(line), said


def test_a_declared_secret_in_a_record_is_masked_and_the_record_written(local_host, monkeypatch):
    project, jsonl, _ = local_host
    monkeypatch.setenv("VSA_POSTGRES_PASSWORD", SECRET)
    record, said = record_after_failure(project, jsonl, f"psql: password {SECRET} rejected")
    assert record["error"] == "psql: password [secret] rejected"
    assert SECRET not in jsonl.read_text() and SECRET not in "".join(said)
    assert any("secret value was masked in the error of the deploy record" in line for line in said), said


def test_another_variable_in_a_record_is_written_unchanged(local_host, monkeypatch):
    project, jsonl, _ = local_host
    monkeypatch.setenv("VSA_HUB_ADDRESS", "hub-203.0.113.7")
    record, said = record_after_failure(project, jsonl, "ssh: hub-203.0.113.7 refused the connection")
    assert record["error"] == "ssh: hub-203.0.113.7 refused the connection"
    assert not any("masked" in line for line in said), said


# ---------------------------------------------------------------------------------------------
# The verifier


def test_intact_chain_verifies(five):
    assert audit.verify_chain(five) == []
    assert [json.loads(line)["seq"] for line in five] == [1, 2, 3, 4, 5]
    assert audit.verify_chain([]) == []


def test_every_one_byte_flip_in_record_3_names_seq_3_altered(five):
    data = five[2].encode()
    for position in range(len(data) - 1):  # the newline itself is the truncation test
        flipped = bytearray(data)
        flipped[position] ^= 0x01
        lines = five[:2] + [bytes(flipped).decode("utf-8", errors="replace")] + five[3:]
        problems = audit.verify_chain(audit.split_lines("".join(lines)))
        assert first(problems) == (3, "altered"), (position, problems)
        assert len(problems) == 1, (position, problems)


def test_rewritten_and_rehashed_record_breaks_the_next_link(five):
    record = json.loads(five[2])
    record["result"] = "ok" if record["result"] == "failed" else "failed"
    record["hash"] = audit.record_hash(record)  # a forger who recomputes the hash
    problems = audit.verify_chain(five[:2] + [audit.canonical(record) + "\n"] + five[3:])
    assert first(problems) == (4, "altered")
    assert "prev_hash" in problems[0].detail


def test_deleted_record_is_a_gap(five):
    problems = audit.verify_chain(five[:2] + five[3:])
    assert first(problems) == (3, "deleted")
    assert problems[0].line == 3 and "seq 3 missing" in problems[0].detail
    assert len(problems) == 1


def test_deleted_first_records_are_a_gap_from_genesis(five):
    assert first(audit.verify_chain(five[2:])) == (1, "deleted")


def test_truncated_last_line(five):
    text = "".join(five)
    cut = text[: len(text) - len(five[4]) // 2]
    problems = audit.verify_chain(audit.split_lines(cut))
    assert first(problems) == (5, "truncated")
    assert problems[0].line == 5
    # Only the newline lost: still truncated (the write was not complete).
    assert first(audit.verify_chain(audit.split_lines(text[:-1]))) == (5, "truncated")


def test_reordered_records(five):
    problems = audit.verify_chain([five[0], five[1], five[3], five[2], five[4]])
    assert first(problems) == (3, "reordered")
    assert len(problems) == 1
    duplicated = audit.verify_chain(five[:3] + [five[2]] + five[3:])
    assert first(duplicated) == (3, "reordered") and "again" in duplicated[0].detail


def test_genesis_prev_hash_is_checked():
    entry = audit.check_entry(entries(1)[0], WHO)
    forged = audit.build(entry, WHO, 1, "f" * 64)
    assert first(audit.verify_chain(lines_of([forged]))) == (1, "altered")
    genuine = audit.build(entry, WHO, 1, GENESIS)
    assert audit.verify_chain(lines_of([genuine])) == []


def test_non_canonical_line_is_altered_even_with_a_valid_hash(five):
    spaced = json.dumps(json.loads(five[2]), sort_keys=True, ensure_ascii=False) + "\n"  # ", " and ": "
    assert first(audit.verify_chain(five[:2] + [spaced] + five[3:])) == (3, "altered")


def test_garbage_line_is_altered(five):
    assert first(audit.verify_chain(five[:2] + ["not json\n"] + five[2:])) == (3, "altered")


def test_problem_text_names_seq_line_and_kind():
    assert str(Problem(3, "deleted", "seq 3 missing", 3)) == "seq 3 (line 3): deleted: seq 3 missing"


# ---------------------------------------------------------------------------------------------
# SQLite against JSONL


def rows_of(lines: list[str]) -> list[tuple[int, str, str]]:
    return [(json.loads(line)["seq"], json.loads(line)["hash"], line.rstrip("\n")) for line in lines]


def test_sqlite_rows_matching_the_jsonl(five):
    assert audit.compare_sqlite(five, rows_of(five)) == []


def test_sqlite_row_that_differs(five):
    rows = rows_of(five)
    rows[1] = (2, rows[1][1], rows[1][2].replace('"result":"ok"', '"result":"failed"'))
    assert first(audit.compare_sqlite(five, rows)) == (2, "disagree")


def test_jsonl_tail_cut_is_caught_by_sqlite(five):
    """Cutting whole last lines leaves a valid chain; the database still has them."""
    assert audit.verify_chain(five[:3]) == []
    problems = audit.compare_sqlite(five[:3], rows_of(five))
    assert first(problems) == (4, "deleted") and "SQLite" in problems[0].detail


def test_sqlite_missing_rows(five):
    problems = audit.compare_sqlite(five, rows_of(five[:3]))
    assert first(problems) == (4, "disagree")


def test_parse_rows_from_sqlite_ascii_output(five):
    text = "".join(f"{s}\x1f{h}\x1f{j}\x1e" for s, h, j in rows_of(five))
    assert audit.parse_rows(text) == rows_of(five)


# ---------------------------------------------------------------------------------------------
# Actor


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


@pytest.fixture
def no_global_git(monkeypatch, tmp_path):
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setattr(records.getpass, "getuser", lambda: "alice")
    monkeypatch.setattr(records.socket, "gethostname", lambda: "laptop")


def test_actor_has_the_git_identity_of_the_project(tmp_path, no_global_git, tool):
    tool("git")
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q")
    git(project, "config", "user.name", "Alice Doe")
    git(project, "config", "user.email", "alice@example.com")
    assert audit.actor(project) == "alice@laptop (Alice Doe <alice@example.com>)"


def test_actor_without_git_identity(tmp_path, no_global_git, monkeypatch):
    assert audit.actor(tmp_path) == "alice@laptop"
    monkeypatch.setenv("SUDO_USER", "bob")
    assert audit.actor(tmp_path) == "bob@laptop"


# ---------------------------------------------------------------------------------------------
# The shell scripts, run by a local sh on files under tmp_path (dd, flock, base64, gzip; sqlite3 if present)


@pytest.fixture
def local(tmp_path, tool):
    for name in ("sh", "flock", "dd", "base64", "gzip", "sha256sum", "tail"):
        tool(name)
    paths = audit.Paths(str(tmp_path / "log" / "audit.jsonl"), str(tmp_path / "lib" / "audit.db"))
    calls = []

    def run(command: str) -> tuple[bool, str]:
        calls.append(command)
        result = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
        return result.returncode == 0, result.stdout.rstrip("\n")

    return paths, run, calls


def test_append_then_read_back(local, tool):
    tool("sqlite3")
    paths, run, calls = local
    result = trail._append_host(run, paths, "hub", [audit.check_entry(e, WHO) for e in entries(3)], WHO)
    assert result.ok and [r["seq"] for r in result.records] == [1, 2, 3]
    assert len(calls) == 2  # read the last line, then compare-and-append
    result = trail._append_host(run, paths, "hub", [audit.check_entry(e, WHO) for e in entries(2)], WHO)
    assert [r["seq"] for r in result.records] == [4, 5]
    text = Path(paths.jsonl).read_text()
    assert text.count("\n") == 5
    assert audit.verify_chain(audit.split_lines(text)) == []
    assert oct(Path(paths.jsonl).stat().st_mode & 0o777) == "0o640"
    found = audit.host_audit(*run(host_scripts.read_script(paths)))
    assert [r["seq"] for r in found.records] == [1, 2, 3, 4, 5] and found.problems == []
    assert result.warning is None
    assert [row[0] for row in found.sqlite_rows] == [1, 2, 3, 4, 5]
    assert oct(Path(paths.database).stat().st_mode & 0o777) == "0o640"


def test_a_host_without_sqlite3_gets_the_jsonl_and_a_warning(local, tmp_path, monkeypatch):
    paths, run, _ = local
    # Every command of this PATH but sqlite3, so the scripts' `command -v sqlite3` finds none.
    folder = tmp_path / "bin"
    folder.mkdir()
    for directory in filter(os.path.isdir, os.environ["PATH"].split(os.pathsep)):
        for program in Path(directory).iterdir():
            if program.name != "sqlite3" and not (folder / program.name).exists() and os.access(program, os.X_OK):
                (folder / program.name).symlink_to(program)
    monkeypatch.setenv("PATH", str(folder))
    result = trail._append_host(run, paths, "hub", [audit.check_entry(e, WHO) for e in entries(2)], WHO)
    assert result.ok and "sqlite3 is not installed" in result.warning
    found = audit.host_audit(*run(host_scripts.read_script(paths)))
    assert [r["seq"] for r in found.records] == [1, 2] and found.sqlite_rows is None
    assert not Path(paths.database).exists()


def test_append_retries_when_another_writer_came_first(local):
    paths, run, calls = local
    trail._append_host(run, paths, "hub", [audit.check_entry(entries(1)[0], WHO)], WHO)
    raced = []

    def racing_run(command: str):
        if "dd of=" in command and not raced:  # another controller appends between our read and write
            raced.append(trail._append_host(run, paths, "hub", [audit.check_entry(entries(2)[1], "bob@x")], "bob@x"))
        return run(command)

    result = trail._append_host(racing_run, paths, "hub", [audit.check_entry(entries(3)[2], WHO)], WHO)
    assert raced[0].records[0]["seq"] == 2
    assert result.ok and result.records[0]["seq"] == 3
    lines = audit.split_lines(Path(paths.jsonl).read_text())
    assert len(lines) == 3 and audit.verify_chain(lines) == []


def test_append_refuses_to_chain_onto_a_damaged_last_line(local):
    paths, run, _ = local
    trail._append_host(run, paths, "hub", [audit.check_entry(e, WHO) for e in entries(2)], WHO)
    with open(paths.jsonl, "r+b") as handle:
        handle.truncate(Path(paths.jsonl).stat().st_size - 10)
    result = trail._append_host(run, paths, "hub", [audit.check_entry(entries(1)[0], WHO)], WHO)
    assert not result.ok and "damaged" in result.error
    assert first(audit.host_audit(*run(host_scripts.read_script(paths))).problems) == (2, "truncated")


def test_read_of_a_host_without_audit_log(local):
    paths, run, _ = local
    found = audit.host_audit(*run(host_scripts.read_script(paths)))
    assert found.records == [] and found.problems == []


def test_paths_must_be_plain():
    with pytest.raises(AuditError):
        audit.Paths("/var/log/vsa/audit.jsonl; rm -rf /", "/var/lib/vsa/audit.db")
    with pytest.raises(AuditError):
        audit.Paths("relative/audit.jsonl", "/var/lib/vsa/audit.db")


# ---------------------------------------------------------------------------------------------
# Listing filters and the CLI's errors


def test_since_accepts_durations_and_iso_times():
    now = dt.datetime(2025, 6, 10, 12, 0, tzinfo=dt.timezone.utc)
    assert audit.parse_since("2h", now) == now - dt.timedelta(hours=2)
    assert audit.parse_since("7d", now) == now - dt.timedelta(days=7)
    assert audit.parse_since("2025-06-01", now) == dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
    assert audit.parse_since("2025-06-01T08:30:00+02:00", now) == dt.datetime(2025, 6, 1, 6, 30,
                                                                              tzinfo=dt.timezone.utc)
    with pytest.raises(AuditError):
        audit.parse_since("yesterday", now)


def test_select_filters_by_time_and_action():
    records = [{"ts": "2025-06-10T10:00:00.000Z", "action": "deploy", "seq": 1, "vps_id": "a"},
               {"ts": "2025-06-10T11:30:00.000Z", "action": "add-domain", "seq": 2, "vps_id": "a"},
               {"ts": "2025-06-10T11:00:00.000Z", "action": "deploy", "seq": 1, "vps_id": "b"}]
    since = dt.datetime(2025, 6, 10, 10, 30, tzinfo=dt.timezone.utc)
    assert [r["vps_id"] for r in audit.select(records, since)] == ["b", "a"]
    assert [r["seq"] for r in audit.select(records, None, "deploy")] == [1, 1]


def test_cli_bad_since_is_one_line_and_exit_1():
    result = CliRunner().invoke(audit_group, ["--since", "soon"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "vsa-ops: --since: 'soon' is neither an ISO date/time nor a duration like 2h or 7d"]


def test_cli_missing_inventory_is_one_line_and_exit_1(tmp_path, monkeypatch):
    monkeypatch.delenv("VSA_INVENTORY", raising=False)
    result = CliRunner().invoke(audit_group, ["verify", "-i", str(tmp_path / "nope.py")])
    assert result.exit_code == 1 and "inventory: no such file" in result.output


# ---------------------------------------------------------------------------------------------
# The audit paths: set once (vsa.audit), followed by the tree, the mounts and the shipper job


def test_every_audit_path_follows_the_configured_one(render):
    moved = {"audit": {"jsonl": "/data/trail/audit.jsonl", "database": "/data/mirror/audit.db"}}
    for kind, shipper_file in (("promtail", "promtail-config.yml"), ("alloy", "config.alloy")):
        manifest = render([moved, {"observability": {"log_shipper": {"kind": kind}}}])
        everything = json.dumps([[f.path, f.content] for f in manifest.files] + [d.path for d in manifest.directories])
        assert "/var/log/vsa" not in everything and "/var/lib/vsa" not in everything, kind
        assert {"/data/trail", "/data/mirror"} <= {d.path for d in manifest.directories}
        shipper = manifest.file(f"/srv/flowbiz/observability/log-shipper/{shipper_file}").content
        assert '"/data/trail/audit.jsonl"' in shipper
        compose = {s.name: s.compose for s in manifest.stacks}
        binds = {name: {(v["source"], v["target"], v["read_only"]) for v in spec.get("volumes", [])
                        if isinstance(v, dict)}
                 for stack in compose.values() for name, spec in stack["services"].items()}
        assert ("/data/trail", "/data/trail", True) in binds[kind]
        assert {("/data/trail", "/data/trail", True), ("/data/mirror", "/data/mirror", True)} <= binds["api"]
        assert ("/data/mirror", "/data/mirror", True) not in binds[kind]  # the shipper reads the JSONL only


def test_audit_files_directly_in_the_root_folder_are_refused():
    from vsa_ops.config import ConfigError, hub_config

    with pytest.raises(ConfigError, match="vsa.audit.jsonl: must be a file inside a folder"):
        hub_config([{"audit": {"jsonl": "/audit.jsonl"}}])
