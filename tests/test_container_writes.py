"""No file vsa-ops writes as root lives in a folder a container can write: a compromised container
could otherwise swap it for a symlink and have root write, or run, what it chooses."""

import posixpath

import pytest

from vsa_ops.config import hub_config

PEM = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
LAB_LIKE = [{"reverse_proxy": {"certbot": {"acme_ca_bundle": PEM}}}]


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def writable_mounts(manifest) -> dict[str, list[str]]:
    """Host folders some container mounts read-write, with the containers that do."""
    found: dict[str, list[str]] = {}
    for stack in manifest.stacks:
        for name, spec in stack.compose["services"].items():
            for volume in spec.get("volumes", []):
                if volume["type"] == "bind" and not volume["read_only"]:
                    found.setdefault(volume["source"], []).append(spec.get("container_name", name))
    return found


@pytest.mark.parametrize("overrides", [[], LAB_LIKE], ids=["design", "with a CA bundle"])
def test_no_managed_file_is_in_a_folder_a_container_can_write(render, overrides):
    manifest = render(overrides)
    declared = {d.path for d in hub_config(list(overrides)).directories if d.container_data}
    writable = writable_mounts(manifest)
    assert writable, "the check must see the read-write mounts"
    for folder, containers in writable.items():
        assert folder in declared, f"{containers} mount {folder} read-write: declare it container_data or mount it ro"
        inside = [f.path for f in manifest.files if _under(f.path, folder)]
        assert not inside, f"{containers} can write {folder}, where vsa-ops writes {inside}"
        # A folder vsa-ops creates inside one a container writes must itself be declared container data.
        created = [d.path for d in manifest.directories if _under(posixpath.dirname(d.path), folder)]
        assert set(created) <= declared, created


def test_certbot_runs_hooks_and_trusts_a_ca_only_from_read_only_folders(render):
    manifest = render(LAB_LIKE)
    hook = manifest.file("/srv/flowbiz/reverse-proxy/certbot-hooks/vsa-reload-nginx")
    assert hook.mode == "0755" and "touch /run/vsa-reload/nginx" in hook.content
    assert manifest.file("/srv/flowbiz/reverse-proxy/certbot-ca/vsa-acme-ca.pem").content.startswith("-----BEGIN")
    services = manifest.stack("reverse-proxy").compose["services"]
    certbot = {v["target"]: v for v in services["certbot"]["volumes"]}
    assert certbot["/etc/letsencrypt/renewal-hooks/deploy"]["source"] == "/srv/flowbiz/reverse-proxy/certbot-hooks"
    assert certbot["/etc/letsencrypt/renewal-hooks/deploy"]["read_only"] and certbot["/etc/vsa-acme"]["read_only"]
    assert services["certbot"]["environment"]["REQUESTS_CA_BUNDLE"] == "/etc/vsa-acme/vsa-acme-ca.pem"


def test_only_certbot_writes_letsencrypt(render):
    services = render().stack("reverse-proxy").compose["services"]
    services |= render().stack("dashboard").compose["services"]
    writers = sorted(spec["container_name"] for spec in services.values() for v in spec.get("volumes", [])
                     if v["source"] == "/srv/flowbiz/reverse-proxy/letsencrypt" and not v["read_only"])
    assert writers == ["reverse-proxy-certbot"]
    nginx = {v["target"]: v["read_only"] for v in services["nginx"]["volumes"]}
    assert nginx["/etc/letsencrypt"] is True and nginx["/var/www/certbot"] is True
