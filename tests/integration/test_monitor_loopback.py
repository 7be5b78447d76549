"""Tap → multicast on 127.0.0.1 → listeners, with real sockets and the real reactor."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest_twisted
from support import monitor_sim as sim
from twisted.internet import task

from pybrid.monitor import MonitorChunk, MonitorListener
from pybrid.proxy.taps.multicast import MulticastTap
from pybrid.wire.monitor_header import MAX_ENVELOPE, encode_datagram

IFACE = "127.0.0.1"
TIMEOUT = 30.0  # a bound for a busy host, not a speed


def random_group() -> str:
    """A group of its own per test: other suites may run on this host at the same time."""
    return f"239.255.{random.randrange(1, 255)}.{random.randrange(1, 255)}"


@asynccontextmanager
async def listeners(reactor: Any, group: str, n: int, port: int = 0,
                    **kw: Any) -> AsyncIterator[list[MonitorListener]]:
    """``n`` listeners on one group and port (the first binds an ephemeral port)."""
    started: list[MonitorListener] = []
    try:
        for _ in range(n):
            listener = MonitorListener(reactor, group, port, IFACE, **kw)
            port = await listener.start()
            started.append(listener)
        yield started
    finally:
        for listener in started:
            await listener.stop()


@asynccontextmanager
async def tap(reactor: Any, groups: list[tuple[str, int]]) -> AsyncIterator[MulticastTap]:
    t = MulticastTap(reactor, groups, ttl=0, interface=IFACE)
    t.start()
    try:
        yield t
    finally:
        await t.stop()


def two_carrier_run(run_id: str, chunks: int) -> list[tuple[int, bytes]]:
    """Two carriers' datagrams of one run, interleaved as a proxy would see them."""
    a = sim.simulated_run(run_id, "/00-00-00-00-00-0a", 0, chunks)
    b = sim.simulated_run(run_id, "/00-00-00-00-00-0b", 1, chunks)
    return [pair for both in zip(a, b, strict=True) for pair in ((0, both[0]), (1, both[1]))]


def collector() -> tuple[list[MonitorChunk], Callable[[MonitorChunk], None]]:
    chunks: list[MonitorChunk] = []
    return chunks, chunks.append


def samples_of(chunks: list[MonitorChunk], carrier: int) -> np.ndarray:
    return np.concatenate([c.samples for c in chunks if c.lane == carrier and not c.end])


@pytest_twisted.ensureDeferred
async def test_two_listeners_on_one_port_both_receive_everything(reactor: Any) -> None:
    group, chunks = random_group(), 40
    run = two_carrier_run("run-both", chunks)
    got_a, on_a = collector()
    got_b, on_b = collector()
    async with listeners(reactor, group, 1, on_chunk=on_a) as (a,), \
            listeners(reactor, group, 1, port=a.port, on_chunk=on_b) as (b,):
        assert a.port == b.port != 0
        done_a = a.when_run_done("run-both", carriers=2, timeout=TIMEOUT)
        done_b = b.when_run_done("run-both", carriers=2, timeout=TIMEOUT)
        async with tap(reactor, [(group, a.port)]) as t:
            for carrier, envelope in run:
                t.emit(envelope, carrier)
            finals_a, finals_b = await done_a, await done_b
            await a.wait_for_datagrams(len(run), timeout=TIMEOUT)
            await b.wait_for_datagrams(len(run), timeout=TIMEOUT)
            assert t.counters.groups[0].sent == len(run)
    assert {f.new_name for f in finals_a} == {f.new_name for f in finals_b} == {"DONE"}
    for listener, got in ((a, got_a), (b, got_b)):
        stats = listener.stats
        assert (stats.datagrams, stats.chunks, stats.end_chunks) == (len(run), 2 * chunks, 2)
        assert (stats.tap_gaps, stats.chunk_gaps, stats.malformed) == (0, 0, 0)
        for carrier in (0, 1):
            np.testing.assert_array_equal(samples_of(got, carrier),
                                          sim.expected_samples(carrier, chunks))


