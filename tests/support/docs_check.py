"""The docs checker: shell commands in the documentation must keep working.

Every fenced ```` ```sh ````/```` ```bash ```` block (all lines are commands) and
```` ```console ```` block (lines starting with ``$ `` are commands, the rest is output) of
``docs/*.md`` and ``README.md`` is split into simple commands, and each is checked:

* **options** named for ``twistd`` (its own, before the plugin name), ``twistd pybrid-proxy``,
  ``twistd pybrid-device``, ``pybrid-run`` and ``pybrid-monitor`` must appear in that tool's
  ``--help``; python scripts of the repository are checked against their ``--help`` when they
  have one; ``twistd --logger=NAME`` must name an importable object;
* **files**: words naming a repository path (``examples/…``, ``scripts/…``, ``docs/…`` …) must
  exist (globs must match); backend files under ``examples/proxy/`` must parse;
* **status page URLs** (``http://127.0.0.1:PORT/…``) must name a path the page serves.

An HTML comment on the line before the fence marks a block: ``<!-- docs-check: skip -->``
(not checked), ``<!-- docs-check: run -->`` (also executed by
``tests/integration/test_docs_commands.py``) or ``<!-- docs-check: run=1,3 -->`` (only those
commands, counted from 1, are executed).
"""

from __future__ import annotations

import functools
import glob
import itertools
import os
import re
import shlex
import subprocess
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
SHELL_LANGS = {"sh", "bash", "shell", "console"}
MARKER = re.compile(r"<!--\s*docs-check:\s*(skip|run)(?:=([\d,\s]+))?\s*-->")
FENCE = re.compile(r"^(\s*)```+\s*([\w-]*)\s*$")
REPO_DIRS = ("examples", "scripts", "docs", "benchmarks", "tests", "proto", "pybrid", "twisted")
REPO_PATH = re.compile(rf"^(?:\./)?(?:{'|'.join(REPO_DIRS)})/[\w./*+-]*$")
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z0-9][\w-]*)")
SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")"}
PREFIXES = {"sudo", "exec", "nohup", "time", "until", "while", "if", "then", "do", "else", "!",
            "env"}
STATUS_PATHS = {"/", "/status.json", "/metrics", "/index.html"}
TOOLS = {
    "twistd pybrid-proxy": ["twistd", "pybrid-proxy", "--help"],
    "twistd pybrid-device": ["twistd", "pybrid-device", "--help"],
    "pybrid-run": ["pybrid-run", "--help"],
    "pybrid-monitor": ["pybrid-monitor", "--help"],
}


@attrs.frozen
class Block:
    path: Path
    line: int
    lang: str
    text: str
    mark: str | None = None  # "skip", "run" or None
    run_only: tuple[int, ...] = ()  # with "run": 1-based command numbers, () = all


