"""fstab never makes a server unbootable: a disk the host lacks is written noauto,nofail; / is never
pointed at a device other than the one mounted there; the host-side check refuses any new
`findmnt --verify` error and hides none."""

import base64
import subprocess

import pytest

from vsa_ops.operations.fstab import install_script
from vsa_ops.plan import make_plan, plan_fstab
from vsa_ops.plan_report import HostPlan
from vsa_ops.state_read import HostSnapshot, parse_host_state

from tests.test_plan import DISK_LABELS, converged

ROOT_LINE = "LABEL=cloudimg-rootfs / ext4 discard,commit=30,errors=remount-ro 0 1"
DOCKER_LINE = "LABEL=docker /var/lib/docker ext4 defaults 0 2"


def test_a_missing_label_is_written_noauto_nofail_with_a_device_timeout(render):
    state = HostSnapshot(labels=DISK_LABELS - {"docker"}, root_sources={"LABEL=cloudimg-rootfs"})
    change = plan_fstab("", render().fstab, state)
    docker = [line for line in change.content.splitlines() if line.split()[1] == "/var/lib/docker"]
    assert docker == ["LABEL=docker /var/lib/docker ext4 defaults,noauto,nofail,x-systemd.device-timeout=10s 0 2"]
    assert "/var/lib/docker" not in change.mount
    assert change.notes == ("LABEL=docker is not on this host: /var/lib/docker written with noauto,nofail",)
    assert plan_fstab(change.content, render().fstab, state) is None  # converged: the next run changes nothing


def test_a_present_label_keeps_the_design_line_unchanged(render):
    state = HostSnapshot(labels=DISK_LABELS, root_sources={"LABEL=cloudimg-rootfs"}, mounts={"/": "/dev/vda1"})
    change = plan_fstab("", render().fstab, state)
    assert change.content.splitlines() == [e.line for e in render().fstab]
    assert not change.notes and change.mount == ("/var/lib/docker", "/boot", "/boot/efi")


def test_the_disk_appearing_later_brings_the_design_line_back(render):
    lacking = HostSnapshot(labels=DISK_LABELS - {"docker"}, root_sources={"LABEL=cloudimg-rootfs"})
    first = plan_fstab("", render().fstab, lacking)
    later = plan_fstab(first.content, render().fstab, converged(render()))
    assert DOCKER_LINE in later.content.splitlines() and later.mount == ("/var/lib/docker",)


@pytest.mark.parametrize("current", ["UUID=1234 / ext4 defaults 0 1\n", ""])
def test_the_root_line_is_never_pointed_at_a_device_not_mounted_at_root(render, current):
    # The label exists, but on another disk than the one mounted at /: the line stays (or stays absent).
    state = HostSnapshot(labels=DISK_LABELS, root_sources={"UUID=1234"}, mounts={"/": "/dev/vda1"})
    change = plan_fstab(current, render().fstab, state)
    lines = change.content.splitlines()
    assert ROOT_LINE not in lines
    assert [line for line in lines if line.split()[1] == "/"] == current.splitlines()
    assert change.notes[0] == ("/ stays as it is: LABEL=cloudimg-rootfs does not name the device mounted at / "
                               "(/dev/vda1)")
    assert plan_fstab(current, render().fstab, state, force=True).content == change.content  # not even forced


def test_the_plan_shows_why_a_line_differs_from_the_design(render):
    manifest = render()
    state = converged(manifest)
    state.labels = DISK_LABELS - {"docker"}
    plan = make_plan(manifest, state)
    changes = HostPlan("hub", plan).changes
    assert "fstab: + LABEL=docker /var/lib/docker ext4 defaults,noauto,nofail,x-systemd.device-timeout=10s 0 2" \
        in changes
    assert "fstab: note: LABEL=docker is not on this host: /var/lib/docker written with noauto,nofail" in changes


def test_the_state_read_reports_what_names_the_root_device():
    from tests.test_deploy_plan import framed

    state = parse_host_state([framed([("root", "label=cloudimg-rootfs"), ("root", "uuid=0a1b-2c"),
                                      ("mount", "/ /dev/vda1")])])
    assert state.root_sources == {"LABEL=cloudimg-rootfs", "UUID=0a1b-2c"}


def _install(tmp_path, old: str, new: str) -> subprocess.CompletedProcess:
    (tmp_path / "fstab").write_text(old)
    return subprocess.run(["sh", "-c", install_script(str(tmp_path / "fstab"))], capture_output=True, text=True,
                          input=base64.b64encode(new.encode()).decode() + "\n")


def staged(tmp_path) -> list[str]:
    return [p.name for p in tmp_path.glob("fstab.vsa-new*")]


def test_the_host_refuses_a_table_with_a_new_findmnt_error(tmp_path, tool):
    tool("findmnt")
    result = _install(tmp_path, "", f"{DOCKER_LINE.replace('docker', 'vsa-absent-disk', 1)}\n")
    assert result.returncode == 1
    assert "unreachable on boot required source: LABEL=vsa-absent-disk" in result.stderr
    assert (tmp_path / "fstab").read_text() == "" and staged(tmp_path) == []


def test_the_host_installs_a_noauto_line_and_reports_errors_it_already_had(tmp_path, tool):
    tool("findmnt")
    old = "LABEL=vsa-absent-root / ext4 defaults 0 1\n"
    new = old + "LABEL=vsa-absent-disk /var/lib/docker ext4 defaults,noauto,nofail,x-systemd.device-timeout=10s 0 2\n"
    result = _install(tmp_path, old, new)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fstab").read_text() == new
    assert "already had (kept as it was): /: unreachable on boot required source: LABEL=vsa-absent-root" \
        in result.stderr
    assert [p.read_text() for p in tmp_path.glob("fstab.vsa-2*")] == [old]  # the old table, kept by hard link
    assert staged(tmp_path) == []


def test_the_new_table_is_staged_under_a_fresh_name_never_through_a_planted_one(tmp_path, tool):
    """Seen failing with the fixed fstab.vsa-new name: the table was written through the planted link."""
    tool("findmnt")
    outside = tmp_path / "outside"
    outside.write_text("precious\n")
    (tmp_path / "fstab.vsa-new").symlink_to(outside)
    new = "LABEL=vsa-absent-disk /var/lib/docker ext4 defaults,noauto,nofail,x-systemd.device-timeout=10s 0 2\n"
    result = _install(tmp_path, "", new)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fstab").read_bytes() == new.encode() and outside.read_text() == "precious\n"
    assert staged(tmp_path) == ["fstab.vsa-new"]  # the planted link, left as it was


def test_a_stage_that_fails_leaves_the_table_and_nothing_else(tmp_path, tool):
    tool("findmnt")
    (tmp_path / "fstab").write_text("old\n")
    result = subprocess.run(["sh", "-c", install_script(str(tmp_path / "fstab"))], capture_output=True, text=True,
                            input="not base64 !!!\n")
    assert result.returncode == 1 and "cannot stage the new" in result.stderr
    assert (tmp_path / "fstab").read_text() == "old\n" and staged(tmp_path) == []
