"""Bearer-token authentication of proxy clients (``--auth``; secret in PYBRID_AUTHENTICATION)."""

from __future__ import annotations

import hmac

import attrs

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
