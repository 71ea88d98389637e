"""The documentation: every public name in the API reference, and a clean Sphinx build.

The build runs the gallery (every ``examples/plot_*.py``) and fails on any
warning (``-W``), so a broken example, docstring or link fails the suite.
"""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PUBLIC_MODULES = [
    "slicelearn",
    "slicelearn.nn",
    "slicelearn.data",
    "slicelearn.datasets",
    "slicelearn.brain_age",
    "slicelearn.inspection",
    "slicelearn.allocator",
    "slicelearn.distributed",
    "slicelearn.model_files",
    "slicelearn.callbacks",
    "slicelearn.report",
    "slicelearn.feature_cache",
    "slicelearn.cli",
    "slicelearn.qc",
    "slicelearn.readout",
    "slicelearn.splits",
    "slicelearn.precision",
    "slicelearn.presets",
    "slicelearn.provenance",
]


def test_every_public_name_is_in_the_api_reference():
    tokens = set(re.findall(r"[\w.]+", (DOCS / "api.rst").read_text()))

    def listed(name: str) -> bool:
        return name in tokens or any(token.endswith(f".{name}") for token in tokens)

    missing = [
        f"{module}.{name}"
        for module in PUBLIC_MODULES
        for name in importlib.import_module(module).__all__
        if name != "__version__" and not listed(name)
    ]
    assert not missing, f"not in docs/api.rst: {missing}"


def test_gallery_scripts_have_titles():
    for script in sorted((ROOT / "examples").glob("*.py")):
        lines = script.read_text().split('"""')[1].strip().splitlines()
        assert len(lines) > 1 and set(lines[1]) == {"="}, f"{script.name} has no RST title"


@pytest.mark.docs
def test_sphinx_build_with_gallery_has_no_warnings(tmp_path):
    pytest.importorskip("sphinx_gallery")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "SLICELEARN_GALLERY": "rerun"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    html = tmp_path / "html"
    for script in sorted((ROOT / "examples").glob("plot_*.py")):
        page = html / "auto_examples" / f"{script.stem}.html"
        assert page.is_file(), f"no gallery page for {script.name}"
        images = list((html / "_images").glob(f"sphx_glr_{script.stem}_*.png"))
        assert images, f"{script.name} produced no figure"
    assert (html / "api.html").is_file() and (html / "guide" / "method.html").is_file()
