"""Datasets: simulators with a known answer, and fetchers and loaders of real cohorts."""

from .atrophy import load_atrophy_template, make_atrophy_cohort
from .fetchers import fetch_ixi, fetch_oasis_vbm, get_data_home, load_ixi
from .synthetic import make_slice_position_task

__all__ = [
    "fetch_ixi",
    "fetch_oasis_vbm",
    "get_data_home",
    "load_atrophy_template",
    "load_ixi",
    "make_atrophy_cohort",
    "make_slice_position_task",
]
