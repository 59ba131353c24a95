"""The audit trail on a lab host, over SSH: records land in the JSONL and in SQLite, `audit verify`
passes and then names an altered record, concurrent writers lose nothing, SQLite refuses UPDATE and
DELETE, an unreachable host is reported. Host work runs in subprocesses (pyinfra patches with gevent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from vsa_ops import audit
from vsa_ops.config import hub_config

from tests.lab.conftest import ROOT

pytestmark = pytest.mark.lab

# The lab host's audit files: the configuration's (the lab sets no vsa.audit of its own).
JSONL = hub_config().audit.jsonl
DB = hub_config().audit.database

APPEND = """
import json, sys, time
from pathlib import Path
from vsa_ops import audit
entries, inventory, repeat = json.loads(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
results, took = {}, []
for _ in range(repeat):
    start = time.monotonic()
    for host, r in audit.append(inventory, Path.cwd(), [audit.Entry(*e) for e in entries]).items():
        results.setdefault(host, {"records": [], "errors": [], "warnings": []})
        results[host]["records"] += r.records
        results[host]["errors"] += [r.error] if r.error else []
        results[host]["warnings"] += [r.warning] if r.warning else []
    took.append(time.monotonic() - start)
print(json.dumps({"results": results, "took": took}))
"""


def _environment() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("VSA_")}


def append(inventory, entries: list[tuple], repeat: int = 1) -> dict:
    result = subprocess.run([sys.executable, "-c", APPEND, json.dumps(entries), str(inventory), str(repeat)],
                            cwd=ROOT, env=_environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def audit_cli(*args: str) -> subprocess.CompletedProcess:
    """`vsa-ops audit ...`, through the click group itself until the lead registers it in main."""
    return subprocess.run([sys.executable, "-c", "from vsa_ops.audit.cli import audit; audit()", *args],
                          cwd=ROOT, env=_environment(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def host(lab):
    """The lab host, with sqlite3 (a lab from an image older than the audit trail would lack it)."""
    assert lab.sh("command -v sqlite3 || true").strip(), \
        "the lab host has no sqlite3: its image predates the vps recipe's sqlite3 (run `vsa-ops lab down`)"
    return lab


def count(lab) -> int:
    return int(lab.sh(f"if [ -f {JSONL} ]; then wc -l < {JSONL}; else echo 0; fi").strip())


def test_records_land_in_jsonl_and_sqlite(host):
    before = count(host)
    out = append(host.inventory, [
        (host.name, "deploy", "hub", "ok", 12.5, ["stack reverse-proxy: nginx.conf", "nginx reloaded"], None),
        (host.name, "add-domain", "shop.example.test", "failed", 3.2, "vhost shop.example.test",
         "certificate: the ACME server did not answer"),
    ])
    result = out["results"][host.name]
    assert result["errors"] == [] and result["warnings"] == []
    records = result["records"]
    assert [r["seq"] for r in records] == [before + 1, before + 2]
    assert records[1]["prev_hash"] == records[0]["hash"]
    assert {"actor", "action", "result", "vps_id"} <= set(records[0])  # Promtail's vsa-audit labels
    assert records[0]["vps_id"] == host.name and records[1]["result"] == "failed"

    lines = [audit.canonical(r) for r in records]
    assert host.sh(f"tail -n 2 {JSONL}").splitlines() == lines
    assert host.sh(f"sqlite3 {DB} 'SELECT json FROM audit WHERE seq > {before} ORDER BY seq'").splitlines() == lines
    assert host.sh(f"sqlite3 -separator ' ' {DB} 'SELECT action, result, vps_id, duration FROM audit "
                   f"WHERE seq = {before + 2}'").strip() == f"add-domain failed {host.name} 3.2"
    assert host.sh(f"sqlite3 {DB} 'PRAGMA journal_mode'").strip() == "wal"
    assert host.sh(f"stat -c %a {JSONL} {DB}").split() == ["640", "640"]

    listed = audit_cli("-i", str(host.inventory), "--json", "--since", "1h", "--action", "add-domain")
    assert listed.returncode == 0, listed.stderr
    assert records[1] in json.loads(listed.stdout)
    text = audit_cli("-i", str(host.inventory), "--limit", host.name)
    assert f"#{before + 2} add-domain shop.example.test: failed" in text.stdout
    verified = audit_cli("verify", "-i", str(host.inventory))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{host.name}: intact, {before + 2} records, SQLite {before + 2} rows" in verified.stdout


def test_verify_names_an_altered_record(host):
    append(host.inventory, [(host.name, "remove-domain", f"old{i}.example.test", "ok", 1.0, ["vhost removed"], None)
                            for i in range(3)])
    total = count(host)
    altered = total - 1  # an intact chain has seq N on line N
    host.sh(f"cp -p {JSONL} /tmp/audit.jsonl.good")
    try:
        host.sh(f"sed -i '{altered}s/\"result\":\"ok\"/\"result\":\"failed\"/' {JSONL}")
        broken = audit_cli("verify", "-i", str(host.inventory))
        assert broken.returncode == 1, broken.stdout
        first = broken.stdout.splitlines()[0]
        assert first.startswith(f"{host.name}: BROKEN at seq {altered} (line {altered}): altered"), broken.stdout
    finally:
        host.sh(f"cp -p /tmp/audit.jsonl.good {JSONL}")
    host.sh(f"sed -i '$d' {JSONL}")  # cut the last record: the chain alone looks intact, SQLite still has it
    try:
        broken = audit_cli("verify", "-i", str(host.inventory))
        assert broken.returncode == 1
        assert f"BROKEN at seq {total}: deleted: in SQLite but not in the JSONL" in broken.stdout
    finally:
        host.sh(f"cp -p /tmp/audit.jsonl.good {JSONL}")
    assert audit_cli("verify", "-i", str(host.inventory)).returncode == 0


def test_concurrent_appends_lose_nothing(host):
    before = count(host)
    processes = [subprocess.Popen(
        [sys.executable, "-c", APPEND,
         json.dumps([(host.name, "drift-repair", f"writer{p}", "ok", 0.5, [f"writer {p}"], None)]),
         str(host.inventory), "5"],
        cwd=ROOT, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for p in range(4)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], [err for _, err in outputs]
    results = [json.loads(out)["results"][host.name] for out, _ in outputs]
    assert all(r["errors"] == [] for r in results), results
    assert sorted(rec["seq"] for r in results for rec in r["records"]) == list(range(before + 1, before + 21))

    lines = audit.split_lines(host.sh(f"cat {JSONL}"))
    assert len(lines) == before + 20
    assert audit.verify_chain(lines) == []  # every line whole, in order, linked
    new = [json.loads(line) for line in lines[before:]]
    assert sorted(r["target"] for r in new) == sorted(f"writer{p}" for p in range(4) for _ in range(5))
    assert int(host.sh(f"sqlite3 {DB} 'SELECT count(*) FROM audit'")) == before + 20
    assert audit_cli("verify", "-i", str(host.inventory)).returncode == 0


def test_sqlite_refuses_update_and_delete(host):
    append(host.inventory, [(host.name, "deploy", "hub", "ok", 1.0, [], None)])
    rows = host.sh(f"sqlite3 {DB} 'SELECT count(*) FROM audit'").strip()
    for statement in ("UPDATE audit SET result = 'ok'", "DELETE FROM audit WHERE seq = 1"):
        out = host.sh(f"sqlite3 {DB} \"{statement}\" 2>&1; echo \"exit $?\"")
        assert "audit records are append-only" in out and "exit 0" not in out, out
    assert host.sh(f"sqlite3 {DB} 'SELECT count(*) FROM audit'").strip() == rows
    assert audit_cli("verify", "-i", str(host.inventory)).returncode == 0


def test_unreachable_host_is_reported_not_raised(host, tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text(host.inventory.read_text() +
                         "\nlab.append(('ghost', {**lab[0][1], 'ssh_port': 1}))\nhubs = [name for name, _ in lab]\n")
    before = count(host)
    start = time.monotonic()
    out = append(inventory, [("ghost", "deploy", "hub", "failed", 1.0, [], "unreachable"),
                             (host.name, "deploy", "hub", "ok", 1.0, [], None)])
    assert time.monotonic() - start < 60
    assert "could not connect" in out["results"]["ghost"]["errors"][0]
    assert out["results"][host.name]["errors"] == [] and count(host) == before + 1
    verified = audit_cli("verify", "-i", str(inventory))
    assert verified.returncode == 1
    assert "ghost: BROKEN at audit trail: unreadable: could not connect" in verified.stdout
    assert f"{host.name}: intact" in verified.stdout
