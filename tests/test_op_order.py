"""vsa-ops' operation order gives pyinfra's own numbers, without inspect.stack()."""

from types import SimpleNamespace

import pytest
import pyinfra
from pyinfra.api import util

from vsa_ops.op_order import operation_order


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
