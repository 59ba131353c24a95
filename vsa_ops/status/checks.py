"""What ``vsa-ops status`` checks, from what the host program printed and what the controller's own
requests answered: pure functions, each finding a named check that passes or says why not."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from importlib import resources

from ..audit import parse_line, record_time

# The status program's section marker (host_status.sh): a line of its own before each section.
MARK = "@@vsa:"

EXPIRY_DAYS = 14  # a certificate closer than this to its end is a problem


def host_program() -> str:
    """The static POSIX sh program run on each host (argument 1: the audit JSONL)."""
    return resources.files(__package__).joinpath("host_status.sh").read_text()


@dataclass
class Check:
    name: str  # what was checked: "container vsa-nginx", "domain shop.example.com", "drift"
    ok: bool
    detail: str  # what was seen, or what is wrong


@dataclass
class HostStatus:
    host: str
    error: str | None = None  # the host could not be read at all
    containers: list[dict] = field(default_factory=list)
    domains: list[dict] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)  # the changes a deploy would make
    last_deploy: dict | None = None
    last_backup: dict | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)

    @property
    def problems(self) -> list[str]:
        found = [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]
        return [self.error] if self.error else found

    def as_dict(self) -> dict:
        data = asdict(self)
        data["ok"], data["problems"] = self.ok, self.problems
        return data


def sections(lines: list[str]) -> dict[str, list[str]]:
    """The host program's sections by name (the state read's own sections are left to its parser)."""
    found: dict[str, list[str]] = {}
    current = None
    for line in lines:
        if line.startswith(MARK):
            name = line[len(MARK):].strip()
            current = name if name.startswith("status-") else None
            if current:
                found[current] = []
        elif current is not None and line.strip():
            found[current].append(line)
    return found


def containers(lines: list[str]) -> list[dict]:
    """``name|project|service|state|health|restarts|exit code|restart policy`` lines, by name."""
    rows = []
    for line in lines:
        parts = line.split("|")
        if len(parts) != 8:
            continue
        name, project, service, state, health, restarts, exit_code, policy = parts
        rows.append({"name": name.lstrip("/"), "stack": project, "service": service, "state": state,
                     "health": health or None, "restarts": int(restarts) if restarts.isdigit() else None,
                     "exit_code": int(exit_code) if exit_code.lstrip("-").isdigit() else None,
                     "restart_policy": policy or "no"})
    return sorted(rows, key=lambda r: (r["stack"], r["name"]))


def container_check(row: dict) -> Check:
    """Up: running and not unhealthy; a one-shot container (restart policy "no") that ended with 0 is done."""
    seen = row["state"] + (f", {row['health']}" if row["health"] else "") + f", restarts {row['restarts']}"
    if row["state"] == "running":
        ok = row["health"] in (None, "healthy", "starting")
    else:
        ok = row["state"] == "exited" and row["exit_code"] == 0 and row["restart_policy"] == "no"
    return Check(f"container {row['name']}", ok, seen if ok else f"is {seen}")


def domain_check(row: dict) -> Check:
    """A domain answers (2xx/3xx, or 401 when it asks for a password) and its certificate has more
    than EXPIRY_DAYS days left. ``row``: domain, tls, auth, status (None when the request failed),
    error, expires (aware datetime or None), days_left."""
    name = f"domain {row['domain']}"
    if row["status"] is None:
        return Check(name, False, f"no answer: {row['error']}")
    answered = f"{'HTTPS' if row['tls'] else 'HTTP'} {row['status']}"
    if not (row["status"] < 400 or (row["status"] == 401 and row["auth"])):
        return Check(name, False, f"answers {row['status']}")
    if row["tls"]:
        if row["expires"] is None:
            return Check(name, False, f"{answered}, but no certificate was served")
        left = row["days_left"]
        if left < EXPIRY_DAYS:
            return Check(name, False, f"certificate expires in {left} days ({row['expires']:%Y-%m-%d})")
        answered += f", certificate {left} days left"
    return Check(name, True, answered)


def days_left(expires: dt.datetime, now: dt.datetime | None = None) -> int:
    return (expires - (now or dt.datetime.now(dt.timezone.utc))).days


def audit_record(lines: list[str]) -> dict | None:
    """The last record of an action: time, actor, result (and why it failed)."""
    record = parse_line(lines[-1]) if lines else None
    if record is None:
        return None
    when = record_time(record)
    return {"ts": when.isoformat() if when else str(record.get("ts")), "actor": record.get("actor"),
            "result": record.get("result"), "target": record.get("target"), "error": record.get("error")}


def audit_check(action: str, record: dict | None) -> Check | None:
    """The last deploy must not have failed; an action never recorded is not a problem of its own."""
    if record is None:
        return None
    ok = record["result"] == "ok"
    detail = f"{record['result']} at {record['ts']} by {record['actor']}"
    return Check(f"last {action}", ok, detail + (f": {record['error']}" if record.get("error") and not ok else ""))


def drift_check(changes: list[str], error: str | None = None) -> Check:
    if error:
        return Check("drift", False, f"not checked: {error}")
    if not changes:
        return Check("drift", True, "matches the code")
    return Check("drift", False, f"drifted from the code ({'; '.join(changes)}): `vsa-ops plan` shows it, "
                                 "`vsa-ops deploy` repairs it")
