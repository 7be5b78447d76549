"""Logging a stream of bad or unexpected input without flooding the log.

Everything is counted; only some occurrences are logged: :func:`worth_logging` says which
(by default the first three, then every 1000th), so a peer sending garbage costs one counter
increment per frame, not one log line.
"""

from __future__ import annotations


def worth_logging(count: int, first: int = 3, every: int = 1000) -> bool:
    """Whether the ``count``-th occurrence (1-based) is logged: the first ``first``, then every
    ``every``-th."""
    return count <= first or count % every == 0


__all__ = ["worth_logging"]
