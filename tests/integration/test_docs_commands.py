"""The documentation's commands against the real tools, the blocks marked to run, and links.

See tests/support/docs_check.py for what is checked; the README's ``bash scripts/demo.sh`` and
the manual quick start (docs/quickstart.md) are executed here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from support import docs_check
from support.docs_check import ROOT, Command

from pybrid.proxy.backendfile import parse_backend_args

COMMANDS = docs_check.all_commands()
RUN_BLOCKS: dict[tuple[Path, int], list[Command]] = {}
for _c in COMMANDS:
    if _c.runs:
        RUN_BLOCKS.setdefault((_c.block.path, _c.block.line), []).append(_c)


def test_docs_have_commands_and_some_run():
    assert len(COMMANDS) >= 20
    where = {c.where.split(":")[0] for c in COMMANDS if c.runs}
    assert {"README.md", "docs/quickstart.md"} <= where


def test_every_documented_command_checks_out():
    problems = [p for c in COMMANDS for p in docs_check.check(c)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("tool", sorted(docs_check.TOOLS))
def test_every_option_is_documented(tool):
    text = "\n".join(p.read_text() for p in docs_check.documents())
    assert docs_check.option_groups(docs_check.help_text(tool))
    missing = docs_check.undocumented(tool, text)
    assert not missing, f"{tool}: options no document in docs/ mentions: {missing}"


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _kill_daemons(tmp: Path) -> None:
    """Stop daemons a failed block left behind (their pid files are under its TMPDIR)."""
    pids = []
    for pidfile in tmp.rglob("*.pid"):
        try:
            pids.append(int(pidfile.read_text().strip()))
        except (OSError, ValueError):
            continue
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            continue
    deadline = time.monotonic() + 10
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@pytest.mark.parametrize("key", sorted(RUN_BLOCKS), ids=lambda k: f"{k[0].name}:{k[1]}")
def test_marked_blocks_run(key, tmp_path):
    cmds = RUN_BLOCKS[key]
    script = "\n".join(c.text for c in cmds)
    for program in ("curl", "grep"):
        if re.search(rf"\b{program}\b", script) and shutil.which(program) is None:
            pytest.skip(f"{program} is not installed")
    ports = {int(p) for p in re.findall(r"(?:--(?:status-)?port[ =]|127\.0\.0\.1:)(\d+)", script)}
    busy = sorted(p for p in ports if p and _port_busy(p))
    if busy:
        pytest.skip(f"ports {busy} are in use on this machine")
    env = dict(os.environ, TMPDIR=str(tmp_path))
    env.pop("PYTHONPATH", None)
    try:
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=240)
    finally:
        _kill_daemons(tmp_path)
    where = f"{cmds[0].where} ({len(cmds)} command(s))"
    assert done.returncode == 0, f"{where} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    if "scripts/demo.sh" in script:  # the quick start's client printed chunks and a summary
        assert "connected to 127.0.0.1:" in done.stdout, done.stdout
        assert re.search(r"chunk +\d+ +\d+ samples", done.stdout), done.stdout
        # through the proxy the client says what its lane means (issue 21)
        assert "2 carriers" in done.stdout and "(topology 'proxy'" in done.stdout, done.stdout
        assert "data over this TCP connection (UDP refused: " in done.stdout, done.stdout
        assert "clients of a proxy always get run data over TCP" in done.stdout, done.stdout


# -- links ---------------------------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    out = set()
    for line in path.read_text().splitlines():
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


def test_every_doc_is_linked_from_the_index():
    index = (ROOT / "docs" / "index.md").read_text()
    linked = {target.split("#")[0] for target in LINK.findall(index)}
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md"))
               if p.name != "index.md" and p.name not in linked]
    assert not missing, f"add these to docs/index.md: {missing}"


def test_relative_links_resolve():
    problems = []
    for doc in docs_check.documents():
        for target in LINK.findall(doc.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            resolved = (doc.parent / path).resolve() if path else doc
            if not resolved.exists():
                problems.append(f"{doc.relative_to(ROOT)}: broken link {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                problems.append(f"{doc.relative_to(ROOT)}: no heading #{anchor} in {path}")
    assert not problems, "\n".join(problems)


def test_example_backend_files_parse():
    files = sorted((ROOT / "examples" / "proxy").glob("*.txt"))
    assert len(files) >= 4
    for path in files:
        assert parse_backend_args([str(path)]).backends, path


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (the daemons name their files under it)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def test_the_manual_quick_start_fails_fast_and_cleans_up_when_a_port_is_taken(tmp_path):
    """docs/quickstart.md §2 with the status port taken: a clear, whole message, a prompt
    failure (not a wait on a proxy that never started) and no daemon left running."""
    [key] = [k for k in RUN_BLOCKS if k[0].name == "quickstart.md"]
    script = "\n".join(c.text for c in RUN_BLOCKS[key])
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    busy = sorted(p for p in (5732, 5733, 8732) if _port_busy(p))
    if busy:
        pytest.skip(f"ports {busy} are in use on this machine")
    env = dict(os.environ, TMPDIR=str(tmp_path))
    env.pop("PYTHONPATH", None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 8732))
        taken.listen()
        try:
            done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=ROOT,
                                  env=env, capture_output=True, text=True, timeout=120)
            deadline = time.monotonic() + 60  # a stopped daemon takes a moment to exit
            while (left := _processes_mentioning(str(tmp_path))) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            _kill_daemons(tmp_path)
    assert done.returncode != 0, done.stdout
    assert ("cannot listen on 127.0.0.1:8732 (--status-port): address already in use"
            in done.stderr), done.stderr
    assert "pybrid-run" not in done.stdout + done.stderr  # it stopped at the failed start
    assert not left, f"processes left running: {left}"
    assert not _port_busy(5733), "the device is still listening"
