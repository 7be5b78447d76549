"""examples/systemd/pybrid-proxy.service: the unit parses (``systemd-analyze verify`` where
available, always a strict ini check) and its ExecStart line, pointed at this checkout and a
simulated device, starts a working proxy — with text logs as written, and with JSON logs
(``--logger=pybrid.logs.json_stdout``) as the comment suggests."""

from __future__ import annotations

import configparser
import json
import pathlib
import re
import shlex
import shutil
import subprocess

import pytest
import pytest_twisted
from support.ops_http import fetch
from support.reference import ROOT, spawn

from pybrid.device import SimulatedDevice

UNIT = ROOT / "examples" / "systemd" / "pybrid-proxy.service"
T = 30.0


def unit_text(config_dir: pathlib.Path) -> str:
    """The unit with %h paths pointing at this checkout and ``config_dir``."""
    text = UNIT.read_text()
    return text.replace("%h/pybrid-twisted", str(ROOT)).replace("%h/.config/pybrid",
                                                                str(config_dir))


def parse_unit(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=True, delimiters=("=",),
                                          comment_prefixes=("#", ";"))
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(text)
    return parser


def test_unit_has_what_the_deployment_guide_promises():
    text = UNIT.read_text()
    unit = parse_unit(text)
    assert unit.sections() == ["Unit", "Service", "Install"]
    service = unit["Service"]
    assert service["Restart"] == "on-failure" and service["RestartSec"] == "5"
    assert service["Type"] == "simple"
    assert unit["Install"]["WantedBy"] == "default.target"
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "%h/pybrid-twisted/.venv/bin/twistd"
    assert "--nodaemon" in argv and "--pidfile=" in argv
    assert argv[argv.index("pybrid-proxy") + 1:][:2] == ["--backend",
                                                          "%h/.config/pybrid/backends.txt"]
    assert "loginctl enable-linger $USER" in text
    assert "systemctl --user enable --now pybrid-proxy" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    (tmp_path / "backends.txt").write_text("127.0.0.1\n")
    unit = tmp_path / "pybrid-proxy.service"
    unit.write_text(unit_text(tmp_path))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60)
    complaints = [line for line in (done.stdout + done.stderr).splitlines()
                  if "pybrid-proxy.service" in line]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr


def exec_start(config_dir: pathlib.Path, json_logs: bool) -> list[str]:
    argv = shlex.split(parse_unit(unit_text(config_dir))["Service"]["ExecStart"])
    # free ports instead of 5732 / 8732, which may be taken on a test machine
    argv[argv.index("--port") + 1] = "0"
    argv[argv.index("--status-port") + 1] = "0"
    if json_logs:
        argv[argv.index("--logfile=-")] = "--logger=pybrid.logs.json_stdout"
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
    by_format = {e.get("log_format"): e for e in events}
    listen = by_format["pybrid-proxy listening on {host}:{port}"]
    status = by_format["pybrid-proxy status page on {url}"]
    assert listen["log_namespace"] == "pybrid.proxy.service.ProxyService"
    return int(listen["port"]), status["url"]


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
