"""The NATS subject scheme and message format (pybrid.wire.nats_format)."""

from __future__ import annotations

import numpy as np
import pytest

from pybrid.wire import nats_format as N


@pytest.mark.parametrize("run_id", ["3f2a-uuid_ok", "a.b", "a b*>", "ünï", "x" * 200])
def test_run_tokens_round_trip_and_are_single_subject_tokens(run_id):
    token = N.run_token(run_id)
    assert N.run_id_of(token) == run_id
    assert not set(token) & set(".*> \t")
    subject = N.subject("pybrid.lab", "proxy-1", run_id, "chunk")
    assert N.parse_subject("pybrid.lab", subject) == ("proxy-1", run_id, "chunk")


def test_a_safe_run_id_is_its_own_token():
    assert N.run_token("7c9e6679-7425-40de-944b-e07fc1f90ae7") == \
        "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    assert N.run_filter("pybrid", "r1") == "pybrid.*.r1.>"
    assert N.starts_filter("pybrid") == "pybrid.*.*.start"
    assert N.stream_subjects("pybrid") == ["pybrid.>"]


@pytest.mark.parametrize("bad", ["pybrid.x.y", "other.p.r.chunk", "pybrid.p.r.nope",
                                 "pybrid.p.r.s.chunk"])
def test_foreign_subjects_are_refused(bad):
    with pytest.raises(N.NatsFormatError):
        N.parse_subject("pybrid", bad)


def test_unknown_kind_and_bad_names_are_refused_clearly():
    with pytest.raises(N.NatsFormatError, match="kind 'x'"):
        N.subject("pybrid", "p", "r", "x")
    with pytest.raises(N.NatsFormatError, match="letters, digits"):
        N.check_name("a b", "proxy name")
    with pytest.raises(N.NatsFormatError):
        N.check_name("a..b", "prefix")
    assert N.check_name("lab.pybrid", "prefix") == "lab.pybrid"
    with pytest.raises(N.NatsFormatError, match="hex"):
        N.run_id_of("=zz")


def test_a_chunk_message_round_trips_with_a_zero_copy_view():
    raw = np.arange(12, dtype="<i2").reshape(4, 3)
    data = N.chunk_header(2, 17, 4, 3, 3, 0.5, -1.0, N.FLAG_END_MESSAGE) + raw.tobytes()
    assert len(data) == N.CHUNK_HEADER_SIZE + raw.nbytes == 40 + 24
    flags, carrier, chunk, n, channels, gain, offset, got, end = N.parse_chunk(data)
    assert end == len(data)
    assert (flags, carrier, chunk, n, channels, gain, offset) == (1, 2, 17, 4, 3, 0.5, -1.0)
    np.testing.assert_array_equal(got, raw)
    assert got.base is not None and not got.flags.writeable


def test_a_chunk_message_may_hold_several_records():
    one = N.chunk_header(0, 3, 2, 1, 2, 1.0, 0.0) + np.array([1.0, 2.0]).tobytes()
    two = N.chunk_header(1, 4, 1, 2, 1, 1.0, 0.0) + np.array([5, 6], "<f4").tobytes()
    records = list(N.iter_chunks(one + two))
    assert [(r[1], r[2]) for r in records] == [(0, 3), (1, 4)]
    np.testing.assert_array_equal(records[1][7], [[5, 6]])
    with pytest.raises(N.NatsFormatError):
        list(N.iter_chunks(one + two[:-1]))


def test_bad_chunk_messages_raise_format_errors():
    good = N.chunk_header(0, 0, 2, 1, 1, 1.0, 0.0) + bytes(8)
    with pytest.raises(N.NatsFormatError, match="shorter"):
        N.parse_chunk(good[:10])
    with pytest.raises(N.NatsFormatError, match="magic"):
        N.parse_chunk(b"XXXX" + good[4:])
    with pytest.raises(N.NatsFormatError, match="too short"):
        N.parse_chunk(good[:-1])
    with pytest.raises(N.NatsFormatError, match="dtype code 99"):
        N.parse_chunk(N.chunk_header(0, 0, 2, 1, 99, 1.0, 0.0) + bytes(8))


def test_json_messages_are_objects():
    assert N.decode_json(N.encode_json({"b": 1, "a": [1.5]})) == {"a": [1.5], "b": 1}
    with pytest.raises(N.NatsFormatError):
        N.decode_json(b"[1]")
    with pytest.raises(N.NatsFormatError):
        N.decode_json(b"{")


def test_the_end_condition_names_errors_then_missing_chunks():
    assert N.condition({"/a": "DONE"}, {}, {"/a": []}) == ("complete", "")
    assert N.condition({"/a": "DONE"}, {}, {"/a": [3, 4]}) == (
        "incomplete", "/a: 2 chunks missing")
    assert N.condition({"/a": "ERROR", "/b": "DONE"}, {"/a": "overload"}, {"/a": [1]}) == (
        "error", "/a: overload")
