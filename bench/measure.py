"""Timing one command: its wall-clock time, its memory, the remote commands the lab hosts saw, and
whether the tool reported nothing to change; the rows that collect those samples and their medians.

Remote commands are counted by the lab hosts' sshd: the bench sets ``LogLevel VERBOSE`` there, which
logs one "Starting session:" line per SSH session channel (each command, each SFTP transfer), for any
tool, and reads ``docker logs --since`` of each host after the run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from paths import ROOT, STATE

NETS = ("lo", "wan")  # loopback, and through the delay proxy
TIMEOUT = 1800  # seconds for any one command


@dataclass
class Sample:
    seconds: float
    ok: bool
    commands: int | None = None  # SSH session channels opened on the hosts (sshd VERBOSE)
    connections: int | None = None  # SSH logins on the hosts
    rss_kb: int = 0  # the largest single process of the command's tree (wait4)
    tree_rss_kb: int = 0  # the whole tree, sampled every 0.1 s (memory row only)
    noop: bool | None = None  # the tool reported nothing to change
    note: str = ""


@dataclass
class Row:
    key: str
    group: str
    label: str
    samples: dict[str, list[Sample]] = field(default_factory=lambda: {"lo": [], "wan": []})
    extra: dict = field(default_factory=dict)


def median(samples: list[Sample], attr: str = "seconds") -> float | None:
    values = [getattr(s, attr) for s in samples if s.ok and getattr(s, attr) is not None]
    return statistics.median(values) if values else None


def _tree_rss(root_pid: int) -> int:
    """Resident KB of ``root_pid`` and its descendants (scanning /proc: no children file here)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
            fields = stat[stat.rfind(")") + 2:].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        current = frontier.pop()
        for pid, parent in parents.items():
            if parent == current and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(rss.get(pid, 0) for pid in tree)


def _ssh_counts(hosts: list[str], since: float) -> tuple[int, int]:
    sessions = logins = 0
    for name in hosts:
        out = subprocess.run(["docker", "logs", "--since", f"{since:.6f}", name], capture_output=True,
                             text=True).stderr
        sessions += out.count("Starting session:")
        logins += out.count("Accepted publickey")
    return sessions, logins


class Runner:
    """Runs one command, timed, in its own process group; counts what the hosts saw."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.current: subprocess.Popen | None = None
        self.counter = 0

    def run(self, argv: list[str], hosts: list[str], *, env: dict | None = None, cwd: Path = ROOT,
            sample_tree: bool = False, label: str = "", stdin: Path | None = None) -> tuple[Sample, str]:
        self.counter += 1
        log_file = self.logs / f"{self.counter:04d}-{re.sub(r'[^a-z0-9]+', '-', label.lower())[:60]}.log"
        since = time.time()  # docker stamps a log line when it reads it: never before the event
        peak = [0]
        with open(log_file, "w") as out, open(stdin or os.devnull, "rb") as source:
            start = time.monotonic()
            process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdin=source,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            self.current = process
            stop = threading.Event()
            sampler = None
            if sample_tree:
                def sample() -> None:
                    while not stop.wait(0.1):
                        peak[0] = max(peak[0], _tree_rss(process.pid))

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
            killer = threading.Timer(TIMEOUT, lambda: _kill_group(process))
            killer.start()
            try:
                _, status, usage = os.wait4(process.pid, 0)
            finally:
                killer.cancel()
                stop.set()
                self.current = None
            seconds = time.monotonic() - start
            process.returncode = os.waitstatus_to_exitcode(status)
            if sampler:
                sampler.join()
        time.sleep(0.3)  # let the hosts' sshd log lines reach docker logs
        commands, logins = _ssh_counts(hosts, since) if hosts else (None, None)
        text = log_file.read_text(errors="replace")
        if process.returncode != 0:  # keep it: the temporary folder goes at the end
            kept = STATE / "failed" / f"{time.strftime('%Y%m%d-%H%M%S')}-{log_file.name}"
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(log_file, kept)
            log_file = kept
        return Sample(round(seconds, 3), process.returncode == 0, commands, logins, usage.ru_maxrss, peak[0],
                      note="" if process.returncode == 0 else f"exit {process.returncode}, see {log_file}"), text

    def stop(self) -> None:
        if self.current is not None and self.current.poll() is None:
            _kill_group(self.current)


def _kill_group(process: subprocess.Popen) -> None:
    """Only the process group this bench started for one command."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        time.sleep(2)
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# Each tool's own words for "nothing changed", read from its output.
def vsa_noop(text: str) -> bool:
    return "no changes: the host matches its manifest" in text and not re.search(r"\bSuccess\b\s*$", text, re.M)


def pyinfra_noop(text: str) -> bool:
    match = re.search(r"Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)", text)
    return bool(match) and match.group(2) == "-" and match.group(3) == "-"


def ansible_noop(text: str) -> bool:
    recap = re.findall(r"changed=(\d+).*?failed=(\d+)", text)
    return bool(recap) and all(c == "0" and f == "0" for c, f in recap)
