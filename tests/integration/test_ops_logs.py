"""``twistd --syslog`` with our plugins: each line reaches syslog(3) at the priority of its log
level (Twisted alone sends warnings at *info*), starting with our version line.  syslog(3) is
replaced inside the child by a ``sitecustomize`` that prints what would have been sent."""

from __future__ import annotations

import pathlib
import re
import sys

import pytest_twisted
from support.reference import spawn

TWISTD = str(pathlib.Path(sys.executable).with_name("twistd"))
T = 30.0
FAKE_SYSLOG = '''
import os
from twisted.python import syslog as twisted_syslog

def _openlog(self, *args):
    pass

def _syslog(self, priority, message):
    # file descriptor 1 itself: twistd --syslog captures sys.stdout into the log
    os.write(1, f"SYSLOG {priority} {message}\\n".encode())

twisted_syslog.SyslogObserver.openlog = _openlog
twisted_syslog.SyslogObserver.syslog = _syslog
'''


@pytest_twisted.ensureDeferred
async def test_twistd_syslog_gets_priorities_from_log_levels(reactor, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(FAKE_SYSLOG)
    argv = [TWISTD, "-n", "--pidfile=", "--syslog", "--prefix=pybrid-test", "pybrid-proxy",
            "-b", "127.0.0.1:1", "--listen", "127.0.0.1", "--port", "0"]
    proc = spawn(reactor, "twistd-syslog", argv, env={"PYTHONPATH": str(tmp_path)})
    try:
        await proc.wait_for_output(b"connect failed", T)  # a warning: the backend is not there
    finally:
        await proc.stop()
    sent = re.findall(r"^SYSLOG (\d+) (.*)$", bytes(proc.stdout).decode(), re.M)
    assert sent, proc.tail()
    priority, first = sent[0]
    assert "pybrid-proxy" in first and "(pybrid-twisted) starting" in first
    assert int(priority) == 6  # LOG_INFO
    by_text = {text: int(p) for p, text in sent}
    warnings = [p for text, p in by_text.items() if "connect failed" in text]
    assert warnings and set(warnings) == {4}, sent  # LOG_WARNING, not LOG_INFO
    assert by_text[next(t for t in by_text if "listening on 127.0.0.1:" in t)] == 6
