"""Latency and memory probes of ``benchmarks/compare.py`` (P4 handover, P5 ping, P6 RSS).

They run in the benchmark's own process with plain blocking sockets (the proxy under test is
another process).  :class:`Raw` is the smallest raw-protocol client: varint-framed Envelopes,
a request/reply by id, every wait bounded by a socket timeout.

Definitions (also in docs/performance.md):

* **handover** (P4): A holds the device (its ``get_overload_status_command`` was answered
  without ``busy_response``); B connects and sends the same request, answered busy; then A
  closes its socket.  Measured from just before A's ``close()`` to B's first non-busy reply,
  B resending a fresh request the moment each busy reply arrives.
* **ping** (P5): a generic ``ping_command`` on an established session (the first frame was a
  cached ``extract``, 100 ms earlier, so the connection is no standalone ping), round trip to
  its ``ping_response``; also a standalone ping (connect, ping, pong) and a forwarded request
  (``get_overload_status_command`` answered by the device through the proxy).
* **queued clients** (P6): A holds the device; N more clients each send one request and are
  answered (busy, or refused), in batches of 50 so the listen backlog never overflows; the
  proxy's ``VmRSS`` is read while all N are connected.  **Cycles**: connect, one request
  (resent at once on busy), close — repeated; ``VmRSS`` before and after.
"""

from __future__ import annotations

import socket
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from pybrid.proto import pb
from pybrid.wire.framing import encode_varint

OVERLOAD = "get_overload_status_command"


