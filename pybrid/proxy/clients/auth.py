"""Bearer-token authentication of proxy clients (``--auth``; secret in PYBRID_AUTHENTICATION).

Design note
-----------
:class:`Authenticator` compares an offered token with the configured one in constant time
(``hmac.compare_digest``).  :class:`AuthThrottle` stops a peer from guessing tokens quickly:

* It counts *consecutive* wrong tokens per peer IP address (over all of that address's
  connections).  From the ``threshold``-th (5) on, each wrong token locks the address out for
  ``base · 2^(failures − threshold)`` seconds (0.25, 0.5, 1, 2, 4, then ``cap`` = 5 s) on the
  injected clock.
* While an address is locked out, its ``auth_request`` messages are not checked at all — the
  right token fails too — and are answered at once with "Authentication failed: too many
  failed attempts from HOST; token not checked, retry in N s".  The reply is immediate (no
  timer, no reordering of a connection's replies), yet an address can have at most one token
  checked per ``cap`` seconds in the long run, however many connections it opens.  Attempts
  during a lockout neither extend it nor count as failures.
* A correct token resets the address's count.  So does ``forget_after`` (60 s) without a
  failure.
* Memory is bounded: at most ``max_peers`` (4096) addresses are remembered, the least recently
  failing one is forgotten first.

The price: clients sharing an address with a guesser (NAT, the same host) are locked out with
it, for at most ``cap`` seconds after its last checked guess.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pybrid.proto import pb

REQUIRED = "Authentication required"
FAILED = "Authentication failed"


@attrs.frozen
class Authenticator:
    """Checks ``auth_request`` messages against the configured token in constant time.

    Without a token (``--no-auth``) nothing is required and every ``auth_request`` succeeds.
    """

    token: str | None = attrs.field(default=None, repr=False)

    @property
    def required(self) -> bool:
        return self.token is not None

    def check(self, request: pb.AuthRequest) -> bool:
        if self.token is None:
            return True
        if request.WhichOneof("kind") != "bearer":
            return False
        offered = request.bearer.token.encode("utf-8")
        return hmac.compare_digest(offered, self.token.encode("utf-8"))


@attrs.define
class _Peer:
    failures: int = 0
    last: float = 0.0
    until: float = 0.0


def throttled_text(host: str, wait: float) -> str:
    """The reply to an ``auth_request`` from a locked-out address."""
    return (f"{FAILED}: too many failed attempts from {host}; token not checked, retry in "
            f"{wait:.3g} s")


@attrs.define(eq=False)
class AuthThrottle:
    """Per-address back-off after consecutive wrong tokens; see the module note."""

    clock: IReactorTime
    threshold: int = 5
    base: float = 0.25
    cap: float = 5.0
    forget_after: float = 60.0
    max_peers: int = 4096
    #: Lockouts begun (one per checked failure at or past the threshold).
    lockouts: int = 0
    _peers: OrderedDict[str, _Peer] = attrs.field(factory=OrderedDict)

    log = Logger()

    def locked(self, host: str) -> float:
        """Seconds ``host`` is still locked out for (0: its next token is checked)."""
        peer = self._peers.get(host)
        if peer is None:
            return 0.0
        return max(0.0, peer.until - self.clock.seconds())

    def failed(self, host: str) -> float:
        """A wrong token from ``host`` was checked; the lockout it starts (0: none yet)."""
        now = self.clock.seconds()
        peer = self._peers.pop(host, None)
        if peer is None or now - peer.last > self.forget_after:
            peer = _Peer()
        self._peers[host] = peer  # most recent last
        while len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)
        peer.failures += 1
        peer.last = now
        if peer.failures < self.threshold:
            return 0.0
        lockout = min(self.cap, self.base * 2.0 ** min(peer.failures - self.threshold, 32))
        peer.until = now + lockout
        self.lockouts += 1
        return lockout

    def succeeded(self, host: str) -> None:
        """The right token came from ``host``: its count starts again."""
        self._peers.pop(host, None)

    @property
    def peers(self) -> int:
        """Addresses remembered (at most ``max_peers``)."""
        return len(self._peers)
