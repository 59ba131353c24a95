"""The rows that time vsa-ops alone: first deploy of a fresh host, no-op converge with 0, 50 and 200
domains (with `pyinfra -y` alone, bench/profile.py's breakdown and the floor rows at 200), add-domain
without and with ACME (200 domains present), 2,000 domains on one host (no-op, floor, add-domain), 1, 5
and 10 hosts in parallel, and the controller's memory for 2,000 domains on 10 hosts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from floor import floor_rows
from lab_setup import UPSTREAM, bench_domains_left, host_names, sh, vsa_ops
from measure import vsa_noop
from paths import HERE, LAB, ROOT
from progress import log

if TYPE_CHECKING:
    from session import Bench


def first_deploy(bench: Bench) -> None:
    """First deploy: `vsa-ops lab down && vsa-ops lab up`, then a timed `vsa-ops deploy`."""
    row = bench.row("first", "first", "first deploy (fresh lab host)")
    for run in range(bench.runs):
        for net in bench.nets:
            def fresh() -> None:
                log(f"first deploy {run + 1}/{bench.runs} [{net}]: vsa-ops lab down && vsa-ops lab up (not timed)")
                bench.fresh_lab()

            bench.measure(row, net, [*vsa_ops(), "deploy", "-i", str(LAB / "inventory.py")], host_names(1),
                          before=fresh)


def noop_converge(bench: Bench) -> None:
    """No-op converge of the full hub, 1 host, with 0, 50 and 200 domains."""
    bench.ensure_lab(1)
    inventory = bench.inventory(1)
    for count in (0, 50, 200):
        row = bench.row(f"noop-{count}", "noop", f"no-op converge, {count} domains")
        bench.set_bench_domains(count)
        bench.converge(1, f"{count} domains")
        row.extra["domains"] = count
        for run in range(bench.runs):
            for net in bench.nets:
                bench.measure(row, net, [*vsa_ops(), "deploy", "-i", str(inventory)], host_names(1),
                              noop_check=vsa_noop)
        if count == 200:
            _pyinfra_alone_and_profile(bench, inventory)
            floor_rows(bench, inventory, 200)
    bench.set_bench_domains(0)
    bench.converge(1, "bench domains removed")


def _pyinfra_alone_and_profile(bench: Bench, inventory: Path) -> None:
    """With 200 domains: the same no-op with `pyinfra -y` alone (no vsa-ops CLI around it), and
    bench/profile.py's step-by-step breakdown."""
    row = bench.row("noop-200-pyinfra", "noop", "no-op converge, 200 domains: `pyinfra -y` alone, no vsa-ops CLI")
    for run in range(bench.runs):
        for net in bench.nets:
            bench.measure(row, net, [sys.executable, "-m", "pyinfra", "-y", str(inventory), "deploy.py"],
                          host_names(1), noop_check=vsa_noop)
    bench.profile = {net: [] for net in bench.nets}
    for run in range(bench.runs):
        for net in bench.nets:
            if net == "wan":
                bench.wan.on()
            try:
                result = subprocess.run([sys.executable, str(HERE / "profile.py"), "--inventory", str(inventory),
                                         "--host", host_names(1)[0]], cwd=ROOT, capture_output=True, text=True,
                                        stdin=subprocess.DEVNULL)
            finally:
                bench.wan.off()
            if result.returncode == 0:
                bench.profile[net].append(json.loads(result.stdout.strip().splitlines()[-1]))
            else:
                log(f"  profile [{net}]: failed: {result.stderr[-500:]}")


def add_domain(bench: Bench) -> None:
    """add-domain without and with ACME, 200 domains present; remove-domain after each (not timed)."""
    bench.ensure_lab(1)
    bench.set_bench_domains(200)
    bench.converge(1, "200 domains")
    _add_domain_rows(bench, {"http": ("add-http", "add-domain --no-tls (200 domains present)"),
                             "acme": ("add-acme", "add-domain with ACME (pebble, 200 domains present)")})
    bench.set_bench_domains(0)
    bench.converge(1, "bench domains removed")


def large_registry(bench: Bench) -> None:
    """2,000 domains on one host: the no-op converge (one remote command), its floor, add-domain."""
    bench.ensure_lab(1)
    inventory = bench.inventory(1)
    bench.set_bench_domains(2000)
    bench.converge(1, "2,000 domains")
    row = bench.row("noop-2000", "large", "no-op converge, 2,000 domains")
    row.extra.update(domains=2000, floor="floor-2000")
    for run in range(bench.runs):
        for net in bench.nets:
            bench.measure(row, net, [*vsa_ops(), "deploy", "-i", str(inventory)], host_names(1),
                          noop_check=vsa_noop)
    floor_rows(bench, inventory, 2000, with_true=False)
    _add_domain_rows(bench, {"http": ("add-http-2000", "add-domain --no-tls (2,000 domains present)")},
                     floor="floor-2000")
    bench.set_bench_domains(0)
    bench.converge(1, "bench domains removed")


def _add_domain_rows(bench: Bench, kinds: dict[str, tuple[str, str]], floor: str | None = None) -> None:
    inventory = bench.inventory(1)
    for run in range(bench.runs):
        for kind, (key, label) in kinds.items():
            row = bench.row(key, "domains", label)
            if floor:
                row.extra["floor"] = floor
            for net in bench.nets:
                name = f"bench-add-{run}-{kind}-{net}.vsa.test"
                argv = [*vsa_ops(), "add-domain", name, "--upstream", UPSTREAM, "-i", str(inventory)]
                if kind == "http":
                    argv.append("--no-tls")

                def clean(name=name) -> None:
                    if name in bench_domains_left():
                        sh([*vsa_ops(), "remove-domain", name, "-i", str(inventory)], f"remove-domain {name}")

                bench.registry_touched = True
                bench.measure(row, net, argv, host_names(1), before=clean)
                clean()


def parallel_hosts(bench: Bench) -> None:
    """1, 5 and 10 hosts converged in parallel (no-op), one `vsa-ops deploy`."""
    bench.ensure_lab(10)
    bench.set_bench_domains(0)
    bench.converge(10, "10 hosts")
    for run in range(bench.runs):
        for count in (1, 5, 10):
            row = bench.row(f"hosts-{count}", "hosts", "no-op converge, 1 host" if count == 1 else
                            f"no-op converge, {count} hosts in parallel")
            for net in bench.nets:
                bench.measure(row, net, [*vsa_ops(), "deploy", "-i", str(bench.inventory(count))],
                              host_names(count), noop_check=vsa_noop)


def controller_memory(bench: Bench) -> None:
    """Controller memory: no-op converge of 2,000 domains on 10 hosts."""
    bench.ensure_lab(10)
    bench.set_bench_domains(2000)
    bench.converge(10, "2,000 domains on 10 hosts")
    row = bench.row("memory", "memory", "no-op converge, 2,000 domains x 10 hosts")
    row.extra["floor"] = "floor-2000"
    for run in range(bench.runs):
        for net in bench.nets:
            bench.measure(row, net, [*vsa_ops(), "deploy", "-i", str(bench.inventory(10))], host_names(10),
                          sample_tree=True, noop_check=vsa_noop)
    bench.set_bench_domains(0)
    bench.converge(10, "bench domains removed from 10 hosts")
