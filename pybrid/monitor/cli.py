"""``pybrid-monitor``: watch a monitor multicast group (or, with ``--shm``, a shared-memory
tap: :mod:`pybrid.monitor.shm_console`) from a terminal.

Prints one status block per ``--interval`` (per-carrier chunk and sample rates, gaps,
malformed datagrams), optionally records the samples to an ``.npz`` file, and stops cleanly
after ``--duration`` seconds or on Ctrl-C / SIGTERM (the record is written and a summary
printed; exit status 0).  Exit status 1: the group could not be joined or the record could
not be written; 2: bad command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

import attrs
from twisted.internet import defer, error, task
from twisted.logger import Logger

from pybrid.commandline import Parser
from pybrid.monitor.decode import MonitorChunk, MonitorRun, MonitorStateChange
from pybrid.monitor.listener import MonitorListener
from pybrid.monitor.options import DEFAULT_INTERFACE, parse_group, parse_interface, parse_port
from pybrid.monitor.record import Recorder, is_h5
from pybrid.version import install_hint

PROG = "pybrid-monitor"


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be greater than 0")
    return number


def _port(value: str) -> int:
    try:
        return parse_port(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _interface(value: str) -> str:
    try:
        return parse_interface(value) or ""
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Watch the samples a pybrid proxy copies to a multicast monitor group.",
    )
    parser.add_argument("--group", help="multicast group, e.g. 239.255.0.1")
    parser.add_argument("--port", type=_port, help="UDP port of the group")
    parser.add_argument("--shm", metavar="NAME",
                        help="read the proxy's shared-memory tap NAME (twistd pybrid-proxy "
                        "--shm-tap NAME) instead of a multicast group")
    parser.add_argument("--shm-size", type=_positive, default=64, metavar="MiB",
                        help="ring size of the --shm buffer (default: %(default)s)")
    parser.add_argument("--nats", metavar="URL", action="append",
                        help="follow the runs a proxy exports to NATS JetStream (twistd "
                        "pybrid-proxy --nats URL), or replay one with --run/--last")
    parser.add_argument("--run", metavar="ID", help="--nats: replay the run ID from the stream")
    parser.add_argument("--last", action="store_true",
                        help="--nats: replay the newest run in the stream")
    parser.add_argument("--nats-prefix", default="pybrid",
                        help="--nats: subject prefix (default: %(default)s)")
    parser.add_argument("--nats-creds", metavar="FILE", help="--nats: credentials file")
    parser.add_argument("--nats-token", default=os.environ.get("PYBRID_NATS_TOKEN"),
                        help="--nats: token (default: $PYBRID_NATS_TOKEN)")
    parser.add_argument("--idle-timeout", type=_positive, default=10.0, metavar="S",
                        help="--run/--last: give up on a run silent for S seconds")
    parser.add_argument(
        "--interface",
        default=DEFAULT_INTERFACE,
        type=_interface,
        help="address of the interface to join on, or 'any' (default: %(default)s)",
    )
    parser.add_argument(
        "--record", metavar="FILE.h5|FILE.npz",
        help="record every run: .h5 is written while it streams (needs h5py: the 'hdf5' "
        "extra), .npz on exit; the k-th run goes to FILE-k.h5 / FILE-k.npz",
    )
    parser.add_argument(
        "--sample-rate", type=int, default=0, metavar="HZ",
        help="the runs' sample rate stored in the recording (default: the one the proxy's "
             "run record names, from the client's start command; needed for older proxies)",
    )
    parser.add_argument(
        "--duration", type=_positive, metavar="S", help="stop after S seconds (default: run "
        "until Ctrl-C or SIGTERM)"
    )
    parser.add_argument(
        "--interval", type=_positive, default=1.0, metavar="S",
        help="seconds between status lines (default: %(default)s)",
    )
    parser.add_argument(
        "--web", metavar="PORT|ENDPOINT",
        help="serve the live view (/live, as on the proxy's status port) on PORT of 127.0.0.1 "
             "or a server endpoint string (tcp:8080:interface=0.0.0.0, ssl:…); multicast or --shm",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log the library's messages to stderr"
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.run or args.last) and not args.nats:
        parser.error("--run and --last replay from NATS: give --nats URL")
    if args.run and args.last:
        parser.error("--run ID and --last exclude each other")
    if args.web is not None:
        if args.nats:
            parser.error("--web serves a multicast or --shm monitor's runs: --nats not yet")
        try:
            from pybrid.monitor.web import endpoint_string

            endpoint_string(args.web)
        except ValueError as e:
            parser.error(str(e))
    if args.nats:
        if args.group is not None or args.port is not None or args.shm is not None:
            parser.error("--nats reads NATS: leave out --group, --port and --shm")
    elif args.shm is not None:
        if args.group is not None or args.port is not None:
            parser.error("--shm reads shared memory: leave out --group and --port")
    elif args.group is None or args.port is None:
        parser.error("the following arguments are required: --group, --port (or --shm NAME, "
                     "or --nats URL)")
    else:
        try:
            args.group = parse_group(f"{args.group}:{args.port}")[0]
        except ValueError as e:
            parser.error(str(e))
    if args.record:
        parent = os.path.dirname(os.path.abspath(args.record))
        if not os.path.isdir(parent):
            parser.error(f"--record: directory {parent} does not exist")
        if not os.access(parent, os.W_OK):
            parser.error(f"--record: directory {parent} is not writable")
        if is_h5(args.record):
            try:
                import h5py  # noqa: F401
            except ImportError:
                parser.error("--record FILE.h5 needs h5py: " + install_hint("hdf5", "h5py"))
    if args.sample_rate < 0:
        parser.error("--sample-rate must not be negative")
    return args


@attrs.define(eq=False)
class ConsoleMonitor:
    """Runs one listener for the console tool: status lines, recording, clean shutdown.

    Owns the listener, the status LoopingCall and the recorder; ``out``/``err`` are where it
    prints (this class belongs to the console tool, the only printing part of the package).
    """

    reactor: Any
    group: str
    port: int
    interface: str | None
    interval: float = 1.0
    duration: float | None = None
    record: str | None = None
    sample_rate: int = 0
    #: ``--web``: where the live view is served (pybrid.monitor.web), or None.
    web: str | None = None
    out: TextIO = sys.stdout
    err: TextIO = sys.stderr
    exit_code: int = 0
    out_closed: bool = False
    listener: MonitorListener = attrs.field(init=False)
    recorder: Recorder | None = attrs.field(init=False, default=None)
    live: Any = attrs.field(init=False, default=None)
    web_port: Any = attrs.field(init=False, default=None)
    _loop: task.LoopingCall | None = attrs.field(init=False, default=None)
    _started_at: float = attrs.field(init=False, default=0.0)
    _last_at: float = attrs.field(init=False, default=0.0)
    _last: dict[Any, tuple[int, int]] = attrs.field(init=False, factory=dict)
    _last_datagrams: int = attrs.field(init=False, default=0)
    _stopping: bool = attrs.field(init=False, default=False)
    _log: Logger = attrs.field(init=False, factory=Logger)

    def __attrs_post_init__(self) -> None:
        self.recorder = (Recorder(self.record, self.reactor, sample_rate=self.sample_rate)
                         if self.record else None)
        if self.web is not None:
            from pybrid.monitor.web import MonitorLive

            self.live = MonitorLive(self.reactor)
        self.listener = MonitorListener(
            self.reactor, self.group, self.port, self.interface,
            on_chunk=self._chunk, on_state=self._state, on_run=self._run,
        )

    def _run(self, run: MonitorRun) -> None:
        if self.recorder is not None:
            self.recorder.run(run.run_id, run.record)
        if self.live is not None:
            self.live.run(run)

    def _chunk(self, chunk: MonitorChunk) -> None:
        if self.recorder is not None:
            self.recorder.add(chunk)
        if self.live is not None:
            self.live.chunk(chunk)

    def _state(self, change: MonitorStateChange) -> None:
        if self.recorder is not None:
            self.recorder.state(change)
        if change.carrier_path:
            where = f"lane {change.lane} {change.carrier_path}"
        else:  # no entity: name the carriers of this lane seen so far
            known = [c.label for (i, _), c in self.listener.stats.carriers.items()
                     if i == change.lane]
            where = ", ".join(known) or f"lane {change.lane}"
        self._print(
            f"{self._stamp()} {where}: run {change.run_id[:8]} "
            f"{change.old_name} -> {change.new_name}"
            + (f" ({change.reason})" if change.reason else "")
        )

    def _print(self, line: str, stream: TextIO | None = None) -> None:
        stream = stream or self.out
        if stream is self.out and self.out_closed:
            return
        try:
            print(line, file=stream, flush=True)
        except BrokenPipeError:  # e.g. piped into `head`: stop quietly, still save the record
            if stream is self.out:
                self.out_closed = True
                self.stop()

    def stop(self) -> None:
        """Stop the reactor once (duration over, output closed, or a fatal error)."""
        if not self._stopping:
            self._stopping = True
            try:
                self.reactor.stop()
            except error.ReactorNotRunning:
                pass

    def _stamp(self) -> str:
        return f"[{self.reactor.seconds() - self._started_at:7.1f}s]"

    async def _start(self) -> None:
        port = await self.listener.start()
        self._started_at = self._last_at = self.reactor.seconds()
        self._print(
            f"listening on {self.group}:{port} via {self.interface or 'any'}"
            + (f", recording to {self.record}" if self.record else "")
        )
        if self.live is not None and self.web is not None:
            self.web_port = await self.live.listen(self.web)
            host = self.web_port.getHost()
            self._print(f"live view on http://{host.host}:{host.port}/live")
        self._loop = task.LoopingCall(self.report)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=False).addErrback(
            lambda f: self._log.failure("status loop stopped", f)
        )
        if self.duration is not None:
            self.reactor.callLater(self.duration, self.stop)

    def start(self) -> None:
        """Join the group; on failure print why, set exit code 1 and stop the reactor."""

        def failed(failure: Any) -> None:
            self._print(f"{PROG}: error: {failure.getErrorMessage()}", self.err)
            self.exit_code = 1
            self.stop()

        defer.Deferred.fromCoroutine(self._start()).addErrback(failed)

    def report(self) -> None:
        """Print the status block; never raises (a LoopingCall body)."""
        try:
            self._report()
        except Exception:
            self._log.failure("status report failed")

    def _report(self) -> None:
        now = self.reactor.seconds()
        elapsed = max(now - self._last_at, 1e-9)
        self._last_at = now
        stats = self.listener.stats
        rate = (stats.datagrams - self._last_datagrams) / elapsed
        self._last_datagrams = stats.datagrams
        stamp = self._stamp()
        self._print(
            f"{stamp} total: {stats.datagrams} datagrams ({rate:.1f}/s), "
            f"{stats.chunks} chunks, tap gaps {stats.tap_gaps}, malformed {stats.malformed}"
        )
        for key, carrier in sorted(self.listener.stats.carriers.items()):
            chunks, samples = self._last.get(key, (0, 0))
            self._last[key] = (carrier.chunks, carrier.samples)
            self._print(
                f"{stamp} {carrier.label}: {(carrier.chunks - chunks) / elapsed:.1f} chunks/s, "
                f"{(carrier.samples - samples) / elapsed:.1f} samples/s, "
                f"chunks {carrier.chunks}, gaps {carrier.gaps}"
                + (f", run {carrier.run_id[:8]}" if carrier.run_id else "")
                + (f", state {carrier.last_state}" if carrier.last_state else "")
            )

    def shutdown(self) -> Any:
        """Stop reporting and leave the group (a before-shutdown trigger)."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self.live is not None:
            self.live.hub.stop()
        if self.web_port is not None:
            self.web_port.stopListening()
        return self.listener.stop()

    def finish(self) -> int:
        """Print the summary, write the record; the process exit status."""
        stats = self.listener.stats
        if self.exit_code == 0:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(stats.malformed_by_reason.items()))
            self._print(
                f"summary: {stats.datagrams} datagrams, {stats.chunks} chunks, "
                f"{stats.samples} samples (+ {stats.end_chunks} final values), "
                f"tap gaps {stats.tap_gaps}, "
                f"chunk gaps {stats.chunk_gaps}, malformed {stats.malformed}"
                + (f" ({reasons})" if reasons else "")
            )
        if self.recorder is not None and self.record and self.exit_code == 0:
            try:
                written = self.recorder.close()
            except OSError as e:
                self._print(f"{PROG}: error: cannot write {self.record}: {e}", self.err)
                return 1
            runs = f"{len(written)} run" + ("" if len(written) == 1 else "s")
            files = ", ".join(path for path, _s in written) or "no file (no data seen)"
            self._print(f"recorded {self.recorder.samples} samples from {runs} to {files}")
        return self.exit_code


