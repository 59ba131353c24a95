"""The rendered NGINX tree passes `nginx -t` in the real NGINX image (the lab's build of
nginx:1.25-alpine, NGINX 1.26 from Debian), mounted exactly as the design mounts it."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vsa_ops.domains import Domain
from vsa_ops.htpasswd import hash_password
from vsa_ops.lab.images import ensure_images
from vsa_ops.writer import write_manifest

from tests.conftest import missing

pytestmark = pytest.mark.tools

DOMAINS = [
    Domain(name="shop.example.com", aliases=["www.shop.example.com"], upstream="demo-app:8080"),
    Domain(name="private.example.com", upstream="http://10.0.0.5:3000/app", auth={"alice": hash_password("pw")}),
    Domain(name="plain.example.com", upstream="ghost-app:8080", tls=False),
    Domain(name="custom.example.com", upstream="demo-app:8080", headers={"Content-Security-Policy": "default-src *"}),
    # Per-site rate limits: the site's own zone (NGINX refuses burst=0, so none is written), off, a named zone.
    Domain(name="api.example.com", upstream="demo-app:8080", rate_limit="50r/s/100", auth={"bob": hash_password("pw")}),
    Domain(name="hook.example.com", upstream="demo-app:8080", rate_limit="600r/m/0"),
    Domain(name="open.example.com", upstream="demo-app:8080", tls=False, rate_limit="off"),
    Domain(name="strict.example.com", upstream="demo-app:8080", tls=False, rate_limit="auth"),
]


def self_signed(folder, names):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True)
    (folder / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "privkey.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))


@pytest.fixture(scope="module")
def nginx_image(request):
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        missing(request.config, "a running Docker engine")
    return ensure_images(["nginx"], log=lambda line: None)["nginx"]


def nginx_t(image, out):
    rp = out / "srv/flowbiz/reverse-proxy"
    mounts = [("nginx/conf.d", "/etc/nginx/conf.d"), ("nginx/snippets", "/etc/nginx/snippets"),
              ("nginx/auth", "/etc/nginx/auth"), ("letsencrypt", "/etc/letsencrypt"),
              ("certbot-www", "/var/www/certbot"), ("logs", "/var/log/nginx")]
    args = [part for source, target in mounts for part in ("-v", f"{rp / source}:{target}")]
    return subprocess.run(["docker", "run", "--rm", *args, image, "nginx", "-t"], capture_output=True, text=True)


def test_the_rendered_tree_with_sample_vhosts_passes_nginx_t(render, tmp_path, nginx_image):
    write_manifest(render(domains=DOMAINS), tmp_path)
    for domain in DOMAINS:
        if domain.tls:
            self_signed(tmp_path / f"srv/flowbiz/reverse-proxy/letsencrypt/live/{domain.name}", domain.server_names)
    (tmp_path / "srv/flowbiz/reverse-proxy/logs/domains").mkdir(parents=True, exist_ok=True)
    result = nginx_t(nginx_image, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr


def test_nginx_t_catches_a_vhost_whose_certificate_is_missing(render, tmp_path, nginx_image):
    """The check above can fail: a TLS vhost rendered before its certificate exists is refused,
    which is why a new domain starts with its HTTP-only vhost."""
    write_manifest(render(domains=DOMAINS[:1]), tmp_path)
    (tmp_path / "srv/flowbiz/reverse-proxy/logs/domains").mkdir(parents=True, exist_ok=True)
    result = nginx_t(nginx_image, tmp_path)
    assert result.returncode != 0 and "[emerg]" in result.stderr
    write_manifest(render(domains=DOMAINS[:1], certificates=[]), tmp_path)
    assert nginx_t(nginx_image, tmp_path).returncode == 0
