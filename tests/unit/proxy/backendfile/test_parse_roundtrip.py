"""Property tests: valid specs survive render → parse; arbitrary text fails only with
BackendFileError."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from pybrid.proxy.backendfile import (
    NAMED_PINS,
    NO_LOCATION_WARNING,
    Backend,
    BackendFile,
    BackendFileError,
    Location,
    Pin,
    Wire,
    parse_backend_args,
    parse_text,
    render,
)

_LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
hostnames = (
    st.lists(_LABEL, min_size=1, max_size=3)
    .map(".".join)
    .filter(lambda h: not re.fullmatch(r"[0-9.]+", h))
)
hosts = st.one_of(
    hostnames,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
ports = st.integers(1, 65535)
indices = st.integers(0, 2**32 - 1) | st.integers(0, 15)


@st.composite
def specs(draw: st.DrawFn) -> BackendFile:
    form = draw(st.sampled_from(["none", "bare", "stacked"]))
    addresses = draw(
        st.lists(
            st.tuples(hosts, ports),
            min_size=1,
            max_size=6,
            unique_by=lambda a: (a[0].lower(), a[1]),
        )
    )
    n = len(addresses)
    if form == "none":
        locations: list[Location | None] = [None] * n
    elif form == "bare":
        carriers = draw(st.lists(indices, min_size=n, max_size=n, unique=True))
        locations = [Location(None, c) for c in carriers]
    else:
        pairs = draw(st.lists(st.tuples(indices, indices), min_size=n, max_size=n, unique=True))
        locations = [Location(s, c) for s, c in pairs]
    backends = tuple(Backend(h, p, loc) for (h, p), loc in zip(addresses, locations, strict=True))
    wires: list[Wire] = []
    located = [loc for loc in locations if loc is not None]
    if located:
        pin_kinds = st.one_of(
            st.integers(0, 7).map(lambda i: {"index": i}),
            st.sampled_from(NAMED_PINS).map(lambda name: {"name": name}),
        )
        pins = st.builds(lambda loc, kw: Pin(loc, **kw), st.sampled_from(located), pin_kinds)
        pairs_ = draw(st.lists(st.tuples(pins, pins), max_size=8, unique_by=lambda w: w[1]))
        wires = [Wire(src, dst) for src, dst in pairs_]
    return BackendFile(backends, tuple(wires))


@settings(max_examples=300, deadline=None)
@given(specs())
def test_render_then_parse_is_identity(spec: BackendFile) -> None:
    text = render(spec)
    parsed = parse_text(text, "rendered.txt")
    assert parsed == spec
    assert render(parsed) == text
    unlocated = len(spec.backends) > 1 and all(b.location is None for b in spec.backends)
    assert parsed.warnings == ((NO_LOCATION_WARNING,) if unlocated else ())


@settings(max_examples=100, deadline=None)
@given(specs())
def test_rendered_lines_also_work_inline_and_split_across_values(spec: BackendFile) -> None:
    lines = render(spec).splitlines()
    inline = parse_backend_args([",".join(lines)], exists=lambda _: False)
    assert inline == spec
    one_each = parse_backend_args(lines, exists=lambda _: False)
    assert one_each == spec


_TOKENS = st.sampled_from(
    ["carrier", "wire", "#", " ", "/", ":", ",", "[", "]", "0", "7", "9", "aux0", "10.0.0.1",
     "::1", "host", "\t", "65536", "-", "gen1", "\n"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_TOKENS | st.text(max_size=4), max_size=30).map("".join))
def test_arbitrary_text_fails_only_with_spec_errors(text: str) -> None:
    try:
        spec = parse_text(text)
    except BackendFileError as e:
        assert e.errors and all(err.message for err in e.errors)
    else:
        assert parse_text(render(spec)) == spec
