"""The proxy in front of several in-process simulated devices, on real loopback sockets:
a backend file with locations and wires, an error on one backend, a backend killed mid-run,
duplicate carriers, and a proxy chained behind a proxy."""

from __future__ import annotations

import attrs
import numpy as np
import pytest_twisted
from support.proxy_client import FrameClient, connect, kind_is
from support.proxy_multi import SPEC, backend_file, proxy, sim
from support.waiting import until
from twisted.internet import task

from pybrid import samples
from pybrid.device import Faults
from pybrid.device.signals import expected_decoded
from pybrid.proto import pb
from pybrid.proxy.config import Timing
from pybrid.wire import messages


def start_command(run_id, channels=2, rate=10_000, op_ns=20_000_000):
    command = pb.StartRunCommand()
    command.run.id = run_id
    command.run_config.op_time.value = op_ns
    command.run_config.op_time.prefix = pb.NANO
    command.daq_config.num_channels = channels
    command.daq_config.sample_rate = rate
    command.daq_config.sample_op = True
    command.daq_config.sample_op_end = True
    return command


def is_state(run_id, path, *states):
    def check(env):
        if not kind_is("run_state_change_message")(env):
            return False
        change = env.message_v1.run_state_change_message
        return change.run.id == run_id and change.entity.path == path and change.new_ in states
    return check


async def run(client: FrameClient, run_id, paths, **kw):
    """Start a run, wait for DONE on every carrier; per carrier, the samples in chunk order."""
    reply = await client.request("start_run_command", start_command(run_id, **kw))
    assert messages.kind_of(reply) == "start_run_response", reply
    for path in paths:
        await client.expect(is_state(run_id, path, pb.DONE), timeout=30)
    return per_carrier(client, run_id)


def per_carrier(client: FrameClient, run_id):
    chunks: dict[str, list] = {}
    for f in client.frames:
        if messages.kind_of(f) == "run_data_message" and f.message_v1.run_data_message.run.id \
                == run_id:
            body = f.message_v1.run_data_message
            chunks.setdefault(body.entity.path, []).append(body)
    return {path: np.concatenate([samples.decode(b.data)
                                  for b in sorted(bodies, key=lambda b: b.run.chunk)])
            for path, bodies in chunks.items()}


def locations(extract):
    out = {}
    for item in extract.message_v1.extract_response.module.items:
        if item.HasField("entity_specification"):
            root = item.entity_specification.entity
            for c in [root] if root.class_ == pb.Entity.CARRIER else root.children:
                out[c.id] = (c.location_v0.stack, c.location_v0.carrier)
    return out


@pytest_twisted.ensureDeferred
async def test_three_devices_from_a_backend_file_run_as_one_computer(reactor, tmp_path):
    async with sim(reactor, first_mac="00-00-00-00-00-0A") as a, \
            sim(reactor, first_mac="00-00-00-00-00-0B", carriers=2) as b, \
            sim(reactor, first_mac="00-00-00-00-00-0D", refuse_udp=True) as c:
        path = backend_file(tmp_path, [
            f"carrier 127.0.0.1:{a.port} 0/0",
            f"carrier 127.0.0.1:{b.port} 0/1   # two carriers: 0/1 and 0/2",
            f"carrier 127.0.0.1:{c.port} 0/3",
            "wire 0/0/0 0/1/0", "wire 0/3/aux0 0/0/7",
        ])
        async with proxy(reactor, path) as service:
            client = await connect(reactor, service.address[1])
            extract = await client.request("extract_command", SPEC)
            assert locations(extract) == {
                "/00-00-00-00-00-0A": (0, 0), "/00-00-00-00-00-0B": (0, 1),
                "/00-00-00-00-00-0C": (0, 2), "/00-00-00-00-00-0D": (0, 3)}
            wires = [i.wiring_specification for i in
                     extract.message_v1.extract_response.module.items
                     if i.HasField("wiring_specification")]
            assert [(w.source.entity.path, w.target.entity.path) for w in wires] == [
                ("/00-00-00-00-00-0A", "/00-00-00-00-00-0B"),
                ("/00-00-00-00-00-0D", "/00-00-00-00-00-0A")]
            paths = [*a.carrier_paths, *b.carrier_paths, *c.carrier_paths]
            index = {**{p: i for i, p in enumerate(a.carrier_paths)},
                     **{p: i for i, p in enumerate(b.carrier_paths)},
                     **{p: i for i, p in enumerate(c.carrier_paths)}}
            for k in range(2):
                got = await run(client, f"run-{k}", paths, channels=3)
                assert sorted(got) == sorted(paths)
                for p in paths:
                    np.testing.assert_array_equal(got[p], expected_decoded(index[p], 3, 0, 200,
                                                                    mac=p.strip("/")))
            assert service.router.counters.gaps == 0
            await client.close()


@pytest_twisted.ensureDeferred
async def test_an_error_on_one_backend_stops_the_others_and_the_next_run_succeeds(reactor):
    async with sim(reactor, first_mac="00-00-00-00-00-0A") as a, \
            sim(reactor, first_mac="00-00-00-00-00-0B",
                faults=Faults(error_after_chunks=2)) as b:
        async with proxy(reactor, f"127.0.0.1:{a.port},127.0.0.1:{b.port}") as service:
            client = await connect(reactor, service.address[1])
            [pa], [pb_] = a.carrier_paths, b.carrier_paths
            reply = await client.request("start_run_command",
                                         start_command("bad", rate=1_000, op_ns=2_000_000_000))
            assert messages.kind_of(reply) == "start_run_response"
            error = await client.expect(is_state("bad", pb_, pb.ERROR), timeout=30)
            assert error.message_v1.run_state_change_message.reason
            # a was stopped: its run ends long before its 2 s of op time
            await client.expect(is_state("bad", pa, pb.DONE), timeout=30)
            assert service.dispatcher.counters.stop_runs == 1
            assert a.counters.chunks_sent < 20
            b.config = attrs.evolve(b.config, faults=Faults())
            got = await run(client, "good", [pa, pb_])
            for p in (pa, pb_):
                np.testing.assert_array_equal(got[p], expected_decoded(0, 2, 0, 200,
                                                                       mac=p.strip("/")))
            await client.close()


