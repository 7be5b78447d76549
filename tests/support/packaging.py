"""Build our distributions and install them as users do, for the ``package`` tests.

Everything happens outside the source tree, in one world-readable directory per test session
(an unprivileged user must be able to run what root installed there): the sdist built from
this checkout, the wheel built *from that sdist* in build's isolated (clean) environment, and
fresh venvs that install the wheel (alone, beside the reference ``pybrid-computing``, with
the lowest versions our requirements allow, on other Python versions).  Commands run with the
session directory as working directory, so nothing is imported from the checkout by accident.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence

import attrs

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: The interpreter of our development venv; it has ``build`` (the ``test`` extra).
DEV_PYTHON = pathlib.Path(sys.executable)
REFERENCE = ("pybrid-computing==0.12.10", "pybrid-computing-native==0.12.10")
PYENV = pathlib.Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
#: A root-installed interpreter outside /root, usable by an unprivileged user.
SYSTEM_PYTHON = pathlib.Path("/usr/bin/python3")
INSTALL_TIMEOUT = 900


class CommandFailed(AssertionError):
    """A command exited non-zero; the message has its output."""


@attrs.frozen
class Done:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode} after {self.seconds:.1f} s\n"
                f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without anything that points Python at this checkout or a venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def run(argv: Sequence[str | os.PathLike[str]], *, cwd: pathlib.Path, check: bool = True,
        timeout: float = INSTALL_TIMEOUT, env: dict[str, str] | None = None,
        user: str | None = None) -> Done:
    """Run ``argv`` in ``cwd``; with ``check`` a non-zero exit raises :class:`CommandFailed`."""
    args = tuple(str(a) for a in argv)
    started = time.monotonic()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else clean_env(), stdin=subprocess.DEVNULL,
                          user=user, extra_groups=[] if user else None)
    done = Done(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
    if check and proc.returncode != 0:
        raise CommandFailed(done.describe())
    return done


@attrs.frozen
class Venv:
    """A virtual environment at ``path``."""

    path: pathlib.Path

    def bin(self, name: str) -> pathlib.Path:
        return self.path / "bin" / name

    @property
    def python(self) -> pathlib.Path:
        return self.bin("python")

    def pip_install(self, *requirements: str | os.PathLike[str], cwd: pathlib.Path) -> Done:
        return run([self.python, "-m", "pip", "install", "-q", *requirements], cwd=cwd)

    def site_packages(self, cwd: pathlib.Path) -> pathlib.Path:
        done = run([self.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                   cwd=cwd)
        return pathlib.Path(done.stdout.strip())


def make_venv(path: pathlib.Path, python: pathlib.Path | str) -> Venv:
    run([python, "-m", "venv", path], cwd=path.parent)
    return Venv(path)


def python_of(version: str) -> pathlib.Path | None:
    """pyenv's interpreter for ``3.X`` (the newest patch release there), or None."""
    found = sorted(PYENV.glob(f"{version}.*/bin/python{version}"),
                   key=lambda p: [int(x) for x in p.parts[-3].split(".") if x.isdigit()])
    return found[-1] if found else None


@attrs.frozen
class Dists:
    """The sdist, the wheel built from it, and the sdist unpacked."""

    sdist: pathlib.Path
    wheel: pathlib.Path
    source: pathlib.Path  # the unpacked sdist (what the wheel was built from)
    version: str


def build_dists(base: pathlib.Path) -> Dists:
    """``python -m build --sdist`` of this checkout, then the wheel from the unpacked sdist.

    build installs the build requirements (pyproject.toml) into a fresh isolated venv for
    each step, so the wheel is made from what the sdist carries and nothing else.
    """
    out = base / "dist"
    run([DEV_PYTHON, "-m", "build", "--sdist", "--outdir", out, ROOT], cwd=base)
    (sdist,) = out.glob("*.tar.gz")
    unpacked = base / "sdist"
    with tarfile.open(sdist) as tar:
        tar.extractall(unpacked, filter="data")
    (source,) = unpacked.iterdir()
    run([DEV_PYTHON, "-m", "build", "--wheel", "--outdir", out, source], cwd=base)
    (wheel,) = out.glob("*.whl")
    version = wheel.name.split("-")[1]
    return Dists(sdist, wheel, source, version)


def session_dir() -> pathlib.Path:
    """A fresh directory that every user may read and traverse (removed by the caller)."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="pybrid-package-"))
    base.chmod(0o755)
    return base


def remove(path: pathlib.Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


__all__ = [
    "DEV_PYTHON",
    "REFERENCE",
    "ROOT",
    "SYSTEM_PYTHON",
    "CommandFailed",
    "Dists",
    "Done",
    "Venv",
    "build_dists",
    "clean_env",
    "make_venv",
    "python_of",
    "remove",
    "run",
    "session_dir",
]
