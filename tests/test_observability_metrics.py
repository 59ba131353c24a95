"""vsa-ops' own facts for node-exporter's textfile collector (vsa_ops/metrics.py): valid exposition text,
files replaced whole, and the certbot renewal hook renders the certificates exactly as deploy does."""

import datetime as dt
import re
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vsa_ops import metrics

HOOK = "/srv/flowbiz/reverse-proxy/certbot-hooks/vsa-reload-nginx"


def certificate(name: str, not_after: dt.datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_after - dt.timedelta(days=90))
            .not_valid_after(not_after).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def letsencrypt(tmp_path):
    ends = {"a.example": dt.datetime(2027, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
            "b.example": dt.datetime(2026, 12, 10, tzinfo=dt.timezone.utc)}
    for name, end in ends.items():
        (tmp_path / "le/live" / name).mkdir(parents=True)
        (tmp_path / "le/live" / name / "cert.pem").write_bytes(certificate(name, end))
    (tmp_path / "le/live/README").write_text("not a lineage\n")
    (tmp_path / "textfile").mkdir()
    return tmp_path, {name: end.timestamp() for name, end in ends.items()}


def sh(command: str) -> str:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout


def test_every_fact_renders_as_exposition_text_promtool_accepts(tool):
    text = (metrics.deploy_metrics(True, 1764460800) + metrics.drift_metrics(3, 1764460800)
            + metrics.site_metrics("a.example", False, 1764460800)
            + metrics.certificate_metrics({"a.example": 1798858800.0}))
    result = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'vsa_site_probe_success{domain="a.example"} 0' in text
    assert "vsa_deploy_last_success 1" in text and "vsa_drift_changes 3" in text


def test_deploy_reads_each_lineage_expiry_over_the_connection(letsencrypt):
    folder, ends = letsencrypt
    output = sh(metrics.certificates_command(str(folder / "le")))
    assert metrics.certificate_expiries(output) == ends


def test_a_file_is_replaced_whole_and_can_be_removed(tmp_path):
    text = metrics.deploy_metrics(False, 1.0)
    sh(metrics.write_command(str(tmp_path / "textfile"), metrics.DEPLOY_FILE, text))
    assert [p.name for p in (tmp_path / "textfile").iterdir()] == [metrics.DEPLOY_FILE]
    assert (tmp_path / "textfile" / metrics.DEPLOY_FILE).read_text() == text
    sh(metrics.remove_command(str(tmp_path / "textfile"), metrics.DEPLOY_FILE))
    assert not list((tmp_path / "textfile").iterdir())


def test_the_renewal_hook_writes_what_deploy_writes(render, letsencrypt):
    folder, ends = letsencrypt
    hook = render().file(HOOK).content
    script = re.search(r"<<'PY'.*?\n(.*?)^PY$", hook, re.S | re.M).group(1)
    subprocess.run(["python3", "-", str(folder / "le"), str(folder / "textfile")], input=script, text=True,
                   check=True)
    written = (folder / "textfile" / metrics.CERTIFICATES_FILE).read_text()
    assert written == metrics.certificate_metrics(ends)
    assert "python3 - /etc/letsencrypt /var/lib/node_exporter/textfile_collector <<'PY'" in hook


def test_the_textfile_folder_is_node_exporters_collector_and_certbots_to_write(render):
    manifest = render()
    services = {s.name: s.compose["services"] for s in manifest.stacks}
    exporter, certbot = services["observability"]["node-exporter"], services["reverse-proxy"]["certbot"]
    assert "--collector.textfile.directory=/textfile" in exporter["command"]
    binds = lambda spec: {(v["source"], v["target"], v.get("read_only", False)) for v in spec["volumes"]
                          if isinstance(v, dict)}
    folder = "/var/lib/node_exporter/textfile_collector"
    assert (folder, "/textfile", True) in binds(exporter)
    assert (folder, folder, False) in binds(certbot)
    assert any(d.path == folder for d in manifest.directories)


class Finished:
    """What the publishing reads of a finished deploy: its result and its hosts' sessions (here a local
    shell standing in for the SSH session: the commands and files are real)."""

    def __init__(self, sessions, failed=(), summaries=None, success_recorded=("hub",)):
        self._sessions = sessions
        self.result = type("Result", (), {"failed_hosts": set(failed), "summaries": summaries or {},
                                          "success_recorded": set(success_recorded)})()

    def sessions(self):
        return self._sessions


def local_sessions(tmp_path, names=("hub",)):
    from pyinfra.api import Inventory
    folder = tmp_path / "textfile"
    data = {"vsa": {"observability": {"node_exporter": {"textfile_directory": str(folder)}}}}
    inventory = Inventory(([(name, data) for name in names], {}))
    commands = []

    def run(command):
        commands.append(command)
        result = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
        return result.returncode == 0, result.stdout

    return {name: (inventory.get_host(name), run) for name in names}, folder, commands


def test_a_deploy_that_changed_nothing_publishes_nothing_and_one_that_did_publishes_its_result(tmp_path):
    from vsa_ops.fact_publishing import publish_deploy
    sessions, folder, commands = local_sessions(tmp_path)
    publish_deploy(Finished(sessions, summaries={"hub": "no changes"}))
    assert commands == []  # a converged host stays one remote command: the state read
    publish_deploy(Finished(sessions, summaries={"hub": "2 files"}))
    assert "vsa_deploy_last_success 1" in (folder / metrics.DEPLOY_FILE).read_text().splitlines()
    publish_deploy(Finished(sessions, failed={"hub"}, summaries={"hub": "2 files"}))
    assert "vsa_deploy_last_success 0" in (folder / metrics.DEPLOY_FILE).read_text().splitlines()
    # each deploy that changed something writes and lists the certificates in one command; the
    # certificates file is written only when it changes (here the first time)
    assert len(commands) == 3
    assert sorted(p.name for p in folder.iterdir()) == [metrics.CERTIFICATES_FILE, metrics.DEPLOY_FILE]


def test_a_deploy_that_changes_nothing_after_a_failure_publishes_its_success(tmp_path):
    """The failed run may have undone all it did: the next one then changes nothing, and without this
    the host would say "last deploy failed" (DeployFailed firing) until something else changed."""
    from vsa_ops.fact_publishing import publish_deploy
    sessions, folder, commands = local_sessions(tmp_path)
    deploy_file = tmp_path / "textfile" / metrics.DEPLOY_FILE

    def recorded() -> bool:  # what the deploy's state read says: the file's last line (state.sh "l")
        lines = deploy_file.read_bytes().splitlines(keepends=True) if deploy_file.exists() else [b""]
        return metrics.success_recorded(lines[-1])

    assert not recorded()  # a host never published to
    publish_deploy(Finished(sessions, failed={"hub"}, summaries={"hub": "2 files"}))
    assert not recorded()
    publish_deploy(Finished(sessions, summaries={"hub": "no changes"}, success_recorded=()))
    assert "vsa_deploy_last_success 1" in deploy_file.read_text().splitlines() and recorded()
    published = len(commands)
    publish_deploy(Finished(sessions, summaries={"hub": "no changes"}, success_recorded=["hub"]))
    assert len(commands) == published  # recorded: back to one remote command


def test_a_site_probe_is_published_and_removed_with_the_site(tmp_path):
    from vsa_ops.fact_publishing import publish_site
    sessions, folder, _ = local_sessions(tmp_path)
    publish_site(Finished(sessions), "a.example", {"hub": False})
    assert 'vsa_site_probe_success{domain="a.example"} 0' in (folder / metrics.site_file("a.example")).read_text()
    publish_site(Finished(sessions), "a.example", None)
    assert not (folder / metrics.site_file("a.example")).exists()


def test_an_unwritable_folder_is_a_warning_naming_the_host(tmp_path):
    from vsa_ops.fact_publishing import publish_deploy
    sessions, folder, _ = local_sessions(tmp_path)
    folder.write_text("a file where the folder should be")
    warnings = []
    publish_deploy(Finished(sessions, summaries={"hub": "1 files"}), echo=warnings.append)
    assert warnings == [f"vsa-ops: metrics on hub: could not write {metrics.DEPLOY_FILE}, {metrics.CERTIFICATES_FILE} in {folder}"]


@pytest.mark.parametrize("as_pyinfra", [False, True], ids=["raw", "as-pyinfra"])
def test_a_site_is_published_in_one_command_unless_the_certificates_changed(tmp_path, monkeypatch, as_pyinfra):
    from vsa_ops import fact_publishing
    from vsa_ops.fact_publishing import publish_site
    monkeypatch.setattr(fact_publishing, "REVERSE_PROXY", str(tmp_path / "reverse-proxy"))
    sessions, folder, commands = local_sessions(tmp_path)
    if as_pyinfra:  # pyinfra's CommandOutput.stdout: the lines joined by newlines, without the last one
        host, run = sessions["hub"]
        sessions["hub"] = (host, lambda command: (lambda ok, out: (ok, "\n".join(out.splitlines())))(*run(command)))
    publish_site(Finished(sessions), "a.example", {"hub": True})
    assert len(commands) == 2  # the site and the listing; then the certificates file, absent until now
    publish_site(Finished(sessions), "b.example", {"hub": True})
    assert len(commands) == 3  # no certificate changed: one command
    live = tmp_path / "reverse-proxy/letsencrypt/live/a.example"
    live.mkdir(parents=True)
    end = dt.datetime(2027, 1, 2, tzinfo=dt.timezone.utc)
    (live / "cert.pem").write_bytes(certificate("a.example", end))
    publish_site(Finished(sessions), "a.example", {"hub": True})
    assert len(commands) == 5  # a new certificate: its expiry is written
    assert (folder / metrics.CERTIFICATES_FILE).read_text() == metrics.certificate_metrics({"a.example": end.timestamp()})
    publish_site(Finished(sessions), "a.example", None)
    assert len(commands) == 6 and not (folder / metrics.site_file("a.example")).exists()


def test_a_link_or_a_fifo_planted_as_the_certificates_file_is_never_read_through(tmp_path):
    """certbot's container writes the folder too. What root prints of the certificates file must be the
    file itself: never a link's target (here a root-only file), never a FIFO that no one writes (the
    deploy would hang at its very end)."""
    import os

    from vsa_ops.fact_publishing import publish_deploy
    sessions, folder, _ = local_sessions(tmp_path)
    host, _ = sessions["hub"]
    outputs = []

    def run(command):
        result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=20)
        outputs.append(result.stdout)
        return result.returncode == 0, result.stdout

    sessions["hub"] = (host, run)
    folder.mkdir()
    secret = tmp_path / "shadow"
    secret.write_text("root:$y$secret-hash:19000::::::\n")
    (folder / metrics.CERTIFICATES_FILE).symlink_to(secret)
    publish_deploy(Finished(sessions, summaries={"hub": "1 files"}))
    assert not any("secret-hash" in output for output in outputs), outputs
    assert secret.read_text() == "root:$y$secret-hash:19000::::::\n"
    assert not (folder / metrics.CERTIFICATES_FILE).is_symlink()
    (folder / metrics.CERTIFICATES_FILE).unlink()
    os.mkfifo(folder / metrics.CERTIFICATES_FILE)
    publish_deploy(Finished(sessions, summaries={"hub": "1 files"}))  # returns: nothing waits on the FIFO
    assert (folder / metrics.CERTIFICATES_FILE).read_text() == metrics.certificate_metrics({})
