"""`vsa-ops add-domain --no-apply` and `remove-domain --no-apply`: validation and the registry, no host
(and `deploy --limit` naming no host). Bad input exits 1 with one line naming the field and the value,
and changes no file."""

import subprocess

import pytest
import yaml

from tests.conftest import run_cli


def add(project, *args, password=None):
    environment = {k: v for k, v in __import__("os").environ.items() if not k.startswith("VSA_")}
    return subprocess.run(["vsa-ops", "add-domain", *args, "--no-apply"], cwd=project, env=environment,
                          input=password, capture_output=True, text=True)


def registry(project):
    path = project / "domains.yml"
    return yaml.safe_load(path.read_text()) if path.exists() else None


def test_a_domain_is_validated_and_written_to_the_registry(project):
    result = add(project, "Shop.Example.COM", "--upstream", "demo-app:8080", "--alias", "www.shop.example.com")
    assert result.returncode == 0, result.stderr
    assert registry(project) == {"shop.example.com": {"aliases": ["www.shop.example.com"],
                                                      "upstream": "http://demo-app:8080"}}


def test_idn_names_become_punycode(project):
    assert add(project, "bücher.example", "--upstream", "demo-app:8080").returncode == 0
    assert "xn--bcher-kva.example" in registry(project)


def test_basic_auth_stores_a_bcrypt_hash_and_never_the_password(project):
    result = add(project, "private.example.com", "--upstream", "demo-app:8080", "--auth-user", "alice",
                 password="correct horse\n")
    assert result.returncode == 0, result.stderr
    digest = registry(project)["private.example.com"]["auth"]["alice"]
    assert digest.startswith("$2y$10$")
    text = (project / "domains.yml").read_text()
    assert "correct horse" not in text and "correct horse" not in result.stdout + result.stderr


@pytest.mark.parametrize("args, password, message", [
    (["exa mple.com"], None, "domain: must not contain spaces"),
    (["example.com;"], None, "domain: label 'com;' must be letters, digits and inner hyphens only"),
    (["ex{a}mple.com"], None, "domain: label 'ex{a}mple' must be"),
    (['ex"ample.com'], None, "domain: label"),
    (["example..com"], None, "domain: must not have empty labels"),
    (["--", "-example.com"], None, None),
    (["xn--.example.com"], None, "domain: label"),
    (["example-.com"], None, "domain: label 'example-'"),
    (["a" * 64 + ".com"], None, "domain: label"),
    (["192.168.1.10"], None, "domain: must be a host name, not an IP address"),
    (["https://example.com"], None, "domain: must be a bare host name"),
    (["example.com:8443"], None, "domain: must be a bare host name"),
    (["example.com/admin"], None, "domain: must be a bare host name"),
    (["example.com", "--upstream-x"], None, None),
    (["example.com", "--upstream", "demo-app:99999"], None, "--upstream: has a port"),
    (["example.com", "--upstream", "unix:/run/app.sock"], None, "--upstream:"),
    (["example.com", "--upstream", "demo-app:8080;evil"], None, "--upstream:"),
    (["example.com", "--alias", "bad alias"], None, "--alias:"),
    (["example.com", "--auth-user", "alice"], "\n", "password: must not be empty"),
    (["example.com", "--auth-user", "alice"], "x" * 73 + "\n", "password: is longer than 72 bytes"),
    (["example.com", "--auth-user", "al ice"], "pw\n", "--auth-user:"),
])
def test_bad_input_is_one_line_naming_the_field_and_changes_nothing(project, args, password, message):
    if "--upstream" not in " ".join(args):
        args = [*args, "--upstream", "demo-app:8080"]
    result = add(project, *args, password=password)
    assert result.returncode != 0
    assert registry(project) is None
    if message:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vsa-ops: " + message), result.stderr


def test_a_duplicate_domain_or_a_taken_alias_is_refused(project):
    assert add(project, "a.example.com", "--upstream", "demo-app:8080", "--alias", "www.example.com").returncode == 0
    before = (project / "domains.yml").read_text()
    again = add(project, "A.example.com", "--upstream", "demo-app:8080")
    assert again.returncode == 1 and "domain a.example.com: already declared" in again.stderr
    taken = add(project, "b.example.com", "--upstream", "demo-app:8080", "--alias", "www.example.com")
    assert taken.returncode == 1 and "domain www.example.com: already served by a.example.com" in taken.stderr
    name_taken = add(project, "www.example.com", "--upstream", "demo-app:8080")
    assert name_taken.returncode == 1
    assert (project / "domains.yml").read_text() == before


def test_an_unknown_host_is_refused(project):
    result = add(project, "c.example.com", "--upstream", "demo-app:8080", "--host", "nope")
    assert result.returncode == 1 and "--host: no host or group 'nope'" in result.stderr
    assert registry(project) is None


