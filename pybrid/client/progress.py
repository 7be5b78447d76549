"""Progress display for ``pybrid-run``: ``tqdm`` when installed, else one stderr line.

Neither ``tqdm`` nor ``rich`` is a dependency.  The fallback rewrites a single line with ``\\r``
at most every ``interval`` seconds of the injected clock and only when the stream is a terminal
(or when forced), so logs and pipes stay clean.
"""

from __future__ import annotations

from typing import Any, TextIO

from twisted.internet.interfaces import IReactorTime


class LineProgress:
    """A minimal progress line: ``samples 1200/2000  60%``."""

    def __init__(
        self, total: int, stream: TextIO, clock: IReactorTime, interval: float = 0.1
    ) -> None:
        self.total = total
        self.count = 0
        self.stream = stream
        self.clock = clock
        self.interval = interval
        self._last = -1e9
        self._shown = False

    def update(self, n: int) -> None:
        self.count += n
        now = self.clock.seconds()
        if now - self._last >= self.interval:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        if self.total > 0:
            pct = min(100, 100 * self.count // self.total)
            text = f"samples {self.count}/{self.total} {pct:3d}%"
        else:
            text = f"samples {self.count}"
        self.stream.write("\r" + text)
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()


class TqdmProgress:
    """Adapter over a ``tqdm`` bar with the same two methods."""

    def __init__(self, total: int, stream: TextIO) -> None:
        import tqdm  # type: ignore[import-untyped]

        self.bar: Any = tqdm.tqdm(total=total or None, unit="samples", file=stream, leave=True)

    def update(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


class NoProgress:
    """Shows nothing."""

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def make_progress(
    total: int, stream: TextIO, clock: IReactorTime, *, enabled: bool | None = None
) -> LineProgress | TqdmProgress | NoProgress:
    """A progress display for ``total`` samples; ``enabled=None`` means "if a terminal"."""
    if enabled is None:
        enabled = bool(getattr(stream, "isatty", lambda: False)())
    if not enabled:
        return NoProgress()
    try:
        return TqdmProgress(total, stream)
    except ImportError:
        return LineProgress(total, stream, clock)
