"""Chunk accounting of the counting client: a bounded header walk and per-carrier bitmaps.

:func:`fast_header` reads ``(run id, Run.chunk, carrier path)`` straight from the bytes of a
``run_data_message`` Envelope laid out as protobuf serializers write it (fields in number
order) — ≈ 1.5 µs instead of ≈ 7 µs for a protobuf parse plus attribute access; anything else
returns None and is parsed with protobuf by the caller.  :class:`RunCount` keeps, per carrier,
a bitmap of the chunks seen: counted, distinct, duplicate, out-of-order and missing follow.
"""

from __future__ import annotations


def fast_header(b: bytearray, p: int, end: int) -> tuple[bytes, int, bytes] | None:
    """``(run_id, chunk, carrier_path)`` of a ``run_data_message`` Envelope in ``b[p:end]``
    laid out as protobuf serializers write it (fields in number order), else None."""
    try:
        if b[p] != 0xAA or b[p + 1] != 0x06:  # Envelope.message_v1 (101), length-delimited
            return None
        p += 2
        x = b[p]
        p += 1
        while x >= 0x80:
            x = b[p]
            p += 1
        if b[p] == 0x0A:  # MessageV1.id
            n = b[p + 1]
            if n >= 0x80:
                return None
            p += 2 + n
        if b[p] != 0x92 or b[p + 1] != 0x13:  # MessageV1.run_data_message (306)
            return None
        p += 2
        x = b[p]
        p += 1
        while x >= 0x80:
            x = b[p]
            p += 1
        if b[p] != 0x0A:  # RunDataMessage.run
            return None
        rend = p + 2 + b[p + 1]
        p += 2
        if b[p] != 0x0A:  # Run.id
            return None
        n = b[p + 1]
        rid = bytes(b[p + 2 : p + 2 + n])
        p += 2 + n
        chunk = 0
        if p < rend:
            if b[p] != 0x10:  # Run.chunk
                return None
            x = b[p + 1]
            p += 2
            chunk = x & 0x7F
            shift = 7
            while x >= 0x80:
                x = b[p]
                p += 1
                chunk |= (x & 0x7F) << shift
                shift += 7
        if p != rend or b[p] != 0x12 or b[p + 2] != 0x0A:  # RunDataMessage.entity.path
            return None
        n = b[p + 3]
        if p + 4 + n > end:
            return None
        return rid, chunk, bytes(b[p + 4 : p + 4 + n])
    except IndexError:
        return None


class CarrierCount:
    """Chunks of one carrier in the current run."""

    __slots__ = ("counted", "distinct", "duplicates", "ends", "next", "out_of_order", "seen")

    def __init__(self, expected: int) -> None:
        self.seen = bytearray(expected)
        self.counted = self.distinct = self.duplicates = self.out_of_order = self.ends = 0
        self.next = 0

    def add(self, chunk: int) -> None:
        self.counted += 1
        if chunk != self.next:
            self.out_of_order += 1
        self.next = chunk + 1
        seen = self.seen
        if chunk < len(seen) and not seen[chunk]:
            seen[chunk] = 1
            self.distinct += 1
        else:
            self.duplicates += 1


class RunCount:
    """What arrived for one run."""

    def __init__(self, run_id: str, carriers: list[str], expected: int) -> None:
        self.run_id = run_id.encode()
        self.expected = expected
        self.carriers = {c.encode(): CarrierCount(expected) for c in carriers}
        self.final: dict[str, str] = {}
        self.state_times: dict[str, dict[str, float]] = {c: {} for c in carriers}
        self.foreign = 0
        self.unknown_carrier = 0
        self.slow_parses = 0
        self.first_data: float | None = None
        self.last_data: float | None = None

    def data(self, rid: bytes, chunk: int, path: bytes) -> None:
        if rid != self.run_id:
            self.foreign += 1
            return
        counter = self.carriers.get(path)
        if counter is None:
            self.unknown_carrier += 1
            return
        counter.add(chunk)