def test_remove_domain_updates_the_registry(project):
    assert add(project, "a.example.com", "--upstream", "demo-app:8080").returncode == 0
    assert add(project, "b.example.com", "--upstream", "demo-app:8080").returncode == 0
    result = run_cli("remove-domain", "A.example.com", "--no-apply", cwd=project)
    assert result.returncode == 0, result.stderr
    assert list(registry(project)) == ["b.example.com"]
    missing = run_cli("remove-domain", "zzz.example.com", "--no-apply", cwd=project)
    assert missing.returncode == 1 and "domain zzz.example.com: not declared" in missing.stderr


def test_a_broken_registry_names_the_entry(project):
    (project / "domains.yml").write_text("a.example.com:\n  upstream: 'x;y'\n")
    lint = run_cli("lint", cwd=project)
    assert lint.returncode == 1
    assert lint.stderr.strip().startswith("vsa-ops: domains.yml: a.example.com.upstream:"), lint.stderr
    result = add(project, "b.example.com", "--upstream", "demo-app:8080")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("vsa-ops: domains.yml: a.example.com.upstream:"), result.stderr


def test_deploy_with_a_limit_that_names_no_host_stops_before_connecting(project):
    result = run_cli("deploy", "--limit", "nohost", cwd=project)
    assert result.returncode == 1
    assert result.stderr.strip() == "vsa-ops: --limit: no host or group 'nohost' in the inventory"
    assert "Connecting" not in result.stdout


def test_basic_auth_without_tls_is_refused_unless_forced(project):
    before = (project / "domains.yml").read_text() if (project / "domains.yml").exists() else None
    result = add(project, "private.example.com", "--upstream", "demo-app:8080", "--no-tls", "--auth-user", "alice",
                 password="pw\n")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "vsa-ops: --auth-user with --no-tls would send passwords in clear text: drop --no-tls, or add "
        "--insecure-auth to do it anyway"]
    assert ((project / "domains.yml").read_text() if (project / "domains.yml").exists() else None) == before
    forced = add(project, "private.example.com", "--upstream", "demo-app:8080", "--no-tls", "--auth-user", "alice",
                 "--insecure-auth", "--pass-auth", password="pw\n")
    assert forced.returncode == 0, forced.stderr
    entry = registry(project)["private.example.com"]
    assert entry["insecure_auth"] is True and entry["pass_auth"] is True and entry["tls"] is False


def test_a_registry_entry_with_auth_over_http_is_refused(project):
    (project / "domains.yml").write_text("plain.example.com:\n  upstream: demo-app:8080\n  tls: false\n"
                                         "  auth: {alice: '$2b$12$" + "a" * 53 + "'}\n")
    result = add(project, "other.example.com", "--upstream", "demo-app:8080")
    assert result.returncode == 1 and "plain.example.com" in result.stderr and "insecure_auth" in result.stderr


def test_an_ipv6_upstream_keeps_its_brackets_and_its_path(project):
    assert add(project, "v6.example.com", "--upstream", "http://[fd00::5]:8080/base/").returncode == 0
    assert registry(project)["v6.example.com"]["upstream"] == "http://[fd00::5]:8080/base/"


@pytest.mark.parametrize("value, stored", [
    ("50r/s/100", "50r/s/100"), ("600r/m", "600r/m"), ("off", "off"), ("auth", "auth"),
])
def test_a_site_sets_its_own_rate_limit(project, value, stored):
    result = add(project, "api.example.com", "--upstream", "demo-app:8080", "--rate-limit", value)
    assert result.returncode == 0, result.stderr
    assert registry(project)["api.example.com"]["rate_limit"] == stored
    assert "rate_limit: 'off'" in (project / "domains.yml").read_text() or value != "off"  # YAML 1.1 would read off as false


@pytest.mark.parametrize("value, message", [
    ("fast", "--rate-limit: 'fast' is not a zone on hub (zones: perip, auth)"),
    # The login zone is every basic-auth site's on top of its own: named again, NGINX refused the vhost
    # ("limit_req" directive is duplicate); on a site without auth it limited nothing (no credentials, no key).
    ("login", "--rate-limit: 'login' is not a zone on hub (zones: perip, auth)"),
    ("0r/s", "--rate-limit: must be off, a rate-limit zone's name or RATE[/BURST] such as 50r/s/100 or 600r/m "
             "(value '0r/s')"),
    ("50r/h", "--rate-limit: must be off"),
    ("50r/s/", "--rate-limit: must be off"),
    ("10r/s/5 nodelay", "--rate-limit: must be off"),
    ("OFF", "--rate-limit: must be off"),
])
def test_a_bad_rate_limit_is_one_line_and_writes_nothing(project, value, message):
    result = add(project, "api.example.com", "--upstream", "demo-app:8080", "--rate-limit", value)
    assert result.returncode == 1 and registry(project) is None
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vsa-ops: " + message), result.stderr


