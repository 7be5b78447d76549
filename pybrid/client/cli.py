"""``pybrid-run``: connect, optionally configure from an ``.apb``, run, save ``.npz`` or stream
to ``.h5`` (and plot a PNG).

Exit codes (also in ``docs/client.md`` and ``--help``):

====  ====================================================================
0     the run completed (a warning on stderr if samples are missing)
1     any other failure (error reply, unreadable .apb, cannot write output)
2     cannot connect (refused, unreachable, unknown host, connect timeout)
3     the device stayed busy for ``--busy-timeout`` seconds
4     the run failed on the device (ERROR state)
5     a timeout: a request got no reply, or the run did not finish
64    bad command line
130   interrupted (Ctrl-C / SIGTERM): the run was stopped
====  ====================================================================
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, NoReturn

import numpy as np

from pybrid.client.apb import load_apb
from pybrid.client.commands import common
from pybrid.client.commands.exits import (
    EXIT_BUSY,
    EXIT_CONNECT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUN,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    exit_code_for,
)
from pybrid.client.commands.options import IC_TIME_RANGE, OP_TIME_RANGE, seconds_in
from pybrid.client.computer import Computer
from pybrid.client.errors import ClientError
from pybrid.client.plot import plot_h5, save_plot
from pybrid.client.progress import make_progress
from pybrid.client.results import IC_TIME, Chunk, RunResult, expected_samples
from pybrid.client.topology import describe_carriers, describe_data_lane
from pybrid.recording.envelope import parse_window
from pybrid.recording.hdf5 import H5Recorder
from pybrid.version import install_hint

__all__ = ["EXIT_BUSY", "EXIT_CONNECT", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK",
           "EXIT_RUN", "EXIT_TIMEOUT", "EXIT_USAGE", "exit_code_for", "main", "run_command"]

TOKEN_ENV = "PYBRID_AUTH_TOKEN"
PROG = "pybrid-run"

EPILOG = """\
exit codes: 0 done, 1 other failure, 2 cannot connect, 3 device busy,
4 run failed on the device, 5 timeout, 64 bad command line, 130 interrupted.
The bearer token may also come from $PYBRID_AUTH_TOKEN or $PYBRID_AUTHENTICATION.
"""


def _window(text: str) -> tuple[float, float | None]:
    try:
        return parse_window(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = common.parser(PROG, "Run a computation on a LUCIDAC/REDAC (or through a proxy) and "
                      "save the samples.", EPILOG)
    p.add_argument("-c", "--config", metavar="FILE.apb",
                   help="configure the circuit from this .apb file before the run")
    p.add_argument("--reset", action="store_true",
                   help="reset the circuit (keeping calibration) before configuring")
    p.add_argument("--calibrate", action="store_true", help="calibrate before the run")
    p.add_argument("-t", "--op-time", type=seconds_in(*OP_TIME_RANGE, "--op-time"), default=0.01,
                   metavar="SECONDS", help="OP time in seconds (default 0.01)")
    p.add_argument("--ic-time", type=seconds_in(*IC_TIME_RANGE, "--ic-time"), default=IC_TIME,
                   metavar="SECONDS", help="IC time in seconds, not nanoseconds (default 0.0001)")
    p.add_argument("-n", "--channels", type=common.positive(int), default=8,
                   help="ADC channels to sample (default 8)")
    p.add_argument("-r", "--sample-rate", type=common.positive(int), default=10_000, metavar="HZ",
                   help="samples per second (default 10000)")
    p.add_argument("-o", "--output", metavar="FILE.npz|FILE.h5",
                   help="where to save the samples (default run-<run id>.npz); a .h5 file is "
                   "written while the run streams (needs h5py: the 'hdf5' extra)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="also plot the channels into a PNG (needs matplotlib: the 'plot' extra); "
                   "a long run is drawn as its min/max envelope per pixel column")
    p.add_argument("--plot-window", type=_window, metavar="START:END",
                   help="plot only these seconds after OP began, e.g. 2:2.5 (START: or :END "
                   "leave one side open)")
    p.add_argument("--data-lane", choices=("auto", "udp", "tcp"), default="auto",
                   help="auto: UDP with TCP fallback (default); udp: require UDP; tcp: never UDP")
    p.add_argument("--timeout", type=common.positive(float), metavar="SECONDS",
                   help="give up on the run after this long (default ic + op + 10 s)")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_const", const=True,
                     help="always show the progress line")
    bar.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                     help="never show it (default: only on a terminal)")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The checked command line (a bad one exits 64 with the error and one usage line)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.plot_window is not None and not args.plot:
        parser.error("--plot-window goes with --plot FILE.png")
    return args


def _fail(code: int, message: str) -> NoReturn:
    common.fail(PROG, code, message)


def _save(result: RunResult, path: str, meta: dict[str, Any]) -> None:
    arrays = result.arrays()
    run_meta = result.meta.attributes() if result.meta is not None else {}
    meta = dict(run_meta, **meta, run_id=result.run_id, data_lane=result.data_lane,
                carriers=list(result.carriers), elapsed=result.elapsed,
                states=[[s.at, s.carrier, s.old, s.new, s.reason] for s in result.states])
    arrays["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


def _is_h5(path: str | None) -> bool:
    return bool(path) and os.path.splitext(str(path))[1].lower() in (".h5", ".hdf5")


def _check_writable(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        _fail(EXIT_FAILED, f"cannot write {path}: directory {parent} is missing or not writable")


async def run_command(reactor: Any, argv: list[str]) -> int:
    """The body of ``pybrid-run``; returns the exit code (raises SystemExit on errors)."""
    args = parse_args(argv)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            _fail(EXIT_FAILED, "--plot needs matplotlib: " + install_hint("plot", "matplotlib"))
    recorder: H5Recorder | None = None
    if _is_h5(args.output):
        try:
            import h5py  # noqa: F401
        except ImportError:
            _fail(EXIT_FAILED, "-o FILE.h5 needs h5py: " + install_hint("hdf5", "h5py"))
        _check_writable(args.output)
        recorder = H5Recorder(args.output, clock=reactor)
    module = None
    if args.config:
        try:
            module = load_apb(args.config)
        except ClientError as e:
            _fail(EXIT_FAILED, str(e))
    done: list[tuple[RunResult, str, int, str | None]] = []

    async def body(c: Computer, step: common.Step, say: Any) -> int:
        say(f"connected to {c.target}: {describe_carriers(c.carriers)}")
        if args.reset:
            await step(c.reset())
        if module is not None:
            await step(c.configure(module))
            say(f"configured from {args.config}")
        if args.calibrate:
            await step(c.calibrate())
        per_carrier = expected_samples(round(args.op_time * 1e9), args.sample_rate)
        show = False if args.quiet else args.progress
        bar = make_progress(per_carrier * len(c.carriers), sys.stderr, reactor, enabled=show)

        def on_chunk(chunk: Chunk) -> None:
            if not chunk.final:
                bar.update(chunk.values.shape[0])

        try:
            result: RunResult = await step(c.run(
                args.op_time, ic_time=args.ic_time, channels=args.channels,
                sample_rate=args.sample_rate, timeout=args.timeout, on_chunk=on_chunk,
                sink=recorder,
            ))
        except OSError as e:  # the recording could not be written
            if c.connected:
                await c.close()
            _fail(EXIT_FAILED, f"cannot write {e.filename or args.output}: {e.strerror or e}")
        finally:
            bar.close()
        done.append((result, c.target, per_carrier, c.udp_refusal))
        return EXIT_OK

    await common.session(reactor, PROG, args, body, data_lane=args.data_lane,
                         interrupted_text="interrupted; the run was stopped")
    result, target, per_carrier, udp_refusal = done[0]
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    _report(result, say, udp_refusal)
    output = args.output or f"run-{result.run_id[:8]}.npz"
    meta = {"target": target, "op_time": args.op_time, "ic_time": args.ic_time,
            "channels": args.channels, "sample_rate": args.sample_rate,
            "expected_samples": per_carrier}
    try:
        if recorder is None:
            _save(result, output, meta)
        say(f"saved {output}")
        if args.plot:
            title = f"run {result.run_id}"
            if recorder is None:
                series = {mac: cr.samples for mac, cr in result.carriers.items()}
                save_plot(series, args.sample_rate, args.plot, title=title,
                          window=args.plot_window)
            else:
                plot_h5(output, args.plot, title=title, window=args.plot_window)
            say(f"plotted {args.plot}")
    except OSError as e:
        _fail(EXIT_FAILED, f"cannot write {e.filename}: {e.strerror}")
    return EXIT_OK


def _report(result: RunResult, say: Any, udp_refusal: str | None = None) -> None:
    lane = describe_data_lane(result.data_lane, udp_refusal)
    say(f"run {result.run_id} done in {result.elapsed:.3f} s, {lane}")
    for mac, c in result.carriers.items():
        say(f"  {mac}: {c.received_samples} samples x {c.samples.shape[1]} channels "
            f"in {c.chunks} chunks, {len(c.missing_chunks)} missing")
        if not c.complete:
            shown = ", ".join(str(n) for n in c.missing_chunks[:10])
            more = " …" if len(c.missing_chunks) > 10 else ""
            sys.stderr.write(
                f"{PROG}: warning: {mac}: {c.received_samples} of {c.expected_samples} "
                f"expected samples, {len(c.missing_chunks)} missing chunk(s) "
                f"[{shown}{more}] (NaN rows)\n"
            )
    if result.overload is not None and result.overload.global_overload:
        say("  overload reported")


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``pybrid-run``)."""
    common.main_for(PROG, run_command, argv)


if __name__ == "__main__":
    main()
