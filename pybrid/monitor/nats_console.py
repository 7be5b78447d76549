"""``pybrid-monitor --nats URL``: follow the runs in a NATS JetStream stream as they are
exported, or replay one (``--run ID`` / ``--last``); ``--record FILE`` writes each run in the
layout of every other recorder (:mod:`pybrid.recording`).  Prints one line per run start and
end; exit status 1 when the server or the run cannot be found, 0 otherwise."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any, TextIO

from twisted.internet import task

from pybrid.monitor.nats_replay import (
    RunAssembler,
    RunNotFound,
    last_run_id,
    replay,
    subscribe,
)
from pybrid.monitor.record import is_h5
from pybrid.recording.hdf5 import H5Recorder
from pybrid.recording.npz import NpzRecorder
from pybrid.recording.sinks import MemorySink
from pybrid.wire import nats_format as N

PROG = "pybrid-monitor"


def _sink(record: str | None, k: int) -> Any:
    if not record:
        return MemorySink()
    path = record
    if k > 1:
        stem, ext = os.path.splitext(record)
        path = f"{stem}-{k}{ext}"
    if is_h5(path):
        return H5Recorder(path, clock=task.Clock())
    return NpzRecorder(path)


def describe(a: RunAssembler) -> str:
    missing = sum(len(c.placer.missing(0)) for c in a.carriers.values())
    chunks = sum(c.placer.chunks for c in a.carriers.values())
    reason = (a.end or {}).get("reason", "")
    return (f"run {a.run_id}: {a.condition}, {len(a.carriers)} carriers, {chunks} chunks, "
            f"{missing} missing" + (f" ({reason})" if reason else ""))


async def _main(args: Any, out: TextIO, err: TextIO) -> int:
    import nats

    connect: dict[str, Any] = {}
    if args.nats_token:
        connect["token"] = args.nats_token
    if args.nats_creds:
        connect["user_credentials"] = args.nats_creds
    try:
        nc = await nats.connect(args.nats, connect_timeout=5, max_reconnect_attempts=3,
                                **connect)
    except Exception as e:
        print(f"{PROG}: error: cannot connect to {', '.join(args.nats)}: {e}", file=err)
        return 1
    try:
        js = nc.jetstream()
        prefix = args.nats_prefix
        if args.run or args.last:
            try:
                rid = args.run or await last_run_id(js, prefix)
                sink = _sink(args.record, 1)
                a = await replay(js, rid, prefix=prefix, sink=sink,
                                 idle_timeout=args.idle_timeout)
            except RunNotFound as e:
                print(f"{PROG}: error: {e}", file=err)
                return 1
            a.finish()
            print(describe(a) + (f"; recorded to {args.record}" if args.record else ""),
                  file=out, flush=True)
            return 0
        return await _follow(js, prefix, args, out)
    finally:
        await nc.close()


async def _follow(js: Any, prefix: str, args: Any, out: TextIO) -> int:
    from nats.js.api import DeliverPolicy

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.duration:
        loop.call_later(args.duration, stop.set)
    runs: dict[str, RunAssembler] = {}
    k = 0
    sub = await subscribe(js, f"{prefix}.>", DeliverPolicy.NEW)
    print(f"following {prefix}.> on {', '.join(args.nats)}", file=out, flush=True)
    try:
        while not stop.is_set():
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                continue
            try:
                _proxy, rid, kind = N.parse_subject(prefix, msg.subject)
            except N.NatsFormatError:
                continue
            a = runs.get(rid)
            if a is None:
                if kind != "start":
                    continue  # joined mid-run: replay it with --run ID
                k += 1
                a = runs[rid] = RunAssembler(rid, _sink(args.record, k))
                print(f"run {rid} started", file=out, flush=True)
            if a.add(kind, msg.data):
                a.finish()
                print(describe(a), file=out, flush=True)
                del runs[rid]
    finally:
        await sub.unsubscribe()
        for a in runs.values():
            a.finish()
    return 0


def run(args: Any, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    return asyncio.run(_main(args, out, err))
