"""Added WAN latency for the lab's SSH ports, without netem (this kernel has none).

Two parts:

* the proxy (``python3 delay_proxy.py --delay-ms 25 --target 32847 ...``): asyncio, listens on
  127.0.0.1 (one free port per target port), connects each client to 127.0.0.1:TARGET and holds every
  chunk for the one-way delay in one queue per direction, so a round trip costs 2 x delay. Bandwidth is
  not limited and nothing is lost; only latency is added. The upstream connect itself waits
  3 x one-way, so that the first bytes arrive when they would after a real TCP handshake (SYN,
  SYN-ACK, ACK then data). It prints one JSON line ``{"TARGET": LISTEN, ...}`` once it listens, and
  exits when its standard input closes (its parent died) or on SIGTERM/SIGINT.

* ``Wan``, used by ``session.py``: runs that proxy as user nobody (``setpriv --reuid=nobody
  --regid=nogroup --clear-groups``) and redirects every other user's connections to the SSH ports
  through it with ``iptables -t nat -I OUTPUT -p tcp -d 127.0.0.1 --dport SSH_PORT -m owner !
  --uid-owner nobody -j REDIRECT --to-ports PROXY_PORT`` (the proxy's own connections, as nobody, go
  straight through). Every rule carries the comment ``vsa-ops-bench``, so that cleanup removes ours
  and only ours, including rules left by a run killed with SIGKILL (a watchdog process removes them
  when the bench's process is gone, and the next run sweeps them at start).

    python3 bench/delay_proxy.py --check       # no rule of ours is left (exit 1 and list them if any)
    python3 bench/delay_proxy.py --sweep       # remove every rule of ours
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

COMMENT = "vsa-ops-bench"
CHAIN = ("-t", "nat")
PROXY_USER, PROXY_GROUP = "nobody", "nogroup"


# --------------------------------------------------------------------------------------------- proxy
async def _pipe(reader: asyncio.StreamReader, get_writer, delay: float, ready: asyncio.Event) -> None:
    """Forward reader -> writer, each chunk ``delay`` seconds after it was read, in order.

    Reading never waits for the delay (one queue per direction holds the chunks in flight), so the
    proxy adds latency, not a bandwidth limit. ``get_writer()`` is called once ``ready`` is set.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def receive() -> None:
        try:
            while True:
                data = await reader.read(262144)
                queue.put_nowait((loop.time() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            queue.put_nowait((loop.time(), b""))

    receiver = asyncio.create_task(receive())
    try:
        await ready.wait()
        writer = get_writer()
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
    finally:
        receiver.cancel()


async def _serve_one(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, target: int,
                     delay: float) -> None:
    upstream: dict[str, object] = {}
    connected, always = asyncio.Event(), asyncio.Event()
    always.set()
    # Client -> server starts at once (chunks are stamped when read) and sends once connected.
    up = asyncio.create_task(_pipe(client_r, lambda: upstream["w"], delay, connected))
    down = None
    try:
        # A real TCP connect costs a round trip before the client's first byte leaves, and the server
        # accepts half a round trip later: hold the upstream connect for 3 x one-way.
        await asyncio.sleep(3 * delay)
        upstream["r"], upstream["w"] = await asyncio.open_connection("127.0.0.1", target)
        connected.set()
        down = asyncio.create_task(_pipe(upstream["r"], lambda: client_w, delay, always))
        await asyncio.gather(up, down, return_exceptions=True)
    finally:
        for task in (up, down):
            if task is not None:
                task.cancel()
        for writer in (client_w, upstream.get("w")):
            if writer is not None:
                try:
                    writer.close()
                except Exception:
                    pass


async def _main(targets: list[int], delay: float) -> None:
    servers, ports = [], {}
    for target in targets:
        async def handle(r, w, target=target):
            try:
                await _serve_one(r, w, target, delay)
            except Exception:
                w.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256)
        servers.append(server)
        ports[str(target)] = server.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Our parent keeps our standard input open; EOF means it is gone.
    def lifeline() -> None:
        if not os.read(sys.stdin.fileno(), 4096):
            stop.set()

    loop.add_reader(sys.stdin.fileno(), lifeline)
    await stop.wait()
    for server in servers:
        server.close()


# ------------------------------------------------------------------------------------------ iptables
def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["iptables", "-w", *CHAIN, *args], capture_output=True, text=True, check=check)


def our_rules() -> list[str]:
    """Our rules in nat OUTPUT, as ``iptables -S`` prints them."""
    out = _iptables("-S", "OUTPUT").stdout
    return [line for line in out.splitlines() if line.startswith("-A OUTPUT") and COMMENT in line]


def sweep() -> int:
    """Remove every rule of ours (``-S`` lines turned into ``-D`` lines); the number removed."""
    removed = 0
    for _ in range(100):
        rules = our_rules()
        if not rules:
            break
        for rule in rules:
            spec = rule.split()[2:]  # drop "-A OUTPUT"
            spec = [part.strip('"') for part in spec]
            if _iptables("-D", "OUTPUT", *spec, check=False).returncode == 0:
                removed += 1
    return removed


def _rule(ssh_port: int, proxy_port: int) -> list[str]:
    return ["-p", "tcp", "-d", "127.0.0.1", "--dport", str(ssh_port), "-m", "owner", "!", "--uid-owner",
            PROXY_USER, "-m", "comment", "--comment", COMMENT, "-j", "REDIRECT", "--to-ports", str(proxy_port)]


