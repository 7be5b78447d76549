"""Shared-memory tap tests need the ``[shm]`` extra: skipped locally without it, failing in CI
(which installs it) — the project's pattern for optional packages."""

from __future__ import annotations

import os
import uuid

import pytest


def require_shm() -> None:
    if not os.environ.get("CI"):
        pytest.importorskip("zerobuffer")
        pytest.importorskip("posix_ipc")


def buffer_name() -> str:
    return f"pybrid-t-{uuid.uuid4().hex[:10]}"
