"""Start-up failures a user of ``twistd`` must be able to read.

``twistd`` (daemonizing) reports an exception raised while the services start through its
status pipe: the parent prints the first 100 bytes of ``module.Type: message`` — so
``twisted.internet.error.CannotListenError: Couldn't listen on 127.0.0.1:8732: [Errno 98]
Address a``.  :class:`ListenFailed` says it in one short line that fits: ``ListenFailed: cannot
listen on 127.0.0.1:8732 (--status-port): address already in use``; the services log the full
error first.
"""

from __future__ import annotations

from twisted.internet.error import CannotListenError


class ListenFailed(Exception):
    """A port could not be opened while the service started (one line, see the module note)."""


# no module prefix in "Type: message" (traceback's rule for builtins): the 100 bytes are the text
ListenFailed.__module__ = "builtins"


def listen_failed(what: str, error: CannotListenError) -> ListenFailed:
    """The short error for ``error`` (``what``: the option that named the port)."""
    reason = error.socketError
    why = getattr(reason, "strerror", None) or str(reason)
    where = f"{error.interface or '*'}:{error.port}"
    return ListenFailed(f"cannot listen on {where} ({what}): {why[:1].lower()}{why[1:]}")
