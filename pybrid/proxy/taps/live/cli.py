"""``python -m pybrid.proxy.taps.live``: the live-view process ``--live-process`` starts.

A reactor with two Unix sockets from the proxy: on ``--fd`` the viewers' connections it
hands over (:class:`~pybrid.live.handoff.Adopter`; we answer with JSON lines), on
``--link-fd`` the run events and sample blocks of the proxy's live tap
(:class:`~pybrid.proxy.taps.live.link.LinkReader`), stored and served by the monitor's
:class:`~pybrid.monitor.web.MonitorLive`.  It stops on SIGTERM or when the proxy closes a
socket.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from pybrid.malloc import keep_freed

PROG = "pybrid-live-process"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="the hand-off socket")
    parser.add_argument("--link-fd", type=int, required=True, help="the live tap's link")
    parser.add_argument("--nice", type=int, default=0, help="added to the process's nice value")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)  # the proxy's reactor before the viewers on a busy host
    keep_freed(os.environ)  # the link's 1 MiB blocks: reused, not faulted in every 10 ms
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor

    from pybrid.live.handoff import Adopter, AdopterFactory
    from pybrid.monitor.web import MonitorLive
    from pybrid.proxy.taps.live.link import LinkReader

    def gone() -> None:
        if reactor.running:
            reactor.stop()

    adopter: list[Adopter] = []

    def told(viewers: int) -> None:
        if adopter:
            adopter[0].say(b'{"viewers": %d}' % viewers)

    live = MonitorLive(reactor, on_watchers=told)
    adopter.append(Adopter(reactor, live.site(), lost=gone))
    reactor.adoptStreamConnection(args.fd, socket.AF_UNIX, AdopterFactory(adopter[0]))
    os.close(args.fd)  # the reactor keeps its own duplicate
    link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=args.link_fd)
    LinkReader(live, link, reactor, lost=gone).start()
    adopter[0].say(b'{"ready": true}')
    reactor.run()
    print(f"{PROG}: stopped", file=sys.stderr, flush=True)
    return 0
