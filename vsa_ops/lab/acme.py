"""The lab's ACME test CA: Debian's pebble in the container ``vsa-lab-acme``, so that certbot inside a
lab host gets real certificates through real HTTP-01 validation against the deployed NGINX.

Network. The CA sits on the network ``vsa-lab`` with the lab hosts (see ``network``); certbot in a
lab host's inner container reaches it by address, ``https://10.203.7.2:14000/dir``. pebble asks its
own ``pebble-challtestsrv`` for the addresses of test names: by default lab host 1 (``point`` sends
a name elsewhere), and pebble's validator fetches ``http://NAME/.well-known/acme-challenge/TOKEN``
from that lab host's port 80, i.e. the deployed NGINX.

Trust. pebble's own HTTPS listener has a certificate made here (``listener_ca``; the CA key is thrown
away after signing it, so that CA can vouch for nothing else). Certificates pebble issues chain to a
root that pebble makes anew at every start (``issuer_roots`` fetches it). ``ca_bundle`` holds both: it
is what a client needs to trust lab domains' HTTPS, and certbot can use it as ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import engine, network
from .errors import LabError
from .images import ensure_images
from .names import ACME_LABEL, lab_dir
from .network import ACME_IP, NETWORK, host_ip

CONTAINER = "vsa-lab-acme"
ACME_PORT, MANAGEMENT_PORT, CHALLTESTSRV_PORT = 14000, 15000, 8055
IMAGE = "acme"


def directory_url() -> str:
    """The ACME directory as seen from inside a lab host's inner containers (by address, see above)."""
    return f"https://{ACME_IP}:{ACME_PORT}/dir"


def listener_ca(root: Path) -> Path:
    """CA of pebble's own HTTPS listener (stable across pebble restarts; made by ``start``)."""
    return _folder(root) / "listener-ca.pem"


def start(root: Path, lab_hosts: list[str], log=print) -> None:
    """Connect ``lab_hosts`` to ``vsa-lab`` and run pebble there; idempotent.

    A running CA with the current image is kept (a restart would change the issuing root); otherwise
    it is started anew. Test names resolve to the first of ``lab_hosts``.
    """
    if not lab_hosts:
        raise LabError("the ACME test CA needs at least one lab host")
    tag = ensure_images([IMAGE], log=log)[IMAGE]
    network.ensure()
    for name in lab_hosts:
        network.connect(name, host_ip(name))
    tls = _listener_tls(root)
    default_ip = host_ip(lab_hosts[0])
    image, current = engine.image(tag), engine.container(CONTAINER)
    if (current is None or image is None or current.attrs["Image"] != image.id
            or current.labels.get(ACME_LABEL) != default_ip or not current.attrs["State"]["Running"]):
        engine.remove_container(CONTAINER)
        log(f"lab: starting {CONTAINER} (pebble at {directory_url()})")
        client = engine.client()
        with engine.failing(f"start {CONTAINER}"):
            client.containers.run(
                tag, detach=True, name=CONTAINER, hostname=CONTAINER, init=True, labels={ACME_LABEL: default_ip},
                network=NETWORK, networking_config={NETWORK: client.api.create_endpoint_config(ipv4_address=ACME_IP)},
                environment={"ACME_DEFAULT_IPV4": default_ip},
                volumes={str(tls.resolve()): {"bind": "/etc/pebble/tls", "mode": "ro"}},
                log_config={"type": "json-file", "config": {"max-size": "1m"}})
    _wait_ready(root)
    ca_bundle(root)


def stop(root: Path | None = None) -> None:
    """Remove the CA container and the ``vsa-lab`` network (detaching whatever is still on it), and
    with ``root`` the copies of its issuing root, which no longer exists. The listener's TLS files stay."""
    engine.remove_container(CONTAINER)
    if root is not None:
        for name in ("acme-roots.pem", "acme-ca.pem"):
            (lab_dir(root) / name).unlink(missing_ok=True)
    network.remove()


