"""Our distribution and the reference pybrid-computing 0.12.10 (+ native) in one venv, in both
install modes users have: our wheel, and the README's editable install.  ``pybrid`` is a
namespace package in both distributions, so both CLIs work and both import in one process."""

from __future__ import annotations

import ast
import re

import pytest
from support.packaging import run

pytestmark = [pytest.mark.package, pytest.mark.timeout(900)]

BOTH = ("import pybrid.redac.controller, pybrid.proxy.plugin, pybrid.client,"
        " pybrid.proto.pybrid_pb2, pybrid.cli, pybrid.monitor; import pybrid;"
        " print(sorted(set(pybrid.__path__)))")


def check_both_work(venv, cwd):
    ref = run([venv.bin("pybrid"), "--help"], cwd=cwd)
    assert "proxy" in ref.stdout, ref.describe()  # the reference CLI and its subcommands
    done = run([venv.python, "-c", BOTH], cwd=cwd)
    portions = ast.literal_eval(done.stdout.strip())
    assert "pybrid (pybrid-twisted)" not in ref.output
    assert run([venv.bin("pybrid-run"), "--version"], cwd=cwd).stdout.startswith(
        "pybrid-run (pybrid-twisted) ")
    assert "--group" in run([venv.bin("pybrid-monitor"), "--help"], cwd=cwd).stdout
    listing = run([venv.bin("twistd"), "--help"], cwd=cwd).stdout
    assert re.search(r"^\s+pybrid-proxy\s", listing, re.M), listing
    assert re.search(r"^\s+pybrid-device\s", listing, re.M), listing
    assert "--backend" in run([venv.bin("twistd"), "pybrid-proxy", "--help"], cwd=cwd).stdout
    run([venv.python, "-m", "pip", "check"], cwd=cwd)  # requirements agree with each other
    return portions


def test_our_wheel_beside_the_reference(reference_and_wheel, package_base):
    portions = check_both_work(reference_and_wheel, package_base)
    site = reference_and_wheel.site_packages(package_base)
    assert portions == [str(site / "pybrid")]  # both distributions' files in one directory
    for ours, theirs in (("proxy", "redac"), ("client", "cli")):
        assert (site / "pybrid" / ours).is_dir() and (site / "pybrid" / theirs).is_dir()


def test_the_readme_editable_install_beside_the_reference(reference_and_editable,
                                                          package_base):
    venv, tree = reference_and_editable
    portions = check_both_work(venv, package_base)
    site = venv.site_packages(package_base)
    # the reference's portion in site-packages, ours in the source tree (edits take effect);
    # the default editable mode adds its finder's path-hook entry beside them
    found = [p for p in portions if not p.startswith("__editable__.")]
    assert found == sorted([str(site / "pybrid"), str(tree / "pybrid")])
    where = run([venv.python, "-c", "import pybrid.proxy.plugin as t; print(t.__file__)"],
                cwd=package_base).stdout.strip()
    assert where == str(tree / "pybrid" / "proxy" / "plugin.py")
