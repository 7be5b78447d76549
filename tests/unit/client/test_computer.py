"""Computer on a StringTransport and a clock reactor: the UDP/TCP fallback decision, the run
sequence on the wire, cancellation, lane filtering and operations' replies."""

import numpy as np
from support.client_fakes import data, state, wired_computer
from twisted.internet import defer
from twisted.python.failure import Failure

from pybrid.client.datalane import MAX_PACKET
from pybrid.client.errors import ConnectionLost, RequestFailed
from pybrid.proto import pb
from pybrid.wire import messages

A = "00-00-00-00-00-0A"


def results(d):
    out = []
    d.addBoth(out.append)
    return out


def test_udp_accepted():
    w = wired_computer()
    got = results(w.computer.negotiate_data_lane())
    (req,) = w.sent()
    (port,) = w.reactor.udp_ports
    assert (port.interface, port.max_packet_size) == ("127.0.0.1", MAX_PACKET)
    assert req.message_v1.udp_data_streaming_command.port == port.port
    w.reply(req, "success_message")
    assert got == ["udp"] and w.computer.data_lane == "udp"
    assert port.listening and w.computer.udp_lane is port.protocol
    # asked once only
    assert results(w.computer.negotiate_data_lane()) == ["udp"]
    assert w.sent() == []


def test_dedicated_refusal_falls_back_to_tcp_and_closes_the_udp_port():
    w = wired_computer()
    got = results(w.computer.negotiate_data_lane())
    (req,) = w.sent()
    w.reply(req, "udp_data_streaming_refused_response",
            pb.UdpDataStreamingRefusedResponse(reason="no UDP here"))
    assert got == ["tcp"]
    assert w.computer.udp_refusal == "no UDP here"
    assert not w.reactor.udp_ports[0].listening


def test_error_message_falls_back_to_tcp():
    w = wired_computer()
    got = results(w.computer.negotiate_data_lane())
    (req,) = w.sent()
    w.reply(req, "error_message", pb.ErrorMessage(description="UDP streaming is not supported"))
    assert got == ["tcp"]
    assert not w.reactor.udp_ports[0].listening


def test_busy_udp_request_is_retried_before_deciding():
    w = wired_computer(busy_retry=0.2)
    got = results(w.computer.negotiate_data_lane())
    (req,) = w.sent()
    w.reply(req, "busy_response")
    w.reactor.advance(0.2)
    (again,) = w.sent()
    assert messages.kind_of(again) == "udp_data_streaming_command"
    w.reply(again, "success_message")
    assert got == ["udp"]


def test_udp_only_mode_fails_on_refusal():
    w = wired_computer(data_lane="udp")
    got = results(w.computer.negotiate_data_lane())
    (req,) = w.sent()
    w.reply(req, "udp_data_streaming_refused_response")
    assert got[0].check(RequestFailed)


def test_tcp_mode_never_asks_for_udp():
    w = wired_computer(data_lane="tcp")
    assert results(w.computer.negotiate_data_lane()) == ["tcp"]
    assert w.sent() == [] and w.reactor.udp_ports == []


def test_concurrent_callers_share_one_negotiation():
    w = wired_computer()
    a, b = results(w.computer.negotiate_data_lane()), results(w.computer.negotiate_data_lane())
    (req,) = w.sent()
    w.reply(req, "success_message")
    assert a == b == ["udp"]


def _start_run(w, **kwargs):
    d = w.computer.run(0.02, channels=2, sample_rate=10_000, **kwargs)
    w.last_run = d
    got = results(d)
    (udp_req,) = w.sent()
    w.reply(udp_req, "udp_data_streaming_refused_response")
    (start,) = w.sent()
    assert messages.kind_of(start) == "start_run_command"
    return got, start, start.message_v1.start_run_command.run.id


def test_a_whole_run_over_tcp():
    w = wired_computer()
    got, start, run_id = _start_run(w)
    cmd = start.message_v1.start_run_command
    assert cmd.sync_config.master.path == A
    # states may overtake the start_run reply
    w.feed(state(run_id, pb.NEW, pb.TAKE_OFF))
    w.reply(start, "start_run_response")
    values = np.arange(400, dtype=np.float32).reshape(200, 2)
    w.feed(data(run_id, 1, values[100:], A))
    w.feed(data(run_id, 0, values[:100], A))
    w.feed(data(run_id, 0, values[-1:], A, final=True))
    for old, new in [(pb.TAKE_OFF, pb.IC), (pb.IC, pb.OP), (pb.OP, pb.OP_END),
                     (pb.OP_END, pb.DONE)]:
        w.feed(state(run_id, old, new))
    (ov,) = w.sent()
    assert messages.kind_of(ov) == "get_overload_status_command"
    w.reply(ov, "get_overload_status_response",
            pb.GetOverloadStatusResponse(status=pb.OverloadStatus(global_overload=True)))
    result = got[0]
    np.testing.assert_array_equal(result.samples, values)
    assert result.data_lane == "tcp" and result.overload.global_overload
    assert result.complete
    assert w.computer._runs == {}


def test_cancelling_a_run_sends_stop_run_and_ignores_its_later_data():
    w = wired_computer()
    got, start, run_id = _start_run(w)
    w.reply(start, "start_run_response")
    w.feed(state(run_id, pb.NEW, pb.TAKE_OFF))
    assert got == []
    w.last_run.cancel()
    assert got[0].check(defer.CancelledError)
    (stop,) = w.sent()
    assert messages.kind_of(stop) == "stop_run_command"
    w.feed(data(run_id, 0, np.zeros((100, 2)), A))
    assert w.computer.stale_notifications == 1
    assert w.reactor.getDelayedCalls() == []