@pytest_twisted.ensureDeferred
async def test_a_backend_killed_mid_run_fails_the_run_and_a_later_run_succeeds(reactor):
    async with sim(reactor, first_mac="00-00-00-00-00-0A") as a:
        b = None
        try:
            async with sim(reactor, first_mac="00-00-00-00-00-0B") as victim:
                port = victim.port
                async with proxy(reactor, f"127.0.0.1:{a.port},127.0.0.1:{port}") as service:
                    client = await connect(reactor, service.address[1])
                    [pa], [pv] = a.carrier_paths, victim.carrier_paths
                    await client.request("start_run_command",
                                         start_command("doomed", rate=1_000, op_ns=3_000_000_000))
                    await client.expect(kind_is("run_data_message"), timeout=30)
                    await victim.stop()  # listening socket and connections gone
                    error = await client.expect(is_state("doomed", pv, pb.ERROR), timeout=30)
                    reason = error.message_v1.run_state_change_message.reason
                    assert reason.startswith(f"Cluster degraded: backend 127.0.0.1:{port} lost")
                    await client.closed.addTimeout(30, reactor)
                    last = client.frames[-1].message_v1
                    assert last.error_message.description.startswith(
                        f"Cluster degraded: backend 127.0.0.1:{port} lost")
                    await until(reactor, lambda: a.run is None)  # a got stop_run
                    # the backend comes back on the same port; the proxy recovers
                    b = await _relisten(reactor, port)
                    await service.when_healthy().addTimeout(15, reactor)
                    again = await connect(reactor, service.address[1])
                    got = await run(again, "after", [pa, pv])
                    np.testing.assert_array_equal(got[pv], expected_decoded(0, 2, 0, 200,
                                                                            mac=pv.strip("/")))
                    await again.close()
        finally:
            if b is not None:
                await b.stop()


async def _relisten(reactor, port):
    from pybrid.device import DeviceConfig, SimulatedDevice

    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(first_mac="00-00-00-00-00-0B"))
    device.listen(port, interface="127.0.0.1")
    return device


@pytest_twisted.ensureDeferred
async def test_two_devices_with_the_same_mac_are_refused_with_both_names(reactor):
    async with sim(reactor) as a, sim(reactor) as b:
        async with proxy(reactor, f"127.0.0.1:{a.port},127.0.0.1:{b.port}",
                         healthy=False) as service:
            await until(reactor, lambda: all(lane.healthy for lane in service.lanes))
            assert not service.all_healthy()
            client = await connect(reactor, service.address[1])
            reply = await client.request("extract_command", SPEC)
            text = reply.message_v1.error_message.description
            assert f"backend 127.0.0.1:{a.port}" in text and f"backend 127.0.0.1:{b.port}" in text
            assert "carrier /00-00-00-00-00-01" in text
            busy = await client.request("reset_command", pb.ResetCommand())
            assert messages.kind_of(busy) == "busy_response"
            await client.close()


@pytest_twisted.ensureDeferred
async def test_a_proxy_behind_a_proxy_keeps_stamps_and_its_session(reactor, tmp_path):
    async with sim(reactor, first_mac="00-00-00-00-00-0A") as a, \
            sim(reactor, first_mac="00-00-00-00-00-0B", carriers=2,
                stamp_state_entity=False) as b:
        inner_file = backend_file(tmp_path, [f"carrier 127.0.0.1:{a.port} 1/0",
                                             f"carrier 127.0.0.1:{b.port} 1/1",
                                             "wire 1/0/2 1/1/3"])
        async with proxy(reactor, inner_file, session_timeout=1.0) as inner, \
                proxy(reactor, f"127.0.0.1:{inner.address[1]}",
                      timing=Timing(keepalive_interval=0.2)) as outer:
            lane = outer.lanes[0]
            assert lane.data_mode == "tcp"  # the inner proxy refused UDP
            client = await connect(reactor, outer.address[1])
            extract = await client.request("extract_command", SPEC)
            assert locations(extract) == {"/00-00-00-00-00-0A": (1, 0),
                                          "/00-00-00-00-00-0B": (1, 1),
                                          "/00-00-00-00-00-0C": (1, 2)}
            [wire] = [i for i in extract.message_v1.extract_response.module.items
                      if i.HasField("wiring_specification")]  # the inner proxy's wire
            assert wire.wiring_specification.target.entity.path == "/00-00-00-00-00-0B"
            await task.deferLater(reactor, 2.5, lambda: None)  # 2.5 inner idle timeouts
            assert lane.counters.connects == 1 and lane.counters.keepalives >= 3
            paths = [*a.carrier_paths, *b.carrier_paths]
            got = await run(client, "chained", paths)  # b's unstamped states: stamped inside
            for p, i in zip(paths, (0, 0, 1), strict=True):
                np.testing.assert_array_equal(got[p], expected_decoded(i, 2, 0, 200,
                                                                       mac=p.strip("/")))
            await client.close()
