"""Operations of an installed venv: the plugin cache built at install time (no dropin.cache
warnings for an unprivileged service user of a root-installed venv), and ``pip uninstall``
leaving Twisted's own plugins working."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess

import pytest
from support.packaging import clean_env, make_venv, run

pytestmark = [pytest.mark.package, pytest.mark.timeout(900)]

#: The install-time step of docs/deployment.md (Twisted's plugin guide).
BUILD_PLUGIN_CACHE = "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
SERVICE_USER = "pybrid-pkgtest"


def plugin_caches(site) -> list:
    return sorted((site / "twisted" / "plugins").glob("dropin.cache"))


@pytest.fixture(scope="module")
def service_user():
    """A real unprivileged system account (created when we are root, removed afterwards)."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to create an unprivileged user")
    try:
        pwd.getpwnam(SERVICE_USER)
        created = False
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", SERVICE_USER], check=True)
        created = True
    yield SERVICE_USER
    if created:
        subprocess.run(["userdel", SERVICE_USER], check=False)


def start_and_stop_as(user, venv, cwd) -> str:
    """What ``twistd -n pybrid-device`` run as ``user`` logs from its start to its stop."""
    argv = [str(venv.bin("twistd")), "-n", "--pidfile=", "--logfile=-", "pybrid-device",
            "--interface", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(argv, cwd=cwd, user=user, extra_groups=[], env=clean_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # bounded: the timeout below kills a daemon that hangs
            lines.append(line)
            if "listening on 127.0.0.1:" in line:
                break
        proc.terminate()
        rest, _ = proc.communicate(timeout=30)
        lines.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(lines)
    assert "listening on 127.0.0.1:" in text, text
    return text


def test_a_service_user_gets_no_plugin_cache_warning_once_the_cache_is_built(
        installed, package_base, service_user):
    site = installed.site_packages(package_base)
    assert os.stat(site).st_uid == 0  # installed by root, not writable by the service user
    for cache in plugin_caches(site):
        cache.unlink()
    warning = re.compile(r"Unable to write to plugin cache .*dropin\.cache")
    # without the cache, every start complains that it cannot write one
    before = start_and_stop_as(service_user, installed, package_base)
    assert warning.search(before), before
    run([installed.python, "-c", BUILD_PLUGIN_CACHE], cwd=package_base)  # as root, at install
    assert plugin_caches(site)
    after = start_and_stop_as(service_user, installed, package_base)
    assert "dropin.cache" not in after and "Unable to write" not in after, after
    helped = run([installed.bin("twistd"), "pybrid-proxy", "--help"], cwd=package_base,
                 user=service_user)
    assert "--backend" in helped.stdout and "dropin.cache" not in helped.output


def test_pip_uninstall_leaves_twisteds_own_plugins_working(package_base, dists):
    venv = make_venv(package_base / "uninstall", "python3")
    venv.pip_install(dists.wheel, cwd=package_base)
    site = venv.site_packages(package_base)
    run([venv.python, "-c", BUILD_PLUGIN_CACHE], cwd=package_base)
    listed = run([venv.bin("twistd"), "--help"], cwd=package_base).stdout
    assert "pybrid-proxy" in listed and re.search(r"^\s+web\s", listed, re.M)
    run([venv.python, "-m", "pip", "uninstall", "-y", "-q", "pybrid-twisted"], cwd=package_base)
    plugins = site / "twisted" / "plugins"
    assert not (plugins / "pybrid_plugins.py").exists()
    assert not list(plugins.glob("__pycache__/pybrid_plugins.*"))
    assert (site / "twisted" / "plugins" / "twisted_web.py").exists()  # Twisted's own untouched
    done = run([venv.bin("twistd"), "--help"], cwd=package_base)
    assert re.search(r"^\s+web\s", done.stdout, re.M), done.describe()
    assert "pybrid" not in done.stdout
    assert "Traceback" not in done.output and "Error" not in done.stderr, done.describe()
    web = run([venv.bin("twistd"), "web", "--help"], cwd=package_base)
    assert "--listen" in web.stdout
    import_gone = run([venv.python, "-c", "import pybrid.proxy"], cwd=package_base, check=False)
    assert import_gone.returncode != 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_the_unit_for_the_installed_venv(
        installed, package_base, tmp_path):
    from support.packaging import ROOT

    (tmp_path / "backends.txt").write_text("127.0.0.1\n")
    unit = tmp_path / "pybrid-proxy.service"
    text = (ROOT / "examples" / "systemd" / "pybrid-proxy.service").read_text()
    unit.write_text(text.replace("/opt/pybrid-twisted", str(installed.path))
                    .replace("/etc/pybrid", str(tmp_path)))
    done = run(["systemd-analyze", "verify", "--man=no", unit], cwd=package_base, check=False)
    assert done.returncode == 0 and "pybrid-proxy.service" not in done.output, done.describe()