def test_cancel_before_the_start_reply_also_stops():
    w = wired_computer()
    d = w.computer.run(0.02, channels=2)
    (udp_req,) = w.sent()
    w.reply(udp_req, "udp_data_streaming_refused_response")
    (start,) = w.sent()
    d.addErrback(lambda f: f.trap(defer.CancelledError))
    d.cancel()
    (stop,) = w.sent()
    assert messages.kind_of(stop) == "stop_run_command"
    w.reply(start, "start_run_response")  # late reply: harmless
    assert w.control.tracker.outstanding() == 0


def test_refused_start_fails_the_run():
    w = wired_computer()
    got, start, _run_id = _start_run(w)
    w.reply(start, "error_message", pb.ErrorMessage(description="Server overloaded"))
    assert got[0].check(RequestFailed)
    assert "Server overloaded" in str(got[0].value)
    assert w.sent() == []  # a refused run is not stopped


def test_losing_the_connection_fails_the_run():
    w = wired_computer()
    got, start, _run_id = _start_run(w)
    w.reply(start, "start_run_response")
    w.protocol.connectionLost(Failure(ConnectionLost("gone")))
    assert got[0].check(ConnectionLost)


def test_udp_datagrams_only_from_the_peer_host():
    w = wired_computer()
    got = results(w.computer.run(0.01, channels=2))
    (udp_req,) = w.sent()
    w.reply(udp_req, "success_message")
    (start,) = w.sent()
    run_id = start.message_v1.start_run_command.run.id
    lane = w.reactor.udp_ports[0].protocol
    lane.datagramReceived(data(run_id, 0, np.ones((100, 2))).SerializeToString(),
                          ("10.9.9.9", 5000))
    lane.datagramReceived(b"\xff\xff\xff", ("127.0.0.1", 5000))
    lane.datagramReceived(messages.success().SerializeToString(), ("127.0.0.1", 5000))
    assert (lane.counters.foreign_source, lane.counters.unparseable,
            lane.counters.not_run_data) == (1, 1, 1)
    values = np.full((100, 2), 0.5)
    lane.datagramReceived(data(run_id, 0, values, A).SerializeToString(), ("127.0.0.1", 5000))
    lane.datagramReceived(data(run_id, 0, values[:1], A, final=True).SerializeToString(),
                          ("127.0.0.1", 5000))
    lane.datagramReceived(state(run_id, pb.OP_END, pb.DONE).SerializeToString(),
                          ("127.0.0.1", 5000))
    w.reply(start, "start_run_response")
    (ov,) = w.sent()
    w.reply(ov, "get_overload_status_response")
    np.testing.assert_array_equal(got[0].samples, values)
    assert got[0].data_lane == "udp"


def test_operations_check_their_reply_kind():
    w = wired_computer()
    got = results(w.computer.extract())
    (req,) = w.sent()
    assert req.message_v1.extract_command.recursive
    w.reply(req, "success_message")
    assert got[0].check(RequestFailed) and "unexpected reply" in str(got[0].value)
    ok = results(w.computer.reset())
    (req,) = w.sent()
    assert req.message_v1.reset_command.keep_calibration
    w.reply(req, "reset_response")
    assert not isinstance(ok[0], Failure)


def test_calibrate_sends_the_calibration_config():
    w = wired_computer()
    got = results(w.computer.calibrate(leader="/" + A, math=True, gain=False))
    (req,) = w.sent()
    cfg = req.message_v1.calibration_command.config
    assert (cfg.math, cfg.gain, cfg.offset) == (pb.CalibrationConfig.Enabled,
                                                pb.CalibrationConfig.Disabled,
                                                pb.CalibrationConfig.Enabled)
    assert cfg.leader.path == "/" + A
    w.reply(req, "calibration_response")
    assert got == [None]


def test_configure_with_a_bad_apb_path_fails_without_sending():
    w = wired_computer()
    got = results(w.computer.configure("/nonexistent/circuit.apb"))
    assert got[0].check(Exception) and "circuit.apb" in str(got[0].value)
    assert w.sent() == []


def test_a_busy_start_waits_beyond_the_run_deadline_until_busy_timeout():
    w = wired_computer(data_lane="tcp", busy_retry=0.2, busy_timeout=60.0)
    got = results(w.computer.run(0.01, channels=0, timeout=2.0))
    for _ in range(100):  # 20 s of busy answers: longer than the run's own deadline
        (start,) = w.sent()
        w.reply(start, "busy_response")
        w.reactor.advance(0.2)
    assert got == []
    (start,) = w.sent()
    run_id = start.message_v1.start_run_command.run.id
    w.reply(start, "start_run_response")
    w.reactor.advance(1.9)
    assert got == []
    w.feed(state(run_id, pb.OP_END, pb.DONE))
    (ov,) = w.sent()
    w.reply(ov, "get_overload_status_response")
    assert got[0].data_lane == "tcp" and got[0].elapsed > 20


def test_the_run_deadline_counts_from_the_accepted_start():
    from pybrid.client.errors import RunTimeout

    w = wired_computer(data_lane="tcp")
    got = results(w.computer.run(0.01, channels=0, timeout=2.0))
    (start,) = w.sent()
    w.reactor.advance(1.5)
    w.reply(start, "start_run_response")
    w.reactor.advance(1.9)
    assert got == []
    w.reactor.advance(0.2)
    assert got[0].check(RunTimeout)
    (stop,) = w.sent()
    assert messages.kind_of(stop) == "stop_run_command"