@pytest.mark.parametrize("entry, ok", [("off", True), ("'off'", True), ("20r/s/40", True), ("true", False),
                                       ("10r/x", False)])
def test_the_registry_rate_limit_is_validated_on_read(project, entry, ok):
    (project / "domains.yml").write_text(f"api.example.com:\n  upstream: demo-app:8080\n  rate_limit: {entry}\n")
    result = add(project, "other.example.com", "--upstream", "demo-app:8080")
    assert (result.returncode == 0) is ok, result.stderr
    if not ok:
        assert result.stderr.startswith("vsa-ops: domains.yml: api.example.com.rate_limit: must be off"), result.stderr
        assert f"(value {yaml.safe_load(entry)!r})" in result.stderr  # README: the line names the value


def test_a_render_that_fails_on_apply_leaves_the_registry_as_it_was(project):
    """With a real apply the manifests render while the hosts connect, from the secrets too: a
    broken secrets file is refused in one line naming it, and the registry is put back."""
    (project / "domains.yml").write_text("a.example.com:\n  upstream: http://demo-app:8080\n")
    before = (project / "domains.yml").read_text()
    (project / "secrets.env").write_text("not a pair\n")
    result = run_cli("add-domain", "b.example.com", "--upstream", "demo-app:8080", "--no-tls", cwd=project,
                     env={"VSA_HUB_ADDRESS": "127.0.0.1"})
    assert result.returncode == 1
    assert result.stderr.strip().endswith("secrets.env:1: expected KEY=VALUE"), result.stderr
    assert (project / "domains.yml").read_text() == before
    assert not list(project.glob(".domains.yml.tmp"))


