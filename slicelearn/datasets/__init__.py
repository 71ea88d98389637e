"""Datasets: simulators with a known answer (and, later, fetchers of real cohorts)."""

from .synthetic import make_slice_position_task

__all__ = ["make_slice_position_task"]
