"""The pyinfra and gevent glue: each replacement gives what it replaces, is really installed, and
fails loudly when an upgrade moves what it replaces (never a green suite over a silent loss)."""

import importlib
import subprocess
import sys
from types import SimpleNamespace

import pyinfra
import pytest
from pyinfra.api import util

from vsa_ops.pyinfra_glue import operation_order as glue
from vsa_ops.pyinfra_glue.operation_order import GlueError, operation_order


def _both(state):
    return [order(state) for order in (util.get_operation_order_from_stack, operation_order)]


def _nested(state, depth):
    return _nested(state, depth - 1) if depth else _both(state)


@pytest.mark.parametrize("cli", [False, True])
@pytest.mark.parametrize("deploy_file", [None, __file__])
def test_the_same_line_numbers_as_pyinfra(monkeypatch, cli, deploy_file):
    monkeypatch.setattr(pyinfra, "is_cli", cli)
    state = SimpleNamespace(current_deploy_filename=deploy_file, current_op_file_number=3)
    theirs, ours = _nested(state, 4)
    assert ours == theirs and len(ours) > 5
    assert _nested(state, 2)[1] != ours  # another call path, another order


def test_the_operation_order_is_installed_where_pyinfra_looks_it_up(monkeypatch):
    module = importlib.import_module("pyinfra.api.operation")
    monkeypatch.setattr(module, "get_operation_order_from_stack", util.get_operation_order_from_stack)
    glue.install()
    assert module.get_operation_order_from_stack is operation_order
    glue.install()  # a second install keeps it
    assert module.get_operation_order_from_stack is operation_order


def test_an_upgrade_that_moves_the_function_fails_loudly(monkeypatch):
    module = importlib.import_module("pyinfra.api.operation")
    monkeypatch.delattr(module, "get_operation_order_from_stack")
    with pytest.raises(GlueError, match="revisit"):
        glue.install()


GEVENT_CHECK = """
from importlib import metadata
calls = []
scan = metadata.entry_points
def counting(**selection):
    calls.append(selection)
    return scan(**selection)
metadata.entry_points = counting
from vsa_ops.pyinfra_glue.gevent_patch import patch
patch()
from gevent import monkey
import socket, gevent.socket
assert monkey.is_module_patched("socket") and socket.socket is gevent.socket.socket, "socket not patched"
assert metadata.entry_points is counting, "importlib.metadata.entry_points was not put back"
# gevent asked for its plugins through the one scan made up front, not once per plugin group
assert len(calls) == 1 and calls[0] == {}, calls
print("ok")
"""


def test_gevent_patching_takes_effect_with_one_entry_point_scan():
    result = subprocess.run([sys.executable, "-c", GEVENT_CHECK], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