@attrs.frozen
class Command:
    block: Block
    number: int  # 1-based within its block
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{os.path.relpath(self.block.path, ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        b = self.block
        return b.mark == "run" and (not b.run_only or self.number in b.run_only)


def documents() -> list[Path]:
    return [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]


def blocks(path: Path, text: str | None = None) -> list[Block]:
    """The shell blocks of one Markdown file."""
    lines = (path.read_text() if text is None else text).splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(2).lower()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```")),
                   len(lines))
        if lang in SHELL_LANGS:
            mark = run_only = None
            if start > 0:
                mm = MARKER.search(lines[start - 1])
                if mm:
                    mark = mm.group(1)
                    run_only = tuple(int(n) for n in re.findall(r"\d+", mm.group(2) or ""))
            out.append(Block(path, start + 2, lang, "\n".join(lines[start + 1:end]), mark,
                             run_only or ()))
        i = end + 1
    return out


def commands(block: Block) -> list[Command]:
    """The commands of a block, continuation lines joined."""
    out: list[Command] = []
    pending: list[str] = []
    first = 0
    for offset, raw in enumerate(block.text.splitlines()):
        line = raw.rstrip()
        if not pending:
            if block.lang == "console":
                if not line.startswith("$ "):
                    continue  # output
                line = line[2:]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            first = block.line + offset
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        out.append(Command(block, len(out) + 1, first, " ".join(p.strip() for p in pending)))
        pending = []
    return out


def simple_commands(text: str) -> list[list[str]]:
    """``a | b && c; d`` → [[a…], [b…], [c…], [d…]], shell keywords and VAR=value dropped."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars="|&;()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError as e:
        raise ValueError(f"cannot split the command: {e}") from None
    out: list[list[str]] = []
    current: list[str] = []
    for token in [*tokens, ";"]:
        if token in SEPARATORS:
            if current:
                out.append(current)
            current = []
        elif not current and (token in PREFIXES or re.match(r"^[A-Za-z_]\w*=", token)):
            continue
        else:
            current.append(token)
    return [c for c in out if c and c[0] not in {"done", "fi", "}", "{"}]


# -- tools' help -----------------------------------------------------------------------------


def _exe(name: str) -> str:
    local = BIN / name
    return str(local) if local.exists() else name


@functools.cache
def help_text(tool: str) -> str:
    argv = TOOLS[tool] if tool in TOOLS else [tool, "--help"]
    done = subprocess.run([_exe(argv[0]), *argv[1:]], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-500:]}")
    return done.stdout


def options_of(help_: str) -> set[str]:
    return set(OPTION.findall(help_))


def option_groups(help_: str) -> list[set[str]]:
    """The options of a --help text, one set of aliases per option (``{"-p", "--port"}``)."""
    groups = []
    for line in help_.splitlines():
        if re.match(r"^\s+-", line):
            head = re.split(r"(?<=\S)\s{2,}", line.strip(), maxsplit=1)[0]
            found = set(OPTION.findall(head))
            if found:
                groups.append(found)
    return groups


def undocumented(tool: str, text: str) -> list[str]:
    """Options of ``tool`` that no alias of appears in ``text`` (help and version aside)."""
    missing = []
    for group in option_groups(help_text(tool)):
        if group & {"-h", "--help", "--version"}:
            continue
        if not any(re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text) for o in group):
            missing.append("/".join(sorted(group, key=len, reverse=True)))
    return missing


def valued_options(help_: str) -> set[str]:
    """Options that take a value (``--name=`` in twistd's usage.Options help)."""
    out: set[str] = set()
    for line in help_.splitlines():
        m = re.match(r"\s*(?:(-\w),\s*)?(--[\w-]+)=", line)
        if m:
            out.update(o for o in m.groups() if o)
    return out


@functools.cache
def script_help(script: str) -> str | None:
    """``python SCRIPT --help``, or None if the script has no working --help."""
    try:
        done = subprocess.run([_exe("python"), script, "--help"], capture_output=True,
                              text=True, timeout=60, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 and "usage" in done.stdout.lower() else None


# -- checks ------------------------------------------------------------------------------------


def check(command: Command) -> list[str]:
    """Problems with one documented command (empty: fine)."""
    try:
        simple = simple_commands(command.text)
    except ValueError as e:
        return [f"{command.where}: {e}"]
    problems: list[str] = []
    for argv in simple:
        problems += [f"{command.where}: `{command.text}`: {p}" for p in check_argv(argv)]
    return problems


def check_argv(argv: list[str]) -> list[str]:
    problems = [p for word in argv for p in check_word(word)]
    program = Path(argv[0]).name
    if program == "twistd":
        problems += check_twistd(argv[1:])
    elif program in ("pybrid-run", "pybrid-monitor"):
        problems += unknown(argv[1:], program, options_of(help_text(program)))
    elif program in ("python", "python3") and len(argv) > 1 and argv[1].endswith(".py"):
        problems += check_script(argv[1], argv[2:])
    return problems


def unknown(
    args: list[str], tool: str, known: set[str], valued: frozenset[str] | set[str] = frozenset()
) -> list[str]:
    problems = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if not arg.startswith("-") or arg in ("-", "--"):
            continue
        name = arg.split("=", 1)[0]
        if name not in known:
            problems.append(f"{tool} has no option {name}")
        skip = name in valued and "=" not in arg
    return problems


def check_twistd(args: list[str]) -> list[str]:
    own = help_text("twistd")
    valued = valued_options(own)
    problems: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-"):
        name, _, value = args[i].partition("=")
        if name in valued and not _:
            value = args[i + 1] if i + 1 < len(args) else ""
            i += 1
        if name not in options_of(own):
            problems.append(f"twistd has no option {name}")
        elif name == "--logger" and value:
            problems += importable(value)
        i += 1
    if i >= len(args):
        return problems
    plugin = args[i]
    tool = f"twistd {plugin}"
    if tool not in TOOLS:
        return [*problems, f"twistd has no plugin {plugin} (known: pybrid-proxy, pybrid-device)"]
    text = help_text(tool)
    rest = args[i + 1:]
    problems += unknown(rest, tool, options_of(text), valued_options(text))
    for name, value in itertools.pairwise(rest):
        if name in ("-b", "--backend") and REPO_PATH.match(value):
            problems += backend_file(value)
    problems += [p for a in rest if a.startswith("--backend=") for p in backend_file(a[10:])]
    return problems


def importable(name: str) -> list[str]:
    from twisted.python.reflect import namedAny

    try:
        namedAny(name)
    except Exception as e:
        return [f"--logger={name} cannot be imported: {e}"]
    return []


def backend_file(path: str) -> list[str]:
    from pybrid.proxy.backendfile import BackendFileError, parse_backend_args

    if not (ROOT / path).is_file():
        return []  # reported by check_word
    try:
        parse_backend_args([str(ROOT / path)])
    except BackendFileError as e:
        return [f"backend file {path} does not parse: {e}"]
    return []


def check_script(script: str, args: list[str]) -> list[str]:
    if not (ROOT / script).is_file():
        return []  # reported by check_word if it names a repository path
    text = script_help(script)
    return [] if text is None else unknown(args, script, options_of(text))


def check_word(word: str) -> list[str]:
    if REPO_PATH.match(word):
        if any(c in word for c in "*?["):
            if not glob.glob(str(ROOT / word)):
                return [f"nothing matches {word}"]
        elif not (ROOT / word).exists():
            return [f"no such file {word}"]
        if word.startswith("examples/proxy/") and word.endswith(".txt"):
            return backend_file(word)
        return []
    m = re.match(r"^https?://(?:127\.0\.0\.1|localhost|\[::1\]):\d+(/[^\s?#]*)?", word)
    if m and (m.group(1) or "/") not in STATUS_PATHS:
        return [f"the status page serves {', '.join(sorted(STATUS_PATHS))}, not {m.group(1)}"]
    return []


def all_commands() -> list[Command]:
    return [c for path in documents() for b in blocks(path) if b.mark != "skip"
            for c in commands(b)]
