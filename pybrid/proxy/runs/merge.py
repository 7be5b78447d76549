"""Fan-out planning and reply merging for requests that span several backends.

Design note
-----------
The reference client sends config, reset, calibration, start run and overload status once
per connection; the proxy fans them out and answers once (docs/protocol.md#reference-client,
#reference-proxy).

* :func:`split_config` gives each backend the config items under its carriers' paths
  (``/<MAC>`` prefix, whole segments).  An item no backend owns is an error ("no backend found
  for entity path …") when there are several backends; with one backend it simply goes there.
  Specification items without an entity (``entity_specification``, ``wiring_specification``:
  a ``.apb`` saved from a full extract holds them) describe the cluster and configure nothing:
  they are dropped, with a debug log, instead of failing the whole config.
* :func:`target_lanes` sends a request naming an ``entity`` (reset, extract) to the backend
  owning that path, and everything else to all backends.
* :func:`merge_replies` turns the replies into one: a single reply passes through unchanged
  (unknown fields and all); otherwise the first error wins (prefixed with its backend), then a
  busy reply, and replies of the same kind are combined where the kind has something to combine
  (overload status: OR of ``global_overload``, all elements; extract: all items).
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.logger import Logger

from pybrid.proto import pb
from pybrid.wire import messages
from pybrid.wire.messages import SPECIFICATION_KINDS
from pybrid.wire.paths import carrier_of

_log = Logger(namespace="pybrid.proxy.runs.merge")


def is_description(item: pb.Item) -> bool:
    """A specification item naming no entity: nothing to configure."""
    return item.WhichOneof("kind") in SPECIFICATION_KINDS and not item.entity.path.strip("/")


class NoBackend(Exception):
    """A request names an entity path no backend owns."""


def owner_of(path: str, owners: Sequence[tuple[str, ...]]) -> int | None:
    """Index of the backend whose carriers include the carrier of ``path``."""
    carrier = carrier_of(path)
    for index, carriers in enumerate(owners):
        if carrier in carriers:
            return index
    return None


def split_config(env: pb.Envelope, owners: Sequence[tuple[str, ...]]) -> dict[int, pb.Envelope]:
    """Per backend index, a copy of the config request holding that backend's items."""
    if len(owners) == 1:
        return {0: env}
    command = env.message_v1.config_command
    parts: dict[int, list[pb.Item]] = {}
    dropped = 0
    for item in command.module.items:
        if is_description(item):
            dropped += 1
            continue
        index = owner_of(item.entity.path, owners)
        if index is None:
            raise NoBackend(f"no backend found for entity path {item.entity.path!r}")
        parts.setdefault(index, []).append(item)
    if dropped:
        _log.debug("config: {n} specification item(s) without entity dropped (they describe "
                   "the cluster, they configure nothing)", n=dropped)
    if not parts:  # nothing to split: every backend gets the (empty) command
        parts = {i: [] for i in range(len(owners))}
    out: dict[int, pb.Envelope] = {}
    for index, items in parts.items():
        copy = pb.Envelope()
        copy.CopyFrom(env)
        module = copy.message_v1.config_command.module
        del module.items[:]
        module.items.extend(items)
        out[index] = copy
    return out


def target_lanes(env: pb.Envelope, kind: str, owners: Sequence[tuple[str, ...]]) -> list[int]:
    """Backend indices a request goes to: the owner of its ``entity``, or all."""
    everyone = list(range(len(owners)))
    if kind in ("reset_command", "extract_command"):
        body = getattr(env.message_v1, kind)
        if body.HasField("entity") and body.entity.path.strip("/"):
            index = owner_of(body.entity.path, owners)
            if index is None:
                if len(owners) == 1:
                    return everyone
                raise NoBackend(f"no backend found for entity path {body.entity.path!r}")
            return [index]
    return everyone


def copies(env: pb.Envelope, n: int) -> list[pb.Envelope]:
    """``n`` envelopes to send: the original first, then copies."""
    out = [env]
    for _ in range(n - 1):
        copy = pb.Envelope()
        copy.CopyFrom(env)
        out.append(copy)
    return out


def merge_replies(replies: Sequence[tuple[str, pb.Envelope]]) -> pb.Envelope:
    """One reply from ``(backend name, reply)`` pairs; see the module note."""
    if len(replies) == 1:
        return replies[0][1]
    for name, reply in replies:
        if messages.kind_of(reply) == "error_message":
            merged = pb.Envelope()
            merged.CopyFrom(reply)
            error = merged.message_v1.error_message
            if not error.description.startswith(f"backend {name}"):
                error.description = f"backend {name}: {error.description}"
            return merged
    for _name, reply in replies:
        if messages.kind_of(reply) == "busy_response":
            return reply
    kinds = {messages.kind_of(r) for _, r in replies}
    first = replies[0][1]
    if len(kinds) != 1:
        return first
    kind = kinds.pop()
    if kind == "get_overload_status_response":
        merged = messages.v1(kind)
        status = merged.message_v1.get_overload_status_response.status
        for _, reply in replies:
            part = reply.message_v1.get_overload_status_response.status
            status.global_overload = status.global_overload or part.global_overload
            status.elements.extend(part.elements)
        return merged
    if kind == "extract_response":
        merged = messages.v1(kind)
        items = merged.message_v1.extract_response.module.items
        for _, reply in replies:
            items.extend(reply.message_v1.extract_response.module.items)
        return merged
    return first
