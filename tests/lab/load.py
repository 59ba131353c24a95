"""A steady stream of HTTPS requests to one site, from a few threads, for the zero-dropped-requests test
and bench row: keep-alive and new connections mixed, paced to a rate, bounded in time and count, to
127.0.0.1 only.

What counts as failed: a request that got no answer, or an answer that is not 2xx. One exception, as every
browser and HTTP client does it (RFC 9112 section 9.3.1): a GET sent on a reused keep-alive connection
that the server had closed (NGINX's old workers close their idle connections when a reload retires them)
is sent once more on a new connection; it counts as failed only if that fails too. Those retries are
counted apart (``stale_retries``)."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

ADDRESS = "127.0.0.1"  # never anything else


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    stale_retries: int = 0
    latencies: list[float] = field(default_factory=list)
    problems: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        """The ``p`` percentile of latencies, in milliseconds."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000

    def __str__(self) -> str:
        return (f"{self.sent} requests in {self.seconds:.1f} s ({self.rate:.0f}/s), {self.failed} failed, "
                f"{self.stale_retries} retried on a closed keep-alive connection, p99 {self.percentile(99):.1f} ms"
                + (f"; problems: {self.problems}" if self.problems else ""))


class _Connection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with the site's name as SNI."""

    def __init__(self, port: int, name: str, context: ssl.SSLContext, timeout: float):
        super().__init__(ADDRESS, port, context=context, timeout=timeout)
        self._name, self._context = name, context

    def connect(self):
        self.sock = self._context.wrap_socket(socket.create_connection((ADDRESS, self.port), self.timeout),
                                              server_hostname=self._name)


class Load:
    """``with Load(...) as load: ...`` sends until the block ends (or ``max_seconds``/``max_requests``);
    ``load.result`` then holds the figures."""

    def __init__(self, port: int, name: str, ca_file: str, *, rate: float = 50, workers: int = 4,
                 new_connection_every: int = 4, path: str = "/", max_seconds: float = 600,
                 max_requests: int = 200_000, timeout: float = 10):
        self.port, self.name, self.path, self.timeout = port, name, path, timeout
        self.context = ssl.create_default_context(cafile=ca_file)
        self.interval = workers / rate
        self.workers, self.new_every = workers, new_connection_every
        self.max_seconds, self.max_requests = max_seconds, max_requests
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "Load":
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._worker, args=(i,), daemon=True) for i in range(self.workers)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        self.result.seconds = time.monotonic() - self._started

    def _count(self, latency: float | None, problem: str | None = None, stale: bool = False) -> None:
        with self._lock:
            self.result.sent += 1
            self.result.stale_retries += stale
            if latency is not None:
                self.result.latencies.append(latency)
            if problem:
                self.result.failed += 1
                self.result.problems[problem] = self.result.problems.get(problem, 0) + 1

    def _new(self) -> _Connection:
        return _Connection(self.port, self.name, self.context, self.timeout)

    def _get(self, connection: _Connection) -> int:
        connection.request("GET", self.path, headers={"Host": self.name, "User-Agent": "vsa-ops-load"})
        response = connection.getresponse()
        response.read()
        if response.will_close:
            connection.close()
        return response.status

    def _worker(self, index: int) -> None:
        connection, used, number = self._new(), 0, 0
        next_at = time.monotonic() + index * self.interval / self.workers
        deadline = self._started + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self.result.sent >= self.max_requests:
                    return
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += self.interval
            number += 1
            if connection.sock is None:
                used = 0  # closed after the last answer: the next request opens a new one
            if number % self.new_every == 0:
                connection.close()
                connection, used = self._new(), 0
            started, stale = time.monotonic(), False
            try:
                try:
                    status = self._get(connection)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not used:
                        raise
                    connection.close()
                    connection, used, stale = self._new(), 0, True
                    status = self._get(connection)
            except (OSError, http.client.HTTPException) as error:
                self._count(None, f"{type(error).__name__}: {error}"[:120], stale)
                connection.close()
                connection, used = self._new(), 0
                continue
            used += 1
            self._count(time.monotonic() - started, None if 200 <= status < 300 else f"status {status}", stale)
        connection.close()
