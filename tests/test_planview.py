"""Plans as people read them: unified diffs with headers, masked secrets, every kind of change."""

from vsa_ops.domains import Domain
from vsa_ops.state_read import PathState
from vsa_ops.htpasswd import hash_password
from vsa_ops.plan import make_plan
from vsa_ops.manifest import holds_secret
from vsa_ops.plan_report import (MASKED, HostPlan, contents_wanted, file_diffs,
                                 render_json, render_markdown, render_text)

from tests.test_plan import converged

PROMETHEUS = "/srv/flowbiz/observability/prometheus/prometheus.yml"


def test_a_changed_file_is_a_unified_diff_with_headers(render):
    manifest = render()
    state = converged(manifest)
    old = manifest.file(PROMETHEUS).content.replace("15s", "30s")
    state.paths[PROMETHEUS] = PathState("file", 0, 0, "0644", "old")
    plan = make_plan(manifest, state)
    (path, diff), = file_diffs(plan, {PROMETHEUS: old})
    assert diff.startswith(f"--- a{PROMETHEUS}\n+++ b{PROMETHEUS}\n@@ ")
    assert "-  scrape_interval: 30s\n" in diff and "+  scrape_interval: 15s\n" in diff


def test_secrets_and_hashes_never_show(render):
    digest = hash_password("hunter2-long")
    domain = Domain(name="private.example.com", upstream="demo-app:8080", auth={"alice": digest})
    manifest = render(domains=[domain])
    state = converged(render())
    state.paths["/srv/flowbiz/dashboard/secrets/postgres_password"] = PathState("file", 0, 999, "0640", "old")
    plan = make_plan(manifest, state)
    diffs = dict(file_diffs(plan, {}))
    text = render_markdown([HostPlan("hub", plan, list(diffs.items()))]) + render_json(
        [HostPlan("hub", plan, list(diffs.items()))])
    assert digest not in text and "pg-Secret-123" not in text and "$2y$" not in text
    assert MASKED in diffs["/srv/flowbiz/reverse-proxy/nginx/auth/private.example.com.htpasswd"]
    assert MASKED in diffs["/srv/flowbiz/dashboard/secrets/postgres_password"]


def test_a_removed_htpasswd_file_never_shows_its_hashes(render):
    """Removing a basic-auth domain removes its htpasswd file: the plan must not show what it held."""
    htpasswd = "/srv/flowbiz/reverse-proxy/nginx/auth/private.example.com.htpasswd"
    old = f"alice:{hash_password('hunter2-long')}\n"
    manifest = render()
    state = converged(manifest)
    state.owned_files.add(htpasswd)
    state.paths[htpasswd] = PathState("file", 0, 101, "0640", "old")
    plan = make_plan(manifest, state)
    assert plan.removals == [htpasswd]
    assert htpasswd not in contents_wanted(plan)  # its content is never even read
    diffs = file_diffs(plan, {htpasswd: old})
    assert MASKED in dict(diffs)[htpasswd]
    plans = [HostPlan("hub", plan, diffs)]
    for text in (render_text(plans), render_markdown(plans), render_json(plans)):
        assert "$2" not in text and f"file {htpasswd}: remove" in text


def test_one_rule_says_what_holds_a_secret():
    digest = hash_password("hunter2-long")
    for path in ("/x/auth/a.example.com.htpasswd", "/srv/flowbiz/dashboard/secrets/postgres_password",
                 "/etc/letsencrypt/live/a/privkey.pem", "/etc/ssl/private/server.key"):
        assert holds_secret(path), path
    assert holds_secret("/srv/flowbiz/x/users.txt", f"alice:{digest}\n")
    assert holds_secret("/srv/flowbiz/x/tls.pem", "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n")
    assert not holds_secret(PROMETHEUS, "global:\n  scrape_interval: 15s\n")
    assert not holds_secret("/srv/flowbiz/x/cert.pem", "-----BEGIN CERTIFICATE-----\n")


def test_a_removed_file_whose_content_holds_a_hash_is_masked(render):
    """A file no path rule knows, read for its diff, is still masked by what it holds."""
    users = "/srv/flowbiz/reverse-proxy/nginx/conf.d/users.conf"
    manifest = render()
    state = converged(manifest)
    state.owned_files.add(users)
    plan = make_plan(manifest, state)
    diffs = file_diffs(plan, {users: f"# alice:{hash_password('hunter2-long')}\n"})
    assert dict(diffs)[users] == f"--- a{users}\n+++ /dev/null\n{MASKED}\n"


def test_markdown_has_one_diff_block_per_file_and_lists_every_change(render):
    domain = Domain(name="shop.example.com", upstream="demo-app:8080")
    manifest = render(domains=[domain], certificates=[])
    state = converged(render())
    state.containers[("observability", "grafana")] = "exited"
    state.owned_files.add("/srv/flowbiz/reverse-proxy/nginx/conf.d/old.example.com.conf")
    plan = make_plan(manifest, state)
    diffs = file_diffs(plan, {"/srv/flowbiz/reverse-proxy/nginx/conf.d/old.example.com.conf": "server {}\n"})
    md = render_markdown([HostPlan("hub", plan, diffs), HostPlan("node", make_plan(render(), converged(render())))])
    assert md.startswith("### vsa-ops plan: 1 of 2 hosts with changes")
    assert md.count("```diff") == 2
    assert "+++ b/srv/flowbiz/reverse-proxy/nginx/conf.d/shop.example.com.conf" in md
    assert "+++ /dev/null" in md  # the removed vhost
    assert "- docker compose up stack observability" in md
    assert "- issue certificate for shop.example.com" in md
    assert "- add domain shop.example.com" in md and "- remove domain old.example.com" in md
    assert "#### node: no changes" in md