# ------------------------------------------------------------------------------------------------ Wan
class Wan:
    """The delay proxy for a set of SSH ports, and the iptables rules that route through it.

    ``start(ports)`` (re)starts the proxy for those ports; ``on()`` / ``off()`` add and remove the
    rules (established connections keep their route); ``close()`` removes the rules, stops the proxy
    and the watchdog. Safe to call ``close()`` more than once and from atexit or a signal.
    """

    def __init__(self, delay_ms: float, state_dir: Path, log=print):
        self.delay_ms = delay_ms
        self.state_dir = state_dir
        self.log = log
        self.proxy: subprocess.Popen | None = None
        self.watchdog: subprocess.Popen | None = None
        self.mapping: dict[int, int] = {}
        self.enabled = False

    # The watchdog: a shell in its own session (Ctrl-C does not reach it) that removes our rules
    # and stops the proxy once the bench's process is gone, whatever killed it.
    def _start_watchdog(self) -> None:
        if self.watchdog is not None and self.watchdog.poll() is None:
            return
        iptables = shutil.which("iptables") or "iptables"
        script = (f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
                  f"for i in $(seq 100); do r=$({iptables} -w -t nat -S OUTPUT | grep -- '{COMMENT}' | head -n1); "
                  f"[ -z \"$r\" ] && break; eval {iptables} -w -t nat $(echo \"$r\" | sed 's/^-A /-D /'); done; "
                  f"[ -s {self.state_dir}/proxy.pid ] && kill $(cat {self.state_dir}/proxy.pid) 2>/dev/null; "
                  f"rm -f {self.state_dir}/proxy.pid; true")
        self.watchdog = subprocess.Popen(["sh", "-c", script], start_new_session=True, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _stale_proxy(self) -> None:
        """A proxy left by an earlier run (its pid file says which): stop it, by its pid only."""
        pid_file = self.state_dir / "proxy.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"vsa-ops-bench-delay-proxy" in cmdline:
                os.kill(pid, signal.SIGTERM)
        except (ValueError, OSError):
            pass
        pid_file.unlink(missing_ok=True)

    def start(self, ssh_ports: list[int]) -> None:
        ports = sorted(set(ssh_ports))
        if self.proxy is not None and self.proxy.poll() is None and sorted(self.mapping) == ports:
            return
        was_on = self.enabled
        self.off()
        self._stop_proxy()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._stale_proxy()
        self._start_watchdog()
        # The code goes on the command line (-c): user nobody needs no access to this checkout, and
        # standard input stays free to be the proxy's lifeline. Debian's python3: nobody may not
        # reach an interpreter under /root (pyenv).
        code = Path(__file__).read_text()
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        argv = ["setpriv", f"--reuid={PROXY_USER}", f"--regid={PROXY_GROUP}", "--clear-groups",
                "--pdeathsig", "SIGTERM", python, "-c", code, "vsa-ops-bench-delay-proxy",
                "--delay-ms", str(self.delay_ms)]
        for port in ports:
            argv += ["--target", str(port)]
        self.proxy = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
                                      cwd="/")
        line = self.proxy.stdout.readline()
        if not line:
            raise RuntimeError(f"delay proxy did not start (exit {self.proxy.wait()})")
        self.mapping = {int(k): v for k, v in json.loads(line).items()}
        (self.state_dir / "proxy.pid").write_text(str(self.proxy.pid))
        if was_on:
            self.on()

    def on(self) -> None:
        if self.enabled:
            return
        if self.proxy is None or self.proxy.poll() is not None:
            raise RuntimeError("delay proxy is not running")
        self.enabled = True  # before the first rule: a failure half-way still cleans up
        for ssh_port, proxy_port in self.mapping.items():
            _iptables("-I", "OUTPUT", *_rule(ssh_port, proxy_port))

    def off(self) -> None:
        if self.enabled or our_rules():
            sweep()
        self.enabled = False

    def _stop_proxy(self) -> None:
        if self.proxy is not None:
            if self.proxy.poll() is None:
                try:
                    self.proxy.stdin.close()  # its lifeline: it exits at EOF
                except OSError:
                    pass
                try:
                    self.proxy.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self.proxy.kill()  # setpriv exec'd python: the pid is the proxy's own
                    self.proxy.wait()
            self.proxy = None
            (self.state_dir / "proxy.pid").unlink(missing_ok=True)
        self.mapping = {}

    def close(self) -> None:
        try:
            self.off()
        finally:
            self._stop_proxy()
            if self.watchdog is not None and self.watchdog.poll() is None:
                self.watchdog.kill()
                self.watchdog.wait()
            self.watchdog = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay (round trip = 2x)")
    parser.add_argument("--target", type=int, action="append", default=[], help="port on 127.0.0.1 to forward to")
    parser.add_argument("--check", action="store_true", help="exit 1 if any rule of ours is in nat OUTPUT")
    parser.add_argument("--sweep", action="store_true", help="remove every rule of ours from nat OUTPUT")
    args = parser.parse_args()
    if args.sweep:
        print(f"removed {sweep()} rules")
        return 0
    if args.check:
        rules = our_rules()
        for rule in rules:
            print(rule)
        return 1 if rules else 0
    if not args.target:
        parser.error("--target is required")
    asyncio.run(_main(args.target, args.delay_ms / 1000))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "vsa-ops-bench-delay-proxy":
        sys.argv.pop(1)  # the marker that names this process in its command line
    sys.exit(main())
