"""Shared fixtures.

``reactor`` is the real reactor pytest-twisted runs tests in (integration tests only; unit tests
use ``task.Clock``/``MemoryReactorClock``).  ``ref_python`` is the interpreter of the reference
``pybrid-computing`` 0.12.10 installed in ``.ref/`` by ``scripts/setup.sh``; interop tests drive
it as a subprocess.  Without ``.ref/`` those tests are skipped locally and fail under CI.
"""

from __future__ import annotations

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
REF_PYTHON = ROOT / ".ref" / "bin" / "python"


@pytest.fixture
def reactor():
    from twisted.internet import reactor as _reactor

    return _reactor


@pytest.fixture
def ref_python() -> pathlib.Path:
    if not REF_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"the reference client is not installed at {REF_PYTHON}")
        pytest.skip("reference pybrid-computing not installed in .ref/ (run scripts/setup.sh)")
    return REF_PYTHON
