"""Monitor datagram → decoded event: a chunk of samples, a run state change, or other.

``decode_datagram`` is the one place that turns bytes from a monitor group into Python
objects; it raises :class:`~pybrid.wire.monitor_header.MalformedDatagram` (with a reason code) for
anything a tap would not have sent, so a listener can count and skip it.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import numpy as np
from google.protobuf.message import DecodeError

from pybrid import samples as _samples
from pybrid.proto import pb
from pybrid.wire.messages import DATA_KINDS, FINAL_STATES, kind_of
from pybrid.wire.monitor_header import (
    FromLane,
    MalformedDatagram,
    MonitorHeader,
    split_datagram,
)

#: Run states after which a carrier's run is over.


class _FromCarrier(FromLane):
    """An event of one carrier: its lane and its entity path."""

    carrier_path: str

    @property
    def carrier(self) -> tuple[int, str]:
        """The key listeners count per: ``(lane, carrier_path)``."""
        return (self.lane, self.carrier_path)


@attrs.frozen(eq=False)
class MonitorChunk(_FromCarrier):
    """One ``run_data_message`` (or, with ``end=True``, ``run_data_end_message``) seen on a tap.

    ``samples`` is float64 ``(samples, channels)`` with gain and offset applied;
    ``probes[i]`` is the probe of column ``i``.  ``carrier_path`` is the message's entity path.
    """

    lane: int
    carrier_path: str
    run_id: str
    chunk: int
    samples: np.ndarray
    probes: tuple[int, ...]
    end: bool
    tap_sequence: int
    timestamp_ns: int
    flags: int = 0
    raw_dtype: str = "<f8"  # numpy dtype of the samples on the wire


    @property
    def sample_count(self) -> int:
        return int(self.samples.shape[0])


@attrs.frozen
class MonitorStateChange(_FromCarrier):
    """One ``run_state_change_message`` seen on a tap.

    ``carrier_path`` is the message's entity path, or "" when the backend sent none (then the
    lane index alone names the carrier).
    """

    lane: int
    carrier_path: str
    run_id: str
    old: int
    new: int
    reason: str
    tap_sequence: int
    timestamp_ns: int
    flags: int = 0


    @property
    def old_name(self) -> str:
        return _state_name(self.old)

    @property
    def new_name(self) -> str:
        return _state_name(self.new)

    @property
    def finished(self) -> bool:
        """True for a transition into DONE or ERROR."""
        return self.new in FINAL_STATES


@attrs.frozen
class MonitorOther(FromLane):
    """Any other well-formed Envelope on a tap (``kind`` as :func:`kind_of` names it)."""

    lane: int
    kind: str
    tap_sequence: int
    timestamp_ns: int
    flags: int = 0


@attrs.frozen
class MonitorRun:
    """A run record (``FLAG_RUN_RECORD``): a run started (``event`` "run-start") or ended
    ("run-end"); ``record`` is the whole JSON object (``run_id`` the client's id,
    ``proxy_run_id``, ``carriers``, ``sample_rate`` … see :mod:`pybrid.wire.monitor_header`)."""

    event: str
    run_id: str
    record: dict[str, Any]
    tap_sequence: int


def decode_run_record(header: MonitorHeader, payload: bytes) -> MonitorRun:
    """The run record after a ``FLAG_RUN_RECORD`` header; raises :class:`MalformedDatagram`."""
    try:
        record = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise MalformedDatagram("record", f"a run record that is not JSON: {e}") from None
    if not isinstance(record, dict) or not isinstance(record.get("run_id"), str):
        raise MalformedDatagram("record", "a run record without a run_id")
    return MonitorRun(str(record.get("event", "")), record["run_id"], record, header.sequence)


MonitorEvent = MonitorChunk | MonitorStateChange | MonitorOther


def _state_name(value: int) -> str:
    try:
        return pb.RunState.Name(value)
    except ValueError:
        return str(value)


def decode_datagram(data: bytes) -> tuple[MonitorHeader, MonitorEvent]:
    """Decode one monitor datagram; raises :class:`MalformedDatagram`."""
    header, payload = split_datagram(data)
    return header, decode_envelope(header, parse_envelope(payload))


def parse_envelope(payload: bytes) -> pb.Envelope:
    """Parse the Envelope after a header; raises :class:`MalformedDatagram`."""
    if not payload:
        raise MalformedDatagram("empty", "no Envelope after the header")
    envelope = pb.Envelope()
    try:
        envelope.ParseFromString(payload)
    except DecodeError as e:
        raise MalformedDatagram("envelope", f"protobuf cannot parse the Envelope: {e}") from None
    return envelope


def decode_envelope(header: MonitorHeader, envelope: pb.Envelope) -> MonitorEvent:
    """The event an Envelope describes; raises :class:`MalformedDatagram` for bad samples."""
    kind = kind_of(envelope)
    msg = envelope.message_v1
    if kind in DATA_KINDS:
        data = getattr(msg, kind)
        try:
            values = _samples.decode(data.data)
        except _samples.SampleFormatError as e:
            raise MalformedDatagram("samples", str(e)) from None
        columns = values.shape[1]
        return MonitorChunk(
            lane=header.lane,
            carrier_path=data.entity.path,
            run_id=data.run.id,
            chunk=data.run.chunk,
            samples=values,
            probes=tuple(c.probe for c in data.data.channels[:columns]),
            end=kind == "run_data_end_message",
            tap_sequence=header.sequence,
            timestamp_ns=header.timestamp_ns,
            flags=header.flags,
            raw_dtype=_samples.numpy_dtype(data.data.type).str,
        )
    if kind == "run_state_change_message":
        change = msg.run_state_change_message
        return MonitorStateChange(
            lane=header.lane,
            carrier_path=change.entity.path if change.HasField("entity") else "",
            run_id=change.run.id,
            old=change.old,
            new=change.new_,
            reason=change.reason,
            tap_sequence=header.sequence,
            timestamp_ns=header.timestamp_ns,
            flags=header.flags,
        )
    return MonitorOther(
        header.lane, kind, header.sequence, header.timestamp_ns, header.flags
    )