def running() -> bool:
    return engine.running(CONTAINER)


def point(name: str, ip: str | None = None) -> None:
    """Make ``name`` resolve (for pebble's validator) to ``ip``, by default lab host 1's address."""
    _post(f"http://{ACME_IP}:{CHALLTESTSRV_PORT}/add-a", {"host": name, "addresses": [ip or host_ip(1)]})


def issuer_roots(root: Path) -> Path:
    """Fetch the root pebble signs with now (new at every pebble start) into ``.lab/acme-roots.pem``."""
    pem = _get(root, f"https://{ACME_IP}:{MANAGEMENT_PORT}/roots/0")
    x509.load_pem_x509_certificates(pem)  # fail here, not in a test, if it is not PEM
    path = lab_dir(root) / "acme-roots.pem"
    path.write_bytes(pem)
    return path


def ca_bundle(root: Path) -> Path:
    """``.lab/acme-ca.pem``: pebble's current issuing root plus its listener's CA (refreshed on each call)."""
    path = lab_dir(root) / "acme-ca.pem"
    path.write_bytes(issuer_roots(root).read_bytes().rstrip(b"\n") + b"\n" + listener_ca(root).read_bytes())
    return path


def info(root: Path) -> dict:
    """What ``vsa-ops lab info`` shows about the CA (all None while it is not running)."""
    if not running():
        return {"ca_bundle": None, "acme_directory": None, "acme_roots": None, "acme_listener_ca": None}
    bundle = ca_bundle(root).resolve()
    return {"ca_bundle": str(bundle), "acme_directory": directory_url(),
            "acme_roots": str(bundle.with_name("acme-roots.pem")), "acme_listener_ca": str(listener_ca(root).resolve())}


# ---------------------------------------------------------------------------------------------


def _folder(root: Path) -> Path:
    return lab_dir(root) / "acme"


def _listener_tls(root: Path) -> Path:
    """``.lab/acme/tls/{cert,key}.pem`` for pebble's listener (SAN: vsa-lab-acme, localhost, its
    addresses) and ``listener-ca.pem``; made once, with a CA whose key is never written down."""
    folder = _folder(root)
    tls = folder / "tls"
    if (tls / "cert.pem").is_file() and (tls / "key.pem").is_file() and listener_ca(root).is_file():
        return tls
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vsa-ops lab pebble listener CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    san = [x509.DNSName(CONTAINER), x509.DNSName("localhost"),
           x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address(ACME_IP))]
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CONTAINER)])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    tls.mkdir(parents=True, exist_ok=True)
    (tls / "key.pem").touch(mode=0o600)
    (tls / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    (tls / "cert.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    listener_ca(root).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return tls


def _context(root: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(listener_ca(root)))


def _get(root: Path, url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, context=_context(root), timeout=10) as response:
            return response.read()
    except OSError as error:
        raise LabError(f"{CONTAINER}: GET {url}: {error}") from error


def _post(url: str, body: dict) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10):
            pass
    except OSError as error:
        raise LabError(f"{CONTAINER}: POST {url}: {error}") from error


def _wait_ready(root: Path, seconds: float = 30) -> None:
    """Until pebble's directory (over TLS checked against the listener CA) and challtestsrv's
    management API answer, from this machine."""
    deadline, error = time.monotonic() + seconds, ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"https://{ACME_IP}:{ACME_PORT}/dir", context=_context(root), timeout=3):
                pass
            try:
                urllib.request.urlopen(f"http://{ACME_IP}:{CHALLTESTSRV_PORT}/", timeout=3).close()
            except urllib.error.HTTPError:
                pass  # any HTTP answer (it has no page at /) means it is up
            return
        except OSError as exc:
            error = str(exc)
            time.sleep(0.3)
    raise LabError(f"{CONTAINER} did not answer within {seconds:.0f} s ({error}); see docker logs {CONTAINER}")
