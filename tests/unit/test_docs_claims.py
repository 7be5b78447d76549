"""Claims in the docs that must match the code (issue 21): what a command prints, what the
proxy does, how an extra is installed."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1].parent


def read(name: str) -> str:
    return (ROOT / name).read_text()


def test_no_message_or_page_names_a_release_on_a_package_index() -> None:
    """pybrid-twisted is not on a package index: ``pip install 'pybrid-twisted[x]'`` fails."""
    places = [*ROOT.glob("pybrid/**/*.py"), *ROOT.glob("docs/*.md"), ROOT / "README.md",
              *ROOT.glob("examples/**/*.py"), *ROOT.glob("examples/**/*.ipynb")]
    found = [str(p.relative_to(ROOT)) for p in places if "pybrid-twisted[" in p.read_text()]
    assert not found


def test_the_auth_docs_describe_the_per_connection_throttle_not_a_lockout() -> None:
    """pybrid/proxy/clients/auth.py throttles per connection; no per-address lockout exists."""
    for name in ("docs/proxy.md", "docs/reliability.md"):
        text = read(name)
        stale = re.findall(r"[^.]*(?:locked out|lockout|[Bb]ack-off per address)[^.]*\.", text)
        assert all("removed" in s or "no per-address lockout" in s for s in stale), (name, stale)
    assert "Throttle per connection, never per address" in read("docs/proxy.md")


def test_the_after_a_change_check_expects_what_pybrid_run_prints() -> None:
    """pybrid-run ends each carrier's line with "N missing" (pybrid/client/cli.py)."""
    cli = read("pybrid/client/cli.py")
    assert 'f"in {c.chunks} chunks, {len(c.missing_chunks)} missing"' in cli
    after = read("docs/deployment.md").split("## After a change", 1)[1]
    assert '"0 missing"' in after and "gaps" not in after
