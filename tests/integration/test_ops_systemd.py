"""examples/systemd/pybrid-proxy.service: a hardened system unit for a pip-installed venv.

It parses (a strict ini check, and ``systemd-analyze verify`` with the venv pointed at ours),
``systemd-analyze security`` rates it at most 4.0 — the score docs/deployment.md records — and
its ExecStart line, pointed at our venv and a simulated device, starts a working proxy, with
text logs and with JSON logs (``--logger=pybrid.logs.json_stdout``) instead of ``--syslog``.
(tests/package/test_operations.py verifies it against a venv that installed our wheel.)"""

from __future__ import annotations

import configparser
import json
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import pytest_twisted
from support.ops_http import fetch
from support.reference import ROOT, spawn

from pybrid.device import SimulatedDevice

UNIT = ROOT / "examples" / "systemd" / "pybrid-proxy.service"
DEPLOYMENT = ROOT / "docs" / "deployment.md"
VENV = "/opt/pybrid-twisted"
CONFIG = "/etc/pybrid"
OUR_VENV = pathlib.Path(sys.executable).parent.parent
MAX_EXPOSURE = 4.0
T = 30.0
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="no systemd-analyze")


def unit_text(venv: pathlib.Path, config_dir: pathlib.Path) -> str:
    """The unit with the venv and /etc/pybrid replaced."""
    return UNIT.read_text().replace(VENV, str(venv)).replace(CONFIG, str(config_dir))


def parse_unit(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",),
                                          comment_prefixes=("#", ";"))
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(text)
    return parser


def test_unit_is_hardened_and_runs_the_proxy_from_a_venv():
    text = UNIT.read_text()
    unit = parse_unit(text)
    assert unit.sections() == ["Unit", "Service", "Install"]
    service = unit["Service"]
    for key, value in {"Type": "simple", "Restart": "on-failure", "RestartSec": "5",
                       "DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "NoNewPrivileges": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
                       "CapabilityBoundingSet": "", "UMask": "0077"}.items():
        assert service[key] == value, key
    assert service["RestrictAddressFamilies"].split() == ["AF_INET", "AF_INET6", "AF_UNIX",
                                                          "AF_NETLINK"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == f"{VENV}/bin/twistd"
    assert "--nodaemon" in argv and "--pidfile=" in argv and "--syslog" in argv
    assert argv[argv.index("pybrid-proxy") + 1:][:2] == ["--backend", f"{CONFIG}/backends.txt"]
    # the install steps build the plugin cache the service user cannot write
    assert "getPlugins(IPlugin)" in text


@needs_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    (tmp_path / "backends.txt").write_text("127.0.0.1\n")
    unit = tmp_path / "pybrid-proxy.service"
    unit.write_text(unit_text(OUR_VENV, tmp_path))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60)
    complaints = [line for line in (done.stdout + done.stderr).splitlines()
                  if "pybrid-proxy.service" in line]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr


def exposure(unit: pathlib.Path) -> float:
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                          capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


@needs_analyze
def test_systemd_analyze_security_rates_it_safe_and_the_docs_say_how_safe():
    score = exposure(UNIT)
    assert score <= MAX_EXPOSURE
    recorded = re.search(r"`systemd-analyze security` rates it (\d+\.\d)", DEPLOYMENT.read_text())
    assert recorded and float(recorded.group(1)) == score, "update docs/deployment.md"


def exec_start(config_dir: pathlib.Path, json_logs: bool) -> list[str]:
    argv = shlex.split(parse_unit(unit_text(OUR_VENV, config_dir))["Service"]["ExecStart"])
    # free ports instead of 5732 / 8732, which may be taken on a test machine
    argv[argv.index("--port") + 1] = "0"
    argv[argv.index("--status-port") + 1] = "0"
    # standard output instead of syslog, which a test machine may not have
    at = argv.index("--syslog")
    argv[at:at + 2] = ["--logger=pybrid.logs.json_stdout" if json_logs else "--logfile=-"]
    return argv


def listening(stdout: bytes, json_logs: bool) -> tuple[int, str]:
    """The proxy's port and status URL from its log."""
    if not json_logs:
        text = stdout.decode()
        port = re.search(r"pybrid-proxy listening on \S+:(\d+)", text)
        url = re.search(r"pybrid-proxy status page on (http://\S+)", text)
        assert port and url, text
        return int(port.group(1)), url.group(1)
    events = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    listen = [e for e in events if e["message"].startswith("pybrid-proxy listening on")]
    status = [e for e in events if e["message"].startswith("pybrid-proxy status page on")]
    assert listen and status, events
    assert listen[0]["namespace"] == "pybrid.proxy.service.ProxyService"
    assert listen[0]["level"] == "info"
    return int(listen[0]["port"]), status[0]["url"]


@pytest.mark.parametrize("json_logs", [False, True], ids=["text-logs", "json-logs"])
@pytest_twisted.ensureDeferred
async def test_exec_start_runs_the_proxy(reactor, tmp_path, json_logs):
    device = SimulatedDevice(reactor=reactor)
    device.listen(0, interface="127.0.0.1")
    (tmp_path / "backends.txt").write_text(f"# a simulated LUCIDAC\n127.0.0.1:{device.port}\n")
    argv = exec_start(tmp_path, json_logs)
    proc = spawn(reactor, "twistd-unit", argv, ready_pattern=rb"pybrid-proxy listening on")
    try:
        await proc.ready.addTimeout(T, reactor)
        await proc.wait_for_output(b"run data by", T)  # the backend is ready
        port, url = listening(bytes(proc.stdout), json_logs)
        assert port > 0 and url.startswith("http://127.0.0.1:")
        code, _, body = await fetch(reactor, url + "status.json")
        assert code == 200
        data = json.loads(body)
        assert [b["name"] for b in data["backends"]] == [f"127.0.0.1:{device.port}"]
        assert data["healthy"] and data["listen"] == f"0.0.0.0:{port}"
    finally:
        code = await proc.stop()
        await device.stop()
    assert code in (0, -15), proc.tail()  # twistd re-raises SIGTERM after a clean shutdown
    assert b"Main loop terminated" in proc.stdout or b"Server Shut Down" in proc.stdout
