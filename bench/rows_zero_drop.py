"""Zero dropped requests: a steady HTTPS load on one site (keep-alive and new connections mixed), first
alone, then while 20 other sites (5 with --quick) are added and removed one by one, a certificate is renewed and NGINX
reloaded, and a full no-op deploy runs. Each row reports requests sent, failed (no answer or not 2xx) and
p99 latency; the load generator is tests/lab/load.py (what tests/lab/test_edge.py runs at a smaller rate)."""

from __future__ import annotations

import json
import shutil
import sys
import time

from lab_setup import registry_path, sh, vsa_ops, write_inventory
from paths import ROOT
from progress import log

sys.path.insert(0, str(ROOT))
from tests.lab.load import Load  # noqa: E402

RATE = 200
WORKERS = 8
SITES = 20
QUIET_SECONDS = 30
STEADY = "bench-steady.vsa.test"
# The steady site's own zone: the lab's default (10 r/s per address) would answer the load with 429.
ZONES = {"perip": {}, "auth": {"rate": "5r/s", "burst": 10},
         "login": {"key": "$vsa_credentials_addr", "rate": "10r/s", "burst": 40, "nodelay": False},
         "load": {"rate": "5000r/s", "burst": 5000}}


def _inventory(bench) -> str:
    folder = bench.tmp / "zero-drop"
    (folder / "group_data").mkdir(parents=True, exist_ok=True)
    shutil.copy(write_inventory(bench.tmp, 1), folder / "inventory.py")
    (folder / "group_data" / "lab.py").write_text(f"vsa = {{'reverse_proxy': {{'nginx': {{'rate_limit_zones': {ZONES!r}}}}}}}\n")
    return str(folder / "inventory.py")


def _row(bench, key: str, label: str, result) -> None:
    row = bench.row(key, "zerodrop", f"{label}: {result.sent} sent, {result.failed} failed, "
                                     f"p99 {result.percentile(99):.1f} ms ({result.rate:.0f} req/s)")
    row.extra.update({"sent": result.sent, "failed": result.failed, "p99_ms": result.percentile(99),
                      "rate": result.rate, "stale_retries": result.stale_retries, "problems": result.problems})
    log(f"  {label}: {result}")


def zero_drop(bench) -> None:
    from vsa_ops.domains import load_registry, save_registry

    sites = 5 if bench.args.quick else SITES
    bench.ensure_lab(1)
    bench.set_bench_domains(0)
    inventory = _inventory(bench)
    info = json.loads(sh([*vsa_ops(), "lab", "info", "--json"], "vsa-ops lab info").stdout)
    port, ca = info["hosts"][0]["https_port"], info["acme_roots"]
    bench.registry_touched = True
    sh([*vsa_ops(), "deploy", "-i", inventory], "converge the hub (with the steady site's zone)")
    sh([*vsa_ops(), "add-domain", STEADY, "--upstream", "echo:8080", "-i", inventory], f"add-domain {STEADY}")
    path = registry_path()
    domains = load_registry(path)
    domains[STEADY] = domains[STEADY].model_copy(update={"rate_limit": "load"})
    save_registry(path, domains)
    sh([*vsa_ops(), "deploy", "-i", inventory], "deploy the steady site's zone")

    with Load(port, STEADY, ca, rate=RATE, workers=WORKERS, max_seconds=QUIET_SECONDS) as quiet:
        time.sleep(QUIET_SECONDS)
    _row(bench, "zerodrop-quiet", f"HTTPS load alone, {QUIET_SECONDS} s", quiet.result)

    with Load(port, STEADY, ca, rate=RATE, workers=WORKERS, max_seconds=3600) as busy:
        for index in range(sites):
            sh([*vsa_ops(), "add-domain", f"bench-churn-{index}.vsa.test", "--upstream", "demo-app:8080",
                "--no-tls", "-i", inventory], f"add-domain bench-churn-{index}")
        for index in range(sites):
            sh([*vsa_ops(), "remove-domain", f"bench-churn-{index}.vsa.test", "-i", inventory],
               f"remove-domain bench-churn-{index}")
        host = info["hosts"][0]["name"]
        sh(["docker", "exec", host, "docker", "exec", "reverse-proxy-certbot", "certbot", "renew",
            "--force-renewal", "--cert-name", STEADY, "--no-random-sleep-on-renew"], "certificate renewal")
        sh(["docker", "exec", host, "docker", "exec", "reverse-proxy-nginx", "sh", "-c",
            "nginx -t -q && nginx -s reload"], "the reloader's reload")
        sh([*vsa_ops(), "deploy", "-i", inventory], "a full no-op deploy")
    _row(bench, "zerodrop-changes", f"HTTPS load while {sites} sites come and go, a renewal, a no-op deploy",
         busy.result)
