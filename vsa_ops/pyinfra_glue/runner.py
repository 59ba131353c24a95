"""Runs the project's deploy.py inside the vsa-ops process with pyinfra's own machinery, exactly as
`pyinfra -y INVENTORY deploy.py` would: one Python start-up, one inventory, and one connection per
host that also serves what comes after the deploy (the probe's wait, the audit record, giving back
the lock of a failed run)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

from pyinfra.api.state import BaseStateCallback

from ..errors import VsaError
from ..deploys.request import OUTCOME_KEY, REQUEST_KEY, DeployRequest
from ..inventory import limited
from ..manifest import Manifest
from ..operations.lock import release_command
from ..plan_identity import refuse_plan_identity
from . import operation_order, output
from .connections import Sessions, sessions_of
from .inventory_files import load_inventory

DEPLOY_FILE = "deploy.py"
_DEPLOY_PREFIX = "vsa-ops hub | "


@dataclass
class DeployResult:
    returncode: int
    failed_step: str | None
    summaries: dict[str, str] = field(default_factory=dict)  # host -> what its plan changed
    failed_hosts: set[str] = field(default_factory=set)
    duration: float = 0.0
    error: str | None = None  # why the deploy could not even start its operations
    audit_heads: dict[str, bytes | None] = field(default_factory=dict)  # see HostOutcome.audit_head
    success_recorded: set[str] = field(default_factory=set)  # see HostOutcome.success_recorded
    executed: bool = False  # operations began: before that, the hosts were only connected and read


class DeployRun:
    """A finished deploy whose hosts are still connected."""

    def __init__(self, root: Path, state, hosts: list, result: DeployResult):
        self.root, self.state, self.hosts, self.result = root, state, hosts, result

    def sessions(self) -> Sessions:
        return sessions_of(self.state, self.hosts)


class _EchoHandler(logging.Handler):
    def __init__(self, echo: Callable[[str], None]):
        from pyinfra_cli.log import LogFormatter

        super().__init__()
        self.echo, self.elapsed = echo, output.Elapsed()
        self.setFormatter(LogFormatter())

    def emit(self, record):
        self.echo(self.elapsed.mark(self.format(record)))


@contextmanager
def _pyinfra_output(echo: Callable[[str], None] | None) -> Iterator[None]:
    """pyinfra's progress lines (its CLI's format) to ``echo``; none without it."""
    from pyinfra import logger

    handler = _EchoHandler(echo) if echo else logging.NullHandler()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


class _Failures(BaseStateCallback):
    """The first failing step of each host."""

    def __init__(self):
        self.steps: dict[str, str] = {}

    def operation_host_error(self, state, host, op_hash, *args, **kwargs):
        names = sorted(state.get_op_meta(op_hash).names)
        self.steps.setdefault(host.name, (names[0] if names else op_hash).removeprefix(_DEPLOY_PREFIX))


Manifests = dict[str, Manifest]


@contextmanager
def deploying(root: Path, inventory_file: Path, limits: Iterable[str] | None, request: DeployRequest,
              manifests: Manifests | Callable[[], Manifests] | None = None, echo: Callable[[str], None] | None = None,
              inventory=None) -> Iterator[DeployRun]:
    """Connect, run the project's deploy.py with ``request`` (and each host's manifest from
    ``manifests``, when given) in every host's data, and keep the hosts connected for the block. A
    failed run gives back its lock before the block starts (its last operation, the release, did
    not run).

    ``manifests`` may be a function that renders them: it then runs in a thread of its own while the
    hosts connect (rendering is the controller's CPU, connecting mostly waits on the network), and a
    failure to render (configuration, secrets, templates) disconnects and is raised before any
    operation is even prepared: nothing has changed on any host."""
    import pyinfra
    from pyinfra.api import Config, State
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operations import run_ops
    from pyinfra.api.state import StateStage
    from pyinfra.context import ctx_config, ctx_inventory, ctx_state
    from pyinfra_cli.exceptions import UnexpectedExternalError
    from pyinfra_cli.prints import print_results
    from pyinfra_cli.util import load_deploy_file

    operation_order.install()
    output.install()
    start = time.monotonic()
    inventory = inventory or load_inventory(inventory_file, root)
    hosts = limited(inventory, limits)
    refuse_plan_identity(hosts, "deploy")
    rendering = _Rendering(manifests)
    config = Config()
    state = State(check_for_changes=False)  # -y: no separate change detection, the deploy plans itself
    state.cwd = str(root)
    state.init(inventory, config, initial_limit=hosts)
    failures = _Failures()
    state.add_callback_handler(failures)
    was_cli, pyinfra.is_cli = pyinfra.is_cli, True  # operation order from the deploy file's lines, as its CLI
    error = None
    try:
        with _pyinfra_output(echo), ctx_state.use(state), ctx_config.use(config), ctx_inventory.use(inventory):
            from pyinfra import logger

            try:
                logger.info("--> Connecting to hosts...")
                state.set_stage(StateStage.Connect)
                try:
                    connect_all(state)
                finally:
                    rendered = rendering.result(lambda: disconnect_all(state))
                for host in hosts:
                    setattr(host.data, REQUEST_KEY, replace(request, manifest=rendered.get(host.name)))
                logger.info("--> Preparing operations...")
                state.set_stage(StateStage.Prepare)
                config.lock_current_state()
                load_deploy_file(state, str(root / DEPLOY_FILE))
                config.reset_locked_state()
                logger.info("--> Beginning operation run...")
                state.set_stage(StateStage.Execute)
                run_ops(state)
            except PyinfraError as failure:  # "No hosts remaining!": each host's reason is logged already
                error = str(failure)
            except (VsaError, UnexpectedExternalError) as failure:
                # The deploy code refused (configuration, plan): nothing ran. A bug is not a refusal:
                # it goes on up with its traceback.
                refusal = getattr(failure, "exception", failure)
                if not isinstance(refusal, VsaError):
                    raise refusal from failure
                error = str(refusal)
                logger.error(f"--> {error}")
            executed = state.current_stage >= StateStage.Execute
            if executed:
                logger.info("--> Results:")
                state.set_stage(StateStage.Disconnect)
                print_results(state)
            failed_hosts = {h.name for h in state.failed_hosts if h in hosts}
            if error and not failed_hosts:
                failed_hosts = {h.name for h in hosts}
            step = next(iter(failures.steps.values()), None)
            if error and step is None:
                step = "connecting" if state.current_stage <= StateStage.Connect else "preparing the deploy"
            outcomes = {h.name: h.data.get(OUTCOME_KEY) for h in hosts}
            outcomes = {name: outcome for name, outcome in outcomes.items() if outcome is not None}
            result = DeployResult(1 if failed_hosts else 0, step, {n: o.summary for n, o in outcomes.items()},
                                  failed_hosts, time.monotonic() - start, error,
                                  {n: o.audit_head for n, o in outcomes.items()},
                                  {n for n, o in outcomes.items() if o.success_recorded}, executed)
            run = DeployRun(root, state, hosts, result)
            if failed_hosts:
                release_lock(run, request.run_id)
            try:
                yield run
            finally:
                disconnect_all(state)
    except _RenderFailed as failed:
        raise failed.error from None
    except KeyboardInterrupt as stop:
        touched = state.current_stage >= StateStage.Execute
        # The hosts' greenlets stop and their connections close: sshd hangs up on a transaction, which
        # then undoes itself (transaction.sh's traps). Another Ctrl-C meanwhile stops only this. An
        # SSH transport cut mid-handshake would log its traceback: the interrupt is the whole story.
        logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)
        with suppress(BaseException):
            state.pool.kill()
            disconnect_all(state)
        raise Interrupted(touched) from stop
    finally:
        pyinfra.is_cli = was_cli
        for host in hosts:  # the request and outcome belong to this run only
            host.data.override_datas.pop(REQUEST_KEY, None)
            host.data.override_datas.pop(OUTCOME_KEY, None)


class _Rendering:
    """The hosts' manifests: given, or rendered by a function in a native thread (gevent's pool) that
    runs while the calling greenlet connects the hosts."""

    def __init__(self, manifests: Manifests | Callable[[], Manifests] | None):
        self.given, self.pending = (None, None) if callable(manifests) else (manifests or {}, None)
        if callable(manifests):
            from gevent import get_hub

            self.pending = get_hub().threadpool.spawn(manifests)

    def result(self, on_failure: Callable[[], None]) -> Manifests:
        if self.pending is None:
            return self.given
        try:
            return self.pending.get()
        except Exception as error:
            on_failure()
            raise _RenderFailed(error) from error
        except BaseException:
            on_failure()
            raise


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a deploy or its block. ``touched``: operations had begun, so a host may have
    changed (before that, the hosts were only connected and read)."""

    def __init__(self, touched: bool):
        super().__init__()
        self.touched = touched


class _RenderFailed(Exception):
    """Carries a render's failure past the deploy's own error handling, to the caller unchanged."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def release_lock(run: DeployRun, run_id: str) -> None:
    """Remove the run lock where this run still holds it; unreachable hosts keep it until it goes stale."""
    command = release_command(run_id)
    from pyinfra import logger

    for name, session in run.sessions().items():
        if not isinstance(session, str):
            try:
                session[1](command)
            except Exception as error:  # the link that failed the run may be gone too: say so, go on
                logger.warning(f"{name}: could not give back the run lock ({type(error).__name__}: {error}); "
                               f"it goes stale in 15 minutes")
