"""Small constructors and inspectors for Envelopes, so no module hand-builds them twice."""

from __future__ import annotations

import uuid
from typing import Any

from google.protobuf.message import DecodeError, Message

from pybrid.proto import pb

#: The v1 kinds that carry run traffic (devices to clients only).
RUN_KINDS = frozenset(("run_data_message", "run_data_end_message", "run_state_change_message"))
#: The run states after which a run's carrier sends nothing more.
FINAL_STATES = frozenset((pb.DONE, pb.ERROR))
#: The kinds of an entity tree's items that describe the device (not its configuration).
SPECIFICATION_KINDS = frozenset(("entity_specification", "wiring_specification"))
#: The v1 kinds that carry samples.
DATA_KINDS = frozenset(("run_data_message", "run_data_end_message"))


def data_message(payload: bytes) -> Any:
    """The ``run_data(_end)_message`` of a serialized Envelope, or None (not one, or garbage)."""
    env = pb.Envelope()
    try:
        env.ParseFromString(payload)
    except DecodeError:
        return None
    kind = env.message_v1.WhichOneof("kind")
    return getattr(env.message_v1, kind) if kind in DATA_KINDS else None


def new_id() -> str:
    """A fresh request id: a UUID4 string, as the reference uses."""
    return str(uuid.uuid4())


def v1(kind: str, body: Message | None = None, *, id: str | None = None) -> pb.Envelope:
    """Build ``Envelope{message_v1{id, <kind>: body}}``; an empty body when ``body`` is None."""
    env = pb.Envelope()
    msg = env.message_v1
    if id is not None:
        msg.id = id
    field = getattr(msg, kind)
    if body is None:
        field.SetInParent()
    else:
        field.CopyFrom(body)
    return env


def request(kind: str, body: Message | None = None) -> tuple[str, pb.Envelope]:
    """A new request with a fresh id: ``(id, envelope)``."""
    rid = new_id()
    return rid, v1(kind, body, id=rid)


def error(description: str, *, id: str | None = None) -> pb.Envelope:
    return v1("error_message", pb.ErrorMessage(description=description), id=id)


def success(*, id: str | None = None) -> pb.Envelope:
    return v1("success_message", id=id)


def busy(*, id: str | None = None) -> pb.Envelope:
    return v1("busy_response", id=id)


def generic_ping() -> pb.Envelope:
    env = pb.Envelope()
    env.generic.ping_command.SetInParent()
    return env


def generic_pong(micros: int = 0) -> pb.Envelope:
    env = pb.Envelope()
    env.generic.ping_response.micros = micros
    return env


def kind_of(envelope: pb.Envelope) -> str:
    """``'generic.ping_command'``, ``'reset_command'`` …, or ``'unknown'``/``'generic.unknown'``."""
    top = envelope.WhichOneof("kind")
    if top == "message_v1":
        return envelope.message_v1.WhichOneof("kind") or "unknown"
    if top == "generic":
        return "generic." + (envelope.generic.WhichOneof("kind") or "unknown")
    return "unknown"


def request_id(envelope: pb.Envelope) -> str | None:
    msg = envelope.message_v1
    return msg.id if msg.HasField("id") else None


def describe(envelope: pb.Envelope) -> str:
    """An Envelope for a log line: its kind, and an error message's description."""
    kind = kind_of(envelope)
    if kind == "error_message":
        return f"error_message {envelope.message_v1.error_message.description!r}"
    return kind
