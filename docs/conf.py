"""Sphinx configuration: API reference (numpydoc), user guide (MyST), gallery."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import slicelearn  # noqa: E402

project = "slicelearn"
author = "slicelearn developers"
copyright = "2026, slicelearn developers"
release = version = slicelearn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "matplotlib.sphinxext.plot_directive",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py.md5"]
templates_path = ["_templates"]

autosummary_generate = True
autodoc_typehints = "none"  # numpydoc sections carry the types
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]

# The gallery runs every examples/plot_*.py at build time (a few minutes on a
# CPU) and skips scripts unchanged since the last build in this checkout.
# SLICELEARN_GALLERY=0 renders the scripts without running them (the test
# suite does, and runs each script in a test of its own);
# SLICELEARN_GALLERY=rerun runs every script again.
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "plot_gallery": os.environ.get("SLICELEARN_GALLERY", "1") != "0",
    "run_stale_examples": os.environ.get("SLICELEARN_GALLERY") == "rerun",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "matplotlib_animations": False,
    "show_memory": False,
}

html_theme = "alabaster"
html_title = f"slicelearn {release}"
html_static_path: list[str] = []


def _skip_metadata_requests(app, what, name, obj, skip, options):
    # scikit-learn's generated set_*_request methods document scikit-learn's
    # routing, not slicelearn; its API reference covers them.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
