"""MonitorListener's decoding, counting and waiting, fed datagrams directly on a Clock."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from support import monitor_sim as sim
from twisted.internet import defer, error, task

from pybrid.monitor.decode import MonitorChunk, MonitorStateChange, decode_datagram
from pybrid.monitor.listener import ListenerSetupError, ListenerStopped, MonitorListener
from pybrid.monitor.stats import advance
from pybrid.proto import pb
from pybrid.wire.monitor_header import MalformedDatagram, encode_datagram, encode_header

TAP = ("127.0.0.1", 40000)
PATH = "/00-00-00-00-00-01"


class Feeder:
    """Wraps envelopes in monitor headers with a running tap sequence, like a tap would."""

    def __init__(self, listener: MonitorListener, sender: tuple[str, int] = TAP) -> None:
        self.listener = listener
        self.sender = sender
        self.sequence = 0

    def send(self, envelope: bytes, carrier: int = 0, skip: int = 0) -> None:
        self.sequence += skip
        self.listener.datagram(encode_datagram(envelope, carrier, self.sequence, 5), self.sender)
        self.sequence += 1


def make(**kw: Any) -> tuple[MonitorListener, list[MonitorChunk], list[MonitorStateChange]]:
    chunks: list[MonitorChunk] = []
    states: list[MonitorStateChange] = []
    listener = MonitorListener(task.Clock(), "239.255.0.1", 5007, on_chunk=chunks.append,
                               on_state=states.append, **kw)
    return listener, chunks, states


def test_a_run_is_decoded_into_chunks_and_states() -> None:
    listener, chunks, states = make()
    feeder = Feeder(listener)
    for envelope in sim.simulated_run("run-1", PATH, carrier=1, chunks=5):
        feeder.send(envelope, carrier=1)
    data = [c for c in chunks if not c.end]
    assert [c.chunk for c in data] == [0, 1, 2, 3, 4]
    assert {(c.lane, c.carrier_path, c.run_id) for c in chunks} == {(1, PATH, "run-1")}
    assert {c.carrier_index for c in chunks} == {1}  # the old name of lane still reads it
    assert {(s.lane, s.carrier_index) for s in states} == {(1, 1)}
    np.testing.assert_array_equal(np.concatenate([c.samples for c in data]),
                                  sim.expected_samples(1, 5))
    assert data[0].probes == (0, 1) and data[0].samples.dtype == np.float64
    assert chunks[-1].end and chunks[-1].sample_count == 1
    assert [(s.old_name, s.new_name) for s in states] == [
        ("NEW", "TAKE_OFF"), ("TAKE_OFF", "IC"), ("IC", "OP"), ("OP", "OP_END"), ("OP_END", "DONE")
    ]
    assert states[-1].finished and states[0].carrier == (1, "")
    stats = listener.stats
    assert (stats.datagrams, stats.chunks, stats.end_chunks, stats.state_changes) == (11, 5, 1, 5)
    assert (stats.samples, stats.tap_gaps, stats.malformed) == (500, 0, 0)  # final values apart
    assert list(stats.carriers) == [(1, PATH)]  # path-less states merged into the carrier
    carrier = stats.carriers[(1, PATH)]
    assert (carrier.chunks, carrier.samples, carrier.gaps, carrier.run_id) == (5, 500, 0, "run-1")
    assert (carrier.state_changes, carrier.last_state) == (5, "DONE")


def test_gain_is_applied_to_samples() -> None:
    listener, chunks, _ = make()
    raw = np.array([[1.0, 2.0]], dtype=np.float32)
    Feeder(listener).send(sim.data_envelope("r", PATH, 0, raw, gains=[2.0, -1.0]))
    np.testing.assert_array_equal(chunks[0].samples, [[2.0, -2.0]])


def test_chunk_gaps_are_counted_per_carrier_and_run() -> None:
    listener, _, _ = make()
    feeder = Feeder(listener)
    raw = sim.chunk_values(0, 0, rows=1)
    for path, run, chunk in [
        (PATH, "a", 0), ("/other", "a", 0), (PATH, "a", 3),  # chunks 1, 2 lost
        ("/other", "a", 1), (PATH, "a", 2),  # 2 arrives late
        (PATH, "b", 1),  # new run: chunk 0 lost
    ]:
        feeder.send(sim.data_envelope(run, path, chunk, raw))
    main, other = listener.stats.carriers[(0, PATH)], listener.stats.carriers[(0, "/other")]
    assert (main.gaps, main.late, main.chunks) == (3, 1, 4)
    assert (other.gaps, other.late) == (0, 0)
    assert listener.stats.chunk_gaps == 3
    assert listener.stats.tap_gaps == 0


def test_tap_sequence_gaps_are_counted_per_sender() -> None:
    listener, _, _ = make()
    one, two = Feeder(listener, ("127.0.0.1", 1)), Feeder(listener, ("127.0.0.1", 2))
    envelope = sim.state_envelope("r", pb.RunState.NEW, pb.RunState.TAKE_OFF)
    one.send(envelope)
    two.send(envelope)
    one.send(envelope, skip=2)
    two.send(envelope)
    listener.datagram(encode_datagram(envelope, 0, 1, 0), ("127.0.0.1", 1))  # late duplicate
    assert (listener.stats.tap_gaps, listener.stats.tap_late) == (2, 1)


def test_advance() -> None:
    assert advance(None, 7) == (0, 0, 8)
    assert advance(8, 8) == (0, 0, 9)
    assert advance(8, 11) == (3, 0, 12)
    assert advance(12, 9) == (0, 1, 12)


def _truncated() -> bytes:
    envelope = sim.data_envelope("r", PATH, 0, sim.chunk_values(0, 0))
    return encode_datagram(envelope[: len(envelope) // 2], 0, 0, 0)


def _bad_samples() -> bytes:
    daq = pb.DaqData(data=b"\x00" * 7, sample_count=1, channel_stride=2)
    daq.type.float_.bitwidth = 32
    body = pb.RunDataMessage(run=pb.Run(id="r"), data=daq)
    env = pb.Envelope()
    env.message_v1.run_data_message.CopyFrom(body)
    return encode_datagram(env.SerializeToString(), 0, 0, 0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "short"),
        (b"garbage", "short"),
        (b"\xff" * 200, "magic"),
        (b"PBM1\x09" + bytes(40), "version"),
        (encode_header(0, 0, 0), "empty"),
        (_truncated(), "envelope"),
        (encode_datagram(b"\xff\xff\xff", 0, 0, 0), "envelope"),
        (_bad_samples(), "samples"),
    ],
)
def test_malformed_datagrams_are_counted_and_skipped(data: bytes, reason: str) -> None:
    listener, chunks, states = make()
    listener.datagram(data, TAP)
    Feeder(listener).send(sim.state_envelope("r", pb.RunState.NEW, pb.RunState.TAKE_OFF))
    assert listener.stats.malformed_by_reason == {reason: 1}
    assert (listener.stats.datagrams, listener.stats.state_changes, chunks) == (2, 1, [])
    assert [s.new_name for s in states] == ["TAKE_OFF"]
    with pytest.raises(MalformedDatagram):
        decode_datagram(data)


def test_other_envelopes_are_counted() -> None:
    listener, chunks, states = make()
    env = pb.Envelope()
    env.generic.ping_command.SetInParent()
    Feeder(listener).send(env.SerializeToString())
    assert (listener.stats.other, listener.stats.malformed, chunks, states) == (1, 0, [], [])


def test_a_raising_callback_is_counted_not_fatal() -> None:
    def boom(_: object) -> None:
        raise RuntimeError("callback bug")

    listener = MonitorListener(task.Clock(), "239.255.0.1", 5007, on_chunk=boom)
    feeder = Feeder(listener)
    for envelope in sim.simulated_run("r", PATH, 0, 3):
        feeder.send(envelope)
    assert listener.stats.callback_errors == 4
    assert listener.stats.chunks == 3


def test_wait_for_fires_when_enough_chunks_arrived() -> None:
    listener, _, _ = make()
    feeder = Feeder(listener)
    run = sim.simulated_run("r", PATH, 0, 4)
    d = listener.wait_for(3)
    datagrams = listener.wait_for_datagrams(len(run))
    for envelope in run[:6]:  # 3 states, then chunks 0, 1, 2
        assert not d.called
        feeder.send(envelope)
    assert d.called and d.result == 3
    for envelope in run[6:]:
        feeder.send(envelope)
    assert datagrams.called and datagrams.result == len(run)
    assert listener.wait_for(2).result == 4  # already satisfied


def test_waits_time_out_on_the_injected_clock() -> None:
    listener, _, _ = make()
    d = listener.wait_for(1, timeout=2.0)
    listener.reactor.advance(1.9)
    assert not d.called
    listener.reactor.advance(0.2)
    failures: list[Any] = []
    d.addErrback(lambda f: failures.append(f))
    assert failures[0].check(defer.TimeoutError)
    Feeder(listener).send(sim.data_envelope("r", PATH, 0, sim.chunk_values(0, 0)))  # no error


def test_when_run_done_waits_for_every_carrier() -> None:
    listener, _, _ = make()
    feeder = Feeder(listener)
    d = listener.when_run_done("run-x", carriers=2)
    for envelope in sim.simulated_run("run-x", "/a", 0, 2):
        feeder.send(envelope, carrier=0)
    other = listener.when_run_done("run-y")
    assert not d.called
    error_state = sim.state_envelope("run-x", pb.RunState.OP, pb.RunState.ERROR, path="/b")
    feeder.send(error_state, carrier=1)
    finals: list[MonitorStateChange] = d.result  # type: ignore[assignment]
    assert [(s.carrier, s.new_name) for s in finals] == [((0, ""), "DONE"), ((1, "/b"), "ERROR")]
    assert not other.called
    other.cancel()
    assert listener.when_run_done("run-x").called


def test_stop_fails_pending_waits() -> None:
    listener, _, _ = make()
    d = listener.wait_for(10)
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert listener.stop().called
    assert failures[0].check(ListenerStopped)


def test_bad_group_or_port_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a multicast"):
        MonitorListener(task.Clock(), "10.0.0.1", 5007)
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        MonitorListener(task.Clock(), "239.0.0.1", 70000)


class _JoinFailsReactor(task.Clock):
    """listenMulticast returns a port whose joinGroup fails, as for an unknown interface."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped = False

    def listenMulticast(self, port: int, proto: Any, **kw: Any) -> Any:
        reactor = self

        class Host:
            port = 5007

        class Sock:
            def setsockopt(self, *a: Any) -> None:
                pass

            def getsockopt(self, *a: Any) -> int:
                return 1 << 20

        class Port:
            socket = Sock()

            def getHost(self) -> Host:
                return Host()

            def joinGroup(self, group: str, interface: str) -> defer.Deferred[None]:
                return defer.fail(error.MulticastJoinError(group, interface, 19, "No such device"))

            def stopListening(self) -> None:
                reactor.stopped = True

        return Port()


