"""The sdist carries what a build and a user need; the wheel built from it carries the
generated protobuf code and the twistd plugin file; a build without .proto files fails."""

from __future__ import annotations

import email.parser
import shutil
import tarfile
import zipfile

import pytest
from support.packaging import DEV_PYTHON, run

pytestmark = [pytest.mark.package, pytest.mark.timeout(900)]


def test_the_sdist_carries_sources_plugins_license_docs_examples_and_tests(dists):
    with tarfile.open(dists.sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for needed in ("proto/pybrid.proto", "twisted/plugins/pybrid_plugins.py", "LICENSE",
                   "README.md", "setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in",
                   "docs/deployment.md", "examples/systemd/pybrid-proxy.service",
                   "examples/proxy/lucidac.txt", "tests/conftest.py",
                   "tests/support/ref_scripts/ref_client.py", "scripts/test.sh",
                   "pybrid/version.py", "pybrid/proxy/plugin.py"):
        assert needed in names, needed
    # build products and the regular-package marker that would shadow the reference
    assert not [n for n in names if n.endswith(("_pb2.py", "_pb2.pyi", ".pyc", "dropin.cache"))]
    assert "pybrid/__init__.py" not in names
    assert not [n for n in names if n.startswith("twisted/") and n.endswith("__init__.py")]


def test_the_wheel_carries_the_generated_code_and_the_plugin_stub(dists):
    with zipfile.ZipFile(dists.wheel) as whl:
        names = set(whl.namelist())
        metadata = email.parser.Parser().parsestr(
            whl.read(f"pybrid_twisted-{dists.version}.dist-info/METADATA").decode())
    assert {"pybrid/proto/pybrid_pb2.py", "pybrid/proto/pybrid_pb2.pyi",
            "twisted/plugins/pybrid_plugins.py", "pybrid/version.py"} <= names
    # a namespace package shared with the reference, and Twisted's own plugin package
    assert not {"pybrid/__init__.py", "twisted/__init__.py", "twisted/plugins/__init__.py"} & names
    assert not [n for n in names if "__pycache__" in n or n.endswith("dropin.cache")]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    requires = metadata.get_all("Requires-Dist")
    assert "protobuf<8,>=6.31.1" in requires and "twisted[websocket]>=25.5" in requires, requires
    assert metadata["License"] == "MIT"


def test_a_build_without_proto_files_fails_and_says_why(dists, package_base):
    tree = package_base / "no-proto"
    shutil.copytree(dists.source, tree)
    for proto in (tree / "proto").glob("*.proto"):
        proto.unlink()
    done = run([DEV_PYTHON, "-m", "build", "--wheel", "--outdir", tree / "dist", tree],
               cwd=package_base, check=False)
    assert done.returncode != 0, done.describe()
    assert "no .proto files in" in done.output, done.describe()
    assert not list((tree / "dist").glob("*.whl"))
