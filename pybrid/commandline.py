"""What every command shares: ``--version`` and short usage errors.

An error names what is wrong and shows one usage line (the whole help stays on ``--help``):

    pybrid-ping: error: argument -c/--count: expected one argument
    usage: pybrid-ping [options] [host]  (pybrid-ping --help lists the options)

:class:`Parser` does this for the console tools (argparse), :class:`TwistdOptions` for the
``twistd`` plugins (``twistd`` itself prints the whole help before a plugin's error).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from twisted.python import usage

from pybrid.version import print_version_and_exit, version_line


def usage_line(command: str, arguments: str, help_command: str = "") -> str:
    """The one usage line of an error: ``usage: COMMAND ARGUMENTS  (COMMAND --help …)``."""
    words = " ".join(w for w in (command, arguments) if w)
    return f"usage: {words}  ({help_command or command} --help lists the options)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser with ``--version`` whose errors are the message and one usage line.

    ``usage_status`` is the exit status of a bad command line (argparse's 2 by default).
    """

    def __init__(self, *args: Any, usage_status: int = 2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.usage_status = usage_status
        self.add_argument("--version", action="version", version=version_line(self.prog),
                          help="print pybrid-twisted's version and exit")

    def short_usage(self) -> str:
        def shown(a: argparse.Action) -> str:
            name = a.metavar if isinstance(a.metavar, str) else a.dest
            return f"[{name}]" if a.nargs == "?" else name  # optional: discovered when left out

        positionals = " ".join(shown(a) for a in self._actions
                               if not a.option_strings and a.help != argparse.SUPPRESS)
        return usage_line(self.prog, f"[options] {positionals}".strip())

    def error(self, message: str) -> NoReturn:
        self.exit(self.usage_status, f"{self.prog}: error: {message}\n{self.short_usage()}\n")


def one_line(text: str) -> str:
    """Help text with its line breaks and indentation (from docstrings) made single spaces."""
    return " ".join(text.split())


class TwistdOptions(usage.Options):
    """``usage.Options`` for a twistd plugin: ``--version``, tidy help, short errors.

    Under ``twistd`` (a parent is set) a ``UsageError`` is printed here, as the message and one
    usage line on stderr, with twistd's exit status 1; used directly, it is raised as before.
    """

    #: The plugin's name, e.g. ``pybrid-proxy``.
    program = ""

    def __init__(self) -> None:
        super().__init__()
        self.docs = {name: one_line(doc) for name, doc in self.docs.items()}

    def opt_version(self) -> None:
        """Print pybrid-twisted's version and exit."""
        print_version_and_exit(self.program)

    def parseOptions(self, options: Any = None) -> None:
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if self.parent is None:
                raise
            prog = f"twistd {self.program}"
            line = usage_line(f"twistd [twistd options] {self.program}",
                              getattr(self, "synopsis", "[options]"), help_command=prog)
            sys.stderr.write(f"{prog}: error: {e}\n{line}\n")
            sys.exit(1)
