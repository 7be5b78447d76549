"""Build hook: generate pybrid/proto/*_pb2.py from proto/*.proto with grpcio-tools' protoc.

The generated modules are build products (git-ignored, left out of the sdist), never edited by
hand.  They are produced by every build -- ``pip install -e .``, the sdist's wheel -- before
the Python files are collected.  A build without ``proto/*.proto`` fails: a wheel without the
generated code would install a ``pybrid.proto`` that cannot be imported.
"""

import glob
import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def generate_protos() -> None:
    from grpc_tools import protoc  # build-time requirement (pyproject.toml)

    proto_dir = os.path.join(HERE, "proto")
    sources = sorted(glob.glob(os.path.join(proto_dir, "*.proto")))
    if not sources:
        raise RuntimeError(
            f"no .proto files in {proto_dir}: cannot generate pybrid/proto/pybrid_pb2.py "
            "(an sdist must carry proto/; see MANIFEST.in)"
        )
    out = os.path.join(HERE, "pybrid", "proto")
    for source in sources:
        args = [
            "protoc",
            f"-I{proto_dir}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            source,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {source}")
        generated = os.path.join(out, os.path.basename(source)[: -len(".proto")] + "_pb2.py")
        if not os.path.isfile(generated):
            raise RuntimeError(f"protoc wrote no {generated}")


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        generate_protos()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
