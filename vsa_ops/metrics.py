"""vsa-ops' own facts as Prometheus metrics, in the text format node-exporter's textfile collector reads
(``*.prom`` files in NodeExporter.textfile_directory). Each writer owns its files, so no writer has to
merge another's: deploy (vsa_deploy.prom, vsa_certificates.prom), drift (vsa_drift.prom), add-domain
(vsa_site_<domain>.prom) and certbot's renewal hook (vsa_certificates.prom, the same rendering)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping

DEPLOY_FILE = "vsa_deploy.prom"
DRIFT_FILE = "vsa_drift.prom"
CERTIFICATES_FILE = "vsa_certificates.prom"
# certbot's lineages under the letsencrypt folder: live/<name>/cert.pem
LINEAGE_MARK = "== lineage "


def site_file(domain: str) -> str:
    return f"vsa_site_{domain}.prom"


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _gauge(name: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], float]]) -> str:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        inside = ",".join(f'{key}="{_label_value(val)}"' for key, val in sorted(labels.items()))
        lines.append(f"{name}{{{inside}}} {value:.0f}" if inside else f"{name} {value:.0f}")
    return "\n".join(lines) + "\n"


def deploy_metrics(ok: bool, at: float) -> str:
    return (_gauge("vsa_deploy_last_run_timestamp_seconds", "When the last vsa-ops deploy of this host that changed it, failed, or "
                   "followed a failure ended.",
                   [({}, at)])
            + _gauge("vsa_deploy_last_success", "1 when the last vsa-ops deploy of this host succeeded, else 0.",
                     [({}, 1 if ok else 0)]))


# deploy_metrics' last line after a success: the state read brings the file's last line (state.sh "l")
_SUCCESS_LINE = deploy_metrics(True, 0).splitlines(keepends=True)[-1].encode()


def deploy_file(directory: str) -> str:
    return f"{directory}/{DEPLOY_FILE}"


def success_recorded(last_line: bytes | None) -> bool:
    """Whether the deploy file, by its last line, says the last deploy succeeded."""
    return last_line == _SUCCESS_LINE


def drift_metrics(changes: int, at: float) -> str:
    return (_gauge("vsa_drift_changes", "Changes the last vsa-ops drift check found between the host and the code.",
                   [({}, changes)])
            + _gauge("vsa_drift_last_check_timestamp_seconds", "When vsa-ops last checked this host for drift.",
                     [({}, at)]))


def site_metrics(domain: str, ok: bool, at: float) -> str:
    labels = {"domain": domain}
    return (_gauge("vsa_site_probe_success", "1 when the last vsa-ops probe of the site succeeded, else 0.",
                   [(labels, 1 if ok else 0)])
            + _gauge("vsa_site_probe_timestamp_seconds", "When vsa-ops last probed the site.", [(labels, at)]))


def certificate_metrics(expiries: Mapping[str, float]) -> str:
    """Every certificate's end of validity (certbot's renewal hook renders the same text)."""
    return _gauge("vsa_certificate_expiry_timestamp_seconds", "When the certificate stops being valid (notAfter).",
                  [({"domain": name}, expiries[name]) for name in sorted(expiries)])


def certificates_command(letsencrypt: str) -> str:
    """Prints each lineage's name and certificate; `certificate_expiries` reads the output."""
    live = shlex.quote(f"{letsencrypt}/live")
    return (f'for d in {live}/*/; do [ -f "$d/cert.pem" ] || continue; '
            f'echo "{LINEAGE_MARK}$(basename "$d")"; cat "$d/cert.pem"; done')


def certificate_expiries(output: str) -> dict[str, float]:
    from cryptography import x509  # here: a deploy that publishes no certificates needs no x509

    expiries = {}
    for name, pem in re.findall(rf"^{LINEAGE_MARK}(\S+)\n(.*?-----END CERTIFICATE-----)", output, re.M | re.S):
        certificate = x509.load_pem_x509_certificate(pem.encode())
        expiries[name] = certificate.not_valid_after_utc.timestamp()
    return expiries


def write_command(directory: str, name: str, text: str) -> str:
    """Replaces the file by rename: the collector never reads half a file. The folder is one a
    container writes too (certbot's renewal hook), so root writes only through a fresh name that
    mktemp creates exclusively, and the rename replaces whatever sits at the final name without
    following it (no symlink planted there can redirect root's write)."""
    folder, final = shlex.quote(directory), shlex.quote(f"{directory}/{name}")
    template = shlex.quote(f"{directory}/.{name}.XXXXXX")
    return (f"mkdir -p {folder} && t=$(mktemp {template}) && printf %s {shlex.quote(text)} > \"$t\" && "
            f"chmod 0644 \"$t\" && mv -fT \"$t\" {final}")


def read_command(directory: str, name: str) -> str:
    """Prints a file of the folder as it is. The folder is one a container writes too, so root reads a
    plain file only, through no link (nofollow: not even one swapped in after the test), never a FIFO
    (that would hold the command forever), and no more than 1 MiB of it."""
    path = shlex.quote(f"{directory}/{name}")
    return (f"if [ -f {path} ] && [ ! -L {path} ]; then dd if={path} iflag=nofollow,nonblock,fullblock bs=1048576 "
            f"count=1 status=none; fi 2>/dev/null")


def remove_command(directory: str, name: str) -> str:
    return f"rm -f {shlex.quote(f'{directory}/{name}')}"
