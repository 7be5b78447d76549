"""The live view over a real WebSocket: a proxy with its status page in front of a simulated
device; frames carry the simulator's known signal (pybrid.device.signals), lost chunks as NaN
gaps on chunk boundaries, and a viewer that stops reading is dropped while the run stays
loss-free."""

from __future__ import annotations

import numpy as np
import pytest
import pytest_twisted
from support.live_ws import assert_holds, view
from support.ops_http import fetch
from support.ops_stack import MACS, status_stack
from support.waiting import until
from twisted.internet import defer

from pybrid.client import connect
from pybrid.device.config import Faults
from pybrid.device.signals import expected_decoded

RATE = 100_000


def ws_url(service) -> str:
    return service.status_page.url.replace("http://", "ws://") + "live/ws"


def check_signal(frame, channels: list[int]) -> int:
    """Every column with a value holds the simulator's samples there (one row a column);
    returns the columns checked."""
    assert frame.meta["per"] == 1
    first = round(frame.t0 * RATE)
    want = expected_decoded(0, 2, first, frame.lo.shape[1], "f32", MACS[0])
    seen = ~np.isnan(frame.lo[0])
    for i, ch in enumerate(channels):
        assert_holds(frame, i, want[:, ch])
    return int(seen.sum())


@pytest_twisted.ensureDeferred
async def test_frames_show_the_simulated_signal_during_a_run_and_the_page_is_served(reactor):
    async with status_stack(reactor, 1, session_timeout=120.0) as (_devices, service):
        code, _headers, body = await fetch(reactor, service.status_page.url + "live")
        assert code == 200 and b"<canvas" in body and b"/live/live.js" in body
        code, _, script = await fetch(reactor, service.status_page.url + "live/live.js")
        assert code == 200 and b"WebSocket" in script
        assert len(body) + len(script) < 300_000
        viewer = await view(reactor, ws_url(service), window=0.01, columns=1000,
                            channels=[0, 1])
        assert service.live is not None
        await until(reactor, lambda: service.live.watchers == 1, "the viewer counted")
        client = await connect("127.0.0.1", service.address[1], reactor=reactor)
        running = client.run(30.0, channels=2, sample_rate=RATE, timeout=120)
        running.addErrback(lambda f: f.trap(defer.CancelledError))
        try:
            frame = await viewer.wait(lambda f: (f.meta.get("rows") or 0) > 5000
                                      and f.lo.shape == (2, 1000))
            assert check_signal(frame, [0, 1]) > 900
            assert abs(frame.t1 - frame.t0 - 0.01) < 1e-9 and np.isnan(frame.end_t)
            assert frame.meta["run"]["active"] and frame.meta["carrier"] == "/" + MACS[0]
            viewer.ask(window=0.01, columns=1000, channels=[1])
            frame = await viewer.wait(lambda f: f.lo.shape == (1, 1000)
                                      and f.meta.get("rows", 0) > 5000)
            check_signal(frame, [1])
        finally:
            running.cancel()
            await client.close()
            viewer.transport.loseConnection()
        await viewer.closed


