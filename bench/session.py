"""One bench run: its rows, its measurements (on loopback or through the delay proxy), the lab it
prepares for them, and undoing all it added on exit."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import tempfile
from pathlib import Path

import lab_setup
from delay_proxy import Wan, our_rules, sweep
from lab_setup import host_names, lab_hosts, sh, ssh_ports, verbose_sshd, vsa_ops, write_inventory
from measure import NETS, Row, Runner, Sample
from paths import ROOT, STATE
from progress import log


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
                cwd: Path = ROOT, sample_tree: bool = False, noop_check=None, before=None,
                stdin: Path | None = None) -> Sample:
        """One timed run on ``net`` (the delay proxy on for "wan"); a failed run is retried once."""
        sample = None
        for attempt in range(2):
            if before:
                before()
            if net == "wan":
                self.wan.on()
            try:
                sample, text = self.runner.run(argv, hosts, env=env, cwd=cwd, sample_tree=sample_tree,
                                               label=f"{row.key}-{net}", stdin=stdin)
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
        if lab_setup.running_hosts() < count or len(lab_hosts()) < count:
            log(f"lab: vsa-ops lab up --hosts {count}")
            sh([*vsa_ops(), "lab", "up", "--hosts", str(count)], "vsa-ops lab up")
        self.lab_size = max(count, len(lab_hosts()))
        verbose_sshd(host_names(count))
        for k in sorted({1, count}):
            write_inventory(self.tmp, k)
        self.wan.start(ssh_ports(len(lab_hosts())))

    def fresh_lab(self) -> None:
        """One new lab host: `vsa-ops lab down && vsa-ops lab up`."""
        self.wan.off()
        sh([*vsa_ops(), "lab", "down"], "vsa-ops lab down")
        sh([*vsa_ops(), "lab", "up"], "vsa-ops lab up")
        self.lab_size = 1
        verbose_sshd(host_names(1))
        self.wan.start(ssh_ports(1))

    def converge(self, count: int, what: str) -> None:
        log(f"{what}: vsa-ops deploy on {count} host(s) (not timed)")
        sh([*vsa_ops(), "deploy", "-i", str(write_inventory(self.tmp, count))], what)

    def inventory(self, count: int) -> Path:
        return write_inventory(self.tmp, count)

    def set_bench_domains(self, count: int) -> None:
        self.registry_touched = True
        lab_setup.save_bench_domains(count)

    # -- whole run
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
            sweep()
        try:
            if self.registry_touched and lab_setup.bench_domains_left():
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
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return ""
