"""docs/protocol.md is the one place the code's wire facts are cited from: every
section reference into it names a section that exists, and nothing points outside the
repository (to the notes the document was written from)."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
SCANNED = ("pybrid", "tests", "benchmarks", "docs", "examples", "proto", "README.md")
REFERENCE = re.compile(r"protocol\.md#([A-Za-z0-9_-]+)")
OUTSIDE = ("PROTOCOL" + ".md", "UDP" + "-NOTES")


def anchors() -> set[str]:
    """GitHub's anchors of the document's headings (lower case, spaces to dashes)."""
    out = set()
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#{2,4} (.+)", line)
        if m:
            out.add(re.sub(r"[^a-z0-9 -]", "", m.group(1).lower()).replace(" ", "-"))
    return out


def files() -> list[pathlib.Path]:
    found = []
    for name in SCANNED:
        path = ROOT / name
        found += [path] if path.is_file() else [
            p for p in path.rglob("*") if p.suffix in (".py", ".md", ".proto") and p.is_file()]
    return found


def test_the_document_has_the_sections_the_code_cites():
    assert {"framing", "samples", "data-lane", "reference-client", "reference-proxy",
            "twisted-udp"} <= anchors()


def test_every_reference_names_an_existing_section():
    known = anchors()
    bad = [f"{p.relative_to(ROOT)}: #{a}" for p in files()
           for a in REFERENCE.findall(p.read_text(encoding="utf-8")) if a not in known]
    assert bad == []


def test_nothing_points_to_notes_outside_the_repository():
    bad = [str(p.relative_to(ROOT)) for p in files()
           if any(word in p.read_text(encoding="utf-8") for word in OUTSIDE)]
    assert bad == []