@pytest_twisted.ensureDeferred
async def test_a_lost_chunk_is_a_gap_on_its_chunk_boundaries_and_the_end_is_marked(reactor):
    async with status_stack(reactor, 1, session_timeout=120.0,
                            device_options={"faults": Faults(drop=0.05, seed=7)}
                            ) as (devices, service):
        viewer = await view(reactor, ws_url(service), window=0.0, columns=4000, channels=[0])
        await until(reactor, lambda: service.live.watchers == 1, "the viewer counted")
        client = await connect("127.0.0.1", service.address[1], reactor=reactor)
        try:
            result = await client.run(0.2, channels=2, sample_rate=RATE, timeout=60)
            frame = await viewer.wait(lambda f: f.meta.get("run")
                                      and not f.meta["run"]["active"])
        finally:
            await client.close()
        assert devices[0].counters.chunks_dropped > 0
        lost = result.carriers[MACS[0]].missing_chunks
        per_chunk = result.carriers[MACS[0]].chunk_size
        run = frame.meta["run"]
        assert run["id"] == result.run_id and run["result"] == "DONE"
        assert run["missing"] == len(lost) > 0
        assert frame.end_t == frame.t1 == 0.2 and frame.t0 == 0.0  # the end is marked
        # the NaN columns are exactly those whose rows all lie in lost chunks
        viewer.ask(window=0, columns=4000, channels=[0])
        frame = await viewer.wait(lambda f: f.lo.shape == (1, 4000))
        per = frame.meta["per"]
        assert per == 5
        start = np.arange(4000) * per
        stop = np.minimum(start + per, 20_000)
        in_lost = np.isin(start // per_chunk, lost) & np.isin((stop - 1) // per_chunk, lost)
        np.testing.assert_array_equal(np.isnan(frame.lo[0]), in_lost)
        assert in_lost.sum() >= len(lost) * (per_chunk // per - 1)
        viewer.transport.loseConnection()
        await viewer.closed


def buffered(tcp) -> int:
    """Bytes a Twisted TCP transport holds unsent."""
    return len(tcp.dataBuffer) - tcp.offset + tcp._tempDataLen


@pytest_twisted.ensureDeferred
async def test_a_viewer_that_stops_reading_is_dropped_with_bounded_memory_and_no_loss(reactor):
    async with status_stack(reactor, 1, session_timeout=120.0) as (_devices, service):
        hub = service.live_hub
        hub.deadline = 3.0
        viewer = await view(reactor, ws_url(service), window=0.01, columns=4000, channels=[0, 1])
        await until(reactor, lambda: hub.viewers, "the viewer counted")
        server_side = hub.viewers[0].transport.transport
        client = await connect("127.0.0.1", service.address[1], reactor=reactor)
        running = client.run(12.0, channels=2, sample_rate=RATE, timeout=120)
        try:
            await viewer.wait(lambda f: (f.meta.get("rows") or 0) > 1000)
            viewer.transport.transport.pauseProducing()  # the viewer stops reading
            most = 0

            def dropped() -> bool:
                nonlocal most
                most = max(most, buffered(server_side))
                return hub.dropped == 1

            await until(reactor, dropped, "the stalled viewer dropped", seconds=30.0, step=0.05)
            assert hub.viewers == [] and service.live.watchers == 0
            frame_bytes = 2 * 2 * 4000 * 4 + 4096
            assert most < 64 * 1024 + 2 * frame_bytes, most  # one frame past the high-water mark
            result = await running
        finally:
            if not running.called:
                running.cancel()
                running.addErrback(lambda f: f.trap(defer.CancelledError))
            await client.close()
            viewer.transport.transport.resumeProducing()
        carrier = result.carriers[MACS[0]]
        assert carrier.missing_chunks == () and carrier.complete, "the run lost data"


class Discard:
    """A client sink that keeps no samples (they would blur the proxy's RSS: one process)."""

    def begin(self, meta) -> None:
        pass

    def write(self, carrier, start, values, dtype) -> None:
        pass

    def final(self, carrier, values) -> None:
        pass

    def finish(self, summaries) -> None:
        pass

    def samples(self, carrier):
        return None


def rss() -> int:
    """Resident bytes of this process (the proxy runs in it)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_viewers_stalled_for_30_s_are_dropped_the_proxy_stays_small_and_loses_nothing(
        reactor):
    # 16 viewers of 32 KB frames at 30/s: buffered without bound, 10 s are 150 MB
    async with status_stack(reactor, 1, session_timeout=120.0) as (_devices, service):
        hub = service.live_hub  # the default deadline
        viewers = [await view(reactor, ws_url(service), window=0.1, columns=4000,
                              channels=[0, 1]) for _ in range(16)]
        await until(reactor, lambda: len(hub.viewers) == 16, "the viewers counted")
        client = await connect("127.0.0.1", service.address[1], reactor=reactor)
        running = client.run(34.0, channels=2, sample_rate=RATE, timeout=180, sink=Discard())
        try:
            for v in viewers:
                await v.wait(lambda f: (f.meta.get("rows") or 0) > 20_000)
            before = peak = rss()
            for v in viewers:
                v.transport.transport.pauseProducing()  # every viewer stops reading
            stalled = reactor.seconds()

            def thirty_seconds() -> bool:
                nonlocal peak
                peak = max(peak, rss())
                return reactor.seconds() - stalled >= 30.0

            await until(reactor, thirty_seconds, "30 s stalled", seconds=90.0, step=0.25)
            assert hub.dropped == 16 and hub.viewers == [] and service.live.watchers == 0
            assert not running.called, "the run ended before the 30 s"
            assert peak - before < 48 << 20, (before, peak)
            result = await running
        finally:
            if not running.called:
                running.cancel()
                running.addErrback(lambda f: f.trap(defer.CancelledError))
            await client.close()
            for v in viewers:
                v.transport.transport.resumeProducing()
        carrier = result.carriers[MACS[0]]
        assert carrier.missing_chunks == () and carrier.complete, "the run lost data"
