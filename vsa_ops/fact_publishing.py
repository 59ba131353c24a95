"""vsa-ops' own facts published on its hosts for Prometheus (node-exporter's textfile collector, see
vsa_ops/metrics.py), over the command's own connections: the last deploy, the certificates' expiry, each
site's last probe, drift. Like audit records, a host that cannot be written is a warning, never a failure
of the command that did the work."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from . import metrics
from .config.storage import REVERSE_PROXY
from .inventory import host_config
from .pyinfra_glue.connections import Sessions, connected
from .pyinfra_glue.runner import DeployRun

Echo = Callable[[str], None] | None


# Between the certificates' listing and the certificates file as the host has it now.
_CURRENT_MARK = "== vsa-ops: the certificates file now"


def _publish(sessions: Sessions, files_for: Callable[[str], Mapping[str, str | None]], echo: Echo,
             certificates: Callable[[str], bool] = lambda name: False) -> None:
    """Writes each host's files (name -> text; None removes the file) in one remote command. Where
    ``certificates(host name)`` asks for it, the same command also lists the certificates and prints
    the certificates file as it is; that file is rewritten, in a second command, only when the
    certificates' expiry changed (a new, renewed or deleted certificate)."""
    for name, session in sessions.items():
        if isinstance(session, str):
            continue  # the command already reported an unreachable host
        host, run = session
        folder = host_config(host).observability.node_exporter.textfile_directory
        files = dict(files_for(name))
        commands = [metrics.remove_command(folder, file) if text is None else metrics.write_command(folder, file, text)
                    for file, text in files.items()]
        writes = " && ".join(f"{{ {command}; }}" for command in commands)
        failed = []
        if certificates(name):
            current = metrics.read_command(folder, metrics.CERTIFICATES_FILE)
            ok, output = run(f"{{ {writes or 'true'}; }}; s=$?; {metrics.certificates_command(f'{REVERSE_PROXY}/letsencrypt')}; "
                             f"echo {shlex.quote(_CURRENT_MARK)}; {current}; exit $s")
            failed += [] if ok else list(files)
            # pyinfra gives the output as lines joined by newlines, without the last one
            listing, found, now = output.partition(_CURRENT_MARK)
            text = metrics.certificate_metrics(metrics.certificate_expiries(listing)) if found else None
            if text is None:  # the listing did not run to its end: the file stays as it is
                failed.append(metrics.CERTIFICATES_FILE)
            elif text.strip("\n") != now.strip("\n") and \
                    not run(metrics.write_command(folder, metrics.CERTIFICATES_FILE, text))[0]:
                failed.append(metrics.CERTIFICATES_FILE)
        elif commands and not run(writes)[0]:
            failed += list(files)
        if failed and echo:
            echo(f"vsa-ops: metrics on {name}: could not write {', '.join(failed)} in {folder}")


def publish_deploy(run: DeployRun, echo: Echo = None) -> None:
    """The deploy's end and result, and the certificates found, on each host where the deploy changed
    something or failed, or whose metrics do not say yet that its last deploy succeeded. Otherwise a
    deploy that changed nothing writes nothing: a converged host stays one remote command (renewals in
    between are the renewal hook's to write)."""
    at, result = time.time(), run.result
    failed, summaries = result.failed_hosts, result.summaries

    def changed(name: str) -> bool:
        return name in failed or summaries.get(name) != "no changes" or name not in result.success_recorded

    sessions = run.sessions()
    if not any(changed(name) for name in sessions):
        return
    _publish(sessions, lambda name: {metrics.DEPLOY_FILE: metrics.deploy_metrics(name not in failed, at)}
             if changed(name) else {}, echo, certificates=changed)


def publish_site(run: DeployRun, domain: str, probes: Mapping[str, bool] | None, echo: Echo = None) -> None:
    """A site's last probe on each host (``probes``: host name -> ok), or None when the site is gone."""
    at = time.time()
    _publish(run.sessions(), lambda name: {metrics.site_file(domain): None if probes is None else
                                           metrics.site_metrics(domain, probes.get(name, False), at)},
             echo, certificates=lambda name: True)


def publish_drift(root: Path, inventory_file: Path, changes: Mapping[str, int], echo: Echo = None) -> None:
    """Each checked host's drift: the number of changes a deploy would make."""
    at = time.time()
    with connected(inventory_file, root, names=list(changes)) as sessions:
        _publish(sessions, lambda name: {metrics.DRIFT_FILE: metrics.drift_metrics(changes[name], at)}, echo)


def drift_counts(plans: Iterable) -> dict[str, int]:
    """Host name -> changes found, for the hosts whose check succeeded."""
    return {hp.host: len(hp.changes or []) for hp in plans if not hp.error}
