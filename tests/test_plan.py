"""The plan: what a converge would change, from a manifest and a host state, without I/O."""

import pytest

from vsa_ops.domains import Domain
from vsa_ops.state_read import PathState, HostSnapshot
from vsa_ops.htpasswd import PasswordError, hash_password, verify_password
from vsa_ops.plan import PlanError, assume_applied, content_hash, make_plan, plan_fstab, restrict, sha256


# A host with every disk of the design, its root disk labelled cloudimg-rootfs and mounted at /.
DISK_LABELS = {"cloudimg-rootfs", "docker", "BOOT", "UEFI"}


def converged(manifest, salt: str = "") -> HostSnapshot:
    """The state of a host that already matches ``manifest``, with every stack running."""
    state = HostSnapshot(salt=salt, docker_running=True,
                         compose_plugin="/usr/lib/docker/cli-plugins/docker-compose", networks={"flowbiz_ext"},
                         commands={"sqlite3", "logrotate", "findmnt", "flock"},
                         fstab="".join(f"{line.line}\n" for line in manifest.fstab),
                         labels=DISK_LABELS, root_sources={"LABEL=cloudimg-rootfs"}, mounts={"/": "/dev/vda1"})
    for d in manifest.directories:
        state.paths[d.path] = PathState("directory", d.owner, d.group, d.mode)
    for f in manifest.files:
        state.paths[f.path] = PathState("file", f.owner, f.group, f.mode, content_hash(f, salt))
    state.owned_files = {f.path for f in manifest.files}
    for stack in manifest.stacks:
        for name, spec in stack.compose["services"].items():
            state.images.add(spec["image"])
            state.containers[(stack.name, name)] = "running"
    state.users = {u.name: u.uid for u in manifest.users}
    state.uids = set(state.users.values())
    return state


def test_a_converged_host_has_an_empty_plan(render):
    manifest = render()
    plan = make_plan(manifest, converged(manifest))
    assert plan.empty and plan.summary() == "no changes"


def test_a_fresh_host_gets_everything(render):
    manifest = render()
    plan = make_plan(manifest, HostSnapshot())
    assert plan.install_docker and plan.fstab and len(plan.files) == len(manifest.files) - 1
    assert plan.daemon_json is not None and not plan.restart_docker
    assert {s.name for s in plan.stacks_up} == {"dashboard", "observability", "reverse-proxy"}
    assert not plan.services  # nothing ran before: nothing to restart


def test_a_changed_config_restarts_its_service_and_a_changed_vhost_reloads_nginx(render):
    manifest = render()
    state = converged(manifest)
    state.paths["/srv/flowbiz/observability/loki/loki-config.yml"] = PathState("file", 0, 0, "0644", "old")
    state.paths["/srv/flowbiz/reverse-proxy/nginx/snippets/proxy.conf"] = PathState("file", 0, 0, "0644", "old")
    plan = make_plan(manifest, state)
    assert [(a.service.name, a.action) for a in plan.services] == [("loki", "restart"), ("nginx", "reload")]
    assert not plan.stacks_up


def test_a_mode_change_needs_no_upload(render):
    manifest = render()
    state = converged(manifest)
    path = "/srv/flowbiz/dashboard/secrets/postgres_password"
    state.paths[path] = PathState("file", 0, manifest.file(path).group, "0644", content_hash(manifest.file(path)))
    plan = make_plan(manifest, state)
    assert [(c.file.path, c.reason, c.needs_upload) for c in plan.files] == [(path, "mode", False)]


def test_a_stray_file_in_an_owned_folder_is_removed_and_reloads_nginx(render):
    manifest = render()
    state = converged(manifest)
    state.owned_files.add("/srv/flowbiz/reverse-proxy/nginx/conf.d/gone.example.com.conf")
    state.owned_files.add("/srv/flowbiz/reverse-proxy/letsencrypt/renewal/kept.conf")  # not an owned folder
    plan = make_plan(manifest, state)
    assert plan.removals == ["/srv/flowbiz/reverse-proxy/nginx/conf.d/gone.example.com.conf"]
    assert [a.service.name for a in plan.services] == ["nginx"]


def test_a_stopped_service_brings_its_stack_up(render):
    manifest = render()
    state = converged(manifest)
    state.containers[("observability", "grafana")] = "exited"
    assert [s.name for s in make_plan(manifest, state).stacks_up] == ["observability"]


def test_missing_images_are_listed(render):
    manifest = render()
    state = converged(manifest)
    state.images.discard("nginx:1.25-alpine")
    assert make_plan(manifest, state).images == ["nginx:1.25-alpine"]


def test_a_new_domain_is_planned_http_first_then_certificate(render):
    domain = Domain(name="shop.example.com", upstream="demo-app:8080")
    base = render()
    state = converged(base)
    manifest = render(domains=[domain], certificates=state.certificates)
    plan = make_plan(manifest, state)
    assert [c.file.path for c in plan.files] == ["/srv/flowbiz/reverse-proxy/nginx/conf.d/shop.example.com.conf"]
    assert "listen 443" not in plan.files[0].file.content
    assert [d.name for d in plan.certificates] == ["shop.example.com"]
    after = assume_applied(state, manifest, plan)
    tls = render(domains=[domain], certificates=after.certificates)
    second = make_plan(tls, after)
    assert [c.file.path for c in second.files] == ["/srv/flowbiz/reverse-proxy/nginx/conf.d/shop.example.com.conf"]
    assert "listen 443 ssl" in second.files[0].file.content
    assert not second.certificates and [a.action for a in second.services] == ["reload"]


