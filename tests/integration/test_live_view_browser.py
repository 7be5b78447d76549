"""The live view in a real browser: headless Chromium loads ``/live`` from a proxy in front of
a simulated device (some chunks dropped by the device's drop fault), draws the frames, and the
screenshot's pixels show the simulator's known signal: at chosen pixel columns the trace spans
exactly the envelope (min … max) of the signal's rows there, and the columns of lost chunks
are painted as a gap.  Skipped when ``/usr/bin/chromium`` is absent (CI installs it)."""

from __future__ import annotations

import os
import pathlib
import re

import numpy as np
import pytest
import pytest_twisted
from support.live_ws import view
from support.ops_http import decode_png
from support.ops_stack import MACS, status_stack
from support.waiting import until
from test_status_page_browser import CHROMIUM, chromium
from twisted.internet import defer

from pybrid.client import connect
from pybrid.device.config import Faults
from pybrid.device.signals import expected_decoded

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed")

RATE = 100_000
ROWS = 20_000  # a 0.2 s run
YELLOW = (0xFF, 0xD4, 0x00)  # channel 0
GAP = (0x5A, 0x10, 0x20)
# the canvas: 1000 × 420; the plot 60 px in from the left, 10 from the top, 380 high
LEFT, TOP, HEIGHT, COLUMNS = 60, 10, 380, 930


def canvas_origin(rgb: np.ndarray) -> tuple[int, int]:
    """The top-left pixel of the black canvas (the largest black area)."""
    black = (rgb == 0).all(axis=2)
    rows = np.flatnonzero(black.sum(axis=1) > 500)
    cols = np.flatnonzero(black.sum(axis=0) > 200)
    return int(rows[0]), int(cols[0])


def expected_columns(lost: tuple[int, ...], per_chunk: int,
                     mac: str = MACS[0]) -> tuple[np.ndarray, np.ndarray, int]:
    """lo, hi of channel 0 per pixel column as the page draws the whole run, and rows a column."""
    per = -(-ROWS // COLUMNS)  # the newest run keeps its ring: rows a column from it
    values = expected_decoded(0, 2, 0, ROWS, "f32", mac)[:, 0].astype(np.float32)
    values = values.astype(np.float64)
    rows = np.arange(ROWS)
    values[np.isin(rows // per_chunk, lost)] = np.nan
    count = -(-ROWS // per)
    padded = np.full(count * per, np.nan)
    padded[:ROWS] = values
    blocks = padded.reshape(count, per)
    return np.fmin.reduce(blocks, axis=1), np.fmax.reduce(blocks, axis=1), per


def check_screenshot(shot: pathlib.Path, lost: tuple[int, ...], chunk_size: int,
                     want_gaps: bool = True, mac: str = MACS[0]) -> None:
    """The whole-run view of channel 0 in ``shot`` shows the simulator's envelope column by
    column, and the columns of ``lost`` chunks as gaps."""
    rgb = decode_png(shot.read_bytes())[:, :, :3].astype(int)
    top, left = canvas_origin(rgb)
    lo, hi, per = expected_columns(lost, chunk_size, mac)
    checked = gaps = 0
    for i in range(5, len(lo) - 5):
        x = left + LEFT + (i * COLUMNS) // len(lo)  # the page stretches columns to whole pixels
        column = rgb[top + TOP : top + TOP + HEIGHT, x]
        yellow = np.flatnonzero((column == YELLOW).all(axis=1))
        if np.isnan(lo[i]):
            assert yellow.size == 0, f"column {i}: a trace where chunks were lost"
            assert (column == GAP).all(axis=1).mean() > 0.9, f"column {i}: the gap not shown"
            gaps += 1
            continue
        assert yellow.size, f"column {i}: no trace"
        assert abs(TOP + yellow[0] - y_of(hi[i])) <= 1, (i, yellow[0], hi[i])
        assert abs(TOP + yellow[-1] - y_of(lo[i])) <= 1, (i, yellow[-1], lo[i])
        checked += 1
    assert checked > 500 and (gaps >= 1 or not want_gaps), (checked, gaps, per)


def y_of(v: float) -> int:
    return round(TOP + (1.05 - v) / 2.1 * HEIGHT)


@pytest.mark.parametrize("live_process", [False, True], ids=["in-proxy", "live-process"])
@pytest_twisted.ensureDeferred
async def test_chromium_draws_the_envelope_of_the_simulated_signal_and_the_gaps(
        reactor, tmp_path: pathlib.Path, live_process: bool):
    shot = tmp_path / "live.png"
    async with status_stack(reactor, 1, session_timeout=120.0, live_process=live_process,
                            device_options={"faults": Faults(drop=0.03, seed=3)}) as (_d, service):
        if live_process:  # the viewers go to the child (tests/integration/test_live_view_process)
            await until(reactor, lambda: service.live_process.ready, "the live process ready",
                        seconds=30.0)
        url = service.status_page.url
        client = await connect("127.0.0.1", service.address[1], reactor=reactor)
        # during a run: the page connects, gets frames and paints them
        running = client.run(20.0, channels=2, sample_rate=RATE, timeout=120)
        running.addErrback(lambda f: f.trap(defer.CancelledError))
        try:
            await until(reactor, lambda: service.live.store.current(), "the run registered")
            dom = (await chromium(reactor, "--virtual-time-budget=4000", "--dump-dom",
                                  url + "live?window=0.01")).stdout.decode()
            assert not running.called, "the run ended while the browser looked"
        finally:
            running.cancel()
        painted = re.search(r'data-painted="(\d+)"', dom)
        assert painted and int(painted.group(1)) > 0, "no frame painted during the run"
        assert "running" in dom
        # a run nobody watches is not decoded: a viewer watches the short run
        viewer = await view(reactor, url.replace("http://", "ws://") + "live/ws", window=0)
        await until(reactor, lambda: service.live.watchers + service.live.remote == 1,
                    "the viewer counted")
        result = await client.run(0.2, channels=2, sample_rate=RATE, timeout=60)
        await client.close()
        viewer.transport.loseConnection()
        await viewer.closed
        carrier = result.carriers[MACS[0]]
        assert carrier.missing_chunks, "the drop fault dropped nothing"
        page = f"{url}live?run={result.run_id}&window=0&channels=0"
        await chromium(reactor, f"--screenshot={shot}", "--window-size=1400,900",
                       "--virtual-time-budget=4000", page)
        if live_process:
            assert service.live_process.handed >= 3 and service.live_process.served_here == 0
    check_screenshot(shot, carrier.missing_chunks, carrier.chunk_size)
