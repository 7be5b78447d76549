"""pybrid/startup.py: a port in use at start-up reads as one short, complete line."""

from __future__ import annotations

import errno
import os
import traceback

import pytest
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock

from pybrid.startup import ListenFailed, listen_failed


def in_use(port: int) -> CannotListenError:
    return CannotListenError("127.0.0.1", port,
                             OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE)))


def test_the_line_twistd_shows_is_whole_and_says_what_failed() -> None:
    error = listen_failed("--status-port", in_use(8732))
    [line] = traceback.format_exception_only(type(error), error)
    # twistd's daemon status pipe carries "1 " and the first 98 bytes of this line
    assert line.strip() == ("ListenFailed: cannot listen on 127.0.0.1:8732 (--status-port): "
                            "address already in use")
    assert len(("1 " + line.strip()).encode()) <= 100


class Refusing(Clock):
    """A reactor whose every listenTCP finds its port taken."""

    def listenTCP(self, port, factory, backlog=50, interface=""):
        raise in_use(port)


def test_the_status_page_and_the_device_raise_it() -> None:
    from pybrid.device.config import DeviceConfig
    from pybrid.device.plugin import DeviceService
    from pybrid.proxy.status.web import StatusService

    page = StatusService(object(), Refusing(), 8732, "127.0.0.1")
    with pytest.raises(ListenFailed, match=r"127\.0\.0\.1:8732 \(--status-port\): address"):
        page.privilegedStartService()
    device = DeviceService(DeviceConfig(), 5733, "127.0.0.1", reactor=Refusing())
    with pytest.raises(ListenFailed, match=r"127\.0\.0\.1:5733 \(--interface/--port\)"):
        device.startService()
