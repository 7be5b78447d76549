"""Optional packages the tests need (installed by scripts/setup.sh): skipped locally when
absent, a failure under CI (``CI`` set), where they must be installed."""

from __future__ import annotations

import importlib
import os
from typing import Any

import pytest


def require(module: str, extra: str) -> Any:
    """Import ``module`` or skip (fail under CI) naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = f"{module} is not installed (pip install -e '.[{extra}]')"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)