def test_a_domain_change_renders_what_a_later_deploy_renders(project):
    """add-domain renders from the registry it holds (the new domain after the others); the next deploy
    reads the saved file (names in order). A template that lists the domains must come out the same
    from both, or the deploy after a change is no no-op (it rewrites the file and restarts its service)."""
    from vsa_ops.domains import Domain, save_registry
    from vsa_ops.host_manifest import host_manifest
    from vsa_ops.pyinfra_glue.inventory_files import load_inventory

    (project / "stacks/observability/sites.txt.j2").write_text("{% for d in domains %}{{ d.name }}\n{% endfor %}")
    held = {name: Domain(name=name, upstream="demo-app:8080", tls=False) for name in ("b.example.com", "a.example.com")}
    save_registry(project / "domains.yml", held)
    host = next(iter(load_inventory(project / "inventory.py", project)))
    from_file = host_manifest(host, None, with_secrets=False, root=project)
    from_held = host_manifest(host, None, with_secrets=False, root=project, registry=held)
    listed = {f.path: f.content for f in from_held.files}["/srv/flowbiz/observability/sites.txt"]
    assert listed == "a.example.com\nb.example.com\n"
    assert from_held.files == from_file.files


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_ctrl_c_while_the_hosts_connect_leaves_the_registry_as_it_was(project, stop):
    """The registry is written before the hosts connect; Ctrl-C there (a host that accepts the
    connection and never answers) puts it back and says so: nothing on any host had changed. SIGTERM
    (a CI job cancelled, `timeout`, a service stopped) is the same request to stop: before, it killed
    the process with the domain left in the registry."""
    import signal
    import socket
    import time

    from tests.conftest import SECRETS

    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never says SSH
    port = silent.getsockname()[1]
    (project / "inventory.py").write_text(f'hubs = [("hub", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}}})]\n')
    (project / "secrets.env").write_text("".join(f"{key}={value}\n" for key, value in SECRETS.items()))
    (project / "domains.yml").write_text("a.example.com:\n  upstream: http://demo-app:8080\n")
    before = (project / "domains.yml").read_text()
    environment = {k: v for k, v in __import__("os").environ.items() if not k.startswith("VSA_")}
    process = subprocess.Popen(["vsa-ops", "add-domain", "b.example.com", "--upstream", "demo-app:8080", "--no-tls"],
                               cwd=project, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while "b.example.com" not in (project / "domains.yml").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        connection, _ = silent.accept()  # the controller is connecting
        time.sleep(0.5)
        process.send_signal(getattr(signal, stop))
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
        silent.close()
    assert process.returncode == 1, stderr
    assert stderr.strip().splitlines()[-1] == ("vsa-ops: add-domain b.example.com was interrupted before any host "
                                              "changed; the registry is as it was"), stderr
    assert (project / "domains.yml").read_text() == before
    connection.close()


@pytest.mark.parametrize("action", ["add-domain", "remove-domain"])
def test_a_second_ctrl_c_while_the_change_is_undone_says_what_is_left(project, monkeypatch, action):
    """Ctrl-C after a host changed starts the rollback; Ctrl-C again stops that too. The registry is back
    either way; the host may keep the change, and the user is told how to bring it in line. Before: the
    second interrupt escaped as click's bare 'Aborted!'. (The runner, whose Interrupted says a host may
    have changed, stands in for the SSH sessions.)"""
    from contextlib import contextmanager

    from vsa_ops import domain_changes
    from vsa_ops.domains import Domain
    from vsa_ops.errors import VsaError
    from vsa_ops.pyinfra_glue.runner import Interrupted

    started = []

    @contextmanager
    def interrupted(*args, **kwargs):
        started.append(args[3].target_domain)
        raise Interrupted(touched=True)
        yield

    monkeypatch.setattr(domain_changes, "deploying", interrupted)
    (project / "domains.yml").write_text("a.example.com:\n  upstream: http://demo-app:8080\n  tls: false\n")
    before = (project / "domains.yml").read_text()
    with pytest.raises(VsaError) as raised:
        if action == "add-domain":
            domain_changes.add_domain(project, project / "inventory.py",
                                      Domain(name="b.example.com", upstream="demo-app:8080", tls=False), echo=print)
        else:
            domain_changes.remove_domain(project, project / "inventory.py", "a.example.com", echo=print)
    name = "b.example.com" if action == "add-domain" else "a.example.com"
    assert started == [name, name]  # the change, then its rollback
    assert str(raised.value) == (f"{action} {name} was interrupted; the registry is restored, but putting the hosts "
                                 f"back was interrupted too: run `vsa-ops deploy`")
    assert (project / "domains.yml").read_text() == before


def test_ctrl_c_once_the_change_stands_keeps_it_and_says_what_may_be_missing(project, monkeypatch):
    """remove-domain done on its hosts (its certificate deleted), then Ctrl-C while the audit record is
    written: undoing it would be a new change (a new certificate ordered), so it stands, and the user
    is told what the interrupt may have cost. Before: rolled back, the site and a new order back."""
    from contextlib import contextmanager
    from types import SimpleNamespace

    from vsa_ops import domain_changes
    from vsa_ops.errors import VsaError
    from vsa_ops.pyinfra_glue.runner import DeployResult, Interrupted

    started = []

    @contextmanager
    def finished(*args, **kwargs):  # the runner: a deploy that succeeded, then Ctrl-C in its block
        started.append(args[3].target_domain)
        try:
            yield SimpleNamespace(result=DeployResult(0, None, {"hub": "1 removed"}), sessions=lambda: {})
        except KeyboardInterrupt:
            raise Interrupted(touched=True) from None

    def recording(*steps):
        raise KeyboardInterrupt

    monkeypatch.setattr(domain_changes, "deploying", finished)
    monkeypatch.setattr(domain_changes, "side_by_side", recording)
    (project / "domains.yml").write_text("a.example.com:\n  upstream: http://demo-app:8080\n  tls: false\n"
                                         "b.example.com:\n  upstream: http://demo-app:8080\n  tls: false\n")
    with pytest.raises(VsaError) as raised:
        domain_changes.remove_domain(project, project / "inventory.py", "a.example.com", echo=print)
    assert started == ["a.example.com"]  # no rollback
    assert str(raised.value) == ("remove-domain a.example.com is done on its hosts, but was interrupted while "
                                 "recording it: its audit record or metrics may be missing")
    assert "a.example.com" not in registry(project) and "b.example.com" in registry(project)


def test_a_host_that_cannot_be_reached_leaves_the_registry_as_it_was_without_a_second_connect(project):
    """Stopped while connecting, no operation ran: the registry goes back at once. Before: a rollback
    connected again, failed the same way, and asked for `vsa-ops deploy`."""
    from tests.conftest import SECRETS

    closed = __import__("socket").create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: the connection is refused
    (project / "inventory.py").write_text(f'hubs = [("hub", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}}})]\n')
    (project / "secrets.env").write_text("".join(f"{key}={value}\n" for key, value in SECRETS.items()))
    (project / "domains.yml").write_text("a.example.com:\n  upstream: http://demo-app:8080\n")
    before = (project / "domains.yml").read_text()
    result = run_cli("add-domain", "b.example.com", "--upstream", "demo-app:8080", "--no-tls", cwd=project)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("vsa-ops: add-domain b.example.com failed at step "
                                                      "'connecting'; the registry and the hosts are as they were")
    assert result.stderr.count("Connecting to hosts") == 1  # no second connect
    assert (project / "domains.yml").read_text() == before
