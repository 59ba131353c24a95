"""Issue 16 end to end on a lab VPS: the real Prometheus scrapes the real node-exporter, whose textfile
collector serves vsa-ops' own facts (deploy, certificates, site probes, drift), and evaluates the alert
rules; the dashboard API's user reads the audit trail through the API's read-only mounts.

Prometheus' API is read from inside the lab host, from the node-exporter container (busybox wget) on
the observability network. Uses the session's lab host (tests/lab/conftest.py)."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import urllib.parse

import pytest
from cryptography import x509

from tests.lab.conftest import ROOT, vsa
from vsa_ops import metrics

pytestmark = pytest.mark.lab

DOMAIN = "watch.vsa.test"
LIVE = "/srv/flowbiz/reverse-proxy/letsencrypt/live"
TEXTFILE = "/var/lib/node_exporter/textfile_collector"
SNIPPET = "/srv/flowbiz/reverse-proxy/nginx/snippets/proxy.conf"
STATE = "/var/lib/vsa-ops"


@pytest.fixture(scope="module")
def hub(lab):
    lab.deploy()
    return lab


def api(hub, path: str, **params) -> dict:
    url = f"http://prometheus:9090{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    return json.loads(hub.sh(f"docker exec node-exporter wget -qO- {shlex.quote(url)}"))


def query(hub, expr: str) -> list[dict]:
    return api(hub, "/api/v1/query", query=expr)["data"]["result"]


def firing(hub, alert: str) -> list[dict]:
    return [a for a in api(hub, "/api/v1/alerts")["data"]["alerts"] if a["labels"]["alertname"] == alert
            and a["state"] == "firing"]


def eventually(check, seconds: float = 120):
    """``check()``'s first truthy result within ``seconds`` (Prometheus scrapes and evaluates every 15 s)."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(3)


def test_prometheus_scrapes_node_exporter_with_the_deploy_facts_and_loads_the_rules(hub):
    up = eventually(lambda: [r for r in query(hub, 'up{job="node-exporter"}') if r["value"][1] == "1"])
    assert up, query(hub, "up")
    rules = {r["name"] for g in api(hub, "/api/v1/rules")["data"]["groups"] for r in g["rules"]}
    assert {"ScrapeTargetDown", "ContainerRestarting", "CertificateExpiringSoon", "DiskAlmostFull",
            "PrometheusStorageNearCap", "SiteProbeFailing", "DriftFound", "DeployFailed"} <= rules
    # The fixture's deploy wrote 1; an earlier module's failed deploy may have left a scraped 0, which
    # Prometheus keeps until its next scrape of the textfile.
    assert "vsa_deploy_last_success 1" in hub.sh(f"cat {TEXTFILE}/{metrics.DEPLOY_FILE}").splitlines()
    deployed = eventually(lambda: [r for r in query(hub, "vsa_deploy_last_success") if r["value"][1] == "1"])
    assert [r["value"][1] for r in deployed] == ["1"], query(hub, "vsa_deploy_last_success")
    assert deployed[0]["metric"]["instance"] == "node-exporter:9100"


def test_a_deploy_that_changes_nothing_after_a_failed_one_publishes_its_success(hub):
    """A failed deploy leaves the host as it was; once the cause is gone the next one may change nothing,
    and must still say the last deploy succeeded (else DeployFailed fires on until something changes)."""
    deploy_file = f"{TEXTFILE}/{metrics.DEPLOY_FILE}"
    hub.sh(f"cp -p {SNIPPET} /root/snippet.orig && echo '# a hand edit' >> {SNIPPET}")
    hub.sh(f"mkdir -p {STATE}/lock && echo 'other ctl 1 0 someone' > {STATE}/lock/owner")  # another run's lock
    try:
        failed = hub.deploy("--lock-wait", "0", check=False)
    finally:
        hub.sh(f"rm -rf {STATE}/lock")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "vsa_deploy_last_success 0" in hub.sh(f"cat {deploy_file}").splitlines()
    hub.sh(f"cat /root/snippet.orig > {SNIPPET} && rm /root/snippet.orig")  # the hand edit undone by hand
    again = hub.deploy()
    assert again.stdout.strip().endswith("no changes"), again.stdout
    assert "vsa_deploy_last_success 1" in hub.sh(f"cat {deploy_file}").splitlines()
    assert eventually(lambda: [r for r in query(hub, "vsa_deploy_last_success") if r["value"][1] == "1"]), \
        query(hub, "vsa_deploy_last_success")
    stamp = hub.sh(f"cat {deploy_file}")
    hub.deploy()
    assert hub.sh(f"cat {deploy_file}") == stamp  # recorded: a converged host is left alone again


