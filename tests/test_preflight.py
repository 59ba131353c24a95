"""vsa-ops preflight without a lab: the host program runs for real on this machine (it is a Debian
host too), its facts feed the checks, and each check's verdict is pinned on facts that break it."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import re
import shlex
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vsa_ops.config import hub_config
from vsa_ops.preflight import checks, controller_checks
from vsa_ops.preflight.host_facts import HostFacts, parse, read_command
from vsa_ops.preflight.run import pinned, resolve

from tests.conftest import ROOT, run_cli

HUB = hub_config()
PROGRAM = ROOT / "vsa_ops" / "preflight" / "host_read.sh"


def test_host_program_is_posix_sh_and_shellcheck_clean(tool):
    shellcheck = tool("shellcheck")
    result = subprocess.run([shellcheck, "-s", "sh", str(PROGRAM)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _read_here(acme_url: str = "https://127.0.0.1:9/dir", ca_bundle: str | None = None) -> tuple[HostFacts, str]:
    """The one command preflight sends, run by sh on this machine."""
    result = subprocess.run(["sh", "-c", read_command(acme_url, ca_bundle)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return parse(result.stdout), result.stdout


def test_the_read_reports_this_machine():
    before = time.time()
    facts, _ = _read_here()
    assert facts.uid == 0 and facts.os_id == "debian" and facts.os_version == "12"
    assert checks.operating_system(facts).status == "ok"
    assert checks.privileges(facts, sudo_configured=False).status == "ok"
    size, available = facts.disk_free["/"]
    assert 0 < available <= size
    assert facts.mounts["/"].startswith("/") or facts.mounts["/"] in ("overlay", "none")
    assert checks.clock(facts, before, time.time()).status in ("ok", "warn")
    assert abs(facts.epoch - before) < 5
    # nothing answers on port 9: the ACME check fails naming what curl said
    assert facts.acme_status is None and "connect" in facts.acme_error.lower()
    assert checks.acme(facts, HUB, tls_domains=True).status == "fail"
    assert checks.acme(facts, HUB, tls_domains=False).status == "warn"


def _certificate(tmp_path: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    (tmp_path / "cert.pem").write_text(pem)
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return tmp_path / "cert.pem", tmp_path / "key.pem", pem


@pytest.fixture
def acme_directory(tmp_path):
    """An HTTPS server on 127.0.0.1 with a private CA's certificate, answering 200 like a directory."""
    cert, key, pem = _certificate(tmp_path)

    class Directory(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"newNonce": "x"}')

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/dir", pem
    server.shutdown()


def test_the_read_reaches_the_acme_directory_trusting_the_configured_bundle(acme_directory, tool):
    tool("curl")
    url, pem = acme_directory
    hub = hub_config([{"reverse_proxy": {"certbot": {"acme_server": url, "acme_ca_bundle": pem}}}])
    trusted, _ = _read_here(url, pem)
    assert trusted.acme_status == 200
    assert checks.acme(trusted, hub, tls_domains=True).status == "ok"
    untrusted, _ = _read_here(url, None)  # the system's CAs do not know this one
    check = checks.acme(untrusted, hub, tls_domains=True)
    assert check.status == "fail" and "certificate" in check.message and check.fix


def facts(**changes) -> HostFacts:
    """A fresh Ubuntu VPS with its disks labelled as the design says, free ports, no Docker."""
    base = HostFacts(uid=0, user="root", os_id="ubuntu", os_version="24.04", os_name="Ubuntu 24.04.1 LTS",
                     systemd=True, ntp_synchronized="yes", epoch=1_000_000,
                     labels={"cloudimg-rootfs": "/dev/vda1", "BOOT": "/dev/vda16", "UEFI": "/dev/vda15",
                             "docker": "/dev/vdb"},
                     device_sizes={"/dev/vdb": 246 << 30}, mounts={"/": "/dev/vda1"},
                     disk_free={"/": (20 << 30, 15 << 30)}, acme_status=200)
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def statuses(found) -> dict[str, str]:
    return {c.name: c.status for c in found if c is not None}


