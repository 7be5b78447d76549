"""glibc told to keep what a data path frees (pybrid.malloc): 10 ms of datagrams held and let
go, again and again, are not faulted in afresh each time; an admin's setting wins."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from pybrid.malloc import keep_freed

CYCLES = """
import os, resource, sys
from pybrid.malloc import keep_freed
if sys.argv[1] == "keep":
    print(keep_freed({}), file=sys.stderr)
src = os.urandom(3300)
def cycle():  # 10 ms of datagrams at 30 000/s, held by a tap, then let go
    held = [src[:10] + src[10:] for _ in range(300)]
    del held
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CYCLES, mode], capture_output=True, text=True,
                         check=True, timeout=60)
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_held_and_freed_datagrams_are_not_faulted_in_again_with_the_heap_kept():
    trimmed, kept = faults("default"), faults("keep")
    assert trimmed > 200 * 100  # glibc returned the top of the heap every cycle
    assert kept < trimmed / 20


def test_an_admins_setting_wins_and_says_so():
    assert keep_freed({"MALLOC_TRIM_THRESHOLD_": "0"}) == "left as MALLOC_TRIM_THRESHOLD_ set it"
    said = keep_freed({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"})
    assert said == "left as GLIBC_TUNABLES set it"
