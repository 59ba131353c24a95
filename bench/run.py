#!/usr/bin/env python3
"""vsa-ops benchmark: converge times on lab hosts, on loopback and with added WAN latency, against
stock pyinfra and Ansible doing the same work, with the remote commands each run executed.

    python3 bench/run.py            # full: 5 runs per row (about 75 minutes)
    python3 bench/run.py --quick    # smoke check: 1 run, no Ansible, no 5/10-host rows (a few minutes)
    python3 bench/run.py --runs 3 --only noop,domains

Rows run one after the other (never two measurements at once: the controller has 2 cores); each
figure is the median of --runs runs, loopback and +RTT runs alternate, so every ratio compares
figures from the same bench run. See bench/README.md for what each row measures.

Remote commands are counted by the lab hosts' sshd: the bench sets ``LogLevel VERBOSE`` there, which
logs one "Starting session:" line per SSH session channel (each command, each SFTP transfer), for any
tool, and reads ``docker logs --since`` of each host after the run.

Everything the bench adds is removed on exit, also on Ctrl-C, SIGTERM or an error: its domains in the
lab registry (and on the hosts), the iptables rules and the delay proxy (a watchdog removes those two
even after SIGKILL), its temporary folder. Lab hosts are left up.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import pprint
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from delay_proxy import Wan, our_rules  # noqa: E402

LAB = ROOT / ".lab"
CACHE = Path("/var/cache/vsa-ops")
STATE = CACHE / "bench"
VENV = CACHE / "bench-venv"
PREFIX = "vsa-lab-"
BENCH_DOMAIN = re.compile(r"^bench-[a-z0-9-]+\.vsa\.test$")
UPSTREAM = "demo-app:8080"
GROUPS = ("first", "noop", "domains", "same", "hosts", "memory")
NETS = ("lo", "wan")
TIMEOUT = 1800  # seconds for any one command


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------- measurement
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
            sample_tree: bool = False, label: str = "") -> tuple[Sample, str]:
        self.counter += 1
        log_file = self.logs / f"{self.counter:04d}-{re.sub(r'[^a-z0-9]+', '-', label.lower())[:60]}.log"
        since = time.time()  # docker stamps a log line when it reads it: never before the event
        peak = [0]
        with open(log_file, "w") as out:
            start = time.monotonic()
            process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
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


# --------------------------------------------------------------------------------------------- lab
def vsa_ops() -> list[str]:
    """The console script installed beside this Python, as pyinfra and Ansible are run from theirs: a
    version manager's shim on PATH (pyenv's) would add 0.1-0.3 s of its own to every vsa-ops row."""
    beside = Path(sys.executable).with_name("vsa-ops")
    found = str(beside) if beside.is_file() else shutil.which("vsa-ops")
    if not found:
        raise SystemExit("bench: no vsa-ops command; run `bash .ci/setup` first")
    return [found]


def lab_hosts() -> list[tuple[str, dict]]:
    path = LAB / "inventory.py"
    if not path.exists():
        return []
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    hosts = list(namespace.get("lab", []))
    return sorted(hosts, key=lambda h: int(h[0].removeprefix(PREFIX)) if h[0].removeprefix(PREFIX).isdigit() else 0)


def write_inventory(folder: Path, count: int) -> Path:
    """The first ``count`` lab hosts, with the same data as .lab/inventory.py (same registry,
    secrets, ports), so that a row touches exactly those hosts."""
    hosts = lab_hosts()[:count]
    if len(hosts) < count:
        raise RuntimeError(f"the lab has {len(hosts)} hosts, the bench needs {count}")
    path = folder / f"inventory-{count}.py"
    path.write_text(f'"""The first {count} lab hosts of .lab/inventory.py (written by bench/run.py)."""\n\n'
                    f"lab = {pprint.pformat(hosts, width=120)}\n\nhubs = [name for name, _ in lab]\n")
    return path


def ssh_ports(count: int) -> list[int]:
    return [data["ssh_port"] for _, data in lab_hosts()[:count]]


def host_names(count: int) -> list[str]:
    return [name for name, _ in lab_hosts()[:count]]


SSHD_DROPIN = "/etc/ssh/sshd_config.d/00-vsa-bench.conf"


def verbose_sshd(names: list[str]) -> None:
    """sshd logs one line per session channel; SIGHUP makes it re-read its configuration (new
    connections only). Idempotent."""
    script = (f"grep -qs '^LogLevel VERBOSE' {SSHD_DROPIN} && exit 0; "
              f"printf '# vsa-ops bench: one log line per SSH session (remote command)\\nLogLevel VERBOSE\\n' "
              f"> {SSHD_DROPIN} && kill -HUP $(cat /run/sshd.pid) && sleep 0.5")
    for name in names:
        subprocess.run(["docker", "exec", name, "sh", "-c", script], check=True, capture_output=True)


def sh(argv: list[str], what: str, *, check: bool = True, env: dict | None = None, quiet: bool = True,
       retries: int = 1) -> subprocess.CompletedProcess:
    """An untimed step; retried once (the lab is shared), its output shown only on failure."""
    for attempt in range(retries + 1):
        result = subprocess.run(argv, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL)
        if result.returncode == 0 or not check:
            return result
        log(f"{what}: failed (exit {result.returncode}){', retrying' if attempt < retries else ''}")
        if attempt == retries:
            sys.stderr.write((result.stdout + result.stderr)[-4000:])
            raise RuntimeError(f"{what} failed")
        time.sleep(2)
    raise AssertionError


# ------------------------------------------------------------------------------------------- bench
@dataclass
class Row:
    key: str
    group: str
    label: str
    samples: dict[str, list[Sample]] = field(default_factory=lambda: {"lo": [], "wan": []})
    extra: dict = field(default_factory=dict)


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.runs = args.runs
        self.nets = ("lo",) if args.no_wan else NETS
        self.tmp = Path(tempfile.mkdtemp(prefix="vsa-bench-"))
        os.chmod(self.tmp, 0o700)
        (self.tmp / "logs").mkdir()
        self.runner = Runner(self.tmp / "logs")
        self.wan = Wan(args.delay_ms, STATE, log=log)
        self.rows: dict[str, Row] = {}
        self.registry_touched = False
        self.lab_size = 0
        self.started = dt.datetime.now()
        self.closed = False
        self.meta: dict = {}
        self.profile: dict[str, list[dict]] = {}

    # -- bookkeeping
    def row(self, key: str, group: str, label: str) -> Row:
        if key not in self.rows:
            self.rows[key] = Row(key, group, label)
        return self.rows[key]

    def measure(self, row: Row, net: str, argv: list[str], hosts: list[str], *, env: dict | None = None,
                cwd: Path = ROOT, sample_tree: bool = False, noop_check=None, before=None) -> Sample:
        """One timed run on ``net`` (the delay proxy on for "wan"); a failed run is retried once."""
        sample = None
        for attempt in range(2):
            if before:
                before()
            if net == "wan":
                self.wan.on()
            try:
                sample, text = self.runner.run(argv, hosts, env=env, cwd=cwd, sample_tree=sample_tree,
                                               label=f"{row.key}-{net}")
            finally:
                self.wan.off()
            if noop_check is not None and sample.ok:
                sample.noop = noop_check(text)
            if sample.ok:
                break
            log(f"  {row.label} [{net}]: {sample.note}" + ("; retrying once" if attempt == 0 else "; giving up"))
        row.samples[net].append(sample)
        cmds = "" if sample.commands is None else f", {sample.commands} remote commands"
        log(f"  {row.label} [{net}]: {sample.seconds:.2f} s{cmds}{'' if sample.ok else ' FAILED'}"
            + ("" if sample.noop in (None, True) else " (not a no-op!)"))
        return sample

    # -- lab
    def ensure_lab(self, count: int) -> None:
        """At least ``count`` lab hosts up (others are kept), each converged, sshd counting."""
        running = sum(1 for name, _ in lab_hosts()
                      if subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True,
                                        text=True).stdout.strip() == "true")
        if running < count or len(lab_hosts()) < count:
            log(f"lab: vsa-ops lab up --hosts {count}")
            sh([*vsa_ops(), "lab", "up", "--hosts", str(count)], "vsa-ops lab up")
        self.lab_size = max(count, len(lab_hosts()))
        verbose_sshd(host_names(count))
        for k in sorted({1, count}):
            write_inventory(self.tmp, k)
        self.wan.start(ssh_ports(len(lab_hosts())))

    def converge(self, count: int, what: str) -> None:
        log(f"{what}: vsa-ops deploy on {count} host(s) (not timed)")
        sh([*vsa_ops(), "deploy", "-i", str(write_inventory(self.tmp, count))], what)

    def inventory(self, count: int) -> Path:
        return write_inventory(self.tmp, count)

    # -- registry of the lab (.lab/domains.yml)
    def registry_path(self) -> Path:
        hosts = lab_hosts()
        return Path(hosts[0][1].get("vsa_domains_file", LAB / "domains.yml")) if hosts else LAB / "domains.yml"

    def set_bench_domains(self, count: int) -> None:
        """Exactly ``count`` bench domains (TLS off, upstream demo-app:8080) in the lab registry,
        besides whatever else it holds."""
        from vsa_ops.domains import Domain, load_registry, save_registry

        path = self.registry_path()
        registry = {name: d for name, d in load_registry(path).items() if not BENCH_DOMAIN.match(name)}
        for index in range(count):
            name = f"bench-{index:03d}.vsa.test"
            registry[name] = Domain(name=name, upstream=UPSTREAM, tls=False)
        self.registry_touched = True
        save_registry(path, registry)

    def bench_domains_left(self) -> list[str]:
        from vsa_ops.domains import load_registry

        path = self.registry_path()
        return [name for name in load_registry(path) if BENCH_DOMAIN.match(name)] if path.exists() else []

    # ----------------------------------------------------------------------------------- groups
    def group_first(self) -> None:
        """First deploy: `vsa-ops lab down && vsa-ops lab up`, then a timed `vsa-ops deploy`."""
        row = self.row("first", "first", "first deploy (fresh lab host)")
        for run in range(self.runs):
            for net in self.nets:
                def fresh() -> None:
                    log(f"first deploy {run + 1}/{self.runs} [{net}]: vsa-ops lab down && vsa-ops lab up (not timed)")
                    self.wan.off()
                    sh([*vsa_ops(), "lab", "down"], "vsa-ops lab down")
                    sh([*vsa_ops(), "lab", "up"], "vsa-ops lab up")
                    self.lab_size = 1
                    verbose_sshd(host_names(1))
                    self.wan.start(ssh_ports(1))

                self.measure(row, net, [*vsa_ops(), "deploy", "-i", str(LAB / "inventory.py")], host_names(1),
                             before=fresh)

    def group_noop(self) -> None:
        """No-op converge of the full hub, 1 host, with 0, 50 and 200 domains."""
        self.ensure_lab(1)
        inventory = self.inventory(1)
        for count in (0, 50, 200):
            row = self.row(f"noop-{count}", "noop", f"no-op converge, {count} domains")
            self.set_bench_domains(count)
            self.converge(1, f"{count} domains")
            row.extra["domains"] = count
            for run in range(self.runs):
                for net in self.nets:
                    self.measure(row, net, [*vsa_ops(), "deploy", "-i", str(inventory)], host_names(1),
                                 noop_check=_vsa_noop)
            if count == 200:
                self.profile_noop(inventory)
        self.set_bench_domains(0)
        self.converge(1, "bench domains removed")

    def profile_noop(self, inventory: Path) -> None:
        """With 200 domains: the same no-op with `pyinfra -y` alone (no vsa-ops CLI around it), and
        bench/profile.py's step-by-step breakdown."""
        row = self.row("noop-200-pyinfra", "noop", "no-op converge, 200 domains: `pyinfra -y` alone, no vsa-ops CLI")
        for run in range(self.runs):
            for net in self.nets:
                self.measure(row, net, [sys.executable, "-m", "pyinfra", "-y", str(inventory), "deploy.py"],
                             host_names(1), noop_check=_vsa_noop)
        self.profile = {net: [] for net in self.nets}
        for run in range(self.runs):
            for net in self.nets:
                if net == "wan":
                    self.wan.on()
                try:
                    result = subprocess.run([sys.executable, str(HERE / "profile.py"), "--inventory", str(inventory),
                                             "--host", host_names(1)[0]], cwd=ROOT, capture_output=True, text=True,
                                            stdin=subprocess.DEVNULL)
                finally:
                    self.wan.off()
                if result.returncode == 0:
                    self.profile[net].append(json.loads(result.stdout.strip().splitlines()[-1]))
                else:
                    log(f"  profile [{net}]: failed: {result.stderr[-500:]}")

    def group_domains(self) -> None:
        """add-domain without and with ACME; remove-domain after each (not timed)."""
        self.ensure_lab(1)
        self.set_bench_domains(0)
        inventory = self.inventory(1)
        for run in range(self.runs):
            for kind in ("http", "acme"):
                row = self.row(f"add-{kind}", "domains",
                               "add-domain --no-tls" if kind == "http" else "add-domain with ACME (pebble)")
                for net in self.nets:
                    name = f"bench-add-{run}-{kind}-{net}.vsa.test"
                    argv = [*vsa_ops(), "add-domain", name, "--upstream", UPSTREAM, "-i", str(inventory)]
                    if kind == "http":
                        argv.append("--no-tls")

                    def clean(name=name) -> None:
                        if name in self.bench_domains_left():
                            sh([*vsa_ops(), "remove-domain", name, "-i", str(inventory)], f"remove-domain {name}")

                    self.registry_touched = True
                    self.measure(row, net, argv, host_names(1), before=clean)
                    clean()

    def group_same(self) -> None:
        """The managed paths: vsa-ops no-op converge vs stock pyinfra (op per path) vs Ansible, for
        the hub alone and (full mode) with 200 domains."""
        self.ensure_lab(1)
        for domains in self.args.same_domains:
            self.same_work(domains)
        self.set_bench_domains(0)
        self.converge(1, "same work: bench domains removed")

    def same_work(self, domains: int) -> None:
        self.set_bench_domains(domains)
        self.converge(1, f"same work, {domains} domains: the host at its manifest")
        inventory = self.inventory(1)
        work = self.tmp / f"samework-{domains}"
        work.mkdir(exist_ok=True)
        summary = json.loads(sh([sys.executable, str(HERE / "samework.py"), "--inventory", str(inventory),
                                 "--host", host_names(1)[0], "--out", str(work)], "samework").stdout)
        self.meta[f"same_work_{domains}"] = summary
        log(f"same work, {domains} domains: {summary['directories']} directories + {summary['files']} files")
        # With 200 domains stock pyinfra takes minutes and Ansible many: fewer runs (the runs column says).
        heavy = domains > 0
        tools = [("vsa-ops", [*vsa_ops(), "deploy", "-i", str(inventory)], ROOT, {}, _vsa_noop,
                  min(self.runs, 3) if heavy else self.runs),
                 ("pyinfra", [sys.executable, "-m", "pyinfra", "-y", "inventory.py", "deploy.py"], work / "pyinfra", {},
                  _pyinfra_noop, min(self.runs, 3) if heavy else self.runs)]
        if not self.args.no_ansible:
            ansible = self.ensure_ansible()
            self.ensure_python3(host_names(1)[0])
            (work / "ansible" / "cp").mkdir(exist_ok=True)
            tools.append(("ansible", [str(ansible), "-i", "inventory.ini", "playbook.yml"], work / "ansible",
                          {"ANSIBLE_CONFIG": str(work / "ansible" / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
                          _ansible_noop, 1 if heavy else self.runs))
        what = f"{domains} domains, {summary['paths']} paths"
        labels = {"vsa-ops": f"vsa-ops deploy, no-op ({what} + the rest)",
                  "pyinfra": f"stock pyinfra, 1 op per path ({what})",
                  "ansible": f"Ansible, 1 task per path ({what})"}
        if not heavy:
            # A first run of each, not timed; then each is a no-op (flagged in the table if not).
            for tool, argv, cwd, env, _, _ in tools[1:]:
                log(f"same work: first {tool} run (not timed)")
                result = subprocess.run(argv, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True,
                                        stdin=subprocess.DEVNULL)
                self.close_ansible_masters(work)
                if result.returncode:
                    sys.stderr.write((result.stdout + result.stderr)[-3000:])
                    raise RuntimeError(f"same work: {tool} failed")
            self.converge(1, "same work: vsa-ops after the others")
        for run in range(self.runs):
            for tool, argv, cwd, env, noop, runs in tools:
                if run >= runs:
                    continue
                row = self.row(f"same{domains or ''}-{tool}", "same", labels[tool])
                row.extra.update(paths=summary["paths"], domains=domains)
                for net in self.nets:
                    self.measure(row, net, argv, host_names(1), cwd=cwd, env=env, noop_check=noop)
                    if tool == "ansible":
                        self.close_ansible_masters(work)

    def group_hosts(self) -> None:
        """1, 5 and 10 hosts converged in parallel (no-op), one `vsa-ops deploy`."""
        self.ensure_lab(10)
        self.set_bench_domains(0)
        self.converge(10, "10 hosts")
        for run in range(self.runs):
            for count in (1, 5, 10):
                row = self.row(f"hosts-{count}", "hosts", "no-op converge, 1 host" if count == 1 else
                               f"no-op converge, {count} hosts in parallel")
                for net in self.nets:
                    self.measure(row, net, [*vsa_ops(), "deploy", "-i", str(self.inventory(count))],
                                 host_names(count), noop_check=_vsa_noop)

    def group_memory(self) -> None:
        """Controller memory: no-op converge of 200 domains on 10 hosts."""
        self.ensure_lab(10)
        self.set_bench_domains(200)
        self.converge(10, "200 domains on 10 hosts")
        row = self.row("memory", "memory", "no-op converge, 200 domains x 10 hosts")
        for run in range(self.runs):
            for net in self.nets:
                self.measure(row, net, [*vsa_ops(), "deploy", "-i", str(self.inventory(10))], host_names(10),
                             sample_tree=True, noop_check=_vsa_noop)
        self.set_bench_domains(0)
        self.converge(10, "bench domains removed from 10 hosts")

    # -- tools
    def ensure_ansible(self) -> Path:
        binary = VENV / "bin" / "ansible-playbook"
        if not binary.exists():
            log(f"ansible: installing ansible-core into {VENV}")
            sh([sys.executable, "-m", "venv", str(VENV)], "python3 -m venv")
            sh([str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "ansible-core"],
               "pip install ansible-core")
        version = subprocess.run([str(VENV / "bin" / "ansible"), "--version"], capture_output=True,
                                 text=True).stdout.splitlines()
        self.meta["ansible"] = version[0] if version else "?"
        return binary

    def ensure_python3(self, name: str) -> None:
        """Ansible's modules need python3 on the target; the lab image has none."""
        if subprocess.run(["docker", "exec", name, "test", "-x", "/usr/bin/python3"]).returncode == 0:
            return
        log(f"ansible: apt-get install python3 in {name}")
        sh(["docker", "exec", "-e", "DEBIAN_FRONTEND=noninteractive", name, "sh", "-c",
            "apt-get -q update && apt-get install -y -q --no-install-recommends python3"], "install python3")

    def close_ansible_masters(self, work: Path) -> None:
        """Ansible leaves its SSH ControlMaster running for 60 s: stop it, so each run connects anew."""
        for socket_path in (work / "ansible" / "cp").glob("*"):
            subprocess.run(["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "x"], capture_output=True)

    # -- whole run
    def run(self) -> None:
        groups = [g for g in GROUPS if g in self.args.only and g not in self.args.skip]
        log(f"bench: {', '.join(groups)}; {self.runs} run(s) per row; networks: "
            + ", ".join("loopback" if n == "lo" else f"+{2 * self.args.delay_ms:g} ms RTT" for n in self.nets))
        self.meta.update(self.machine())
        for group in groups:
            log(f"== {group}")
            getattr(self, f"group_{group}")()

    def machine(self) -> dict:
        mem = 0
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    mem = round(int(line.split()[1]) / 1024 / 1024)
        os_name = ""
        if Path("/etc/os-release").exists():
            for line in Path("/etc/os-release").read_text().splitlines():
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip('"')
        import pyinfra

        return {"cores": os.cpu_count(), "memory_gib": mem, "os": os_name, "kernel": platform.release(),
                "python": platform.python_version(), "pyinfra": getattr(pyinfra, "__version__", "")
                or _pkg_version("pyinfra"), "delay_ms_one_way": self.args.delay_ms,
                "started": self.started.isoformat(timespec="seconds")}

    def close(self) -> None:
        """Undo everything this bench added. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self.runner.stop()
        try:
            self.wan.close()
        except Exception as error:  # keep going: the rest must still be cleaned
            log(f"cleanup: delay proxy: {error}")
        if our_rules():
            from delay_proxy import sweep

            sweep()
        try:
            if self.registry_touched and self.bench_domains_left():
                log("cleanup: removing the bench's domains from the lab registry and the hosts")
                self.set_bench_domains(0)
                count = min(self.lab_size or 1, len(lab_hosts()))
                if count:
                    sh([*vsa_ops(), "deploy", "-i", str(write_inventory(self.tmp, count))], "cleanup converge",
                       check=False)
        except Exception as error:
            log(f"cleanup: domains: {error}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        left = our_rules()  # iptables -t nat -S OUTPUT, our comment
        log("cleanup: iptables -t nat -S OUTPUT: " + ("no rule of the bench" if not left else f"LEFT: {left}"))


def _pkg_version(name: str) -> str:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:
        return ""


def _vsa_noop(text: str) -> bool:
    return "no changes: the host matches its manifest" in text and not re.search(r"\bSuccess\b\s*$", text, re.M)


def _pyinfra_noop(text: str) -> bool:
    match = re.search(r"Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)", text)
    return bool(match) and match.group(2) == "-" and match.group(3) == "-"


def _ansible_noop(text: str) -> bool:
    recap = re.findall(r"changed=(\d+).*?failed=(\d+)", text)
    return bool(recap) and all(c == "0" and f == "0" for c, f in recap)


# ------------------------------------------------------------------------------------------ report
def _median(samples: list[Sample], attr: str = "seconds") -> float | None:
    values = [getattr(s, attr) for s in samples if s.ok and getattr(s, attr) is not None]
    return statistics.median(values) if values else None


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def _fmt_cmds(row: Row, nets) -> str:
    parts = []
    for net in nets:
        values = sorted({s.commands for s in row.samples[net] if s.ok and s.commands is not None})
        if not values:
            parts.append("-")
        else:
            parts.append(str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}")
    return parts[0] if len(set(parts)) == 1 else " / ".join(parts)


def _flags(row: Row) -> str:
    notes = []
    samples = [s for net in NETS for s in row.samples[net]]
    failed = sum(1 for s in samples if not s.ok)
    if failed:
        notes.append(f"{failed} failed")
    if any(s.noop is False for s in samples):
        notes.append("not always a no-op")
    return ", ".join(notes)


def table(bench: Bench, markdown: bool) -> str:
    nets = bench.nets
    rtt = f"+{2 * bench.args.delay_ms:g} ms RTT"
    header = ["row", *("loopback" if n == "lo" else rtt for n in nets), "remote commands", "max RSS", "runs"]
    lines = []
    for row in bench.rows.values():
        memory = _median([s for n in nets for s in row.samples[n]], "rss_kb")
        tree = _median([s for n in nets for s in row.samples[n]], "tree_rss_kb")
        rss = "-" if not memory else f"{memory / 1024:.0f} MB"
        if tree:
            rss += f" (tree {tree / 1024:.0f} MB)"
        runs = "/".join(str(sum(1 for s in row.samples[n] if s.ok)) for n in nets)
        flags = _flags(row)
        lines.append([row.label + (f" [{flags}]" if flags else ""),
                      *(_fmt_s(_median(row.samples[n])) for n in nets), _fmt_cmds(row, nets), rss, runs])
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(len(header))]
    fmt = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(line) for line in lines)])


def targets(bench: Bench) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each target of the issue whose rows ran."""
    rows, out = bench.rows, []
    med = lambda key, net: _median(rows[key].samples[net]) if key in rows else None  # noqa: E731
    wan = "wan" if "wan" in bench.nets else None
    if wan and med("noop-200", wan) is not None:
        value = med("noop-200", wan)
        out.append(("no-op converge, 200 domains, +50 ms RTT: within 3 s", _fmt_s(value), value <= 3.0))
    for domains in ("", "200"):
        for tool, factor in (("pyinfra", 10), ("ansible", 30)):
            for net in bench.nets:
                ours, theirs = med(f"same{domains}-vsa-ops", net), med(f"same{domains}-{tool}", net)
                if ours and theirs:
                    ratio = theirs / ours
                    where = "loopback" if net == "lo" else "+50 ms RTT"
                    name = "stock pyinfra" if tool == "pyinfra" else "Ansible"
                    out.append((f"same work ({domains or 0} domains), {where}: >= {factor}x faster than {name}",
                                f"{ratio:.1f}x ({_fmt_s(theirs)} vs {_fmt_s(ours)})", ratio >= factor))
    counts = {}
    for key in ("noop-0", "noop-50", "noop-200"):
        if key in rows:
            counts[key] = sorted({s.commands for n in bench.nets for s in rows[key].samples[n] if s.ok})
    if counts:
        flat = {c for values in counts.values() for c in values}
        out.append(("remote commands of a no-op converge independent of the number of domains",
                    ", ".join(f"{k.split('-')[1]} domains: {'/'.join(map(str, v))}" for k, v in counts.items()),
                    len(flat) == 1))
    if wan and med("add-http", wan) is not None:
        value = med("add-http", wan)
        out.append(("add-domain without ACME, +50 ms RTT: under 2 s", _fmt_s(value), value < 2.0))
    for net in bench.nets:
        one, ten = med("hosts-1", net), med("hosts-10", net)
        if one and ten:
            where = "loopback" if net == "lo" else "+50 ms RTT"
            out.append((f"10 hosts in parallel, {where}: within 1.5x one host", f"{ten / one:.2f}x "
                        f"({_fmt_s(ten)} vs {_fmt_s(one)})", ten / one <= 1.5))
    return out


PROFILE_STEPS = [
    ("start", "python start-up and imports (gevent, pyinfra, pydantic, vsa_ops)"),
    ("inventory", "inventory and group_data"),
    ("render", "render the manifest (once)"),
    ("connect", "SSH connect"),
    ("state", "the state command (1 remote command, from the controller)"),
    ("script", "  of which the state script on the host (docker exec, less its start-up)"),
    ("plan", "plan"),
    ("disconnect", "disconnect"),
]


def breakdown(bench: Bench, markdown: bool) -> str:
    if not bench.profile or not any(bench.profile.values()):
        return ""
    nets = [n for n in bench.nets if bench.profile.get(n)]
    rtt = f"+{2 * bench.args.delay_ms:g} ms RTT"
    header = ["step (no-op converge, 200 domains, 1 host)", *("loopback" if n == "lo" else rtt for n in nets)]
    rows = [[label, *(_fmt_s(statistics.median(p[key] for p in bench.profile[n])) for n in nets)]
            for key, label in PROFILE_STEPS]
    sample = bench.profile[nets[0]][0]
    rows.append(["paths checked / state command / its output", f"{sample['paths']} / {sample['command_bytes']} B / "
                 f"{sample['output_bytes']} B", *([""] * (len(nets) - 1))])
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|---" + "|---:" * len(nets) + "|"]
        return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in [header, *rows])


def report(bench: Bench) -> str:
    meta = bench.meta
    machine = (f"{meta.get('cores')} cores, {meta.get('memory_gib')} GiB, {meta.get('os')}, kernel "
               f"{meta.get('kernel')}, Python {meta.get('python')}, pyinfra {meta.get('pyinfra')}"
               + (f", {meta['ansible']}" if meta.get("ansible") else "") + "; lab hosts on loopback")
    lines = [f"vsa-ops bench, {meta.get('started')}: medians of {bench.runs} run(s); {machine}", "",
             table(bench, markdown=False), "", breakdown(bench, markdown=False), "", "Targets:"]
    for name, value, met in targets(bench):
        lines.append(f"  [{'met' if met else 'MISSED'}] {name}: {value}")
    lines += ["", "Markdown:", "",
              f"Medians of {bench.runs} run(s), {bench.started:%Y-%m-%d}; {machine}. Remote commands: SSH session "
              "channels counted by the lab hosts' sshd.", "", table(bench, markdown=True), "",
              breakdown(bench, markdown=True), "", "| target | measured | |", "|---|---|---|"]
    for name, value, met in targets(bench):
        lines.append(f"| {name} | {value} | {'met' if met else '**missed**'} |")
    return "\n".join(lines)


def save(bench: Bench, text: str) -> Path:
    STATE.mkdir(parents=True, exist_ok=True)
    path = bench.args.json or STATE / f"results-{bench.started:%Y%m%d-%H%M%S}.json"
    data = {"meta": bench.meta, "runs": bench.runs,
            "rows": {k: {"label": r.label, "group": r.group, "extra": r.extra,
                         "samples": {n: [asdict(s) for s in v] for n, v in r.samples.items()}}
                     for k, r in bench.rows.items()},
            "profile": bench.profile, "targets": [{"target": t, "measured": v, "met": m} for t, v, m in targets(bench)], "report": text}
    Path(path).write_text(json.dumps(data, indent=1))
    return Path(path)


# -------------------------------------------------------------------------------------------- main
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="groups: first (first deploy), noop (0/50/200 domains), domains "
                                            "(add-domain), same (vs stock pyinfra and Ansible), hosts (1/5/10 hosts), "
                                            "memory (200 domains x 10 hosts)")
    parser.add_argument("--quick", action="store_true",
                        help="1 run per row, no Ansible, no 5/10-host rows: a smoke check in a few minutes")
    parser.add_argument("--runs", type=int, default=None, help="runs per row and network (default 5; 1 with --quick)")
    parser.add_argument("--only", default=",".join(GROUPS), help="comma-separated groups to run")
    parser.add_argument("--skip", default="", help="comma-separated groups to leave out")
    parser.add_argument("--no-ansible", action="store_true", help="leave Ansible out of the same-work rows")
    parser.add_argument("--no-wan", action="store_true", help="loopback only")
    parser.add_argument("--same-domains", default=None,
                        help="domain counts for the same-work rows (default 0,200; 0 with --quick)")
    parser.add_argument("--delay-ms", type=float, default=25.0, help="one-way added delay (default 25: +50 ms RTT)")
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write the raw results (default /var/cache/vsa-ops/bench/results-*.json)")
    args = parser.parse_args(argv)
    args.only = [g.strip() for g in args.only.split(",") if g.strip()]
    args.skip = [g.strip() for g in args.skip.split(",") if g.strip()]
    for group in args.only + args.skip:
        if group not in GROUPS:
            parser.error(f"unknown group {group!r} (groups: {', '.join(GROUPS)})")
    if args.quick:
        args.runs = args.runs or 1
        args.no_ansible = True
        args.skip += ["hosts", "memory"]
    args.runs = args.runs or 5
    args.same_domains = [int(x) for x in (args.same_domains or ("0" if args.quick else "0,200")).split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (iptables, docker)")
    for tool in ("docker", "iptables", "setpriv", "ssh"):
        if not shutil.which(tool):
            raise SystemExit(f"bench: {tool} is missing; run `bash .ci/setup` first")
    os.chdir(ROOT)
    STATE.mkdir(parents=True, exist_ok=True)
    from delay_proxy import sweep

    if sweep():
        log("bench: removed iptables rules left by an earlier run")
    bench = Bench(args)
    atexit.register(bench.close)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    status = 0
    try:
        if bench.bench_domains_left():
            log("bench: bench domains left by an earlier run are removed at the end")
            bench.registry_touched = True
        bench.run()
    except KeyboardInterrupt as interrupt:
        log(f"bench: interrupted ({interrupt or 'SIGINT'}); cleaning up")
        status = 130
    except Exception as error:
        log(f"bench: {type(error).__name__}: {error}; cleaning up")
        status = 1
    finally:
        bench.close()
    if bench.rows:
        text = report(bench)
        print(text)
        log(f"raw results: {save(bench, text)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