def test_a_fresh_labelled_vps_passes_every_host_check():
    host = facts()
    found = [checks.operating_system(host), checks.privileges(host, False), *checks.fstab_sources(host, HUB),
             checks.root_device(host, HUB), *checks.disk_space(host, HUB), *checks.ports(host, HUB),
             checks.docker(host), checks.clock(host, 1_000_000, 1_000_000.2), checks.acme(host, HUB, True)]
    assert set(statuses(found).values()) == {"ok"}, statuses(found)


@pytest.mark.parametrize("os_id, version, status", [("debian", "12", "ok"), ("debian", "13", "ok"),
                                                    ("ubuntu", "22.04", "ok"), ("debian", "11", "fail"),
                                                    ("ubuntu", "20.04", "fail"), ("centos", "9", "fail")])
def test_supported_systems_are_named(os_id, version, status):
    check = checks.operating_system(facts(os_id=os_id, os_version=version, os_name=""))
    assert check.status == status
    assert "Debian 12/13 and Ubuntu 22.04/24.04" in check.message


def test_a_login_user_without_passwordless_sudo_fails():
    check = checks.privileges(facts(uid=1000, user="alice", sudo="no"), False)
    assert check.status == "fail" and "alice" in check.message and "NOPASSWD" in check.fix
    assert checks.privileges(facts(sudo_user="alice"), True).status == "ok"
    assert checks.privileges(facts(sudo_user="alice"), False).status == "warn"


def test_an_unlabelled_docker_disk_warns_with_nofail_and_the_e2label_fix():
    found = {c.name: c for c in checks.fstab_sources(facts(labels={"cloudimg-rootfs": "/dev/vda1", "BOOT": "/dev/vda16",
                                                                   "UEFI": "/dev/vda15"}), HUB)}
    docker = found["fstab /var/lib/docker"]
    assert docker.status == "warn" and "nofail" in docker.message
    assert "e2label /dev/X docker" in docker.fix


def test_a_missing_root_label_fails_naming_the_root_device():
    found = {c.name: c for c in checks.fstab_sources(facts(labels={"docker": "/dev/vdb", "BOOT": "/dev/vda16",
                                                                   "UEFI": "/dev/vda15"}), HUB)}
    root = found["fstab /"]
    assert root.status == "fail" and "e2label /dev/vda1 cloudimg-rootfs" in root.fix


def test_a_root_label_on_another_device_fails():
    check = checks.root_device(facts(mounts={"/": "/dev/vda2"}), HUB)
    assert check.status == "fail" and "/dev/vda2" in check.message and "/dev/vda1" in check.message


def test_a_container_only_warns_about_disks_and_says_why():
    host = facts(container="docker", labels={}, mounts={"/": "overlay"}, systemd=False)
    found = [*checks.fstab_sources(host, HUB), checks.root_device(host, HUB), checks.clock(host, 1e6, 1e6)]
    assert {c.status for c in found} == {"warn"}
    assert all("in a container (docker)" in c.message for c in found)
    assert "no systemd" in found[-1].message


def test_port_80_held_by_another_process_fails_naming_it():
    held = facts(listeners={80: ['users:(("busybox",pid=4242,fd=3))']})
    found = {c.name: c for c in checks.ports(held, HUB)}
    assert found["port 80"].status == "fail" and "busybox (pid 4242)" in found["port 80"].message
    assert found["port 443"].status == "ok"


def test_ports_held_by_the_hubs_own_nginx_are_fine():
    ours = facts(listeners={80: ['users:(("docker-proxy",pid=7,fd=4))'], 443: ['users:(("docker-proxy",pid=8,fd=4))']},
                 container_ports={"reverse-proxy-nginx": "0.0.0.0:80->80/tcp, 0.0.0.0:443->443/tcp"})
    assert statuses(checks.ports(ours, HUB)) == {"port 80": "ok", "port 443": "ok"}
    other = facts(listeners={80: ['users:(("docker-proxy",pid=7,fd=4))']}, container_ports={"traefik": "0.0.0.0:80->80/tcp"})
    assert "container traefik" in checks.ports(other, HUB)[0].message


