"""Adding and removing the sites a hub serves. The CLI only parses and prints; the logic is here.
Adding is all or nothing: a failure at any step restores the registry and the hosts as they were,
and names the step."""

from __future__ import annotations

import signal
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from .audit import Entry
from .deploys.request import DeployRequest
from .domains import (DOMAINS_FILE, Domain, RegistryError, check_unique, load_registry, registry_lock,
                      save_registry, served_by)
from .errors import VsaError
from .host_manifest import host_manifest
from .host_manifest import registry_path as host_registry
from .htpasswd import hash_password
from .inventory import host_config
from .probe import probe_until_ok, site_budget
from .pyinfra_glue.inventory_files import load_inventory
from .pyinfra_glue.connections import side_by_side
from .pyinfra_glue.runner import DeployResult, Interrupted, deploying
from .fact_publishing import publish_site
from .recording import record_audit
from .plan_identity import refuse_plan_identity


class DomainError(VsaError):
    pass


@contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a CI job cancelled, `timeout`, a stopped service) asks a change to stop as Ctrl-C does: it
    is put back the same way, never cut off with the registry and the hosts apart."""
    try:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread: signals are not this caller's to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def registry_path(root: Path, inventory) -> Path:
    """The one registry the inventory's hosts use (the lab's is .lab/domains.yml), as the deploy reads it."""
    named = {host_registry(host, root) for host in inventory}
    if len(named) > 1:
        raise DomainError(f"inventory: hosts name different domain registries: {', '.join(sorted(map(str, named)))}")
    return named.pop() if named else root / DOMAINS_FILE


def check_auth_options(tls: bool, auth_user: str | None, pass_auth: bool = False, insecure_auth: bool = False) -> None:
    """Refuse basic auth over plain HTTP (passwords in clear text) unless forced, before anything is read
    or changed; and options that only mean something with --auth-user."""
    if auth_user is not None and not tls and not insecure_auth:
        raise DomainError("--auth-user with --no-tls would send passwords in clear text: drop --no-tls, "
                          "or add --insecure-auth to do it anyway")
    if auth_user is None and (pass_auth or insecure_auth):
        raise DomainError(f"{'--pass-auth' if pass_auth else '--insecure-auth'}: only with --auth-user")


def new_domain(name: str, upstream: str, aliases: list[str], tls: bool, hosts: list[str],
               auth_user: str | None, password: str | None, *, pass_auth: bool = False,
               insecure_auth: bool = False, rate_limit: str | None = None) -> Domain:
    """A validated Domain from command-line values; errors name the option and the value."""
    check_auth_options(tls, auth_user, pass_auth, insecure_auth)
    auth = {auth_user: hash_password(password or "")} if auth_user is not None else {}
    limit = {} if rate_limit is None else {"rate_limit": rate_limit}
    try:
        return Domain(name=name, upstream=upstream, aliases=aliases, tls=tls, hosts=hosts, auth=auth,
                      pass_auth=pass_auth, insecure_auth=insecure_auth, **limit)
    except ValidationError as error:
        item = error.errors()[0]
        field = {"name": "domain", "upstream": "--upstream", "aliases": "--alias", "auth": "--auth-user",
                 "hosts": "--host", "rate_limit": "--rate-limit"}.get(str(item["loc"][0]) if item["loc"] else "",
                                                                      "domain")
        value = auth_user if item["loc"] and item["loc"][0] == "auth" else item["input"]  # never a hash
        raise DomainError(f"{field}: {item['msg'].removeprefix('Value error, ')} (value {value!r})") from None


@dataclass
class Target:
    """Where a domain is served and how to reach it from here."""

    host: object
    address: str
    http_port: int
    https_port: int
    ca_file: str | None
    nginx: object  # its vsa.reverse_proxy.nginx: the rate-limit zones


def _targets(inventory, domain: Domain) -> list[Target]:
    targets = []
    for host in inventory:
        if served_by(domain, host.name, host.groups):
            data = host.data
            targets.append(Target(host, data.get("vsa_probe_address") or data.get("ssh_hostname") or host.name,
                                  int(data.get("vsa_http_port") or 80), int(data.get("vsa_https_port") or 443),
                                  data.get("vsa_probe_ca_file"), host_config(host).reverse_proxy.nginx))
    return targets


def add_domain(root: Path, inventory_file: Path, domain: Domain, *, password: str | None = None, apply: bool = True,
               require_upstream: bool = False, echo: Callable[[str], None] = print) -> list:
    """Declare ``domain`` and, with ``apply``, serve it on its hosts and probe it. A site whose upstream
    does not answer yet is kept with a warning (proxy first, app later); ``require_upstream`` rolls it back."""
    inventory = load_inventory(inventory_file, root)
    path = registry_path(root, inventory)
    if apply:
        refuse_plan_identity(inventory, "add-domain")
    with registry_lock(path, f"add-domain {domain.name}", echo), _terminate_as_interrupt():
        registry = load_registry(path)
        if domain.name in registry:
            raise DomainError(f"domain {domain.name}: already declared in {path.name}")
        try:
            check_unique([*registry.values(), domain])
        except RegistryError as error:
            raise DomainError(str(error)) from None
        unknown = [h for h in domain.hosts if not any(h == x.name or h in x.groups for x in inventory)]
        if unknown:
            raise DomainError(f"--host: no host or group {unknown[0]!r} in the inventory")
        targets = _targets(inventory, domain)
        if not targets:
            raise DomainError(f"domain {domain.name}: no host of the inventory serves it")
        for target in targets:
            try:
                domain.request_limit(target.nginx)
            except LookupError as error:
                raise DomainError(f"--rate-limit: {domain.rate_limit!r} is not a zone on {target.host.name} "
                                  f"({error.args[0]})") from None
        before = path.read_text() if path.exists() else None
        registry = {**registry, domain.name: domain}
        save_registry(path, registry)
        if not apply:  # the new registry renders on every host, or the change is refused
            try:
                for target in targets:
                    host_manifest(target.host, None, with_secrets=False, root=root, registry=registry)
            except BaseException:  # Ctrl-C too
                _restore(path, before)
                raise
            return []
        return _apply(root, inventory_file, inventory, path, before, domain, targets, password, echo,
                      action="add-domain", registry=registry, require_upstream=require_upstream)


def _apply(root, inventory_file, inventory, path, before, domain, targets, password, echo, action, registry,
           delete_certificate=None, require_upstream=False) -> list:
    limits = [t.host.name for t in targets]
    request = DeployRequest(target_domain=domain.name, delete_certificate=delete_certificate)
    rendered = []

    def manifests():  # every host with the changed registry, rendered while the hosts connect
        result = {t.host.name: host_manifest(t.host, None, root=root, registry=registry) for t in targets}
        rendered.append(True)
        return result

    interrupted, stands = False, []
    try:
        with deploying(root, inventory_file, limits, request, manifests, echo=echo, inventory=inventory) as run:
            failure, probes = _probe_and_record(root, domain, targets, password, echo, action, run, require_upstream,
                                                stands)
    except Interrupted as stop:  # Ctrl-C
        if not stop.touched:  # while connecting or reading: no host changed
            _restore(path, before)
            raise DomainError(f"{action} {domain.name} was interrupted before any host changed; the registry "
                              f"is as it was") from None
        if stands:  # done and checked on every host: undoing it now (a certificate deleted) would be a new change
            raise DomainError(f"{action} {domain.name} is done on its hosts, but was interrupted while recording "
                              f"it: its audit record or metrics may be missing") from None
        # a host may have changed: undone like any failure (a second Ctrl-C stops that too, once the
        # registry is back)
        interrupted, failure, probes = True, "was interrupted", []
    except Exception:
        if not rendered:  # refused before any host was touched (a template, a secret): the registry goes back
            _restore(path, before)
        raise
    if failure and not interrupted and not run.result.executed:
        # stopped while connecting (the reason is logged per host) or refused while preparing (a host
        # not ready for the change): no operation ran anywhere, so there is nothing to put back
        _restore(path, before)
        result = run.result
        why = f": {result.error}" if result.error and result.failed_step != "connecting" else ""
        raise DomainError(f"{action} {domain.name} {failure}{why}; the registry and the hosts are as they were")
    if failure:
        result = DeployResult(1, None) if interrupted else run.result
        try:
            undone = _rollback(root, inventory_file, path, before, domain, limits, echo,
                               [Entry(name, action, domain.name, "rolled_back", result.duration,
                                      result.summaries.get(name, ""), failure) for name in limits])
        except Interrupted:  # Ctrl-C again: the registry is back (_rollback's first step), a host may not be
            raise DomainError(f"{action} {domain.name} {failure}; the registry is restored, but putting the hosts "
                              f"back was interrupted too: run `vsa-ops deploy`") from None
        if undone.returncode:
            raise DomainError(f"{action} {domain.name} {failure}; the registry is restored, but putting the hosts "
                              f"back failed at step {undone.failed_step!r}: run `vsa-ops deploy`")
        raise DomainError(f"{action} {domain.name} {failure}; the registry and the hosts are as they were")
    return probes


def _probe_and_record(root, domain, targets, password, echo, action, run, require_upstream, stands: list) -> tuple:
    """After the deploy, on its connections: probe the site, publish the probe and record the change
    (the last two side by side: each is a remote command of its own). Returns the failure that rolls
    the change back (None when it stands) and the probes; ``stands`` gets True as soon as it is known
    that the change stands."""
    result = run.result
    failure, probes, notes, published = None, [], {}, None
    if result.returncode != 0:
        failure = f"failed at step {result.failed_step!r}"
    elif action == "add-domain":
        probes = [probe_until_ok(t.address, t.https_port, t.http_port, domain, ca_file=t.ca_file,
                                 password=password, budget=site_budget(domain, t.nginx)) for t in targets]
        published = {t.host.name: p.ok for t, p in zip(targets, probes)}
        notes = {t.host.name: p.upstream for t, p in zip(targets, probes) if p.vhost_ok and p.upstream}
        failed = [p for p in probes if not p.vhost_ok]
        if failed:
            failure = f"failed at step 'probe': {'; '.join(failed[0].problems)}"
        elif notes and require_upstream:
            failure = f"failed at step 'probe': {next(iter(notes.values()))} (--require-upstream)"
        for name, note in {} if failure else notes.items():
            echo(f"vsa-ops: warning: {domain.name} on {name}: {note}; the site is kept "
                 f"(--require-upstream rolls it back)")
    if not failure:
        stands.append(True)
    steps = []
    if result.returncode == 0:  # the probe's result (None: the site is gone), even a failed one
        steps.append(lambda: publish_site(run, domain.name, published, echo))
    if not failure:
        entries = [Entry(t.host.name, action, domain.name, "ok", result.duration,
                         _with_note(result.summaries.get(t.host.name, ""), notes.get(t.host.name))) for t in targets]
        steps.append(lambda: record_audit(root, None, entries, echo=echo, run=run))
    side_by_side(*steps)
    return failure, probes


def _with_note(summary: str, note: str | None) -> str:
    return f"{summary} ({note})" if note else summary


def _restore(path: Path, before: str | None) -> None:
    if before is None:
        path.unlink(missing_ok=True)
    else:
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(before)
        temporary.replace(path)


def _rollback(root, inventory_file, path, before, domain, limits, echo, entries) -> DeployResult:
    """Registry back, then the same targeted converge puts the hosts back (the vhost goes away,
    NGINX reloads with what it had), and the failed change is recorded."""
    _restore(path, before)
    with deploying(root, inventory_file, limits, DeployRequest(target_domain=domain.name), echo=echo) as run:
        record_audit(root, None, entries, echo=echo, run=run)
        if not run.result.returncode:
            publish_site(run, domain.name, None, echo)  # the site is gone again: no probe result stands
    return run.result


def remove_domain(root: Path, inventory_file: Path, name: str, *, keep_cert: bool = False, apply: bool = True,
                  echo: Callable[[str], None] = print) -> None:
    inventory = load_inventory(inventory_file, root)
    path = registry_path(root, inventory)
    if apply:
        refuse_plan_identity(inventory, "remove-domain")
    with registry_lock(path, f"remove-domain {name}", echo), _terminate_as_interrupt():
        registry = load_registry(path)
        lowered = name.lower().rstrip(".")
        if lowered not in registry:
            raise DomainError(f"domain {name}: not declared in {path.name}")
        domain = registry.pop(lowered)
        targets = _targets(inventory, domain)
        before = path.read_text()
        save_registry(path, registry)
        if not apply:
            return
        _apply(root, inventory_file, inventory, path, before, domain, targets, None, echo, action="remove-domain",
               registry=registry, delete_certificate=None if keep_cert else domain.name)
