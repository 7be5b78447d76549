"""glibc's heap, told to keep what a busy data path frees (:func:`keep_freed`).

Design note
-----------
A datagram is a ``bytes`` of a few KiB: glibc ``malloc`` takes it from the heap's top.  A tap
that holds 10 ms of datagrams (the live view's link, the NATS feed: about 1 MiB at full rate)
grows the top by that much, and when it lets them go glibc hands the top back to the kernel
(``brk``) as soon as more than ``M_TRIM_THRESHOLD`` (128 KiB) of it is free — so the next
10 ms fault every page in again and the kernel clears it: 6 % of a watched proxy's CPU in a
perf profile (docs/performance.md).  :func:`keep_freed` raises the trim threshold and fixes the
mmap threshold (glibc's adjustment of it stops when either is set), so freed memory is reused,
not returned; the process keeps at most its own peak.  An admin's ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_MMAP_THRESHOLD_`` or ``GLIBC_TUNABLES`` wins, and on another C library nothing is done.
"""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Mapping

#: ``mallopt`` parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Free bytes at the heap's top kept rather than returned to the kernel.
TRIM_THRESHOLD = 64 << 20
#: Allocations at least this large get their own mapping (freed at once, not kept).
MMAP_THRESHOLD = 4 << 20
_ADMIN = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed(environ: Mapping[str, str], trim: int = TRIM_THRESHOLD,
               mmap: int = MMAP_THRESHOLD) -> str:
    """Set glibc's thresholds (see the module note); what was done, for the log."""
    told = [name for name in _ADMIN if environ.get(name)]
    if told:
        return f"left as {', '.join(told)} set it"
    if platform.libc_ver()[0] != "glibc":
        return "not glibc: left alone"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "no mallopt: left alone"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if not (mallopt(M_TRIM_THRESHOLD, trim) and mallopt(M_MMAP_THRESHOLD, mmap)):
        return "mallopt refused: left alone"
    return f"keeps up to {trim >> 20} MiB freed (mmap from {mmap >> 20} MiB)"