@pytest.mark.parametrize("version, compose, status", [(None, None, "ok"), ("20.10.24+dfsg1", "2.26.1", "ok"),
                                                      ("26.1.3", None, "warn"), ("19.03.8", "2.0.0", "fail")])
def test_docker_absent_or_supported(version, compose, status):
    assert checks.docker(facts(docker_version=version, compose_version=compose)).status == status


def test_docker_installed_but_not_answering_fails():
    assert checks.docker(facts(docker_installed="Docker version 24.0.7")).status == "fail"


@pytest.mark.parametrize("offset, synchronised, status", [(0, "yes", "ok"), (0, "no", "warn"), (30, "yes", "warn"),
                                                          (-600, "yes", "fail")])
def test_clock(offset, synchronised, status):
    check = checks.clock(facts(epoch=1_000_000 + offset, ntp_synchronized=synchronised), 1_000_000, 1_000_000.5)
    assert check.status == status
    assert status == "ok" or check.fix


def test_disk_space_against_the_retention_caps():
    caps = sum(HUB.volume_caps().values())
    # no Docker disk at all: / must hold the caps
    small = facts(labels={"cloudimg-rootfs": "/dev/vda1"}, disk_free={"/": (caps, caps // 2)})
    assert statuses(checks.disk_space(small, HUB)) == {"disk /": "fail"}
    # a mounted Docker disk with room; / needs only its floor
    mounted = facts(mounts={"/": "/dev/vda1", "/var/lib/docker": "/dev/vdb"},
                    disk_free={"/": (20 << 30, 2 << 30), "/var/lib/docker": (caps * 2, caps - 1)})
    assert statuses(checks.disk_space(mounted, HUB)) == {"disk /": "ok", "disk Docker": "warn"}
    tiny = facts(device_sizes={"/dev/vdb": caps // 2})
    assert statuses(checks.disk_space(tiny, HUB))["disk Docker"] == "fail"


def test_a_domain_resolving_elsewhere_fails_naming_the_domain_and_the_address():
    found = controller_checks.dns(["shop.example.com", "www.example.com"],
                                  {"shop.example.com": ["198.51.100.4"], "www.example.com": ["203.0.113.9", "198.51.100.4"]},
                                  ["198.51.100.4"], set())
    assert [c.status for c in found] == ["ok", "fail"]
    assert "www.example.com resolves to 203.0.113.9" in found[1].message and "198.51.100.4" in found[1].fix
    missing = controller_checks.dns(["gone.example.com"], {"gone.example.com": "Name or service not known"},
                                    ["198.51.100.4"], set())[0]
    assert missing.status == "fail" and "does not resolve" in missing.message
    overridden = controller_checks.dns(["a.vsa.test"], {"a.vsa.test": ["127.0.0.1"]}, ["127.0.0.1"], {"a.vsa.test"})[0]
    assert overridden.status == "ok" and "vsa_dns_overrides, not DNS" in overridden.message


def test_names_resolve_from_the_controller():
    assert "127.0.0.1" in resolve("localhost")
    assert isinstance(resolve("no-such-name.invalid"), str)


def test_host_keys_pinned_plain_hashed_and_on_another_port(tmp_path):
    from paramiko import Ed25519Key, HostKeys

    key = Ed25519Key.from_private_key_file(str(_ed25519(tmp_path)))
    keys = HostKeys()
    keys.add("[127.0.0.1]:2222", key.get_name(), key)
    keys.add(HostKeys.hash_host("hub.example.net"), key.get_name(), key)
    path = tmp_path / "known_hosts"
    keys.save(str(path))
    assert pinned(str(path), "[127.0.0.1]:2222") and pinned(str(path), "hub.example.net")
    assert not pinned(str(path), "127.0.0.1") and not pinned(str(tmp_path / "absent"), "hub.example.net")
    check = controller_checks.host_key(False, None, str(path), "[127.0.0.1]:2222", 2222, connected=True)
    assert check.status == "fail" and "ssh-keyscan -p 2222 127.0.0.1" in check.fix and "unverified" in check.message
    assert controller_checks.host_key(True, "off", str(path), "hub", 22).status == "fail"
    assert controller_checks.host_key(True, None, str(path), "hub", 22).status == "ok"


def _ed25519(folder: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "id")], check=True)
    return folder / "id"


def test_json_lists_every_check_and_an_unreachable_host_fails(project, tmp_path):
    """The whole command on a host nobody listens for: the controller's checks still run."""
    (project / "domains.yml").write_text("shop.example.com:\n  upstream: demo-app:8080\n")
    (project / "inventory.py").write_text(
        "hubs = [('hub', {'ssh_hostname': '127.0.0.1', 'ssh_port': 9, 'ssh_user': 'root', "
        f"'ssh_known_hosts_file': {str(tmp_path / 'known_hosts')!r}, "
        "'vsa_dns_overrides': {'shop.example.com': ['192.0.2.7']}})]\n")
    result = run_cli("preflight", "--json", cwd=project)
    assert result.returncode == 1, result.stderr
    rows = json.loads(result.stdout)
    assert {tuple(sorted(r)) for r in rows} == {("check", "fix", "host", "message", "status")}
    found = {r["check"]: r for r in rows}
    assert found["connect"]["status"] == "fail" and found["connect"]["fix"]
    assert found["host key"]["status"] == "fail"
    assert "shop.example.com resolves to 192.0.2.7" in found["dns shop.example.com"]["message"]
    text = run_cli("preflight", cwd=project)
    assert text.returncode == 1
    assert re.search(r"^hub: fail dns shop\.example\.com: .*192\.0\.2\.7.*\. Fix: Point shop\.example\.com", text.stdout, re.M)
    assert "hub: not ready" in text.stdout


def first_real_hub_commands() -> list[list[str]]:
    """The `vsa-ops ...` commands of the README's "Your first real hub" (shell blocks and inline code)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your first real hub", 1)[1].split("\n## ", 1)[0]
    lines = [line.split("#")[0].strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)
             for line in block.splitlines()]
    prose = re.sub(r"```.*?```", "", section, flags=re.S)
    found = [line for line in lines if line.startswith("vsa-ops ")] + re.findall(r"`(vsa-ops [^`]*)`", prose)
    return [shlex.split(command) for command in found]


HELP_SCRIPT = """
import json, sys
from click.testing import CliRunner
from vsa_ops.cli import main
paths = json.loads(sys.argv[1])
print(json.dumps([CliRunner().invoke(main, [*path, "--help"]).output for path in paths]))
"""


def test_the_first_real_hub_walkthrough_uses_only_commands_and_options_that_exist():
    commands = first_real_hub_commands()
    assert {c[1] for c in commands} >= {"preflight", "deploy", "add-domain", "lint", "plan", "certs", "domains"}
    paths = [tuple(c[1:3]) if c[1] == "audit" and c[2:3] == ["verify"] else (c[1],) for c in commands]
    unique = sorted(set(paths))
    # one process for every --help (the command's import patches gevent; not in pytest's process)
    result = subprocess.run([sys.executable, "-c", HELP_SCRIPT, json.dumps(unique)], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    helps = dict(zip(unique, json.loads(result.stdout)))
    for argv, path in zip(commands, paths):
        assert helps[path].startswith("Usage: main " + " ".join(path)), f"{' '.join(argv)}: {helps[path][:200]}"
        for option in (w.split("=")[0] for w in argv[1:] if w.startswith("-")):
            assert re.search(rf"(^|[ ,]){re.escape(option)}\b", helps[path], re.M), f"{' '.join(argv)}: no {option}"