class Raw:
    """A blocking raw-protocol connection."""

    def __init__(self, port: int, timeout: float = 5.0, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def send(self, env: pb.Envelope) -> None:
        payload = env.SerializeToString()
        self.sock.sendall(encode_varint(len(payload)) + payload)

    def recv(self) -> pb.Envelope | None:
        """The next Envelope; None at end of stream; socket.timeout if none in time."""
        while True:
            frame = self._frame()
            if frame is not None:
                return pb.Envelope.FromString(frame)
            if self.eof:
                return None
            data = self.sock.recv(1 << 16)
            if not data:
                self.eof = True
            self.buf += data

    def _frame(self) -> bytes | None:
        n = shift = 0
        for i, x in enumerate(self.buf):
            n |= (x & 0x7F) << shift
            shift += 7
            if x < 0x80:
                if len(self.buf) < i + 1 + n:
                    return None
                frame = bytes(self.buf[i + 1 : i + 1 + n])
                del self.buf[: i + 1 + n]
                return frame
        return None

    def ask(self, kind: str, body: Any = None) -> pb.Envelope | None:
        """Send a v1 request; its reply (other frames skipped), or None if the peer closed."""
        rid = str(uuid.uuid4())
        env = pb.Envelope()
        field = getattr(env.message_v1, kind)
        if body is None:
            field.SetInParent()
        else:
            field.CopyFrom(body)
        env.message_v1.id = rid
        self.send(env)
        while True:
            reply = self.recv()
            if reply is None:
                return None
            if reply.message_v1.id == rid or (
                reply.message_v1.WhichOneof("kind") == "error_message"
                and not reply.message_v1.HasField("id")
            ):
                return reply

    def ping(self) -> float:
        """Round trip of a generic ping on this connection, in seconds."""
        env = pb.Envelope()
        env.generic.ping_command.SetInParent()
        t0 = time.perf_counter()
        self.send(env)
        while True:
            reply = self.recv()
            if reply is None:
                raise ConnectionError("closed while waiting for a pong")
            if reply.generic.WhichOneof("kind") == "ping_response":
                return time.perf_counter() - t0

    def drain(self, seconds: float) -> None:
        """Read and discard whatever arrives within ``seconds``."""
        self.sock.settimeout(seconds)
        try:
            while self.recv() is not None:
                pass
        except TimeoutError:
            pass
        finally:
            self.sock.settimeout(5.0)

    def close(self) -> None:
        self.sock.close()


def kind(env: pb.Envelope | None) -> str:
    if env is None:
        return "closed"
    return env.message_v1.WhichOneof("kind") or env.WhichOneof("kind") or "unknown"


def ask_until_served(conn: Raw, request: str, limit: float) -> tuple[pb.Envelope | None, int]:
    """Resend ``request`` at once after each busy reply, for at most ``limit`` seconds."""
    deadline = time.perf_counter() + limit
    busy = 0
    while True:
        reply = conn.ask(request)
        if kind(reply) != "busy_response":
            return reply, busy
        busy += 1
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{request}: still busy after {limit:g} s ({busy} busy replies)")


def handover(port: int, rounds: int, limit: float = 10.0) -> dict[str, Any]:
    """P4: A's close → B's first non-busy reply (see the module note), ``rounds`` times."""
    times: list[float] = []
    retries: list[int] = []
    notes: set[str] = set()
    for _ in range(rounds):
        a = Raw(port)
        b: Raw | None = None
        try:
            reply, _ = ask_until_served(a, OVERLOAD, limit)
            if kind(reply) != "get_overload_status_response":
                notes.add(f"A got {kind(reply)}")
                continue
            b = Raw(port)
            first = b.ask(OVERLOAD)
            if kind(first) != "busy_response":
                notes.add(f"B was not queued ({kind(first)})")
                continue
            t0 = time.perf_counter()
            a.close()
            reply, busy = ask_until_served(b, OVERLOAD, limit)
            elapsed = time.perf_counter() - t0
            if kind(reply) != "get_overload_status_response":
                notes.add(f"B got {kind(reply)}")
                continue
            times.append(elapsed)
            retries.append(busy)
        finally:
            a.close()
            if b is not None:
                b.close()
        time.sleep(0.05)
    return {"seconds": times, "busy_retries": retries, "notes": sorted(notes)}


#: P5's pings in a session are sent at this rate (a client checking its link), not flat out.
PING_RATE = 50.0


def pings(port: int, count: int, standalone: int) -> dict[str, Any]:
    """P5: generic ping round trips in a session that holds the device (the client owns it:
    after a request that made it active) at :data:`PING_RATE`; the same number back to back on
    a connection that holds no device yet ("idle": a proxy meters those frames, ours with a
    100/s token bucket of 20, so this shows the bucket, not the path); standalone pings;
    forwarded requests."""
    conn = Raw(port)
    try:
        extract = conn.ask("extract_command", pb.ExtractCommand(recursive=True,
                                                                specification=True))
        if kind(extract) != "extract_response":
            raise RuntimeError(f"extract answered with {kind(extract)}")
        conn.drain(0.1)  # a proxy may send unsolicited pongs ("nudges") after an extract
        idle = [conn.ping() for _ in range(count)]
        session: list[float] = []
        forwarded: list[float] = []
        reply, _ = ask_until_served(conn, OVERLOAD, 10)
        if kind(reply) == "get_overload_status_response":  # this session holds the device
            conn.drain(0.2)
            for _ in range(count):
                session.append(conn.ping())
                time.sleep(1.0 / PING_RATE)
            for _ in range(count):
                t0 = time.perf_counter()
                reply = conn.ask(OVERLOAD)
                forwarded.append(time.perf_counter() - t0)
    finally:
        conn.close()
    alone: list[float] = []
    lost = 0
    for _ in range(standalone):
        t0 = time.perf_counter()
        c = Raw(port)
        try:
            c.ping()
            alone.append(time.perf_counter() - t0)
        except (ConnectionError, OSError):
            lost += 1  # the reference proxy closes racing its own pong
        finally:
            c.close()
    return {"session": session, "idle": idle, "standalone": alone, "standalone_lost": lost,
            "forwarded": forwarded}


def queued_clients(port: int, n: int, rss: Callable[[], dict[str, int]],
                   budget: float = 20.0) -> dict[str, Any]:
    """P6: the proxy's memory with A active and ``n`` more clients answered once each.

    No new batch starts after ``budget`` seconds (the reference proxy takes ~70 ms to refuse
    each client beyond its 8 sessions)."""
    before = rss()
    t0 = time.perf_counter()
    a = Raw(port)
    conns: list[Raw] = []
    outcomes: dict[str, int] = {}
    try:
        ask_until_served(a, OVERLOAD, 10)
        for start in range(0, n, 50):
            if time.perf_counter() - t0 > budget:
                break
            batch = []
            for _ in range(min(50, n - start)):
                try:
                    batch.append(Raw(port))
                except OSError as e:
                    outcomes[f"connect failed: {e.__class__.__name__}"] = outcomes.get(
                        f"connect failed: {e.__class__.__name__}", 0) + 1
            for c in batch:
                env = pb.Envelope()
                env.message_v1.id = str(uuid.uuid4())
                env.message_v1.get_overload_status_command.SetInParent()
                c.send(env)
            for c in batch:
                try:
                    k = kind(c.recv())
                except (TimeoutError, OSError):
                    k = "no reply"
                outcomes[k] = outcomes.get(k, 0) + 1
            conns.extend(batch)
        time.sleep(0.2)
        during = rss()
    finally:
        for c in conns:
            c.close()
        a.close()
    return {"before": before, "during": during, "outcomes": outcomes, "clients": len(conns),
            "seconds": time.perf_counter() - t0}


def cycles(
    port: int, n: int, rss: Callable[[], dict[str, int]], warmup: int = 20
) -> dict[str, Any]:
    """P6: ``VmRSS`` before and after ``n`` connect / request / close cycles."""

    def cycle() -> str:
        c = Raw(port)
        try:
            reply, _ = ask_until_served(c, OVERLOAD, 10)
            return kind(reply)
        finally:
            c.close()

    for _ in range(warmup):
        cycle()
    time.sleep(0.3)
    before = rss()
    t0 = time.perf_counter()
    outcomes: dict[str, int] = {}
    for _ in range(n):
        k = cycle()
        outcomes[k] = outcomes.get(k, 0) + 1
    seconds = time.perf_counter() - t0
    time.sleep(0.3)
    after = rss()
    return {"before": before, "after": after, "outcomes": outcomes, "seconds": seconds}


def median_ms(values: list[float]) -> float | None:
    return statistics.median(values) * 1e3 if values else None
