"""Reading and writing ``.apb`` circuit files.

An ``.apb`` file is one binary-serialized ``File { Version version = 1; Module module = 2; }``
message (no length prefix, no header) — the format the reference ``pybrid`` writes with its
``extract --export x.apb`` and reads for ``--config-file``.  The current (and only) version is
0.1.0.  Files claiming a newer version are rejected (we cannot know what changed); older ones
(including an unset version, 0.0.0) are accepted as they are.

A file saved from a full extract (the reference's ``extract --configuration -e full.apb``)
also holds the cluster's description: ``entity_specification`` (and ``wiring_specification``)
items naming no entity.  They configure nothing, and a proxy cannot route them to a backend;
:func:`config_items` leaves them out of what is sent as configuration (with a debug log).
"""

from __future__ import annotations

import os
import pathlib

from google.protobuf.message import DecodeError
from twisted.logger import Logger

from pybrid.client.errors import ApbError
from pybrid.proto import pb
from pybrid.wire.messages import SPECIFICATION_KINDS

#: The ``File.version`` this module writes and the newest it reads.
APB_VERSION = (0, 1, 0)

log = Logger()


def config_items(module: pb.Module) -> pb.Module:
    """``module`` without its specification items that name no entity (see the module note)."""
    keep = [item for item in module.items
            if not (item.WhichOneof("kind") in SPECIFICATION_KINDS
                    and not item.entity.path.strip("/"))]
    if len(keep) == len(module.items):
        return module
    log.debug("configuration: {n} specification item(s) without entity left out",
              n=len(module.items) - len(keep))
    out = pb.Module()
    out.CopyFrom(module)
    del out.items[:]
    out.items.extend(keep)
    return out


def parse_apb(data: bytes, name: str = "<bytes>") -> pb.Module:
    """The ``Module`` inside the serialized ``File`` ``data``."""
    f = pb.File()
    try:
        f.ParseFromString(data)
    except DecodeError as e:
        raise ApbError(f"{name} is not an .apb file: {e}") from None
    v = (f.version.major, f.version.minor, f.version.patch)
    if v > APB_VERSION:
        raise ApbError(
            f"{name} has .apb version {'.'.join(map(str, v))}; "
            f"this client reads up to {'.'.join(map(str, APB_VERSION))}"
        )
    if not f.HasField("module"):
        raise ApbError(f"{name} holds no module")
    return f.module


def load_apb(path: str | os.PathLike[str]) -> pb.Module:
    """Read the circuit ``Module`` from the ``.apb`` file at ``path``."""
    p = pathlib.Path(path)
    if p.suffix != ".apb":
        raise ApbError(f"{p}: only .apb files are supported")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ApbError(f"cannot read {p}: {e.strerror or e}") from None
    return parse_apb(data, str(p))


def apb_bytes(module: pb.Module) -> bytes:
    """``module`` serialized as the contents of an ``.apb`` file (version 0.1.0)."""
    major, minor, patch = APB_VERSION
    f = pb.File(version=pb.Version(major=major, minor=minor, patch=patch))
    f.module.CopyFrom(module)
    return f.SerializeToString()


def save_apb(module: pb.Module, path: str | os.PathLike[str]) -> None:
    """Write ``module`` to ``path`` as an ``.apb`` file."""
    p = pathlib.Path(path)
    if p.suffix != ".apb":
        raise ApbError(f"{p}: .apb files must end in .apb")
    try:
        p.write_bytes(apb_bytes(module))
    except OSError as e:
        raise ApbError(f"cannot write {p}: {e.strerror or e}") from None