def test_join_failure_closes_the_port_and_reports() -> None:
    reactor = _JoinFailsReactor()
    listener = MonitorListener(reactor, "239.255.0.1", 5007, interface="192.0.2.77")
    failures: list[Any] = []
    listener.start().addErrback(failures.append)
    assert failures[0].check(ListenerSetupError)
    assert "192.0.2.77" in failures[0].getErrorMessage()
    assert reactor.stopped and not listener.listening


def test_a_run_record_that_is_not_json_is_malformed_not_raised() -> None:
    from pybrid.wire.monitor_header import FLAG_RUN_RECORD

    listener, _chunks, _states = make()
    listener.datagram(encode_datagram(b"{not json", 0xFFFF, 0, 5, flags=FLAG_RUN_RECORD),
                      TAP)
    listener.datagram(encode_datagram(b'{"event": "run-start"}', 0xFFFF, 1, 5,
                                      flags=FLAG_RUN_RECORD), TAP)
    assert listener.stats.malformed_by_reason == {"record": 2}
    assert listener.stats.run_records == 0


def test_the_recorder_takes_the_sample_rate_from_the_run_record(tmp_path) -> None:
    import json

    from pybrid.monitor.record import Recorder

    rates = {}
    for name, given in (("record", 0), ("user", 1000)):
        rec = Recorder(str(tmp_path / f"{name}.npz"), task.Clock(), sample_rate=given)
        rec.run("r1", {"sample_rate": 50_000})
        listener = MonitorListener(task.Clock(), "239.255.0.1", 5007, on_chunk=rec.add)
        Feeder(listener).send(sim.data_envelope("r1", "/00-00-00-00-00-01", 0,
                                                np.ones((4, 2), dtype="<f4")))
        [(path, _summary)] = rec.close()
        with np.load(path) as npz:
            rates[name] = json.loads(str(npz["meta"]))["sample_rate"]
    assert rates == {"record": 50_000, "user": 1000}  # what the user said wins