def main(argv: list[str] | None = None) -> int:
    """Console entry point: ``pybrid-monitor --group G --port P [...]``."""
    args = parse_args(argv)
    if args.nats:
        from pybrid.monitor import nats_console

        return nats_console.run(args)
    if args.shm is not None:
        from pybrid.monitor import shm_console

        return shm_console.run(args.shm, interval=args.interval, duration=args.duration,
                               record=args.record, payload_size=int(args.shm_size * (1 << 20)),
                               sample_rate=args.sample_rate, web=args.web)
    if args.verbose:
        from twisted.logger import globalLogBeginner, textFileLogObserver

        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)],
                                         redirectStandardIO=False)
    from twisted.internet import reactor

    monitor = ConsoleMonitor(
        reactor,
        args.group,
        args.port,
        args.interface or None,
        interval=args.interval,
        duration=args.duration,
        record=args.record,
        sample_rate=args.sample_rate,
        web=args.web,
    )
    reactor.callWhenRunning(monitor.start)  # type: ignore[attr-defined]
    reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
        "before", "shutdown", monitor.shutdown
    )
    reactor.run()  # type: ignore[attr-defined]
    code = monitor.finish()
    if monitor.out_closed:  # keep Python from complaining about the closed pipe at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return code


if __name__ == "__main__":
    sys.exit(main())
