"""Our wheel on every Python we support, and with the lowest versions our requirements allow:
a fresh venv per interpreter (pyenv's 3.11, 3.12, 3.13) installs the wheel with its ``test``
extra (and hdf5, plot: the unit tests of the recorder and the plot), then runs the unit tests
against the installed package.

* 3.11 pins every floor of setup.cfg: twisted 25.5 (the first with twisted.web.websocket),
  protobuf 6.31.1 (the gencode version of the pinned grpcio-tools), attrs 23.1, numpy 1.26;
* 3.12 takes the newest releases;
* 3.13 pins the twisted and protobuf floors (the twisted floor, 25.5, runs there; numpy 1.26 has
  no 3.13 build, so numpy floats).
"""

from __future__ import annotations

import re

import pytest
from support.packaging import ROOT, make_venv, python_of, run

pytestmark = [pytest.mark.package, pytest.mark.timeout(900)]

FLOORS = {"twisted": "25.5.0", "protobuf": "6.31.1", "attrs": "23.1.0", "numpy": "1.26.0"}
MATRIX = {
    "3.11": FLOORS,
    "3.12": {},
    "3.13": {"twisted": FLOORS["twisted"], "protobuf": FLOORS["protobuf"]},
}
SHOW = ("import importlib.metadata as m, sys; print(sys.version.split()[0]); "
        "print(' '.join(f'{d}=={m.version(d)}' for d in sys.argv[1:]))")


def test_the_floors_are_those_of_setup_cfg():
    text = (ROOT / "setup.cfg").read_text()
    for name, version in FLOORS.items():
        floor = ".".join(version.split(".")[:2]) if name != "protobuf" else version
        assert re.search(rf"^\s*{name}(\[[\w,]+\])?>={re.escape(floor)}\b", text, re.M), name


@pytest.mark.parametrize("version", sorted(MATRIX))
def test_the_unit_tests_pass_on_the_installed_wheel(version, package_base, dists):
    python = python_of(version)
    if python is None:
        pytest.skip(f"no Python {version} interpreter under pyenv on this machine")
    pins = MATRIX[version]
    venv = make_venv(package_base / f"py{version}", python)
    extras = "test,hdf5,plot,shm,tls,discovery,nats"  # what tests/unit imports
    venv.pip_install(f"{dists.wheel}[{extras}]", *(f"{n}=={v}" for n, v in pins.items()),
                     cwd=package_base)
    shown = run([venv.python, "-c", SHOW, *FLOORS], cwd=package_base).stdout.split("\n")
    assert shown[0].startswith(version + ".")
    installed = dict(item.split("==") for item in shown[1].split())
    for name, pinned in pins.items():
        assert installed[name] == pinned, installed
    # the tests import pybrid from the venv, never from the checkout
    where = run([venv.python, "-c", "import pybrid.proxy; print(pybrid.proxy.__file__)"],
                cwd=package_base).stdout
    assert where.startswith(str(venv.path)), where
    done = run([venv.python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                ROOT / "tests" / "unit"], cwd=package_base, check=False)
    assert done.returncode == 0, done.describe()
    summary = done.stdout.strip().splitlines()[-1]
    print(f"Python {shown[0]} with {shown[1]}: {summary}")
