"""The docs checker itself: block and command extraction, and that it catches what it should
(with fake --help texts; the real ones are used by tests/integration/test_docs_commands.py)."""

from __future__ import annotations

import pytest
from support import docs_check
from support.docs_check import ROOT, Block, blocks, commands, simple_commands

DOC = ROOT / "docs" / "example.md"

TWISTD_HELP = """Usage: twistd [options]
Options:
  -l, --logfile=       log to a specified file, - for stdout
      --logger=        A fully-qualified name to a log observer factory
  -n, --nodaemon       don't daemonize
      --pidfile=       Name of the pidfile [default: twistd.pid]
"""
PROXY_HELP = """Usage: twistd [options] pybrid-proxy -b HOST[:PORT] [-b ...] [options]
Options:
  -b, --backend=            Backend device HOST[:PORT]
  -p, --port=               TCP port for clients
      --status-port=        Serve a status page
      --auth                Require clients to authenticate
"""
RUN_HELP = """usage: pybrid-run [-h] [-p PORT] [-t SECONDS] host
options:
  -h, --help            show this help message and exit
  -p PORT, --port PORT  TCP port (default 5732)
  -t SECONDS, --op-time SECONDS
"""


@pytest.fixture(autouse=True)
def fake_help(monkeypatch):
    texts = {"twistd": TWISTD_HELP, "twistd pybrid-proxy": PROXY_HELP, "pybrid-run": RUN_HELP,
             "twistd pybrid-device": "Options:\n  -p, --port=  port\n",
             "pybrid-monitor": "options:\n  --group GROUP\n"}
    monkeypatch.setattr(docs_check, "help_text", texts.__getitem__)


def problems(text: str, lang: str = "sh") -> list[str]:
    block = Block(DOC, 10, lang, text)
    return [p for c in commands(block) for p in docs_check.check(c)]


def test_blocks_markers_and_languages():
    md = "\n".join([
        "# Title", "```python", "print('not shell')", "```",
        "<!-- docs-check: run=2 -->", "```sh", "echo one", "echo two", "```",
        "<!-- docs-check: skip -->", "```console", "$ false", "```",
        "```", "twistd --no-such-option", "```",
        "<!-- docs-check: run -->", "```bash", "true", "```",
    ])
    found = blocks(DOC, md)
    assert [(b.lang, b.line, b.mark, b.run_only) for b in found] == [
        ("sh", 7, "run", (2,)), ("console", 12, "skip", ()), ("bash", 19, "run", ())]
    runs = [c.runs for c in commands(found[0])]
    assert runs == [False, True]


def test_commands_join_continuations_and_skip_console_output():
    block = Block(DOC, 5, "console", "$ pybrid-run 127.0.0.1 \\\n    -p 1\nerror: refused\n"
                  "$ echo $?\n2\n")
    found = commands(block)
    assert [(c.line, c.text) for c in found] == [(5, "pybrid-run 127.0.0.1 -p 1"),
                                                  (8, "echo $?")]
    sh = Block(DOC, 1, "sh", "# a comment\n\nls  # trailing\n")
    assert [c.text for c in commands(sh)] == ["ls  # trailing"]


def test_simple_commands_split_pipelines_and_drop_prefixes():
    assert simple_commands("until curl -sf URL | grep -q x; do sleep 0.2; done") == [
        ["curl", "-sf", "URL"], ["grep", "-q", "x"], ["sleep", "0.2"]]
    assert simple_commands("FOO=1 sudo twistd -n pybrid-proxy && echo ok # note") == [
        ["twistd", "-n", "pybrid-proxy"], ["echo", "ok"]]


def test_good_commands_pass():
    assert problems(
        ".venv/bin/twistd -n --pidfile= --logfile=- pybrid-proxy -b examples/proxy/lucidac.txt "
        "--status-port 8732 --auth\n"
        "twistd --pidfile x.pid -l proxy.log pybrid-device --port 0\n"
        "pybrid-run 127.0.0.1 -p 5732 --op-time=0.1\n"
        "bash scripts/demo.sh\n"
        "curl -s http://127.0.0.1:8732/metrics\n"
        "cat examples/proxy/*.txt\n"
    ) == []


@pytest.mark.parametrize("command, expected", [
    ("twistd --no-daemon pybrid-proxy -b x", "twistd has no option --no-daemon"),
    ("twistd -n pybrid-proxy --stats-port 1", "twistd pybrid-proxy has no option --stats-port"),
    ("twistd -n pybrid-proxy -b 1.2.3.4 --port=1 -x", "twistd pybrid-proxy has no option -x"),
    ("twistd -n pybrid-proxi -b x", "twistd has no plugin pybrid-proxi"),
    ("twistd -n --logger=pybrid.logs.nope pybrid-proxy", "--logger=pybrid.logs.nope cannot be"),
    ("pybrid-run 127.0.0.1 --op_time 1", "pybrid-run has no option --op_time"),
    ("bash scripts/nope.sh", "no such file scripts/nope.sh"),
    ("cp examples/systemd/nope.service ~/", "no such file examples/systemd/nope.service"),
    ("ls examples/proxy/*.nope", "nothing matches examples/proxy/*.nope"),
    ("curl http://127.0.0.1:8732/stats", "the status page serves"),
    ("twistd -n pybrid-proxy -b 'unbalanced", "cannot split the command"),
])
def test_bad_commands_are_reported(command, expected):
    found = problems(command)
    assert len(found) == 1 and expected in found[0], found
    assert found[0].startswith("docs/example.md:10: ")


def test_a_backend_file_that_does_not_parse_is_reported(tmp_path, monkeypatch):
    bad = ROOT / "examples" / "proxy" / "lucidac.txt"
    monkeypatch.setattr(docs_check, "ROOT", tmp_path)
    (tmp_path / "examples" / "proxy").mkdir(parents=True)
    (tmp_path / "examples" / "proxy" / "broken.txt").write_text("wire 0/9 1/0\n")
    (tmp_path / "examples" / "proxy" / "lucidac.txt").write_text(bad.read_text())
    found = problems("twistd -n pybrid-proxy -b examples/proxy/broken.txt")
    assert any("backend file examples/proxy/broken.txt does not parse" in p for p in found)
    assert problems("twistd -n pybrid-proxy --backend=examples/proxy/lucidac.txt") == []


def test_console_blocks_check_only_commands():
    assert problems("$ pybrid-run 127.0.0.1 -p 1\npybrid-run: --bogus is output\n",
                    "console") == []


def test_option_groups_and_undocumented_options():
    groups = docs_check.option_groups(RUN_HELP)
    assert groups == [{"-h", "--help"}, {"-p", "--port"}, {"-t", "--op-time"}]
    assert docs_check.option_groups(PROXY_HELP)[:2] == [{"-b", "--backend"}, {"-p", "--port"}]
    assert docs_check.undocumented("pybrid-run", "use `-p 5732` and --op-time-ish") == [
        "--op-time/-t"]
    assert docs_check.undocumented("pybrid-run", "pybrid-run -t 1 --port 2") == []
