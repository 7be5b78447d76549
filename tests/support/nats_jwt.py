"""NATS decentralized auth for the tests, made with ``nkeys`` alone: an operator, a system
account and an account with JetStream, their JWTs, a user's credentials file and the server
config (``operator`` + ``resolver: MEMORY`` + ``resolver_preload``).

A NATS JWT is ``base64url(header).base64url(claims).base64url(signature)``, the signature
ed25519 over the first two parts by the issuer's nkey (the operator signs accounts, an
account signs its users); base64url without padding."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import time
import uuid
from typing import Any

import attrs
import nkeys

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_UNLIMITED = {"subs": -1, "data": -1, "payload": -1}
_ACCOUNT_LIMITS = {**_UNLIMITED, "imports": -1, "exports": -1, "wildcards": True, "conn": -1,
                   "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1,
                   "consumer": -1}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@attrs.frozen
class Key:
    seed: bytes
    public: str

    @classmethod
    def new(cls, prefix: int) -> Key:
        seed = nkeys.encode_seed(os.urandom(32), prefix)
        return cls(seed, nkeys.from_seed(bytearray(seed)).public_key.decode())

    def sign(self, data: bytes) -> bytes:
        return bytes(nkeys.from_seed(bytearray(self.seed)).sign(data))


def jwt(issuer: Key, subject: str, name: str, nats: dict[str, Any]) -> str:
    claims = {"jti": uuid.uuid4().hex.upper(), "iat": int(time.time()), "iss": issuer.public,
              "name": name, "sub": subject, "nats": dict(nats, version=2)}
    body = _b64(json.dumps(_HEADER).encode()) + "." + _b64(json.dumps(claims).encode())
    return body + "." + _b64(issuer.sign(body.encode()))


@attrs.frozen
class Operator:
    """An operator, its system account and one JetStream account ``app``."""

    operator: Key
    system: Key
    app: Key

    @classmethod
    def new(cls) -> Operator:
        return cls(Key.new(nkeys.PREFIX_BYTE_OPERATOR), Key.new(nkeys.PREFIX_BYTE_ACCOUNT),
                   Key.new(nkeys.PREFIX_BYTE_ACCOUNT))

    def server_conf(self, path: pathlib.Path) -> pathlib.Path:
        op = self.operator
        op_jwt = jwt(op, op.public, "test-operator", {"type": "operator",
                                                       "system_account": self.system.public})
        sys_jwt = jwt(op, self.system.public, "SYS", {"type": "account",
                                                       "limits": dict(_UNLIMITED, conn=-1)})
        app_jwt = jwt(op, self.app.public, "APP", {"type": "account",
                                                    "limits": _ACCOUNT_LIMITS})
        path.write_text(
            f"operator: {op_jwt}\nsystem_account: {self.system.public}\n"
            f"resolver: MEMORY\nresolver_preload: {{\n  {self.system.public}: {sys_jwt}\n"
            f"  {self.app.public}: {app_jwt}\n}}\n")
        return path

    def user_creds(self, path: pathlib.Path, name: str = "exporter",
                   account: Key | None = None) -> pathlib.Path:
        """A credentials file of a new user of ``account`` (default: ``app``)."""
        user = Key.new(nkeys.PREFIX_BYTE_USER)
        token = jwt(account or self.app, user.public, name,
                    {"type": "user", "pub": {}, "sub": {}, **_UNLIMITED})
        path.write_text(
            f"-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n"
            f"------END USER NKEY SEED------\n")
        return path
