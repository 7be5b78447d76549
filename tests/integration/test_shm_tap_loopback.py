"""The proxy's ``--shm-tap`` with the real ``zerobuffer.Reader`` as the peer, same host.

The proxy (in this process) serves a simulated device; a child process runs
``tests/support/zb_reader.py`` — the ``zerobuffer-ipc`` library's own Reader, not pybrid code
— which creates the buffer and logs every frame it reads.  The client's run data is the
reference: the reader must see every chunk of the run, in order, with the same sample bytes.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest_twisted
from support.proxy_client import connect, kind_is
from support.shm import require_shm
from twisted.internet import task

from pybrid.device import DeviceConfig, SimulatedDevice
from pybrid.proto import pb
from pybrid.proxy.backendfile import Backend
from pybrid.proxy.config import ProxyConfig
from pybrid.proxy.service import ProxyService
from pybrid.wire import messages

require_shm()

READER = Path(__file__).parent.parent / "support" / "zb_reader.py"
CHUNKS = 300  # per carrier


def start_run(run_id: str, op_ns: int = 300_000_000) -> pb.StartRunCommand:
    command = pb.StartRunCommand()
    command.run.id = run_id
    command.run_config.op_time.value = op_ns
    command.run_config.op_time.prefix = pb.NANO
    command.daq_config.num_channels = 8
    command.daq_config.sample_rate = 100_000
    command.daq_config.sample_op = True
    command.daq_config.sample_op_end = True
    return command


class Reader:
    """The child reader process and its log."""

    def __init__(self, name: str, out: Path, *args: str) -> None:
        self.out = out
        self.proc = subprocess.Popen([sys.executable, str(READER), name, str(out), *args],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def lines(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(x) for x in self.out.read_text().splitlines() if x.strip()]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)  # reaped: its PID is gone, as for any dead reader

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)


async def until(reactor: Any, check: Any, timeout: float = 20.0, step: float = 0.02) -> None:
    for _ in range(int(timeout / step)):
        if check():
            return
        await task.deferLater(reactor, step, lambda: None)
    raise AssertionError("condition not reached in time")


async def stack(reactor: Any, name: str, **config: Any) -> tuple[Any, Any, Any]:
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=2))
    device.listen(0, interface="127.0.0.1")
    service = ProxyService(ProxyConfig(backends=(Backend("127.0.0.1", device.port),),
                                       interface="127.0.0.1", port=0, shm_taps=(name,),
                                       **config), reactor)
    service.startService()
    await service.when_healthy().addTimeout(30, reactor)
    client = await connect(reactor, service.address[1])
    return device, service, client


async def run_once(reactor: Any, client: Any, device: Any, op_ns: int = 300_000_000) -> str:
    run_id = str(uuid.uuid4())
    reply = await client.request("start_run_command", start_run(run_id, op_ns))
    assert messages.kind_of(reply) == "start_run_response", reply
    for path in device.carrier_paths:
        await client.expect(
            lambda e, p=path: kind_is("run_state_change_message")(e)
            and e.message_v1.run_state_change_message.entity.path == p
            and e.message_v1.run_state_change_message.run.id == run_id
            and e.message_v1.run_state_change_message.new_ == pb.DONE, timeout=20)
    return run_id


def client_chunks(client: Any, run_id: str) -> dict[tuple[str, int], str]:
    out = {}
    for f in client.frames:
        if kind_is("run_data_message")(f):
            m = f.message_v1.run_data_message
            if m.run.id == run_id:
                out[(m.entity.path, m.run.chunk)] = hashlib.sha1(m.data.data).hexdigest()
    return out


async def teardown(device: Any, service: Any, client: Any) -> None:
    if client is not None:
        await client.close()
    if service is not None:
        await service.stopService()
    if device is not None:
        await device.stop()


def reader_chunks(lines: list[dict[str, Any]], run: int) -> dict[tuple[str, int], str]:
    paths = {ln["carrier"]: ln["body"]["path"] for ln in lines
             if ln.get("kind") == 3 and ln["run"] == run}
    return {(paths[ln["carrier"]], ln["chunk"]): ln["sha1"] for ln in lines
            if ln.get("kind") == 1 and ln["run"] == run and not ln["flags"] & 1}


@pytest_twisted.ensureDeferred
async def test_real_reader_gets_every_chunk_of_the_run_in_order(reactor, tmp_path):
    name = f"pybrid-t-{uuid.uuid4().hex[:10]}"
    reader = Reader(name, tmp_path / "r.jsonl", "--runs", "1")
    device = service = client = None
    try:
        device, service, client = await stack(reactor, name)
        tap = service.shm.taps[0]
        await until(reactor, lambda: tap.state == "attached")
        run_id = await run_once(reactor, client, device)
        await until(reactor, lambda: reader.proc.poll() is not None)
        assert reader.proc.returncode == 0
        lines = reader.lines()
        assert [ln["zb"] for ln in lines] == list(range(1, len(lines) + 1))
        seqs = [ln["seq"] for ln in lines]
        assert seqs == sorted(seqs) and seqs[-1] - seqs[0] == len(seqs) - 1  # no gap
        start = lines[0]
        assert start["kind"] == 2 and start["body"]["run_id"] == run_id
        got = reader_chunks(lines, start["run"])
        sent = client_chunks(client, run_id)
        assert len(sent) == 2 * CHUNKS
        assert got == sent  # every chunk, samples equal (SHA-1 of the raw bytes)
        for path in device.carrier_paths:  # in order per carrier
            numbers = [c for (p, c) in got if p == path]
            assert numbers == sorted(numbers)
        status = tap.status()
        assert status.frames_dropped == 0 and status.attaches == 1
        assert status.frames_written == len(lines)
    finally:
        reader.stop()
        await teardown(device, service, client)


@pytest_twisted.ensureDeferred
async def test_reader_killed_mid_run_then_a_new_reader_gets_the_next_run(reactor, tmp_path):
    name = f"pybrid-t-{uuid.uuid4().hex[:10]}"
    first = Reader(name, tmp_path / "a.jsonl", "--runs", "5")
    second = None
    device = service = client = None
    try:
        device, service, client = await stack(reactor, name, shm_write_timeout=0.5)
        tap = service.shm.taps[0]
        await until(reactor, lambda: tap.state == "attached")
        run_id = str(uuid.uuid4())
        reply = await client.request("start_run_command", start_run(run_id, 600_000_000))
        assert messages.kind_of(reply) == "start_run_response"
        await until(reactor, lambda: len(first.lines()) > 50)
        first.kill()  # SIGKILL mid-run
        for path in device.carrier_paths:
            await client.expect(
                lambda e, p=path: kind_is("run_state_change_message")(e)
                and e.message_v1.run_state_change_message.entity.path == p
                and e.message_v1.run_state_change_message.new_ == pb.DONE, timeout=20)
        assert len(client_chunks(client, run_id)) == 2 * 600  # the client's run is complete
        await until(reactor, lambda: tap.status().reader_dead == 1)
        status = tap.status()
        assert status.detaches == 1 and status.state == "waiting"
        # every frame is accounted for: written (into the dead reader's ring) or dropped
        assert status.frames_written + status.frames_dropped == service.shm.feed.frames
        second = Reader(name, tmp_path / "b.jsonl", "--runs", "1")
        await until(reactor, lambda: tap.state == "attached")
        run2 = await run_once(reactor, client, device)
        await until(reactor, lambda: second.proc.poll() is not None)
        assert second.proc.returncode == 0
        lines = second.lines()
        start = next(ln for ln in lines if ln["kind"] == 2 and ln["body"]["run_id"] == run2)
        assert reader_chunks(lines, start["run"]) == client_chunks(client, run2)
        assert tap.status().attaches == 2
    finally:
        first.kill()
        if second is not None:
            second.stop()
        await teardown(device, service, client)


@pytest_twisted.ensureDeferred
async def test_reader_that_stops_reading_is_detached_with_buffer_full(reactor, tmp_path):
    name = f"pybrid-t-{uuid.uuid4().hex[:10]}"
    # a 256 KiB ring holds ~75 chunks; the reader reads 20 frames and then hangs
    reader = Reader(name, tmp_path / "r.jsonl", "--payload", str(256 << 10),
                    "--stop-after", "20")
    device = service = client = None
    try:
        device, service, client = await stack(reactor, name, shm_write_timeout=0.3)
        tap = service.shm.taps[0]
        await until(reactor, lambda: tap.state == "attached")
        run_id = await run_once(reactor, client, device, 800_000_000)
        assert len(client_chunks(client, run_id)) == 2 * 800  # loss-free for the client
        await until(reactor, lambda: tap.status().buffer_full == 1)
        status = tap.status()
        assert status.state == "waiting" and status.detaches == 1
        assert status.frames_written < 200
        assert status.frames_dropped > 0
        produced = service.shm.feed.frames
        assert status.frames_written + status.frames_dropped == produced  # all counted
    finally:
        reader.kill()
        await teardown(device, service, client)


@pytest_twisted.ensureDeferred
async def test_reference_client_run_reaches_the_real_reader_samples_equal(reactor, tmp_path):
    from support.reference import run_ref_client

    name = f"pybrid-t-{uuid.uuid4().hex[:10]}"
    reader = Reader(name, tmp_path / "r.jsonl", "--runs", "1", "--npz", str(tmp_path / "s.npz"))
    device = SimulatedDevice(reactor=reactor, config=DeviceConfig(carriers=2))
    device.listen(0, interface="127.0.0.1")
    service = ProxyService(ProxyConfig(backends=(Backend("127.0.0.1", device.port),),
                                       interface="127.0.0.1", port=0, shm_taps=(name,)),
                           reactor)
    try:
        service.startService()
        await service.when_healthy().addTimeout(30, reactor)
        tap = service.shm.taps[0]
        await until(reactor, lambda: tap.state == "attached")
        result = await run_ref_client(reactor, service.address[1], channels=8,
                                      sample_rate=100_000, op_time_ns=200_000_000)
        assert result.ok, result.describe()
        await until(reactor, lambda: reader.proc.poll() is not None)
        assert reader.proc.returncode == 0
        lines = reader.lines()
        assert [ln["zb"] for ln in lines] == list(range(1, len(lines) + 1))
        seqs = [ln["seq"] for ln in lines]
        assert seqs[-1] - seqs[0] == len(seqs) - 1  # no gap
        import numpy as np

        got = dict(np.load(tmp_path / "s.npz"))
        want = result.carrier_samples()
        assert {"/" + p for p in want} == set(device.carrier_paths)
        for path, values in want.items():
            mine = got[f"run1/{path}"]
            assert mine.shape == values.shape and mine.shape[0] == 20_000
            np.testing.assert_allclose(mine, values, rtol=1e-6)
        assert tap.status().frames_dropped == 0
    finally:
        reader.stop()
        await service.stopService()
        await device.stop()
