"""Every relative link in the README and in the notebooks' text points to a file that exists.

Students follow the footers from notebook to notebook; a renamed notebook must not leave a dead link.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(text: str):
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):    # http:, mailto:, anchors
            continue
        yield target.split("#")[0]


def documents():
    yield ROOT / "README.md", (ROOT / "README.md").read_text(encoding="utf-8")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        yield path, "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


@pytest.mark.parametrize("path, text", list(documents()), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_every_relative_link_resolves(path, text):
    missing = [t for t in relative_links(text) if t and not (path.parent / t).exists()]
    assert not missing, f"{path.relative_to(ROOT)} links to missing files: {missing}"


def test_the_footers_chain_the_notebooks_in_reading_order():
    numbered = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    for before, after in zip(numbered[1:-1], numbered[2:]):
        text = dict((p.name, t) for p, t in documents())[before]
        assert after in text, f"{before} does not link on to {after}"
