"""The documentation: every public name in the API reference, and a clean Sphinx build.

The build fails on any warning (``-W``), so a broken docstring or link fails
the suite; every gallery script (``examples/plot_*.py``) runs in a test of its
own and must draw its figures.
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
    "slicelearn.voxels",
    "slicelearn.brain_encoder",
    "slicelearn.tissue",
    "slicelearn.ensemble",
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
def test_sphinx_build_has_no_warnings(tmp_path):
    # The gallery's pages are rendered without running the scripts here; each
    # script runs in its own test below, so the workers share them out.
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
        env={**os.environ, "SLICELEARN_GALLERY": "0"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    html = tmp_path / "html"
    for script in GALLERY:
        page = html / "auto_examples" / f"{script.stem}.html"
        assert page.is_file(), f"no gallery page for {script.name}"
    assert (html / "api.html").is_file() and (html / "guide" / "method.html").is_file()


GALLERY = sorted((ROOT / "examples").glob("plot_*.py"))

# Runs a gallery script as sphinx-gallery would (non-interactive matplotlib,
# the script's folder as cwd) and saves every figure it left open.
_RUN_EXAMPLE = """
import runpy, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
runpy.run_path(sys.argv[1], run_name="__main__")
for number in plt.get_fignums():
    plt.figure(number).savefig(f"{sys.argv[2]}/figure{number}.png")
"""


@pytest.mark.docs
@pytest.mark.parametrize("script", GALLERY, ids=lambda path: path.stem)
def test_gallery_example_runs_and_draws(script, tmp_path):
    env = dict(os.environ)
    if "PYTEST_XDIST_WORKER" in env:  # one core per worker: no threads fighting over it
        env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", _RUN_EXAMPLE, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=script.parent,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    figures = sorted(tmp_path.glob("figure*.png"))
    assert figures, f"{script.name} drew no figure"
    assert all(figure.stat().st_size > 5000 for figure in figures)
