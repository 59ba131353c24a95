"""Secrets never shown: registry errors name the domain and user, never the value; the registry is
written readable by its owner only; a plan that removes a basic-auth site holds no bcrypt hash;
audit records mask any bcrypt hash."""

from __future__ import annotations

import stat

import pytest

from vsa_ops import audit
from vsa_ops.domains import Domain, RegistryError, load_registry, save_registry
from vsa_ops.htpasswd import hash_password
from vsa_ops.plan import make_plan
from vsa_ops.plan_report import HostPlan, contents_wanted, file_diffs, render_json, render_markdown, render_text
from vsa_ops.state_read import PathState

from tests.test_plan import converged

PASSWORD = "Tr0ub4dor&3-plain"


def test_a_password_put_into_the_registry_is_never_echoed(tmp_path):
    registry = tmp_path / "domains.yml"
    registry.write_text(f"shop.example.com:\n  upstream: demo-app:8080\n  auth:\n    alice: '{PASSWORD}'\n")
    with pytest.raises(RegistryError) as caught:
        load_registry(registry)
    message = str(caught.value)
    assert "shop.example.com" in message and "'alice'" in message and "bcrypt" in message
    assert PASSWORD not in message and "Tr0ub" not in message


def test_a_bad_non_secret_value_is_still_shown(tmp_path):
    registry = tmp_path / "domains.yml"
    registry.write_text("shop.example.com:\n  upstream: 'demo app'\n")
    with pytest.raises(RegistryError, match="demo app"):
        load_registry(registry)


def test_the_registry_is_written_for_its_owner_only(tmp_path):
    registry = tmp_path / "domains.yml"
    registry.write_text("{}\n")
    registry.chmod(0o644)
    domain = Domain(name="private.example.com", upstream="demo-app:8080", auth={"alice": hash_password(PASSWORD)})
    save_registry(registry, {domain.name: domain})
    assert stat.S_IMODE(registry.stat().st_mode) == 0o600
    assert load_registry(registry)[domain.name].auth == domain.auth


def test_a_plan_removing_a_basic_auth_site_holds_no_hash(render):
    htpasswd = "/srv/flowbiz/reverse-proxy/nginx/auth/private.example.com.htpasswd"
    manifest = render()
    state = converged(manifest)
    state.owned_files.add(htpasswd)
    state.paths[htpasswd] = PathState("file", 0, 101, "0640", "old")
    plan = make_plan(manifest, state)
    assert plan.removals == [htpasswd] and htpasswd not in contents_wanted(plan)
    plans = [HostPlan("hub", plan, file_diffs(plan, {htpasswd: f"alice:{hash_password(PASSWORD)}\n"}))]
    for text in (render_text(plans), render_markdown(plans), render_json(plans)):
        assert "$2" not in text and f"file {htpasswd}: remove" in text


def test_audit_records_mask_a_bcrypt_hash():
    digest = hash_password(PASSWORD)
    entry, names = audit.Masker([]).entry(audit.check_entry(
        audit.Entry("hub", "add-domain", "a.example.com", "failed", 1, [f"htpasswd alice:{digest}"], None), "me"))
    assert entry.changes == ["htpasswd alice:[secret]"] and names == ["changes"]


def test_a_secret_readers_id_held_by_another_account_is_refused(render):
    from vsa_ops.plan import PlanError

    manifest = render()
    state = converged(manifest)
    state.users = {"ubuntu": 1000, "someone": 64902}
    state.uids = set(state.users.values())
    with pytest.raises(PlanError, match="secret reader vsa-dashboard-api .*uid 64902 belongs to 'someone'"):
        make_plan(manifest, state)
    state.users = {"vsa-dashboard-api": 64902, "ubuntu": 1000}
    state.uids = set(state.users.values())
    assert ("vsa-dashboard-api", 64902) not in make_plan(manifest, state).users


def _actions(plan, manifest) -> list[str]:
    """The commands the transaction runs, in order (its stdin's `act` lines, decoded)."""
    import base64

    from vsa_ops.operations.stacks import transaction_input

    data = transaction_input(plan, manifest).split("\narchive\n")[0]
    return [base64.b64decode(line.split()[2]).decode() for line in data.splitlines() if line.startswith("act ")]


def test_a_changed_database_password_rotates_the_role_before_anything_restarts(render):
    old = render(secrets={"VSA_POSTGRES_PASSWORD": "old-Secret-1", "VSA_GRAFANA_ADMIN_PASSWORD": "graf-Secret-456"})
    new = render(secrets={"VSA_POSTGRES_PASSWORD": "new-Secret-2", "VSA_GRAFANA_ADMIN_PASSWORD": "graf-Secret-456"})
    actions = _actions(make_plan(new, converged(old)), new)
    rotate = [i for i, a in enumerate(actions) if "docker exec -u 0 dashboard-postgres sh -c" in a and "ALTER ROLE" in a]
    restart = [i for i, a in enumerate(actions) if "restart api" in a]
    assert rotate and restart and rotate[0] < restart[0]
    assert not [a for a in actions if "reset-admin-password" in a]  # Grafana's password did not change
    assert not [a for a in actions if "old-Secret-1" in a or "new-Secret-2" in a]
    # A password file created for a new database seeds it: nothing to rotate.
    fresh = make_plan(new, converged(render(overrides=[{"stacks": ["reverse-proxy", "observability"]}])))
    assert not [a for a in _actions(fresh, new) if "ALTER ROLE" in a]
