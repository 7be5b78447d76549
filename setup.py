"""Build hook: generate pybrid/proto/*_pb2.py from proto/*.proto with grpcio-tools' protoc.

The generated modules are build products (git-ignored), never edited by hand.  They are
produced by every build, including ``pip install -e .``, before the Python files are collected.
"""

import glob
import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def generate_protos() -> None:
    from grpc_tools import protoc  # build-time requirement (pyproject.toml)

    sources = sorted(glob.glob(os.path.join(HERE, "proto", "*.proto")))
    out = os.path.join(HERE, "pybrid", "proto")
    for source in sources:
        args = [
            "protoc",
            f"-I{os.path.join(HERE, 'proto')}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            source,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {source}")


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        generate_protos()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
