"""Session fixtures of the ``package`` tests: the built distributions and the venvs that
install them (see support/packaging.py).  Building and installing takes a while, so each is
made once per session and shared by the tests that only read it."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest
from support.packaging import (
    REFERENCE,
    SYSTEM_PYTHON,
    Dists,
    Venv,
    build_dists,
    make_venv,
    remove,
    run,
    session_dir,
)


@pytest.fixture(scope="session")
def package_base():
    base = session_dir()
    yield base
    if not os.environ.get("PYBRID_KEEP_PACKAGE_DIR"):
        remove(base)


@pytest.fixture(scope="session")
def dists(package_base) -> Dists:
    return build_dists(package_base)


def base_python() -> pathlib.Path:
    """A system interpreter outside /root if there is one (an unprivileged user can run it)."""
    if SYSTEM_PYTHON.exists():
        return SYSTEM_PYTHON
    return pathlib.Path(getattr(sys, "_base_executable", sys.executable))


@pytest.fixture(scope="session")
def installed(package_base, dists) -> Venv:
    """A fresh venv outside the source tree with our wheel (and its requirements) installed."""
    venv = make_venv(package_base / "installed", base_python())
    venv.pip_install(dists.wheel, cwd=package_base)
    return venv


@pytest.fixture(scope="session")
def reference_and_wheel(package_base, dists) -> Venv:
    """The reference pybrid-computing 0.12.10 installed first, then our wheel beside it."""
    venv = make_venv(package_base / "beside-wheel", sys.executable)
    venv.pip_install(*REFERENCE, cwd=package_base)
    venv.pip_install(dists.wheel, cwd=package_base)
    return venv


@pytest.fixture(scope="session")
def reference_and_editable(package_base, dists) -> tuple[Venv, pathlib.Path]:
    """The reference, then the README's editable install of a source tree (the unpacked sdist,
    copied: the editable install generates the protobuf code into it)."""
    tree = package_base / "editable-src"
    run(["cp", "-a", dists.source, tree], cwd=package_base)
    venv = make_venv(package_base / "beside-editable", sys.executable)
    venv.pip_install(*REFERENCE, cwd=package_base)
    venv.pip_install("-e", ".", cwd=tree)  # the default mode, then the README's .pth for twistd
    (venv.site_packages(tree) / "pybrid_twisted_checkout.pth").write_text(f"{tree}\n")
    return venv, tree
