"""scripts/setup.sh: a development install setuptools will keep supporting, twistd's plugins
found, and a second run that checks instead of installing (issue 21).

A fresh clone's full run (minutes: it installs every dependency) is the integrator's check; here
the venv this suite runs in is the one the script made."""

from __future__ import annotations

import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_setup_uses_no_transitional_editable_mode() -> None:
    script = (ROOT / "scripts" / "setup.sh").read_text()
    assert "editable_mode=compat" not in script  # "transitional and will be removed"
    assert "pybrid_twisted_checkout.pth" in script


def test_a_second_run_checks_and_says_so_and_twistd_lists_our_plugins() -> None:
    env = dict(os.environ, SKIP_REFERENCE="1")
    env.pop("PYTHONPATH", None)
    done = subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installing" not in done.stdout, done.stdout
    assert done.stdout.strip().splitlines()[-1] == "setup: .venv/ ready", done.stdout
    helped = subprocess.run([str(ROOT / ".venv" / "bin" / "twistd"), "--help"], cwd="/",
                            env=env, capture_output=True, text=True, timeout=120)
    names = {line.split()[0] for line in helped.stdout.splitlines()
             if line.startswith("    ") and line.split()}
    assert {"pybrid-proxy", "pybrid-device"} <= names, helped.stdout
