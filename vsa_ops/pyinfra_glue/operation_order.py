"""pyinfra's operation order without ``inspect.stack()``.

In CLI mode pyinfra orders operations, and makes their hashes, from the line numbers of the calls
that led to them, which it reads with ``inspect.stack()``: that also loads every frame's source line
and looks its module up in ``sys.modules``, about 1 ms per frame, some 20 ms per operation and host.
``operation_order`` reads the same line numbers from the frames themselves.
"""

from __future__ import annotations

import importlib
import sys

import pyinfra
from pyinfra.api import util


def operation_order(state) -> list[int]:
    """What ``pyinfra.api.util.get_operation_order_from_stack`` returns, from the frames directly."""
    frames = []
    frame = sys._getframe(1)
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()  # outermost first
    start = 0
    if state.current_deploy_filename:
        for start, frame in enumerate(frames):
            if frame.f_code.co_filename == state.current_deploy_filename:
                break
    numbers = [state.current_op_file_number] if pyinfra.is_cli else []
    numbers += [f.f_lineno for f in frames[start:] if not f.f_code.co_filename.startswith(util.PYINFRA_INSTALL_DIR)]
    return numbers


class GlueError(RuntimeError):
    """pyinfra no longer has what this module replaces: a pyinfra upgrade that needs this glue revisited."""


def install() -> None:
    """Use ``operation_order`` for the operations of this process (pyinfra 3.10 looks it up by this
    name in pyinfra.api.operation). Fails loudly when pyinfra no longer does, rather than silently
    losing the speed-up or replacing the wrong thing."""
    module = importlib.import_module("pyinfra.api.operation")  # the module; pyinfra.api.operation is the decorator
    current = getattr(module, "get_operation_order_from_stack", None)
    if current is operation_order:
        return
    if current is not util.get_operation_order_from_stack:
        raise GlueError("pyinfra.api.operation.get_operation_order_from_stack is not pyinfra.api.util's: "
                        "revisit vsa_ops/pyinfra_glue/operation_order.py for this pyinfra version")
    module.get_operation_order_from_stack = operation_order
