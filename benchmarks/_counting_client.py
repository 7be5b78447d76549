"""The fast counting client of ``benchmarks/compare.py``: one raw-protocol session, many runs.

Runs in its own process (``python benchmarks/_counting_client.py --port P``) so that it never
shares a core's event loop with the device or the proxy under test.  Plain sockets and
``selectors`` — no Twisted, no per-sample work:

1. connects over TCP, asks for the entity tree (``extract``; the CARRIER entities say which
   carrier paths to expect), binds a UDP port with a big ``SO_RCVBUF`` and sends
   ``udp_data_streaming_command``.  ``success`` → run data arrives by UDP; a refusal (316, or
   an ``error_message`` as the reference proxy sends) → it arrives as TCP frames;
2. prints one JSON line ``{"event": "ready", …}``, then reads commands from stdin, one JSON
   object a line: ``{"rate": R, "seconds": S, "channels": 8, "timeout": T}`` starts a run of
   ``R × 100`` samples/s (R datagrams/s per carrier, 100 samples per datagram) for ``S``
   seconds and prints one JSON result line when every carrier reached DONE (or ERROR, or the
   timeout passed); ``quit`` (or end of input) closes the session.

``busy_response`` (a proxy with another active session) makes it resend at once with a fresh
id, for at most ``--busy-timeout`` seconds.

Per data message it does one bounded header walk (:func:`fast_header`, ≈ 1.5 µs; anything that
does not have the usual layout is parsed with protobuf instead), checks the run id and marks the
chunk in a per-carrier bitmap: counted, distinct, duplicate, out-of-order and missing chunks
follow from that.  Kernel drops on its own UDP socket are read from ``/proc/net/udp`` before
and after each run.  The device's own timing comes from the state changes' ``time`` field
(``OP`` → ``OP_END``), which says whether the device actually kept the requested pace.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time
import uuid
from typing import Any

from _chunks import RunCount, fast_header

from pybrid.netstats import raise_rcvbuf, socket_drops
from pybrid.proto import pb
from pybrid.wire.framing import encode_varint

SAMPLES_PER_CHUNK = 100
BUF_SIZE = 8 << 20
#: Time.prefix → nanoseconds per unit (NONE = seconds, MILLI, MICRO, NANO)
_TIME_SCALE = {0: 1e9, 1: 1e6, 2: 1e3, 3: 1.0}


class Session:
    """The client's TCP connection, UDP socket and the run in progress."""

    def __init__(self, host: str, port: int, rcvbuf: int, busy_timeout: float) -> None:
        self.busy_timeout = busy_timeout
        self.sel = selectors.DefaultSelector()
        self.tcp = socket.create_connection((host, port), timeout=5)
        self.tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raise_rcvbuf(self.tcp, rcvbuf)
        self.tcp.setblocking(False)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rcvbuf = raise_rcvbuf(self.udp, rcvbuf)
        self.udp.bind((self.tcp.getsockname()[0], 0))
        self.udp.setblocking(False)
        self.sel.register(self.tcp, selectors.EVENT_READ, self._read_tcp)
        self.sel.register(self.udp, selectors.EVENT_READ, self._read_udp)
        self.buf = bytearray(BUF_SIZE)
        self.view = memoryview(self.buf)
        self.r = self.w = 0
        self.dbuf = bytearray(65536)
        self.replies: dict[str, pb.Envelope] = {}
        self.run: RunCount | None = None
        self.carriers: list[str] = []
        self.lane = "?"
        self.frames = self.datagrams = 0
        self.closed = False

    # -- I/O ------------------------------------------------------------------------------

    def send(self, env: pb.Envelope) -> None:
        payload = env.SerializeToString()
        self.tcp.setblocking(True)
        try:
            self.tcp.sendall(encode_varint(len(payload)) + payload)
        finally:
            self.tcp.setblocking(False)

    def pump(self, deadline: float, done: Any) -> bool:
        """Handle I/O until ``done()`` or ``deadline`` (perf_counter); True if done."""
        while not done():
            left = deadline - time.perf_counter()
            if left <= 0 or self.closed:
                return bool(done())
            for key, _ in self.sel.select(min(left, 0.2)):
                key.data()
        return True

    def _read_udp(self) -> None:
        udp, buf = self.udp, self.dbuf
        while True:
            try:
                n = udp.recv_into(buf)
            except BlockingIOError:
                return
            self.datagrams += 1
            self._message(buf, 0, n)

    def _read_tcp(self) -> None:
        while True:
            if self.w == len(self.buf):
                if self.r == 0:
                    raise RuntimeError("a frame larger than the receive buffer")
                self._compact()
            try:
                n = self.tcp.recv_into(self.view[self.w :])
            except BlockingIOError:
                return
            if n == 0:
                self.closed = True
                self.sel.unregister(self.tcp)
                return
            self.w += n
            self._frames()

    def _compact(self) -> None:
        rest = self.w - self.r
        self.buf[:rest] = self.buf[self.r : self.w]
        self.r, self.w = 0, rest

    def _frames(self) -> None:
        b, p, w = self.buf, self.r, self.w
        while p < w:
            x = b[p]
            q = p + 1
            n = x & 0x7F
            shift = 7
            while x >= 0x80:
                if q >= w:
                    self.r = p
                    return
                x = b[q]
                q += 1
                n |= (x & 0x7F) << shift
                shift += 7
            if q + n > w:
                break
            self.frames += 1
            self._message(b, q, q + n)
            p = q + n
        self.r = p
        if p == w:
            self.r = self.w = 0

    def _message(self, b: bytearray, p: int, end: int) -> None:
        run = self.run
        if run is not None:
            head = fast_header(b, p, end)
            if head is not None:
                run.data(*head)
                if run.first_data is None:
                    run.first_data = time.perf_counter()
                return
        env = pb.Envelope.FromString(bytes(b[p:end]))
        msg = env.message_v1
        kind = msg.WhichOneof("kind")
        if kind == "run_data_message" and run is not None:
            run.slow_parses += 1
            body = msg.run_data_message
            run.data(body.run.id.encode(), body.run.chunk, body.entity.path.encode())
        elif kind == "run_data_end_message" and run is not None:
            body2 = msg.run_data_end_message
            counter = run.carriers.get(body2.entity.path.encode())
            if body2.run.id.encode() == run.run_id and counter is not None:
                counter.ends += 1
        elif kind == "run_state_change_message" and run is not None:
            self._state(run, msg.run_state_change_message)
        elif env.WhichOneof("kind") == "message_v1" and msg.HasField("id"):
            self.replies[msg.id] = env

    def _state(self, run: RunCount, change: pb.RunStateChangeMessage) -> None:
        if change.run.id.encode() != run.run_id:
            run.foreign += 1
            return
        name = pb.RunState.Name(change.new_)
        seconds = change.time.value * _TIME_SCALE.get(change.time.prefix, 1.0) / 1e9
        paths = [change.entity.path] if change.HasField("entity") else list(run.state_times)
        for path in paths:
            path = "/" + path.strip("/").split("/", 1)[0]
            if path in run.state_times:
                run.state_times[path][name] = seconds
                if change.new_ in (pb.DONE, pb.ERROR):
                    run.final[path] = name

    # -- requests -------------------------------------------------------------------------

    def ask(self, kind: str, body: Any = None, timeout: float = 10.0) -> tuple[pb.Envelope, int]:
        """Send a request (again at once while the answer is busy); (reply, busy count)."""
        busy = 0
        deadline = time.perf_counter() + max(timeout, self.busy_timeout)
        while True:
            rid = str(uuid.uuid4())
            env = pb.Envelope()
            field = getattr(env.message_v1, kind)
            if body is None:
                field.SetInParent()
            else:
                field.CopyFrom(body)
            env.message_v1.id = rid
            self.send(env)
            if not self.pump(min(deadline, time.perf_counter() + timeout),
                             lambda rid=rid: rid in self.replies):
                raise TimeoutError(f"no reply to {kind} (busy {busy} times)")
            reply = self.replies.pop(rid)
            if reply.message_v1.WhichOneof("kind") != "busy_response":
                return reply, busy
            busy += 1

    def setup(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        spec = pb.ExtractCommand(recursive=True, specification=True)
        reply, _ = self.ask("extract_command", spec)
        module = reply.message_v1.extract_response.module
        for item in module.items:
            if item.HasField("entity_specification"):
                self._carriers(item.entity_specification.entity)
        port = self.udp.getsockname()[1]
        reply, busy = self.ask("udp_data_streaming_command", pb.UdpDataStreamingCommand(port=port))
        kind = reply.message_v1.WhichOneof("kind")
        self.lane = "udp" if kind == "success_message" else "tcp"
        return {"event": "ready", "lane": self.lane, "udp_reply": kind, "busy": busy,
                "carriers": self.carriers, "rcvbuf": self.rcvbuf,
                "setup_seconds": time.perf_counter() - t0}

    def _carriers(self, entity: pb.Entity) -> None:
        if entity.class_ == pb.Entity.CARRIER:
            self.carriers.append("/" + entity.id.strip("/"))
        for child in entity.children:
            self._carriers(child)

    def measure(self, rate: int, seconds: float, channels: int, timeout: float) -> dict[str, Any]:
        samples = max(1, int(round(seconds * 1e9) * rate * SAMPLES_PER_CHUNK / 1e9))
        expected = -(-samples // SAMPLES_PER_CHUNK)
        run_id = str(uuid.uuid4())
        run = self.run = RunCount(run_id, self.carriers, expected)
        command = pb.StartRunCommand()
        command.run.id = run_id
        command.run_config.op_time.value = round(seconds * 1e9)
        command.run_config.op_time.prefix = pb.NANO
        command.daq_config.num_channels = channels
        command.daq_config.sample_rate = rate * SAMPLES_PER_CHUNK
        command.daq_config.sample_op = True
        command.daq_config.sample_op_end = True
        drops0 = socket_drops(self.udp) or 0
        frames0, datagrams0 = self.frames, self.datagrams
        t0 = time.perf_counter()
        reply, busy = self.ask("start_run_command", command)
        kind = reply.message_v1.WhichOneof("kind")
        result: dict[str, Any] = {"event": "run", "rate": rate, "seconds": seconds,
                                  "expected_per_carrier": expected, "start_reply": kind,
                                  "busy": busy}
        if kind != "start_run_response":
            result["error"] = str(reply.message_v1)
        else:
            finished = self.pump(t0 + timeout, lambda: len(run.final) == len(self.carriers))
            # stragglers: the data and state lanes are not ordered with respect to each other
            self.pump(time.perf_counter() + 0.05, lambda: False)
            result["finished"] = finished
        result["wall_seconds"] = time.perf_counter() - t0
        result["client_drops"] = (socket_drops(self.udp) or 0) - drops0
        result["frames"] = self.frames - frames0
        result["datagrams"] = self.datagrams - datagrams0
        result.update(self._summary(run))
        self.run = None
        return result

    def _summary(self, run: RunCount) -> dict[str, Any]:
        per: dict[str, Any] = {}
        counted = missing = dup = ooo = 0
        for path, c in run.carriers.items():
            times = run.state_times.get(path.decode(), {})
            op = times.get("OP_END", 0.0) - times.get("OP", 0.0) if "OP_END" in times else None
            per[path.decode()] = {"counted": c.counted, "distinct": c.distinct,
                                  "missing": run.expected - c.distinct, "ends": c.ends,
                                  "final": run.final.get(path.decode()), "device_op_seconds": op}
            counted += c.counted
            missing += run.expected - c.distinct
            dup += c.duplicates
            ooo += c.out_of_order
        ops = [v["device_op_seconds"] for v in per.values() if v["device_op_seconds"] is not None]
        return {"counted": counted, "missing": missing, "duplicates": dup, "out_of_order": ooo,
                "foreign": run.foreign, "unknown_carrier": run.unknown_carrier,
                "slow_parses": run.slow_parses, "device_op_seconds": max(ops) if ops else None,
                "all_done": all(v == "DONE" for v in run.final.values())
                and len(run.final) == len(run.carriers),
                "carriers": per}

    def close(self) -> None:
        self.sel.close()
        self.tcp.close()
        self.udp.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rcvbuf", type=int, default=32 << 20)
    ap.add_argument("--busy-timeout", type=float, default=30.0)
    args = ap.parse_args()
    try:
        session = Session(args.host, args.port, args.rcvbuf, args.busy_timeout)
        print(json.dumps(session.setup()), flush=True)
    except Exception as e:
        print(json.dumps({"event": "error", "error": f"{type(e).__name__}: {e}"}), flush=True)
        return 2
    try:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            if line == "quit":
                break
            cmd = json.loads(line)
            try:
                result = session.measure(int(cmd["rate"]), float(cmd["seconds"]),
                                         int(cmd.get("channels", 8)), float(cmd["timeout"]))
            except Exception as e:
                result = {"event": "error", "error": f"{type(e).__name__}: {e}"}
            print(json.dumps(result), flush=True)
            if session.closed:
                print(json.dumps({"event": "error", "error": "connection closed by peer"}),
                      flush=True)
                return 3
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
