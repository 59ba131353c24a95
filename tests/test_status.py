"""`vsa-ops status`: its host program (shellcheck-clean, run for real on this machine's sh), what it
prints parsed, and each check's verdict on what a host or a probe answered."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess

from vsa_ops.status import checks
from vsa_ops.status.checks import HostStatus
from vsa_ops.status.cli import screen


def test_the_host_program_is_posix_sh_and_shellcheck_clean(tool, tmp_path):
    program = tmp_path / "host_status.sh"
    program.write_text(checks.host_program())
    result = subprocess.run([tool("shellcheck"), "-s", "sh", str(program)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _record(seq, action, result, actor="ops@laptop", error=None):
    return json.dumps({"seq": seq, "ts": f"2026-11-30T0{seq}:00:00+00:00", "actor": actor, "action": action,
                       "target": "hub", "result": result, "error": error}, separators=(",", ":"), sort_keys=True)


def test_the_host_program_finds_the_last_deploy_and_backup(tmp_path):
    log = tmp_path / "vsa.audit.jsonl"
    log.write_text("\n".join([_record(1, "deploy", "ok"), _record(2, "backup", "ok", actor="cron"),
                              _record(3, "add-domain", "ok"), _record(4, "deploy", "failed", error="step x"),
                              _record(5, "drift-check", "ok")]) + "\n")
    # A host without docker: the program still prints every section.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("grep", "tail"):
        (bin_dir / name).symlink_to(shutil.which(name))
    result = subprocess.run(["/bin/sh", "-c", checks.host_program(), "vsa-status", str(log)], capture_output=True,
                            text=True, env={"PATH": str(bin_dir)})
    assert result.returncode == 0, result.stderr
    parts = checks.sections(result.stdout.splitlines() + ["@@vsa:stat", "ignored"])
    assert set(parts) == {"status-containers", "status-deploy", "status-backup"}
    deploy = checks.audit_record(parts["status-deploy"])
    assert deploy == {"ts": "2026-11-30T04:00:00+00:00", "actor": "ops@laptop", "result": "failed",
                      "target": "hub", "error": "step x"}
    assert checks.audit_record(parts["status-backup"])["actor"] == "cron"
    failed = checks.audit_check("deploy", deploy)
    assert not failed.ok and failed.detail.endswith(": step x")
    assert checks.audit_check("backup", None) is None  # never recorded: shown, not a problem


def test_containers_parse_and_what_counts_as_up():
    rows = checks.containers([
        "/nginx|reverse-proxy|nginx|running|healthy|0|0|unless-stopped",
        "/grafana|dashboard|grafana|exited||3|137|unless-stopped",
        "/loki|observability|loki|running|unhealthy|1|0|unless-stopped",
        "/init|observability|init|exited||0|0|no",
        "/cadvisor|observability|cadvisor|restarting||9|1|unless-stopped",
        "not a container line",
    ])
    verdicts = {r["name"]: checks.container_check(r) for r in rows}
    assert [r["name"] for r in rows] == ["grafana", "cadvisor", "init", "loki", "nginx"]
    assert verdicts["nginx"].ok and verdicts["init"].ok
    assert not verdicts["grafana"].ok and verdicts["grafana"].detail == "is exited, restarts 3"
    assert not verdicts["loki"].ok and not verdicts["cadvisor"].ok
    assert verdicts["grafana"].name == "container grafana"


def _domain(status, *, tls=True, auth=False, days=60, error=None):
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days, hours=1) if tls and status else None
    return {"domain": "shop.example.com", "tls": tls, "auth": auth, "status": status, "error": error,
            "expires": expires, "days_left": checks.days_left(expires) if expires else None}


def test_a_domain_serves_only_with_a_good_answer_and_a_certificate_far_from_its_end():
    assert checks.domain_check(_domain(200)).ok
    assert checks.domain_check(_domain(200)).detail == "HTTPS 200, certificate 60 days left"
    assert checks.domain_check(_domain(401, auth=True)).ok
    assert not checks.domain_check(_domain(401)).ok
    assert checks.domain_check(_domain(429)).detail == "answers 429"
    assert checks.domain_check(_domain(502)).detail == "answers 502"
    expiring = checks.domain_check(_domain(200, days=10))
    assert not expiring.ok and expiring.detail.startswith("certificate expires in 10 days")
    assert checks.domain_check(_domain(200, days=14)).ok
    assert checks.domain_check(_domain(None, error="connection refused")).detail == "no answer: connection refused"
    assert checks.domain_check(_domain(200, tls=False)).detail == "HTTP 200"


def test_a_host_is_ok_only_when_every_check_passes_and_its_screen_names_the_problems():
    host = HostStatus("hub-1", containers=checks.containers(["/nginx|rp|nginx|running||0|0|always"]))
    host.checks = [checks.container_check(r) for r in host.containers] + [checks.drift_check([])]
    assert host.ok and screen(host).startswith("hub-1: ok\n")
    host.checks.append(checks.drift_check(["add domain shop.example.com"]))
    assert not host.ok
    assert host.problems == ["drift: drifted from the code (add domain shop.example.com): `vsa-ops plan` shows "
                             "it, `vsa-ops deploy` repairs it"]
    assert json.loads(json.dumps(host.as_dict(), default=str))["ok"] is False
    unread = HostStatus("hub-2", error="could not connect: timed out")
    assert not unread.ok and unread.problems == ["could not connect: timed out"]