def test_a_lab_domain_certificate_expiry_and_probe_reach_prometheus(hub):
    subprocess.run(["vsa-ops", "remove-domain", DOMAIN, "-i", str(hub.inventory)], cwd=ROOT, capture_output=True)
    vsa("add-domain", DOMAIN, "-i", str(hub.inventory), "--upstream", "demo-app:8080")
    cert = x509.load_pem_x509_certificate(hub.sh(f"cat {LIVE}/{DOMAIN}/cert.pem").encode())
    expiry = eventually(lambda: query(hub, f'vsa_certificate_expiry_timestamp_seconds{{domain="{DOMAIN}"}}'))
    assert expiry and float(expiry[0]["value"][1]) == cert.not_valid_after_utc.timestamp()
    probe = eventually(lambda: query(hub, f'vsa_site_probe_success{{domain="{DOMAIN}"}}'))
    assert probe and probe[0]["value"][1] == "1"

    # A renewal between deploys: certbot's deploy hook rewrites the expiry from inside its container.
    before = hub.sh(f"cat {TEXTFILE}/vsa_certificates.prom")
    hub.sh(f"docker exec reverse-proxy-certbot certbot renew --force-renewal --cert-name {DOMAIN} "
           "--no-random-sleep-on-renew")
    renewed = x509.load_pem_x509_certificate(hub.sh(f"cat {LIVE}/{DOMAIN}/cert.pem").encode())
    after = hub.sh(f"cat {TEXTFILE}/vsa_certificates.prom")
    line = f'vsa_certificate_expiry_timestamp_seconds{{domain="{DOMAIN}"}} {renewed.not_valid_after_utc.timestamp():.0f}'
    assert line in after.splitlines() and after != before

    vsa("remove-domain", DOMAIN, "-i", str(hub.inventory))
    assert f"vsa_site_{DOMAIN}.prom" not in hub.sh(f"ls {TEXTFILE}")


def test_drift_makes_its_rule_fire_and_a_repair_clears_it(hub):
    hub.sh(f"echo '# a hand edit' >> {SNIPPET}")
    result = subprocess.run(["vsa-ops", "drift", "-i", str(hub.inventory)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2, result.stdout + result.stderr
    alerts = eventually(lambda: firing(hub, "DriftFound"))
    assert alerts and float(alerts[0]["value"]) >= 1
    vsa("deploy", "-i", str(hub.inventory))
    vsa("drift", "-i", str(hub.inventory))
    assert eventually(lambda: not firing(hub, "DriftFound"))
    assert query(hub, "vsa_drift_changes")[0]["value"][1] == "0"


def test_the_dashboard_api_user_reads_the_audit_trail_through_its_read_only_mounts(hub):
    """Point 4: as the API's uid and gid, with exactly the API's audit mounts: the JSONL and the WAL-mode
    SQLite read, nothing written. SQLite is opened ?mode=ro&immutable=1: a read-only mount cannot hold the
    -shm file WAL readers need, and the audit's writer checkpoints when it closes after each append."""
    containers = hub.containers()
    user = hub.sh("docker exec dashboard-api sh -c 'echo $(id -u):$(id -g)'").strip()
    assert not user.startswith("0:")
    mounts = [m for m in containers["dashboard-api"]["Mounts"] if m["Destination"] in ("/var/log/vsa", "/var/lib/vsa")]
    assert sorted((m["Source"], m["Destination"], m["RW"]) for m in mounts) == [
        ("/var/lib/vsa", "/var/lib/vsa", False), ("/var/log/vsa", "/var/log/vsa", False)]
    assert hub.sh("sqlite3 /var/lib/vsa/audit.db 'PRAGMA journal_mode'").strip() == "wal"
    binds = " ".join(f"-v {m['Source']}:{m['Destination']}:ro" for m in mounts)
    image = containers["reverse-proxy-certbot"]["Config"]["Image"]  # Debian with python3's sqlite3
    script = """
import json, sqlite3
out = {"lines": sum(1 for _ in open("/var/log/vsa/audit.jsonl"))}
db = sqlite3.connect("file:/var/lib/vsa/audit.db?mode=ro&immutable=1", uri=True)
out["rows"] = db.execute("SELECT count(*) FROM audit").fetchone()[0]
for name, attempt in (("append", lambda: open("/var/log/vsa/audit.jsonl", "a")),
                      ("insert", lambda: sqlite3.connect("file:/var/lib/vsa/audit.db?mode=rw", uri=True).execute(
                          "INSERT INTO audit (seq) VALUES (-1)"))):
    try:
        attempt()
        out[name] = "allowed"
    except (OSError, sqlite3.Error) as error:
        out[name] = str(error)
try:
    sqlite3.connect("file:/var/lib/vsa/audit.db?mode=ro", uri=True).execute("SELECT count(*) FROM audit").fetchone()
    out["plain_ro"] = "ok"
except sqlite3.Error as error:
    out["plain_ro"] = str(error)
print(json.dumps(out))
"""
    cat = hub.sh(f"docker run --rm --user {user} {binds} --entrypoint cat {image} /var/log/vsa/audit.jsonl")
    assert cat.count("\n") >= 1 and '"action"' in cat
    found = json.loads(hub.sh(f"docker run --rm -i --user {user} {binds} --entrypoint python3 {image} -c "
                              f"{shlex.quote(script)}"))
    print(f"\nAPI user {user}: {found}")
    assert found["lines"] == found["rows"] == cat.count("\n")
    assert found["append"] != "allowed" and found["insert"] != "allowed"
    # Without immutable=1 SQLite cannot open a WAL database whose -shm it cannot create (the decision above).
    assert found["plain_ro"] == "unable to open database file"
    # Another uid and group reads nothing: the folders are root's and the API group's (2750).
    other = hub.sh(f"docker run --rm --user 4242:4242 {binds} --entrypoint cat {image} /var/log/vsa/audit.jsonl",
                   check=False)
    assert other == ""  # another uid and group reads nothing
