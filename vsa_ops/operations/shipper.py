"""The log shipper cut-over: when a deploy changes ``observability.log_shipper.kind``, the old shipper
is stopped, its positions are converted into the new shipper's (vsa_ops/shipper_positions.py), and the
files-and-stacks transaction that follows starts the new one (compose removes the old container).

Files and the journal resume where the old shipper stopped, so lines written during the swap are
shipped once by the new one; containers resume at the second of their last shipped line.
"""

from __future__ import annotations

import shlex

from pyinfra.api import FunctionCommand, StringCommand, operation
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments

from ..host_programs import program_command
from ..shipper_positions import INSPECT_FORMAT, Layout, PositionsError, carry_over, parse_read, positions_archive
from ..state_read import StateReadError


def _cut_over(state, host, project: str, old: str, state_dir: str, layout: Layout) -> bool:
    """Stop ``old``, read its positions, write the new shipper's. Any failure starts ``old`` again."""
    # As the deploy's own commands run: the host's data may ask for sudo (README "Your first real hub").
    arguments, _ = pop_global_arguments(state, host, {})
    connector = {key: value for key, value in arguments.items() if key in CONNECTOR_ARGUMENT_KEYS}

    def run(mode: str, *args: str, stdin: str | None = None):
        command = StringCommand(program_command("shipper_cutover", "/", mode, *args))
        return host.run_shell_command(command, **{**connector, "_stdin": stdin}, print_output=False)

    def failed(message: str) -> bool:
        run("start", project, old)  # a no-op if it still runs
        host.log_styled(f"log shipper cut-over: {message}; {old} runs again", fg="red")
        return False

    ok, output = run("read", project, old, state_dir, INSPECT_FORMAT)
    if not ok:
        return failed(" ".join(output.stderr_lines)[:300] or f"reading {old}'s positions failed")
    try:
        found = parse_read("".join(output.stdout_lines))
        files = carry_over(old, found.files, layout, found.containers)
    except (PositionsError, StateReadError) as error:
        return failed(str(error))
    ok, output = run("write", found.folder, stdin=positions_archive(files))
    if not ok:
        return failed(" ".join(output.stderr_lines)[:300] or "writing the positions failed")
    return True


def resume_command(project: str, old: str) -> str:
    """Starts the old shipper again: the last undo of a transaction that fails after the cut-over
    stopped it (no container left, as when compose already replaced it: nothing to start)."""
    filters = " ".join(f"--filter {shlex.quote(f'label=com.docker.compose.{key}={value}')}"
                       for key, value in (("project", project), ("service", old)))
    return f"docker ps -aq --no-trunc {filters} | xargs -r docker start > /dev/null"


@operation(is_idempotent=False)
def cut_over(project: str, old: str, state_dir: str, layout: Layout):
    """Stop the old log shipper and carry its read positions over to the new one.

    + project: the compose stack of the log shipper
    + old: the kind of the shipper that runs now (its compose service)
    + state_dir: where both shippers keep their positions (a named volume)
    + layout: the jobs and where each shipper keeps their positions (``shipper_positions.layout``)

    **Example:**

    .. code:: python

        shipper.cut_over(name="log shipper promtail to alloy", project="observability", old="promtail",
                         state_dir="/var/lib/promtail", layout=layout(hub.observability.log_shipper, jsonl))
    """
    yield FunctionCommand(_cut_over, (project, old, state_dir, layout), {})
