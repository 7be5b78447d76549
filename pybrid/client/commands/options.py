"""Option values shared by ``pybrid-run`` and the client commands: the token variables and
range-checked times (no other client import, so ``pybrid.client.cli`` can use it)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

#: The token variables, in the order they are read: ours, then the reference's name.
TOKEN_ENVS = ("PYBRID_AUTH_TOKEN", "PYBRID_AUTHENTICATION")

#: Bounds of the IC and OP times in seconds.  The wire carries nanoseconds (``Time`` with prefix
#: NANO, docs/protocol.md); an IC phase charges integrators for microseconds to milliseconds, so
#: 10 s is generous, and a value above it is almost always nanoseconds typed as seconds.
IC_TIME_RANGE = (1e-7, 10.0)
OP_TIME_RANGE = (1e-6, 86_400.0)


def token_from_env() -> str | None:
    """The bearer token from ``$PYBRID_AUTH_TOKEN`` or else ``$PYBRID_AUTHENTICATION``."""
    for name in TOKEN_ENVS:
        value = os.environ.get(name)
        if value:
            return value
    return None


def positive(kind: type, unit: str = "") -> Callable[[str], Any]:
    """An argparse type: a positive ``kind`` (``unit`` named in the errors)."""
    noun, suffix = (f"a number of {unit}", f" ({unit})") if unit else ("a number", "")

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}{suffix}")
        return value

    return parse


def seconds_in(lo: float, hi: float, what: str) -> Callable[[str], float]:
    """An argparse type: a number of seconds in ``[lo, hi]``, saying the unit when it is not."""
    positive_seconds = positive(float, "seconds")

    def parse(text: str) -> float:
        value: float = positive_seconds(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(
                f"{what} is in seconds and must be between {lo:g} and {hi:g} s, not {text} s"
                + (f" (the reference CLI takes nanoseconds: {text} ns would be "
                   f"{value * 1e-9:g} s)" if value > hi else "")
            )
        return value

    return parse