@pytest_twisted.ensureDeferred
async def test_leaving_or_stopping_mid_stream_does_not_affect_the_others(reactor: Any) -> None:
    group = random_group()
    run = two_carrier_run("run-mid", 30)
    half = len(run) // 2
    async with listeners(reactor, group, 3) as (stays, leaves, stops):
        async with tap(reactor, [(group, stays.port)]) as t:
            for carrier, envelope in run[:half]:
                t.emit(envelope, carrier)
            for listener in (stays, leaves, stops):
                await listener.wait_for_datagrams(half, timeout=TIMEOUT)
            await leaves.leave()
            await stops.stop()
            assert leaves.listening and not leaves.joined and not stops.listening
            for carrier, envelope in run[half:]:
                t.emit(envelope, carrier)
            await stays.wait_for_datagrams(len(run), timeout=TIMEOUT)
            await task.deferLater(reactor, 0, lambda: None)  # let any stray read happen
    assert stays.stats.datagrams == len(run)
    assert (stays.stats.tap_gaps, stays.stats.chunk_gaps) == (0, 0)
    assert leaves.stats.datagrams == stops.stats.datagrams == half


@pytest_twisted.ensureDeferred
async def test_largest_envelope_arrives_whole_and_oversize_shows_as_a_gap(reactor: Any) -> None:
    group = random_group()
    rows = (MAX_ENVELOPE - 200) // 8
    raw = np.random.default_rng(1).standard_normal((rows, 2)).astype(np.float32)
    big = sim.data_envelope("run-big", "/big", 0, raw)
    assert 65_000 < len(big) <= MAX_ENVELOPE
    got, on_chunk = collector()
    async with listeners(reactor, group, 1, on_chunk=on_chunk) as (listener,):
        async with tap(reactor, [(group, listener.port)]) as t:
            t.emit(big, 0)
            t.emit(big + bytes(MAX_ENVELOPE + 1 - len(big)), 0)  # too big: dropped
            t.emit(sim.data_envelope("run-big", "/big", 1, raw[:5]), 0)
            await listener.wait_for(2, timeout=TIMEOUT)
            assert t.counters.oversize == 1
    np.testing.assert_array_equal(got[0].samples, raw.astype(np.float64))
    assert listener.stats.tap_gaps == 1 and listener.stats.chunk_gaps == 0


@pytest_twisted.ensureDeferred
async def test_garbage_on_the_group_is_counted_and_skipped(reactor: Any) -> None:
    group = random_group()
    async with listeners(reactor, group, 1) as (listener,):
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(IFACE))
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
            envelope = sim.data_envelope("r", "/x", 0, sim.chunk_values(0, 0))
            for data in (b"hello", b"PBM1" + bytes(30), encode_datagram(envelope[:-9], 0, 0, 0),
                         encode_datagram(envelope, 0, 1, 0)):
                sender.sendto(data, (group, listener.port))
        finally:
            sender.close()
        await listener.wait_for(1, timeout=TIMEOUT)
    assert listener.stats.malformed_by_reason == {"short": 1, "version": 1, "envelope": 1}
    assert listener.stats.chunks == 1


@pytest_twisted.ensureDeferred
async def test_a_listener_gets_only_its_own_group(reactor: Any) -> None:
    mine, other = random_group(), random_group()
    while other == mine:
        other = random_group()
    state = sim.state_envelope("r", 0, 4)
    async with listeners(reactor, mine, 1) as (listener,), \
            listeners(reactor, other, 1, port=listener.port) as (neighbour,), \
            tap(reactor, [(other, listener.port)]) as to_other, \
            tap(reactor, [(mine, listener.port)]) as to_mine:
        for _ in range(5):
            to_other.emit(state, 0)
        to_mine.emit(state, 0)
        await neighbour.wait_for_datagrams(5, timeout=TIMEOUT)
        await listener.wait_for_datagrams(1, timeout=TIMEOUT)
        await task.deferLater(reactor, 0, lambda: None)
    assert (listener.stats.datagrams, neighbour.stats.datagrams) == (1, 5)
