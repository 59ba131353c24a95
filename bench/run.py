#!/usr/bin/env python3
"""vsa-ops benchmark: converge times on lab hosts, on loopback and with added WAN latency, against
stock pyinfra and Ansible doing the same work, with the remote commands each run executed.

    python3 bench/run.py            # full: 5 runs per row (about 75 minutes)
    python3 bench/run.py --quick    # smoke check: 1 run, no Ansible, no 5/10-host rows (a few minutes)
    python3 bench/run.py --runs 3 --only noop,domains

Rows run one after the other (never two measurements at once: the controller has 2 cores); each
figure is the median of --runs runs, loopback and +RTT runs alternate, so every ratio compares
figures from the same bench run. See bench/README.md for what each row measures and which module
holds what.

Remote commands are counted by the lab hosts' sshd (see measure.py).

Everything the bench adds is removed on exit, also on Ctrl-C, SIGTERM or an error: its domains in the
lab registry (and on the hosts), the iptables rules and the delay proxy (a watchdog removes those two
even after SIGKILL), its temporary folder. Lab hosts are left up.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench's modules, also when imported
from delay_proxy import sweep  # noqa: E402
from lab_setup import bench_domains_left  # noqa: E402
from paths import ROOT, STATE  # noqa: E402
from progress import log  # noqa: E402
from recovery import recovery  # noqa: E402
from report import report, save  # noqa: E402
from rows_same_work import same_work  # noqa: E402
from rows_vsa_ops import add_domain, controller_memory, first_deploy, noop_converge, parallel_hosts  # noqa: E402
from rows_vsa_ops import large_registry  # noqa: E402
from rows_zero_drop import zero_drop  # noqa: E402
from session import Bench  # noqa: E402

# Each group of rows, in the order they run.
GROUPS = {"first": first_deploy, "noop": noop_converge, "domains": add_domain, "same": same_work,
          "hosts": parallel_hosts, "memory": controller_memory, "zerodrop": zero_drop, "recovery": recovery}
GROUPS["large"] = large_registry  # 2,000 domains on one host: no-op, its floor, add-domain


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="groups: first (first deploy), noop (0/50/200 domains), domains "
                                            "(add-domain), same (vs stock pyinfra and Ansible), hosts (1/5/10 hosts), "
                                            "memory (2,000 domains x 10 hosts), zerodrop (HTTPS load while sites change), "
                                            "large (2,000 domains on one host), recovery (the disaster-recovery drill)")
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


def run_groups(bench: Bench) -> None:
    groups = [g for g in GROUPS if g in bench.args.only and g not in bench.args.skip]
    log(f"bench: {', '.join(groups)}; {bench.runs} run(s) per row; networks: "
        + ", ".join("loopback" if n == "lo" else f"+{2 * bench.args.delay_ms:g} ms RTT" for n in bench.nets))
    bench.meta.update(bench.machine())
    for group in groups:
        log(f"== {group}")
        GROUPS[group](bench)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (iptables, docker)")
    for tool in ("docker", "iptables", "setpriv", "ssh"):
        if not shutil.which(tool):
            raise SystemExit(f"bench: {tool} is missing; run `bash .ci/setup` first")
    os.chdir(ROOT)
    STATE.mkdir(parents=True, exist_ok=True)
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
        if bench_domains_left():
            log("bench: bench domains left by an earlier run are removed at the end")
            bench.registry_touched = True
        run_groups(bench)
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
