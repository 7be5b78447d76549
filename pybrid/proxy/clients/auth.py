"""Bearer-token authentication of proxy clients (``--auth``; secret in PYBRID_AUTHENTICATION).

Design note
-----------
:class:`Authenticator` compares an offered token with the configured one in constant time
(``hmac.compare_digest``).  The token must carry at least :data:`MIN_TOKEN_BITS` (128) bits
(:func:`token_bits`, checked when the proxy starts): against such a token guessing is hopeless
at any rate, so throttling need not — and must not — be something a guesser can turn against
other users.  :class:`AuthThrottle` therefore works **per connection**, never per address:

* every wrong token delays that connection: its reply is sent at once, but nothing more is
  read from it for ``delay · 2^(failures − 1)`` seconds (0.5, 1, …) on the injected clock;
* after ``max_failures`` (3) wrong tokens the connection is told so and closed;
* an unauthenticated connection does not hold a session slot and is closed after
  ``Front.auth_deadline`` (see :mod:`pybrid.proxy.clients.front`).

A guesser on the same address (NAT, a lab gateway, the same host) only slows itself down: a
legitimate user's connection is never refused because of someone else's failures.
"""

from __future__ import annotations

import hmac
import math
import string

import attrs

from pybrid.proto import pb

REQUIRED = "Authentication required"
FAILED = "Authentication failed"
#: Fewest bits of entropy a token may carry (``--auth`` refuses to start with less).
MIN_TOKEN_BITS = 128
_ALPHABETS = (string.digits, string.hexdigits.lower(), string.hexdigits.upper(),
              string.digits + string.ascii_lowercase, string.digits + string.ascii_uppercase,
              string.ascii_letters + string.digits,
              string.ascii_letters + string.digits + "-_", string.ascii_letters + string.digits
              + "+/=", string.printable.strip())


def token_bits(token: str) -> float:
    """At most the entropy of ``token`` in bits: its length times the bits per character of
    the smallest usual alphabet holding all its characters (digits, hex, lower or upper case
    and digits, letters and digits, base64, printable ASCII; anything else 8 bits a byte)."""
    chars = set(token)
    for alphabet in _ALPHABETS:
        if chars <= set(alphabet):
            return len(token) * math.log2(len(set(alphabet)))
    return 8.0 * len(token.encode("utf-8"))


def weak_token_text(env: str, token: str) -> str | None:
    """Why ``token`` (from the environment variable ``env``) is too weak, or None."""
    bits = token_bits(token)
    if bits >= MIN_TOKEN_BITS:
        return None
    return (f"the token in {env} carries at most {bits:.0f} bits ({len(token)} characters); "
            f"--auth needs at least {MIN_TOKEN_BITS} bits, e.g. 43 characters of "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`")


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


@attrs.define(eq=False)
class AuthThrottle:
    """Per-connection delay and limit for wrong tokens; see the module note."""

    #: Seconds a connection is not read after its first wrong token (doubling after each).
    delay: float = 0.5
    #: Wrong tokens after which the connection is closed.
    max_failures: int = 3
    #: Connections closed for too many wrong tokens.
    closed: int = 0

    def pause_after(self, failures: int) -> float:
        """Seconds not to read a connection after its ``failures``-th wrong token."""
        return self.delay * 2.0 ** min(max(failures - 1, 0), 16)

    def exhausted(self, failures: int) -> bool:
        return failures >= self.max_failures


def too_many_text(failures: int) -> str:
    """What a connection is told before it is closed for wrong tokens."""
    return f"{FAILED} {failures} times; closing the connection"
