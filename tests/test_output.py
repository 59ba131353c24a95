"""Output of commands that run pyinfra in-process: pyinfra's and paramiko's log lines go to stderr
as whole lines, pyinfra's spinner never writes half lines, step lines carry their time on a terminal only,
and a changed host key is one line naming the host."""

from __future__ import annotations

import re
import subprocess
import sys
from types import SimpleNamespace

from vsa_ops.pyinfra_glue.connections import host_key_error, is_host_key_error
from vsa_ops.pyinfra_glue.output import Elapsed

LOGGING = """
import logging, pyinfra.progress
from pyinfra import logger
from vsa_ops.pyinfra_glue import output
output.install()
output.install()
logger.warning("No host key for [127.0.0.1]:2222 found in known_hosts")
for line in ("WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!", "Someone could be eavesdropping on you!",
             "If this is expected, you can remove the bad key using:", "    ssh-keygen -R [127.0.0.1]:2222"):
    logger.warning(line)
logger.warning("Failed to load host keys from %s: %s", "/nowhere/known_hosts", FileNotFoundError(2, "gone"))
logger.warning("Failed to load host keys from %s: %s", "/etc/known_hosts", ValueError("bad line"))
logging.getLogger("paramiko.transport").error("first\\nsecond")
logger.info("not shown: info")
print("path.vsa.test: removed")
assert pyinfra.progress.IS_TTY is False
"""


def test_log_lines_go_to_stderr_whole_and_results_stay_alone_on_stdout():
    result = subprocess.run([sys.executable, "-c", LOGGING], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "path.vsa.test: removed\n"
    assert result.stderr.splitlines() == [
        "No host key for [127.0.0.1]:2222 found in known_hosts",
        "Failed to load host keys from /etc/known_hosts: bad line", "first", "second"]


def test_step_lines_carry_the_elapsed_time_only_on_a_terminal():
    assert Elapsed(show=False).mark("--> Connecting to hosts...") == "--> Connecting to hosts..."
    shown = Elapsed(show=True)
    assert re.fullmatch(r"--> Starting operation: images x \(0\.\d s\)", shown.mark("--> Starting operation: images x "))
    assert shown.mark("    [hub-1] Success") == "    [hub-1] Success"  # not a step


def test_a_changed_host_key_is_one_line_naming_the_host_and_its_key_file():
    host = SimpleNamespace(name="hub-1", data={"ssh_hostname": "203.0.113.7", "ssh_port": 2222,
                                                "ssh_known_hosts_file": "/ops/known_hosts"})
    assert is_host_key_error(Exception("SSH host key error (Host key for 203.0.113.7 does not match.)"))
    assert not is_host_key_error(Exception("Could not connect ([Errno 111] Connection refused)"))
    text = host_key_error(host)
    assert "\n" not in text
    assert text.startswith("the SSH host key of [203.0.113.7]:2222 differs from the one in /ops/known_hosts: refused")
    plain = SimpleNamespace(name="hub-2", data={})
    assert host_key_error(plain).startswith("the SSH host key of hub-2 differs from the one in ~/.ssh/known_hosts")


SIDE_BY_SIDE = """
from vsa_ops.errors import VsaError
from vsa_ops.pyinfra_glue.connections import side_by_side
ran = []
def audit():
    ran.append("audit")
    raise VsaError("audit on hub-1: the log ends with a damaged line")
def metrics():
    ran.append("metrics")
    raise VsaError("metrics on hub-1: not written")
try:
    side_by_side(audit, metrics)
except VsaError as error:
    print(f"{error} | {' '.join(ran)} | {error.__notes__}")
"""


def test_side_by_side_steps_all_run_and_the_first_error_is_raised_without_a_traceback():
    """An expected error of a step (a VsaError) reaches the caller, which prints it as one line: gevent
    must not print it too, as a traceback of a failed greenlet."""
    result = subprocess.run([sys.executable, "-c", SIDE_BY_SIDE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("audit on hub-1: the log ends with a damaged line | audit metrics | "
                             "['also: VsaError: metrics on hub-1: not written']\n")
    assert result.stderr == ""
