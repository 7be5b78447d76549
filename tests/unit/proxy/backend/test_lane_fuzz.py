"""Fuzzing the proxy's backend lane in memory: a hostile device (issue 8, part 1).

Each Hypothesis example is one :func:`support.fuzz_cases.backend_case` (random frames on the
control connection and random datagrams, from the backend's address and from another one,
while a client's run is in progress) or :func:`support.fuzz_cases.handshake_case` (random
answers to the start-up handshake).  Every input must land in exactly one counter, the client
must get exactly its own run's messages, a broken stream must cost the lane its connection
(and the client a clear "Cluster degraded"), and afterwards a full run must work.
"""

from __future__ import annotations

import gc
import random
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fuzz_backend_cases import backend_case, handshake_case
from support.fuzz_cases import Outcome
from support.fuzz_proxy import (
    LogCapture,
    claim,
    full_run,
    proxy,
    run_traffic,
    send_run_traffic,
    start_run_command,
)
from support.proxy_fakes import FakeReactor, device_bytes

from pybrid.wire import messages
from pybrid.wire.framing import MAX_DATAGRAM
from pybrid.wire.layout import layout_of


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def test_hostile_backends_are_counted_isolated_and_survived():
    total = Outcome()
    with LogCapture() as log:

        @fuzz(400)
        @given(st.integers(0, 2**64 - 1))
        def one(seed: int) -> None:
            total.add(backend_case(random.Random(seed)))

        one()
        gc.collect()
    assert not log.failures, log.describe()
    for name in ("forwarded", "states", "foreign_run", "unexpected_kind", "unparseable",
                 "foreign address", "unsolicited", "lane closed after violation"):
        assert total.results[name] > 0, name
    assert total.results["full runs after"] == 400


def test_hostile_handshakes_are_survived():
    total = Outcome()
    with LogCapture() as log:

        @fuzz(300)
        @given(st.integers(0, 2**64 - 1))
        def one(seed: int) -> None:
            total.add(handshake_case(random.Random(seed)))

        one()
        gc.collect()
    assert not log.failures, log.describe()
    assert total.results["lane ready"] > 0 and total.results["lane not ready"] > 0
    assert total.results["full runs after"] == 300


def test_maximum_size_garbage_datagrams_are_counted_and_change_nothing():
    reactor = FakeReactor()
    service, backends = proxy(reactor)
    lane = service.lanes[0]
    client = claim(service)
    run_id = str(uuid.uuid4())
    client.request("start_run_command", start_run_command(run_id), id="s")
    backends[0].pump()
    client.frames()
    rnd = random.Random(8)
    assert lane.intake is not None
    for _ in range(50):
        lane.intake.datagramReceived(rnd.randbytes(MAX_DATAGRAM), (lane.intake.peer_host, 5))
    counters = service.router.counters
    assert counters.unparseable + counters.unexpected_kind + counters.foreign_run == 50
    assert client.frames() == []
    traffic = run_traffic(run_id, lane.carriers, 3)
    send_run_traffic(service, 0, traffic)
    got = [e.SerializeToString() for e in client.frames()]
    assert got == [e.SerializeToString() for e in traffic]
    client.proto.connectionLost(None)
    backends[0].pump()
    full_run(service, reactor, backends)


def test_run_traffic_of_an_unknown_run_never_reaches_the_active_client():
    reactor = FakeReactor()
    service, backends = proxy(reactor)
    client = claim(service)
    backends[0].pump()
    client.frames()
    client.request("start_run_command", start_run_command("mine"), id="s")
    backends[0].pump()
    client.frames()
    send_run_traffic(service, 0, run_traffic("not-mine", service.lanes[0].carriers, 4))
    send_run_traffic(service, 0, run_traffic("", service.lanes[0].carriers, 1))
    assert [messages.kind_of(e) for e in client.frames()] == []
    assert service.router.counters.foreign_run == (6 + 4) + (6 + 1)


def test_run_data_damaged_after_its_head_is_not_forwarded():
    """The router's fast path accepts only the layout of datagrams protobuf parsed
    (pybrid.wire.layout): a cut or damaged datagram takes the full parse and is counted
    unparseable, never forwarded."""
    reactor = FakeReactor()
    service, backends = proxy(reactor)
    lane = service.lanes[0]
    client = claim(service)
    run_id = str(uuid.uuid4())
    client.request("start_run_command", start_run_command(run_id), id="s")
    backends[0].pump()
    client.frames()
    good = run_traffic(run_id, lane.carriers, 1)[3].SerializeToString()  # chunk 0
    assert messages.kind_of(run_traffic(run_id, lane.carriers, 1)[3]) == "run_data_message"
    truncated = good[: len(good) - 40]
    assert lane.intake is not None
    lane.intake.datagramReceived(device_bytes(service.router, truncated),
                                 (lane.intake.peer_host, 5))
    assert service.router.counters.unparseable == 1
    assert service.router.counters.forwarded == 0
    assert client.frames() == []
    # the intact datagram passes (and teaches the router its tail); a byte more, or the
    # tail's first tag made invalid, is dropped again
    lane.intake.datagramReceived(device_bytes(service.router, good), (lane.intake.peer_host, 5))
    lay = layout_of(good)
    assert lay is not None and lay.tail
    bad_tail = bytearray(good)
    bad_tail[len(good) - len(lay.tail)] = 0x07  # the tail's first tag: no wire type 7
    for damaged in (good + b"\x00", bytes(bad_tail), good[:-1]):
        lane.intake.datagramReceived(device_bytes(service.router, damaged),
                                     (lane.intake.peer_host, 5))
    assert service.router.counters.forwarded == 1
    assert service.router.counters.unparseable == 4
    assert [e.SerializeToString() for e in client.frames()] == [good]
