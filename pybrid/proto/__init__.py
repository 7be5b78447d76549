"""Protobuf messages of the LUCIDAC/REDAC wire protocol, generated from ``proto/pybrid.proto``.

``pb`` is the generated module; import messages as ``from pybrid.proto import pb``.
"""

from pybrid.proto import pybrid_pb2 as pb

__all__ = ["pb"]