def test_restrict_keeps_only_one_domain(render):
    domain = Domain(name="shop.example.com", upstream="demo-app:8080", tls=False)
    manifest = render(domains=[domain])
    state = converged(render())
    state.paths["/srv/flowbiz/observability/loki/loki-config.yml"] = PathState("file", 0, 0, "0644", "old")
    plan = restrict(make_plan(manifest, state), {"/srv/flowbiz/reverse-proxy/nginx/conf.d/shop.example.com.conf"},
                    {"shop.example.com"})
    assert [c.file.path for c in plan.files] == ["/srv/flowbiz/reverse-proxy/nginx/conf.d/shop.example.com.conf"]
    assert [a.service.name for a in plan.services] == ["nginx"]


FSTAB = "# comment\nUUID=abc / ext4 defaults 0 1\nLABEL=docker /var/lib/docker ext4 noatime 0 2\n" \
        "LABEL=docker /var/lib/docker ext4 defaults 0 2\n/dev/sdc1 /data xfs defaults 0 2\n"


def test_fstab_replaces_by_mount_point_keeps_other_lines_and_never_duplicates(render):
    wanted = render().fstab
    disks = HostSnapshot(labels=DISK_LABELS, root_sources={"LABEL=cloudimg-rootfs", "UUID=abc"})
    change = plan_fstab(FSTAB, wanted, disks)
    lines = change.content.splitlines()
    assert "# comment" in lines and "/dev/sdc1 /data xfs defaults 0 2" in lines
    assert sum(line.split()[1:2] == ["/var/lib/docker"] for line in lines if line.strip()) == 1
    assert "LABEL=docker /var/lib/docker ext4 defaults 0 2" in lines
    assert "LABEL=cloudimg-rootfs / ext4 discard,commit=30,errors=remount-ro 0 1" in lines
    assert "UUID=abc / ext4 defaults 0 1" not in lines  # the same device, now by the design's label
    assert plan_fstab(change.content, wanted, disks) is None  # a second run changes nothing


def test_fstab_refuses_another_device_on_a_mounted_point_unless_forced(render):
    wanted = render().fstab
    state = HostSnapshot(labels=DISK_LABELS, mounts={"/var/lib/docker": "/dev/vdb1"})
    current = "LABEL=old-docker /var/lib/docker ext4 defaults 0 2\n"
    with pytest.raises(PlanError, match="refusing to put LABEL=docker there"):
        plan_fstab(current, wanted, state)
    assert plan_fstab(current, wanted, state, force=True) is not None


def test_fstab_mounts_only_entries_whose_device_exists(render):
    change = plan_fstab("", render().fstab, HostSnapshot(labels={"docker"}))
    assert change.mount == ("/var/lib/docker",)


def test_htpasswd_hashes_are_bcrypt_cost_10_and_verify():
    digest = hash_password("s3cret pass")
    assert digest.startswith("$2y$10$") and verify_password("s3cret pass", digest)
    assert not verify_password("wrong", digest)
    with pytest.raises(PasswordError, match="longer than 72 bytes"):
        hash_password("é" * 37)  # 74 bytes, 37 characters
    with pytest.raises(PasswordError, match="must not be empty"):
        hash_password("")


def test_missing_host_tools_are_installed_by_package(render):
    manifest = render()
    state = converged(manifest)
    state.commands -= {"sqlite3", "findmnt"}
    plan = make_plan(manifest, state)
    assert plan.packages == ["sqlite3", "util-linux"] and "install sqlite3, util-linux" in plan.summary()


def test_secret_files_are_compared_by_salted_hash(render):
    manifest = render()
    state = converged(manifest, salt="s1")
    assert make_plan(manifest, state).empty
    secret = "/srv/flowbiz/dashboard/secrets/postgres_password"
    assert state.paths[secret].sha256 != sha256("pg-Secret-123")  # the bare digest of the password never shows
    state.salt = "s2"  # the same digests read with another salt no longer match
    assert [c.file.path for c in make_plan(manifest, state).files] == [
        "/srv/flowbiz/dashboard/secrets/api_database_password", secret,
        "/srv/flowbiz/observability/secrets/grafana_admin_password"]


@pytest.mark.parametrize("name", ["0day.example.com", "shop.example.com"])
def test_the_plan_names_each_domain_added_and_removed_whatever_its_name(render, name):
    from vsa_ops.plan_report import HostPlan

    domain = Domain(name=name, upstream="demo-app:8080", tls=False)
    before, after = render(), render(domains=[domain])
    added = HostPlan("hub", make_plan(after, converged(before)))
    assert f"add domain {name}" in added.changes
    removed = HostPlan("hub", make_plan(before, converged(after)))
    assert f"remove domain {name}" in removed.changes
    assert not [line for line in added.changes + removed.changes if "domain 00-" in line]
