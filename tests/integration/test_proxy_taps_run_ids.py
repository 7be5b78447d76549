"""Every way out of the proxy names a run by the client's id (issue 21.4).

Our client runs a computation on the simulated device through our proxy (loopback), which has a
multicast tap (TTL 0, 127.0.0.1) and a shared-memory tap.  The multicast monitor records the run
to a file (:class:`~pybrid.monitor.record.Recorder`, as ``pybrid-monitor --record`` does); our
shm reader (:class:`~pybrid.monitor.shm.ShmReader`, in a thread) reads it.  The client's result,
the recording and the shm reader name the same run id, and both monitors learn the sample rate
from the proxy (no ``--sample-rate``).
"""

from __future__ import annotations

import json
import random
import uuid

import numpy as np
import pytest_twisted
from support.shm import require_shm
from support.waiting import until
from twisted.internet import threads

from pybrid.client import connect
from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.monitor import MonitorListener
from pybrid.monitor.options import MonitorConfig
from pybrid.monitor.record import Recorder
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService

require_shm()

T = 30.0


def read_shm_run(reader, carriers: int) -> dict:
    """In a thread: the shm reader's run start and its chunks' run ids, until every carrier
    ended (bounded by the reader's timeouts)."""
    from pybrid.monitor.shm import ShmCarrierEnd, ShmChunk, ShmRunStart

    seen: dict = {"starts": [], "chunk_ids": set(), "ends": 0}
    idle = 0
    for event in reader.events(timeout=0.5):
        if event is None:
            idle += 1
            if idle > 60:
                break
            continue
        if isinstance(event, ShmRunStart):
            seen["starts"].append(event)
        elif isinstance(event, ShmChunk):
            seen["chunk_ids"].add(event.run_id)
        elif isinstance(event, ShmCarrierEnd):
            seen["ends"] += 1
            if seen["ends"] >= carriers:
                break
    return seen


@pytest_twisted.ensureDeferred
async def test_client_multicast_recording_and_shm_reader_name_the_run_alike(reactor, tmp_path):
    from pybrid.monitor.shm import ShmReader

    name = f"pybrid-t-{uuid.uuid4().hex[:10]}"
    group = f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}"
    reader = ShmReader(name, payload_size=4 << 20)
    recorder = Recorder(str(tmp_path / "mc.npz"), reactor)
    listener = MonitorListener(reactor, group, 0, interface="127.0.0.1",
                               on_chunk=recorder.add, on_state=recorder.state,
                               on_run=lambda r: recorder.run(r.run_id, r.record))
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=1))
    service = client = None
    try:
        port = await listener.start()
        device.listen(0, interface="127.0.0.1")
        service = ProxyService(ProxyConfig(
            backends=(Backend("127.0.0.1", device.port),), interface="127.0.0.1", port=0,
            monitor=MonitorConfig(((group, port),), ttl=0, interface="127.0.0.1"),
            shm_taps=(name,)), reactor)
        service.startService()
        await service.when_healthy().addTimeout(10, reactor)
        tap = service.shm.taps[0]
        await until(reactor, lambda: tap.state == "attached", "the shm tap attached", T)
        shm_seen = threads.deferToThread(read_shm_run, reader, 1)

        client = await connect("127.0.0.1", service.address[1], reactor=reactor)
        result = await client.run(0.02, channels=4, sample_rate=10_000).addTimeout(T, reactor)
        run_id = result.run_id

        seen = await shm_seen.addTimeout(T, reactor)
        await listener.when_run_done(run_id, carriers=1, timeout=T)
        written = recorder.close()
        assert len(written) == 1
        with np.load(written[0][0]) as npz:
            meta = json.loads(str(npz["meta"]))
        # one name for the run everywhere: the client's
        assert meta["run_id"] == run_id
        assert [s.run_id for s in seen["starts"]] == [run_id]
        assert seen["chunk_ids"] == {run_id} and seen["ends"] == 1
        # the proxy's own id is kept beside it, and differs
        start = seen["starts"][0].record
        assert start["proxy_run_id"] != run_id and start["proxy_run_id"]
        assert listener.run_info(run_id)["proxy_run_id"] == start["proxy_run_id"]
        # the sample rate came from the client's start command, not from an option
        assert meta["sample_rate"] == 10_000 and start["sample_rate"] == 10_000
    finally:
        if client is not None:
            await client.close()
        if service is not None:
            await service.stopService()
        await device.stop()
        await listener.stop()
        reader.close()
