"""pybrid/version.py: the version, and how an optional dependency is installed."""

from __future__ import annotations

from pybrid.version import install_hint, version


def test_the_install_hint_names_the_package_the_checkout_and_the_wheel() -> None:
    hint = install_hint("hdf5", "h5py")
    assert hint.startswith("pip install h5py ")
    assert "pip install -e '.[hdf5]'" in hint
    assert f"pip install 'pybrid_twisted-{version()}-py3-none-any.whl[hdf5]'" in hint
